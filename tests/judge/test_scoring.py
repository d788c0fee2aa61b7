"""score_answers and compare_pairs end to end against the fake judge server."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from mmalign.judge import (
    PairItem,
    ScoreItem,
    ScoreJudgment,
    compare_pairs,
    relative_score,
    score_answers,
)


def answers_in(text: str, *names: str) -> list[str]:
    return [re.search(rf"\[{name}\]\n(.*?)\n\[End of", text, re.S).group(1) for name in names]


def test_scores_with_and_without_reference(server, make_client):
    # The fake judge rates by answer length: a plain rating, or "reference candidate" on the first line.
    def respond(request):
        text = server.last_user_text(request)
        if "[Assistant 1]" in text:
            ref, cand = answers_in(text, "Assistant 1", "Assistant 2")
            return server.Reply(f"{len(ref)} {len(cand)}\nThe first is longer.")
        (answer,) = answers_in(text, "Answer")
        return server.Reply("I cannot rate this." if answer == "???" else f"Fine.\nRating: [[{len(answer)}]]")

    server.respond = respond
    items = [
        ScoreItem("Q1?", "abcdef", id="plain"),
        ScoreItem("Q2?", "abcd", reference="abcdefgh", id="ref1"),
        ScoreItem("Q3?", "???", id="odd"),
        ScoreItem("Q4?", "abc", reference="abcdef", id="ref2"),
    ]
    judgments = score_answers(make_client(), items)
    assert [j.id for j in judgments] == ["plain", "ref1", "odd", "ref2"]
    plain, ref1, odd, ref2 = judgments
    assert (plain.score, plain.reference_score, plain.relative) == (6.0, None, None)
    assert (ref1.score, ref1.reference_score, ref1.relative) == (4.0, 8.0, 0.5)
    assert odd.score is None and odd.raw == "I cannot rate this."
    assert (ref2.score, ref2.reference_score) == (3.0, 6.0)
    # LLaVA-Bench: ratio of means over items with both scores = 100 * (4 + 3) / (8 + 6) = 50.0
    assert relative_score(judgments) == pytest.approx(50.0)
    assert len(server.requests) == 4


def test_relative_score_is_a_ratio_of_means():
    judgments = [ScoreJudgment("a", 9.0, 10.0), ScoreJudgment("b", 1.0, 2.0), ScoreJudgment("c", None, 5.0)]
    # 100 * (9 + 1) / (10 + 2) = 83.33..., not the mean of ratios 100 * (0.9 + 0.5) / 2 = 70
    assert relative_score(judgments) == pytest.approx(83.3333333)
    assert relative_score([ScoreJudgment("x", None)]) is None


def test_images_go_as_png_data_urls(server, make_client):
    pixels = np.random.default_rng(1).integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    score_answers(make_client(), [ScoreItem("Q?", "A", images=[image]), ScoreItem("Q2?", "B", images=[image])])
    for request in server.requests:
        parts = next(m for m in request["json"]["messages"] if m["role"] == "user")["content"]
        assert parts[0]["type"] == "image_url" and parts[-1]["type"] == "text"
        url = parts[0]["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert np.array_equal(np.asarray(sent), pixels)


def test_position_swap_cancels_a_position_biased_judge(server, make_client):
    server.respond = lambda request: server.Reply("Answer A is better. [[A]]")  # always favours the first slot
    items = [PairItem("Q?", "one", "two", id="p1"), PairItem("Q?", "three", "four", id="p2")]
    judgments = compare_pairs(make_client(), items)
    assert [(j.first, j.second, j.verdict, j.consistent) for j in judgments] == [("A", "B", "tie", False)] * 2
    # both orders were sent: the second request shows answer_b first
    shown = [answers_in(server.last_user_text(r["json"]), "Answer A", "Answer B") for r in server.requests]
    assert sorted(map(tuple, shown)) == sorted([("one", "two"), ("two", "one"), ("three", "four"), ("four", "three")])


def test_position_swap_keeps_a_real_preference(server, make_client):
    def respond(request):  # prefers whichever answer says "correct", wherever it is
        a, b = answers_in(server.last_user_text(request), "Answer A", "Answer B")
        if "correct" in a and "correct" not in b:
            return server.Reply("[[A]]")
        if "correct" in b and "correct" not in a:
            return server.Reply("Assistant B is better.")
        return server.Reply("It's a tie.")

    server.respond = respond
    items = [
        PairItem("Q?", "correct answer", "wrong answer", id="a-wins"),
        PairItem("Q?", "wrong answer", "correct answer", id="b-wins"),
        PairItem("Q?", "meh", "also meh", id="tie"),
    ]
    judgments = compare_pairs(make_client(), items)
    assert [(j.id, j.verdict, j.consistent) for j in judgments] == [
        ("a-wins", "A", True),
        ("b-wins", "B", True),
        ("tie", "tie", True),
    ]
    assert judgments[1].raw_first == "Assistant B is better." and judgments[1].raw_second == "[[A]]"


def test_without_swap_one_request_per_pair(server, make_client):
    server.respond = lambda request: server.Reply("[[B]]")
    (judgment,) = compare_pairs(make_client(), [PairItem("Q?", "x", "y")], swap=False)
    assert (judgment.verdict, judgment.first, judgment.second) == ("B", "B", None)
    assert len(server.requests) == 1


def test_unreadable_verdict_and_failed_request(server, make_client):
    def respond(request):
        a, _ = answers_in(server.last_user_text(request), "Answer A", "Answer B")
        if a == "boom":
            return server.Reply(status=400)
        return server.Reply("Hard to say." if a == "vague" else "[[A]]")

    server.respond = respond
    items = [PairItem("Q?", "vague", "other", id="u"), PairItem("Q?", "boom", "fine", id="e")]
    unreadable, failed = compare_pairs(make_client(), items, return_errors=True)
    assert unreadable.first is None and unreadable.second == "B" and unreadable.verdict is None
    assert failed.verdict is None and "HTTP 400" in failed.error


def test_rerun_of_scoring_is_free(server, make_client, tmp_path):
    server.respond = lambda request: server.Reply("Rating: [[6]]")
    cache = str(tmp_path / "judge.sqlite")
    items = [ScoreItem(f"Q{i}?", "ans") for i in range(4)]
    first = score_answers(make_client(cache_path=cache), items)
    second = score_answers(make_client(cache_path=cache), items)
    assert [j.score for j in first] == [j.score for j in second] == [6.0] * 4
    assert len(server.requests) == 4
