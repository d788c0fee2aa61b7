"""Readers and writers of benchmarks' official file formats, with errors that name file, line and field.

* POPE questions (RUCAIBox/POPE ``output/coco/coco_pope_{random,popular,adversarial}.json``): JSON lines
  ``{"question_id", "image", "text", "label"}``; LLaVA's merged file adds ``"category"`` (the split).
* Answers (POPE, and any per-question task): JSON lines with the answer in ``"text"`` (LLaVA's
  ``model_vqa_loader``) or ``"answer"`` (POPE's own; ``text`` wins when a line has both); matched to
  questions by ``"question_id"`` when every answer has one, else by order, as the official script does (``zip``
  of the two files). Answers with ids in another order than the questions are still matched by id, with a
  warning: the official script would pair them by line (:func:`order_mismatch`).
* MME (``eval_tool`` results): one ``<subtask>.txt`` a subtask, lines ``image<TAB>question<TAB>answer<TAB>
  prediction``, the two questions of an image on consecutive lines.
* MMMU (``eval/example_outputs/<model>/<Category>/output.json``): a JSON list of ``{"id", "question_type",
  "answer", "all_choices", "index2ans", "response"}`` (open questions: no options). A directory is read as MMMU's
  output folder: every ``output.json`` below it, in sorted path order (MMMU's subject order, which is
  alphabetical). MMMU's other files there are skipped: ``total_val_output.json`` (id → final prediction, the
  input of its ``main_eval_only.py``: the same predictions again, without answers, so reading it too would
  count every question twice), ``parsed_output.json`` and ``result.json`` (written by its
  ``main_parse_and_eval.py``). ``total_val_output.json`` alone cannot be scored (no answers) and says so.

COCO files for CHAIR are in :mod:`.coco`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.data.io import read_json, write_jsonl
from mmalign.errors import DataError

POPE_SPLITS = ("random", "popular", "adversarial")


# ---------------------------------------------------------------------------------------------- generic


def read_jsonl(path: str | Path, *, allow_null: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; bad JSON or a non-object is a :class:`DataError`. With
    ``allow_null`` a ``null`` line is kept as ``(line, None)`` (VL-RewardBench's script skips such lines only after
    they took part in its shuffle)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=path)
    rows: list[tuple[int, Any]] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"not valid JSON ({err.msg})", file=path, line=number) from None
            if not isinstance(obj, dict) and not (obj is None and allow_null):
                raise DataError(f"expected a JSON object, got {type(obj).__name__}", file=path, line=number)
            rows.append((number, obj))
    return rows


def read_records(path: str | Path) -> list[tuple[int | None, int | None, dict[str, Any]]]:
    """Objects from a ``.jsonl`` file (line numbers) or a ``.json`` list (indices): (line, index, object)."""
    path = Path(path)
    if path.suffix == ".json":
        data = read_json(path)
        if not isinstance(data, list):
            raise DataError(f"expected a JSON list of objects, got {type(data).__name__}", file=path)
        for i, obj in enumerate(data):
            if not isinstance(obj, dict):
                raise DataError(f"expected an object, got {type(obj).__name__}", file=path, index=i)
        return [(None, i, obj) for i, obj in enumerate(data)]
    return [(line, None, obj) for line, obj in read_jsonl(path)]


def field_value(obj: dict[str, Any], keys: Sequence[str], kind: type | tuple[type, ...], where: dict[str, Any]) -> Any:
    """The first of ``keys`` present in ``obj``, checked against ``kind``; missing or mistyped → DataError."""
    for key in keys:
        if key in obj:
            value = obj[key]
            if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
                names = "/".join(t.__name__ for t in _as_tuple(kind))
                raise DataError(f"must be {names}, got {type(value).__name__}", field=key, **where)
            return value
    raise DataError(f"missing (expected {' or '.join(repr(k) for k in keys)})", field=keys[0], **where)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def record_id(obj: dict[str, Any], keys: Sequence[str], where: dict[str, Any]) -> str:
    """An id given as a string or an integer, returned as a string."""
    value = field_value(obj, keys, (str, int), where)
    return str(value)


# ------------------------------------------------------------------------------------------------- POPE


@dataclass(frozen=True)
class PopeQuestion:
    question_id: str
    image: str
    text: str
    label: str
    """``"yes"`` or ``"no"``."""
    split: str | None
    """random / popular / adversarial, from the ``category`` field or the file name; None if unknown."""
    line: int | None = None
    """Line of the question file (named in errors about the question's image)."""


def pope_split_of(path: str | Path) -> str | None:
    name = Path(path).name.lower()
    found = [split for split in POPE_SPLITS if split in name]
    return found[0] if len(found) == 1 else None


def read_pope_questions(path: str | Path) -> list[PopeQuestion]:
    """POPE's official question file (see the module docstring); labels must be exactly ``yes`` or ``no``.

    The official ``evaluate.py`` maps a label to *no* only when it is exactly ``no`` and to *yes* otherwise, so
    ``No``, ``no `` or ``maybe`` are positives there. Lowercasing them here would give other figures than the
    official script's on the same file, and matching it would score a ``No`` label as yes, so such a file is
    refused, with its line named: every file accepted here has the same labels in both.
    """
    default_split = pope_split_of(path)
    questions, seen = [], set()
    for line, obj in read_jsonl(path):
        where = {"file": path, "line": line}
        qid = record_id(obj, ("question_id",), where)
        if qid in seen:
            raise DataError("duplicate question_id", record_id=qid, field="question_id", **where)
        seen.add(qid)
        label = field_value(obj, ("label",), str, where)
        if label not in ("yes", "no"):
            raise DataError(
                f"label must be 'yes' or 'no' exactly, got {label!r} (the official evaluate.py counts every label "
                "other than exactly 'no' as yes, so it would score this one as a positive; fix the file)",
                record_id=qid,
                field="label",
                **where,
            )
        category = obj.get("category")
        if category is not None and category not in POPE_SPLITS:
            raise DataError(f"unknown POPE split {category!r}", record_id=qid, field="category", **where)
        questions.append(
            PopeQuestion(
                question_id=qid,
                image=field_value(obj, ("image",), str, where),
                text=field_value(obj, ("text",), str, where),
                label=label,
                split=category or default_split,
                line=line,
            )
        )
    if not questions:
        raise DataError("no questions", file=path)
    return questions


@dataclass(frozen=True)
class Answer:
    question_id: str | None
    text: str
    line: int
    other_text: str | None = None
    """A later one of the text keys, when the line has it too and it differs from ``text`` (else None)."""


def read_answers(path: str | Path, text_keys: Sequence[str] = ("text", "answer")) -> list[Answer]:
    """Answer lines: the text under the first of ``text_keys``; ``question_id`` (or ``id``) if present.

    POPE's own ``evaluate.py`` reads ``answer``, LLaVA's ``eval_pope.py`` reads ``text``; ``text`` is read
    first here, and a line whose other key holds a different string keeps it in ``Answer.other_text`` so that
    scoring can say the official script would read something else.
    """
    answers = []
    for line, obj in read_jsonl(path):
        where = {"file": path, "line": line}
        qid = record_id(obj, ("question_id", "id"), where) if ("question_id" in obj or "id" in obj) else None
        text = field_value(obj, text_keys, str, where)
        others = [obj[k] for k in text_keys if k in obj and obj[k] != text]
        answers.append(Answer(qid, text, line, others[0] if others and isinstance(others[0], str) else None))
    return answers


def match_answers(question_ids: Sequence[str], answers: Sequence[Answer], answers_path: str | Path) -> list[str]:
    """The answer text of each question, in question order (by ``question_id`` if all answers have one)."""
    with_id = [a for a in answers if a.question_id is not None]
    if with_id and len(with_id) != len(answers):
        first = next(a for a in answers if a.question_id is None)
        raise DataError(
            "some answers have a question_id and this one has none",
            file=answers_path,
            line=first.line,
            field="question_id",
        )
    if not with_id:
        if len(answers) != len(question_ids):
            raise DataError(
                f"{len(answers)} answers for {len(question_ids)} questions (answers without question_id are "
                "matched by order, so the counts must agree)",
                file=answers_path,
            )
        return [a.text for a in answers]
    known = set(question_ids)
    by_id: dict[str, Answer] = {}
    for a in answers:
        where = {"file": answers_path, "line": a.line, "record_id": a.question_id, "field": "question_id"}
        if a.question_id not in known:
            raise DataError("answer to a question that is not in the questions file", **where)
        if a.question_id in by_id:
            raise DataError(f"second answer to this question (first on line {by_id[a.question_id].line})", **where)
        by_id[a.question_id] = a  # type: ignore[index]
    missing = [q for q in question_ids if q not in by_id]
    if missing:
        raise DataError(
            f"{len(missing)} question(s) have no answer, e.g. question_id {missing[0]!r}", file=answers_path
        )
    return [by_id[q].text for q in question_ids]


def order_mismatch(question_ids: Sequence[str], answers: Sequence[Answer], answers_path: str | Path) -> str | None:
    """A warning when answers carry question ids in another order than the questions file, else None.

    :func:`match_answers` pairs by ``question_id``; the official ``evaluate.py`` pairs the two files line by
    line (``zip``), so on such files its figures would differ from ours.
    """
    ids = [a.question_id for a in answers]
    if any(i is None for i in ids) or ids == list(question_ids):
        return None
    differ = [k for k, (a, q) in enumerate(zip(ids, question_ids, strict=True)) if a != q]
    first = differ[0]
    return (
        f"{answers_path}: the answers are not in the questions file's order ({len(differ)} of {len(ids)} lines "
        f"differ; the first, line {answers[first].line}, answers question_id {ids[first]!r} where the questions "
        f"file has {question_ids[first]!r}). They are matched by question_id here; the official evaluate.py pairs "
        "the files line by line, so its figures on these files would differ (see metrics.line_order)."
    )


def write_pope_answers(path: str | Path, rows: Iterable[tuple[str, str]]) -> int:
    """Write (question_id, answer text) pairs as POPE/LLaVA answer lines (``question_id``, ``text``, ``answer``)."""
    return write_jsonl(path, ({"question_id": qid, "text": text, "answer": text} for qid, text in rows))


# -------------------------------------------------------------------------------------------------- MME


@dataclass(frozen=True)
class MMELine:
    image: str
    question: str
    answer: str
    prediction: str
    line: int


def read_mme_file(path: str | Path) -> list[list[MMELine]]:
    """One subtask file → its images, each the two consecutive lines about it."""
    path = Path(path)
    lines: list[MMELine] = []
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            raw = raw.rstrip("\r\n")
            if not raw.strip():
                continue
            parts = raw.split("\t")
            if len(parts) != 4:
                raise DataError(
                    f"expected 4 tab-separated fields (image, question, answer, prediction), got {len(parts)}",
                    file=path,
                    line=number,
                )
            if parts[2].strip().lower() not in ("yes", "no"):
                raise DataError(f"answer must be Yes or No, got {parts[2]!r}", file=path, line=number, field="answer")
            lines.append(MMELine(parts[0], parts[1], parts[2].strip(), parts[3], number))
    if not lines:
        raise DataError("no lines", file=path)
    if len(lines) % 2:
        raise DataError(f"{len(lines)} lines: MME has two questions an image, so the count must be even", file=path)
    images = [lines[i : i + 2] for i in range(0, len(lines), 2)]
    for first, second in images:
        if first.image != second.image:
            raise DataError(
                f"lines {first.line} and {second.line} should be the two questions of one image but name "
                f"{first.image!r} and {second.image!r}",
                file=path,
                line=second.line,
                field="image",
            )
    return images


def read_mme(path: str | Path) -> dict[str, list[list[MMELine]]]:
    """A results directory (``<subtask>.txt`` files) or a single subtask file → subtask → images."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise DataError("no <subtask>.txt files in this directory", file=path)
        return {f.stem: read_mme_file(f) for f in files}
    if not path.is_file():
        raise DataError("file or directory not found", file=path)
    return {path.stem: read_mme_file(path)}


def write_mme_file(path: str | Path, lines: Iterable[tuple[str, str, str, str]]) -> int:
    """Write (image, question, answer, prediction) rows in the eval tool's format, atomically."""
    from mmalign.files import atomic_path

    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in lines:
            if any("\t" in part or "\n" in part for part in row):
                raise DataError("MME fields cannot contain tabs or newlines", file=path, index=n)
            f.write("\t".join(row) + "\n")
            n += 1
    return n


# ------------------------------------------------------------------------------------------------- MMMU

MMMU_TOTAL_FILE = "total_val_output.json"
MMMU_TOTAL_ALONE = (
    f"MMMU's {MMMU_TOTAL_FILE} holds only final predictions keyed by id, without answers or options (the input "
    "of its main_eval_only.py); score the per-subject <Category>/output.json files (give their directory)"
)


@dataclass(frozen=True)
class MMMURecord:
    id: str
    question_type: str
    """``multiple-choice``, or an open type (MMMU writes ``short-answer``; anything else counts as open)."""
    answer: str | list[str]
    """A letter (or accepted letters) for multiple choice; the answer text (or accepted texts) for open ones."""
    response: str
    options: dict[str, str] | None
    """Letter → option text in ``all_choices`` order; None for an open question."""
    file: str
    index: int

    @property
    def is_choice(self) -> bool:
        return self.options is not None


def mmmu_output_files(path: str | Path) -> list[Path]:
    """The files :func:`read_mmmu_outputs` reads (see the module docstring)."""
    path = Path(path)
    if not path.is_dir():
        if not path.is_file():
            raise DataError("file or directory not found", file=path)
        if path.name == MMMU_TOTAL_FILE:
            raise DataError(MMMU_TOTAL_ALONE, file=path)
        return [path]
    files = sorted(path.rglob("output.json"))
    if not files:
        totals = sorted(path.rglob(MMMU_TOTAL_FILE))
        if totals:
            raise DataError(MMMU_TOTAL_ALONE, file=totals[0])
        raise DataError("no <Category>/output.json files in this directory (MMMU's output folder)", file=path)
    return files


def read_mmmu_outputs(path: str | Path) -> list[MMMURecord]:
    """MMMU ``output.json`` records, multiple-choice and open, from a file or an output folder; ids are unique."""
    records: list[MMMURecord] = []
    first_seen: dict[str, str] = {}
    for file in mmmu_output_files(path):
        data = read_json(file)
        if isinstance(data, dict):
            raise DataError(MMMU_TOTAL_ALONE, file=file)
        if not isinstance(data, list):
            raise DataError(f"expected a JSON list of objects, got {type(data).__name__}", file=file)
        for index, obj in enumerate(data):
            if not isinstance(obj, dict):
                raise DataError(f"expected an object, got {type(obj).__name__}", file=file, index=index)
            record = _mmmu_record(obj, file, index)
            if record.id in first_seen:
                raise DataError(
                    f"id seen before, in {first_seen[record.id]}",
                    file=file,
                    index=index,
                    record_id=record.id,
                    field="id",
                )
            first_seen[record.id] = str(file)
            records.append(record)
    return records


def _mmmu_record(obj: dict[str, Any], file: Path, index: int) -> MMMURecord:
    rid = record_id(obj, ("id",), {"file": file, "index": index})
    where = {"file": file, "index": index, "record_id": rid}
    question_type = field_value(obj, ("question_type",), str, where) if "question_type" in obj else "multiple-choice"
    response = field_value(obj, ("response",), str, where)
    answer = field_value(obj, ("answer",), (str, list), where)
    accepted = [answer] if isinstance(answer, str) else answer
    if not accepted or not all(isinstance(a, str) for a in accepted):
        raise DataError("must be a string or a non-empty list of strings", field="answer", **where)
    if question_type != "multiple-choice":
        return MMMURecord(rid, question_type, answer, response, None, str(file), index)
    choices = field_value(obj, ("index2ans",), dict, where)
    if len(choices) < 2 or not all(isinstance(v, str) for v in choices.values()):
        raise DataError("must map at least two letters to option texts", field="index2ans", **where)
    letters = obj.get("all_choices", list(choices))
    if not isinstance(letters, list) or sorted(str(x) for x in letters) != sorted(choices):
        raise DataError(f"must list the letters of index2ans, {sorted(choices)}", field="all_choices", **where)
    if not all(a in choices for a in accepted):
        raise DataError(f"answer {answer!r} is not one of {sorted(choices)}", field="answer", **where)
    options = {str(letter): choices[str(letter)] for letter in letters}  # MMMU draws from all_choices, in order
    return MMMURecord(rid, question_type, answer, response, options, str(file), index)
