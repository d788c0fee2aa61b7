"""``rm score`` (:mod:`mmalign.pairs.reward_score`): the rewards are score_examples', a resumed run writes the
same bytes, a changed model or option is refused by name, and bad lines are named by file, line and field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mmalign.data.parse import record_from_dict
from mmalign.data.records import assistant, user_prompt
from mmalign.errors import ConfigError, DataError
from mmalign.models.examples import Example, examples_from
from mmalign.models.reward import HEAD_FILE, load_reward_model, score_examples
from mmalign.pairs import reward_score
from mmalign.pairs.reward_score import partial_paths, score_file

pytestmark = pytest.mark.usefixtures("one_thread")


def prompt(question: str = "Describe the image.", n: int = 1) -> list[dict[str, Any]]:
    return user_prompt(question, n)


def lines(world: Path) -> list[Any]:
    """Every input form: pairs (one with its own rejected image), an SFT record, candidate lists, a blank line."""
    a, b = "images/train/000000.png", "images/train/000001.png"
    pair = {
        "id": "p-0",
        "images": [a],
        "prompt": prompt(),
        "chosen": assistant("There is a red circle."),
        "rejected": assistant("There is a red circle and a blue star."),
        "meta": {"margin": 1.0},
    }
    return [
        pair,
        {"id": "s-0", "images": [b], "prompt": prompt(), "completion": assistant("A green square.")},
        "",
        {"id": "c-0", "images": [a], "question": "What is there?", "responses": ["A star.", "Two stars.", "None."]},
        {"images": [b], "prompt": prompt("Count them."), "responses": ["One.", "Three."]},
        {**pair, "id": "p-1", "rejected_images": [b], "meta": None},
        {"id": "c-1", "question": "Say hi.", "responses": ["Hi."]},  # no image
    ]


def write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def data(world: Path) -> Path:
    return write(world / "rm-score-in.jsonl", lines(world))  # inside the world: its root by default


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_rewards_are_score_examples_and_records_stay_valid(world, data, reward_dir, tmp_path):
    out = tmp_path / "scored.jsonl"
    result = score_file(reward_dir(1), data, out, batch_size=3)
    rows = read(out)
    assert (result.lines, result.sequences, result.resumed_lines) == (6, 11, 0)  # 2 + 1 + 3 + 2 + 2 + 1 sequences
    assert [r.get("id") for r in rows] == ["p-0", "s-0", "c-0", None, "p-1", "c-1"]
    assert not any(p.exists() for p in partial_paths(out))

    loaded = load_reward_model(reward_dir(1))
    # by hand, one pair: the two sequences score_examples scores alone
    chosen, rejected = score_examples(loaded, examples_from(record_from_dict(lines(world)[0])), image_root=world)
    meta = rows[0]["meta"]
    assert meta["reward_chosen"] == pytest.approx(chosen, abs=1e-5)
    assert meta["reward_rejected"] == pytest.approx(rejected, abs=1e-5)
    assert meta["margin"] == 1.0 and meta["reward_model"] == str(reward_dir(1))  # the line's own fields kept
    # every other line against the same examples built by hand
    a = "images/train/000000.png"
    by_hand = [
        *examples_from(record_from_dict(lines(world)[1])),
        *[Example("c-0", user_prompt("What is there?"), [a], assistant(t)) for t in ("A star.", "Two stars.", "None.")],
        *[Example("x", prompt("Count them."), ["images/train/000001.png"], assistant(t)) for t in ("One.", "Three.")],
        *examples_from(record_from_dict({**lines(world)[5], "meta": {}})),
        Example("c-1", user_prompt("Say hi.", 0), [], assistant("Hi.")),
    ]
    expected = score_examples(loaded, by_hand, batch_size=1, image_root=world)
    got = [
        rows[1]["meta"]["reward"],
        *rows[2]["rewards"],
        *rows[3]["rewards"],
        rows[4]["meta"]["reward_chosen"],
        rows[4]["meta"]["reward_rejected"],
        *rows[5]["rewards"],
    ]
    assert got == pytest.approx(expected, abs=1e-5)
    assert rows[4]["meta"]["reward_rejected"] != pytest.approx(rows[0]["meta"]["reward_rejected"], abs=1e-6)
    for row in (rows[0], rows[1], rows[4]):
        record_from_dict(row)  # the scored records are still valid records


def interrupt_at_chunk(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Make the ``n``-th chunk of the next run raise KeyboardInterrupt (a Ctrl-C while it is scored)."""
    real, calls = reward_score._score_chunk, []

    def dies(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == n:
            monkeypatch.setattr(reward_score, "_score_chunk", real)
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(reward_score, "_score_chunk", dies)


def test_resume_after_an_interruption_gives_the_same_bytes(data, reward_dir, tmp_path, monkeypatch):
    model = Path(shutil.copytree(reward_dir(1), tmp_path / "rm"))
    straight = tmp_path / "straight.jsonl"
    score_file(model, data, straight, batch_size=2)
    out = tmp_path / "resumed.jsonl"
    interrupt_at_chunk(monkeypatch, 3)  # chunks of >= 2 sequences: [p-0], [s-0, c-0], [4th line], [p-1], [c-1]
    with pytest.raises(KeyboardInterrupt):
        score_file(model, data, out, batch_size=2)
    partial, sidecar = partial_paths(out)
    assert not out.exists() and sidecar.is_file() and len(read(partial)) == 3
    with open(partial, "ab") as f:
        f.write(b'{"images": ["cut off while wri')  # an interrupted write: the incomplete line is dropped

    # another model (the same folder retrained: another head), other options: refused, naming what changed
    shutil.copy(reward_dir(2) / HEAD_FILE, model / HEAD_FILE)
    with pytest.raises(ConfigError, match=r"different reward model \(fingerprint\).*--overwrite"):
        score_file(model, data, out, batch_size=2)
    with pytest.raises(ConfigError, match=r"different reward model \(path, fingerprint\)"):
        score_file(reward_dir(2), data, out, batch_size=2)
    shutil.copy(reward_dir(1) / HEAD_FILE, model / HEAD_FILE)
    with pytest.raises(ConfigError, match=r"different options \(batch_size\)"):
        score_file(model, data, out, batch_size=3)

    result = score_file(model, data, out, batch_size=2)
    assert (result.resumed_lines, result.lines, result.sequences) == (3, 6, 5)
    assert out.read_bytes() == straight.read_bytes()
    assert not partial.exists() and not sidecar.exists()

    with pytest.raises(ConfigError, match="exists: pass --overwrite"):
        score_file(model, data, out, batch_size=2)
    score_file(reward_dir(2), data, out, batch_size=2, overwrite=True)
    assert out.read_bytes() != straight.read_bytes() and len(read(out)) == 6


def test_a_chunk_cut_short_is_scored_again_whole(data, reward_dir, tmp_path, monkeypatch):
    straight = tmp_path / "straight.jsonl"
    score_file(reward_dir(1), data, straight, batch_size=3)
    out = tmp_path / "out.jsonl"
    interrupt_at_chunk(monkeypatch, 3)  # chunks of >= 3 sequences: [p-0, s-0], [c-0], [4th line, p-1], [c-1]
    with pytest.raises(KeyboardInterrupt):
        score_file(reward_dir(1), data, out, batch_size=3)
    partial, _ = partial_paths(out)
    assert len(read(partial)) == 3
    # killed after the first line of the chunk [4th line, p-1] was written: complete, but its chunk is not
    partial.write_bytes(b"".join(straight.read_bytes().splitlines(keepends=True)[:4]))
    result = score_file(reward_dir(1), data, out, batch_size=3)
    assert result.resumed_lines == 3 and result.sequences == 5  # the chunk again from its first line, then c-1
    assert out.read_bytes() == straight.read_bytes()


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ("{not json", None, "not valid JSON"),
        ({"id": "c", "question": "Q?", "responses": "A."}, "responses", "non-empty list"),
        ({"id": "c", "question": "Q?", "responses": ["A.", " "]}, "responses[1]", "non-empty string"),
        ({"id": "c", "question": "Q?", "responses": ["A."], "answer": "x"}, "answer", "unknown field"),
        ({"id": "c", "question": "Q?", "prompt": prompt(), "responses": ["A."]}, "prompt", "one of the two"),
        ({"id": "c", "images": ["images/none.png"], "question": "Q?", "responses": ["A."]}, "images[0]", "not found"),
        ({"id": "c", "images": ["../x.png"], "question": "Q?", "responses": ["A."]}, "images[0]", "escapes"),
        ({"id": "c", "images": [], "prompt": prompt(), "responses": ["A."]}, "images", "placeholder"),
        ({"id": "e", "task": "pope", "question": "Q?", "answer": "Yes.", "images": []}, None, "evaluation item"),
        (
            {"id": "p", "prompt": prompt("Q?", 0), "chosen": assistant(" "), "rejected": assistant("B")},
            "chosen",
            "empty",
        ),
    ],
)
def test_bad_lines_are_named_by_file_line_and_field(world, reward_dir, tmp_path, row, field, message):
    good = {"id": "g", "question": "Say hi.", "responses": ["Hi."]}
    data = write(world / f"bad-{tmp_path.name}.jsonl", [good, "", row])
    out = tmp_path / "out.jsonl"
    with pytest.raises(DataError, match=message) as info:
        score_file(reward_dir(1), data, out, batch_size=1)
    err = info.value
    assert err.file == str(data) and err.line == 3 and err.field == field
    assert str(data) in str(err) and "line 3" in str(err)
    assert not out.exists()


def test_refusals_before_any_work(data, reward_dir, tiny_dir, tmp_path):
    with pytest.raises(ConfigError, match="not a reward model"):
        score_file(tiny_dir("tiny-llava"), data, tmp_path / "o.jsonl")
    with pytest.raises(ConfigError, match=r"\*\.jsonl"):
        score_file(reward_dir(1), data, tmp_path / "o.parquet")
    with pytest.raises(DataError, match="no such file"):
        score_file(reward_dir(1), tmp_path / "missing.jsonl", tmp_path / "o.jsonl")
    empty = write(tmp_path / "empty.jsonl", ["", ""])
    with pytest.raises(DataError, match="no records"):
        score_file(reward_dir(1), empty, tmp_path / "o.jsonl")
    assert not list(tmp_path.glob("o.jsonl*"))
