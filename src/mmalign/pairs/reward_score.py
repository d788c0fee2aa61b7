"""``mmalign rm score``: a reward model's rewards added to every line of a JSONL file, resumably.

Each input line is one of (blank lines are skipped; every other line gives one output line, in order):

* a preference pair (mmalign record): ``meta.reward_chosen`` and ``meta.reward_rejected`` are added (the rejected
  side is scored on ``rejected_images`` when the pair has them);
* an SFT record: ``meta.reward``, the reward of its completion;
* a list of candidates, ``{"id": ..., "prompt": [messages] | "question": "...", "images": [...],
  "responses": ["...", ...]}`` (``id`` optional; ``question`` is a user turn with the images before it, as an
  evaluation item's; ``prompt`` has one image placeholder per image; ``source`` and ``meta`` may be present):
  ``rewards`` is added, one per response, in order.

Records also get ``meta.reward_model`` (candidate lists: ``reward_model``), the reward model's folder; the rest of
each line is written back as it was read. The rewards are :func:`mmalign.models.critique.score_with`'s
(``score_examples``'s; a critique reward model's critique-then-score rewards), batched
across lines: lines are taken in chunks of at least ``batch_size`` sequences (a chunk ends at a line), and each
chunk is scored in batches of ``batch_size`` and appended to ``OUT.partial`` (flushed to disk) before the next.
``OUT.partial.json`` beside it holds the run's fingerprint: the reward model (folder, and
:func:`~mmalign.pairs.reward_scorer.reward_fingerprint`), the input (path and content hash) and the options. A
rerun of the same command after an interruption keeps every complete chunk and continues after it: chunks are
cut the same way from the start of the file, so the result is byte for byte what an uninterrupted run writes.
Every line is checked before the model loads, so bad input fails at once, naming file, line, record id and
field. A rerun with another model, input or options is refused, naming what changed, unless ``overwrite``
(which also replaces an existing ``OUT``). When every line is scored, ``OUT.partial`` is renamed to ``OUT``
(atomically) and the fingerprint removed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.data.images import ImageChecker
from mmalign.data.io import Row, default_root, iter_rows, parse_row
from mmalign.data.parse import parse_images, parse_messages
from mmalign.data.records import EvalItem, PreferenceRecord, assistant, count_image_placeholders, user_prompt
from mmalign.errors import ConfigError, DataError
from mmalign.files import atomic_path
from mmalign.models.examples import Example, examples_from
from mmalign.pairs.registry import file_fingerprint
from mmalign.pairs.reward_scorer import check_reward_dir, reward_fingerprint

FORMAT = "mmalign.rm-score/1"
CANDIDATE_FIELDS = ("id", "prompt", "question", "images", "responses", "rewards", "reward_model", "source", "meta")
"""The keys a candidate list may have (``rewards`` and ``reward_model``: a scored file scored again)."""


@dataclass
class ScoreResult:
    out: Path
    lines: int
    """Lines in the output."""
    sequences: int
    """Sequences scored by this run (resumed lines not counted)."""
    resumed_lines: int
    """Lines an earlier, interrupted run had scored."""
    seconds: float


@dataclass
class Line:
    """One input line: its dict as read, where it is, and the sequences to score."""

    data: dict[str, Any]
    line: int
    kind: str
    """``preference``, ``sft`` or ``candidates``."""
    examples: list[Example]


def partial_paths(out: Path) -> tuple[Path, Path]:
    """``OUT.partial`` (the lines scored so far) and ``OUT.partial.json`` (the fingerprint of the run)."""
    return out.parent / f"{out.name}.partial", out.parent / f"{out.name}.partial.json"


def score_file(
    reward_model: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    root: str | Path | None = None,
    batch_size: int = 8,
    overwrite: bool = False,
    dtype: str = "float32",
    device: str | None = None,
    max_length: int | None = None,
    share_prefix: bool | str = "auto",
    progress: Callable[[int], None] | None = None,
) -> ScoreResult:
    """Score every line of ``data`` into ``out`` (see the module docstring). ``root``: the data root of the image
    paths (default: the shapes world holding ``data``, else its folder); ``progress(lines)`` after each chunk."""
    from mmalign.models.reward import load_reward_model

    data, out = Path(data), Path(out)
    if out.suffix.lower() != ".jsonl":
        raise ConfigError(f"rm score writes JSON lines: name the output *.jsonl, not {out.name!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if not data.is_file():
        raise DataError("no such file", file=data)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists: pass --overwrite to replace it")
    model_dir = check_reward_dir(reward_model, "--reward-model")
    root = default_root(data) if root is None else Path(root)
    fingerprint = {
        "format": FORMAT,
        "reward model": {"path": str(model_dir.resolve()), "fingerprint": reward_fingerprint(model_dir)},
        "input": {"path": str(data.resolve()), "fingerprint": file_fingerprint(data)},
        "options": {
            "root": str(root.resolve()),
            "batch_size": batch_size,
            "dtype": dtype,
            "max_length": max_length,
            "share_prefix": share_prefix,
        },
    }
    checker = ImageChecker(root, "exists")
    for _ in _chunks(data, checker, batch_size):  # every line checked before the model loads: bad input fails now
        pass
    partial, sidecar = partial_paths(out)
    ends = _resume_point(partial, sidecar, fingerprint, overwrite)
    loaded = load_reward_model(model_dir, dtype=dtype, device=device)
    start, written, sequences, total = time.perf_counter(), len(ends), 0, 0
    kept: int | None = None  # lines kept from the run this one resumes
    f = None
    try:
        for first, chunk in _chunks(data, checker, batch_size):
            total = first + len(chunk)
            if total <= written:  # scored by the run this one resumes
                continue
            if f is None:  # the first chunk to score: drop lines of a chunk an interruption cut short
                written = kept = first
                f = open(partial, "r+b")  # noqa: SIM115 (closed below, after the last chunk)
                f.truncate(ends[first - 1] if first else 0)
                f.seek(0, os.SEEK_END)
            rows = _score_chunk(loaded, chunk, data, root, batch_size, share_prefix, max_length, str(model_dir))
            f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
            sequences += sum(len(line.examples) for line in chunk)
            written = total
            if progress is not None:
                progress(written)
    finally:
        if f is not None:
            f.close()
    if total == 0:
        partial.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        raise DataError("holds no records to score: nothing written", file=data)
    with atomic_path(out) as tmp:
        os.replace(partial, tmp)
    sidecar.unlink(missing_ok=True)
    return ScoreResult(out, total, sequences, total if kept is None else kept, time.perf_counter() - start)


def _resume_point(partial: Path, sidecar: Path, fingerprint: dict[str, Any], overwrite: bool) -> list[int]:
    """Byte offsets of the ends of the complete lines of an earlier run's ``partial`` (empty: a new run, whose
    fingerprint is written and partial file created here)."""
    if overwrite:
        partial.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
    if partial.exists() and not sidecar.is_file():
        raise ConfigError(f"{partial} has no {sidecar.name} beside it: remove it, or pass --overwrite")
    if partial.exists():
        try:
            old = json.loads(sidecar.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError(f"{sidecar} is damaged: pass --overwrite to score from the start") from None
        changed = [key for key in fingerprint if not isinstance(old, dict) or old.get(key) != fingerprint[key]]
        if changed:
            detail = []
            for key in changed:
                before, now = (old.get(key) if isinstance(old, dict) else None), fingerprint[key]
                if isinstance(before, dict) and isinstance(now, dict):
                    keys = [k for k in now if before.get(k) != now[k]]
                    detail.append(f"{key} ({', '.join(keys)})")
                else:
                    detail.append(key)
            raise ConfigError(
                f"{partial} holds an unfinished run with a different {'; '.join(detail)}: rerun the same command "
                "to resume it, or pass --overwrite to start again"
            )
        ends, offset = [], 0
        with open(partial, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                offset += len(raw)
                ends.append(offset)
        return ends
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(fingerprint, indent=2) + "\n", encoding="utf-8")
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"")
    return []


def _chunks(data: Path, checker: ImageChecker, batch_size: int) -> Iterator[tuple[int, list[Line]]]:
    """(index of the chunk's first line, its lines): lines in order, cut once a chunk holds ``batch_size``
    sequences."""
    chunk: list[Line] = []
    first = n = 0
    for row in iter_rows(data):
        chunk.append(read_line(row, data, checker))
        n += len(chunk[-1].examples)
        if n >= batch_size:
            yield first, chunk
            first, chunk, n = first + len(chunk), [], 0
    if chunk:
        yield first, chunk


def read_line(row: Row, file: Path, checker: ImageChecker) -> Line:
    """A checked input line (a record, or a list of candidates); bad input raises DataError naming file, line,
    record id and field."""
    where: dict[str, Any] = {"file": str(file), "line": row.line, "index": row.index}
    if row.error is None and isinstance(row.data, dict) and "responses" in row.data:
        try:
            return Line(row.data, row.line or 0, "candidates", candidate_examples(row.data, row.line or 0, checker))
        except DataError as err:
            rid = row.data.get("id")
            raise err.located(**where, record_id=str(rid) if isinstance(rid, str | int) else None) from None
    record = parse_row(row, file=file, checker=checker)
    if isinstance(record, EvalItem):
        raise DataError(
            "an evaluation item has no response to score: give a preference pair, an SFT record or a list of "
            "candidates ('responses')",
            **where,
            record_id=record.id,
        )
    kind = "preference" if isinstance(record, PreferenceRecord) else "sft"
    return Line(row.data, row.line or 0, kind, examples_from(record))


def candidate_examples(data: dict[str, Any], line: int, checker: ImageChecker) -> list[Example]:
    """The sequences of a list of candidates (one per response), checked field by field."""
    for key in data:
        if key not in CANDIDATE_FIELDS:
            allowed = ", ".join(CANDIDATE_FIELDS)
            raise DataError(f"unknown field for a list of candidates (allowed: {allowed})", field=key)
    rid = data.get("id", f"line-{line}")
    if isinstance(rid, bool) or not isinstance(rid, str | int) or not str(rid).strip():
        raise DataError("must be a non-empty string", field="id")
    images = parse_images(data.get("images"), "images")
    for i, ref in enumerate(images):
        checker.check(ref, f"images[{i}]")
    if ("prompt" in data) == ("question" in data):
        raise DataError("give 'prompt' (chat messages) or 'question' (text): one of the two", field="prompt")
    if "prompt" in data:
        prompt = parse_messages(data["prompt"], "prompt")
        if count_image_placeholders(prompt) != len(images):
            raise DataError(
                f"the prompt has {count_image_placeholders(prompt)} image placeholder(s) but {len(images)} "
                "image(s) were given",
                field="images",
            )
    else:
        if not isinstance(data["question"], str) or not data["question"].strip():
            raise DataError("must be a non-empty string", field="question")
        prompt = user_prompt(data["question"], len(images))
    responses = data["responses"]
    if not isinstance(responses, list) or not responses:
        raise DataError("must be a non-empty list of response texts", field="responses")
    for j, text in enumerate(responses):
        if not isinstance(text, str) or not text.strip():
            raise DataError("must be a non-empty string", field=f"responses[{j}]")
    return [Example(str(rid), prompt, list(images), assistant(text)) for text in responses]


def _score_chunk(
    loaded: Any,
    chunk: list[Line],
    file: Path,
    root: Path,
    batch_size: int,
    share_prefix: bool | str,
    max_length: int | None,
    model: str,
) -> list[dict[str, Any]]:
    """The output rows of a chunk: each line's dict with its rewards added."""
    from mmalign.models.critique import score_with  # a critique model writes its critique first

    examples = [e for line in chunk for e in line.examples]
    try:
        rewards = score_with(loaded, examples, batch_size, root, share_prefix, max_length)
    except DataError as err:
        lines = {e.id: line.line for line in chunk for e in line.examples}
        raise err.located(file=str(file), line=lines.get(err.record_id or "")) from None
    rows, i = [], 0
    for line in chunk:
        got, i = rewards[i : i + len(line.examples)], i + len(line.examples)
        row = dict(line.data)
        if line.kind == "candidates":
            row["rewards"], row["reward_model"] = got, model
            rows.append(row)
            continue
        meta = dict(row.get("meta") or {})
        if line.kind == "preference":
            meta["reward_chosen"], meta["reward_rejected"] = got
        else:
            meta["reward"] = got[0]
        meta["reward_model"] = model
        row["meta"] = meta
        rows.append(row)
    return rows
