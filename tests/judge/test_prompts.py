"""Rubric prompts, image data URLs, and the parsers on the odd things judges write."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from mmalign.errors import DataError
from mmalign.judge import (
    combine_swapped,
    image_data_url,
    pairwise_messages,
    parse_score,
    parse_score_pair,
    parse_verdict,
    relative_messages,
    score_messages,
    swap_verdict,
)


def decode(url: str) -> Image.Image:
    header, payload = url.split(",", 1)
    assert header == "data:image/png;base64"
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    assert image.format == "PNG"
    return image


def test_data_url_is_lossless_png():
    pixels = np.random.default_rng(0).integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    back = decode(image_data_url(Image.fromarray(pixels)))
    assert back.size == (10, 12)
    assert np.array_equal(np.asarray(back.convert("RGB")), pixels)


def test_data_url_converts_modes_png_cannot_hold_and_reads_paths(tmp_path):
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 0, 0))
    assert decode(image_data_url(cmyk)).mode == "RGB"
    path = tmp_path / "pic.jpg"
    Image.new("RGB", (5, 3), (0, 0, 255)).save(path)
    assert decode(image_data_url(path)).size == (5, 3)
    assert decode(image_data_url(str(path))).size == (5, 3)
    with pytest.raises(DataError, match=r"missing\.png: cannot read image"):
        image_data_url(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"junk\.png: cannot read image"):
        image_data_url(tmp_path / "junk.png")


def test_prompts_put_images_first_and_carry_the_texts():
    messages = score_messages("How many stars?", "Two stars.", ["data:image/png;base64,AAAA"], context="2 stars")
    system, user = messages
    assert system["role"] == "system" and isinstance(system["content"], str)
    image, text = user["content"]
    assert image == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    body = text["text"]
    assert "[Question]\nHow many stars?" in body and "[Answer]\nTwo stars." in body and "2 stars" in body
    assert body.rstrip().endswith("Rating: [[6]].")  # the format asked for, last

    relative = relative_messages("Q?", "REF ANSWER", "CANDIDATE", [])[1]["content"]
    assert len(relative) == 1  # no images: text only
    rel_text = relative[0]["text"]
    assert rel_text.index("[Assistant 1]\nREF ANSWER") < rel_text.index("[Assistant 2]\nCANDIDATE")

    pair = pairwise_messages("Q?", "first", "second", ["u1", "u2"], reference="gold")[1]["content"]
    assert [p["image_url"]["url"] for p in pair[:2]] == ["u1", "u2"]
    assert "[Reference answer]\ngold" in pair[2]["text"]
    assert "[Answer A]\nfirst" in pair[2]["text"] and "[Answer B]\nsecond" in pair[2]["text"]


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("Rating: [[7]]", 7.0),
        ("The answer is accurate.\nRating: [[8.5]]", 8.5),
        ("7/10", 7.0),
        ("I would give this answer 6 out of 10.", 6.0),
        ("**Rating:** 9", 9.0),
        ("Score: 4/10 - it invents a star.", 4.0),
        ("On a scale of 1 to 10, I'd give a score of 3.", 3.0),
        ("It mentions 3 circles, 2 stars and misses one.\nRating: [[5]]", 5.0),
        ("My rating is 2", 2.0),
        ("7", 7.0),
        ("8\nThe answer is good but misses the colour.", 8.0),
        ("Rating: [[3]] at first glance, but on reflection Rating: [[4]]", 4.0),
        ("[[11]]", None),  # outside 1-10
        ("Rating: 0", None),
        ("Score: 4/5", None),  # another scale: not guessed
        ("The answer lists 3 objects and 2 colours.", None),
        ("no idea", None),
        ("", None),
    ],
)
def test_parse_score(text, score):
    assert parse_score(text) == score


def test_parse_score_custom_range():
    assert parse_score("Rating: [[4]]", low=1, high=5) == 4.0
    assert parse_score("Rating: [[7]]", low=1, high=5) is None
    assert parse_score("4/5", low=1, high=5) == 4.0


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("8 6\nAssistant 1 is more detailed.", (8.0, 6.0)),
        ("8, 6", (8.0, 6.0)),
        ("9.5 7\n", (9.5, 7.0)),
        ("Scores: 7 9\nexplanation", (7.0, 9.0)),
        ("[[9, 4]]", (9.0, 4.0)),
        ("Assistant 1: 8\nAssistant 2: 5\nBoth answer the question.", (8.0, 5.0)),
        ("Assistant 1 receives a score of 7, while Assistant 2 gets 3.", (7.0, 3.0)),
        ("11 3", None),
        ("The answers are fine.", None),
        ("Assistant 1 mentions 2 stars.", None),
    ],
)
def test_parse_score_pair(text, pair):
    assert parse_score_pair(text) == pair


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("[[A]]", "A"),
        ("After comparing both, my final verdict is: [[B]]", "B"),
        ("[[C]]", "tie"),  # MT-Bench's tie
        ("[[tie]]", "tie"),
        ("[[A>>B]]", "A"),
        ("My final verdict is [[B>A]].", "B"),
        ("[[A=B]]", "tie"),
        ("Output [[A]], [[B]] or [[tie]] as asked. Verdict: [[B]]", "B"),
        ("A is better", "A"),
        ("Assistant B is clearly better.", "B"),
        ("Answer A is more accurate about the colours.", "A"),
        ("A is wrong about the colour, while B is better overall.", "B"),
        ("I prefer B.", "B"),
        ("Final verdict: B", "B"),
        ("**Verdict:** A", "A"),
        ("The verdict is a tie.", "tie"),
        ("tie", "tie"),
        ("It's a tie.", "tie"),
        ("Both are equally good.", "tie"),
        ("B", "B"),
        ("**A**", "A"),
        ("This is a good answer with a nice style.", None),  # the article "a" is not answer A
        ("A is wrong.", None),
        ("I cannot decide.", None),
    ],
)
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_position_swap_combination():
    assert swap_verdict("A") == "B" and swap_verdict("B") == "A" and swap_verdict("tie") == "tie"
    assert swap_verdict(None) is None
    # both orders agree: a real win; disagreement (position bias) or a half-win: a tie
    assert combine_swapped("A", "A") == "A"
    assert combine_swapped("B", "B") == "B"
    assert combine_swapped("A", "B") == "tie"
    assert combine_swapped("A", "tie") == "tie"
    assert combine_swapped("tie", "tie") == "tie"
    assert combine_swapped(None, "A") is None and combine_swapped("B", None) is None
