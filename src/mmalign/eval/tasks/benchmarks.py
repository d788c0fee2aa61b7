"""Reading the public benchmarks' own files into evaluation items (``--source TASK=PATH``).

Images are read from ``--image-root`` (default: the folder of the benchmark file, or the benchmark
directory). What each task accepts:

* ``pope_*``: POPE's question file (RUCAIBox/POPE ``coco_pope_<split>.json``, JSON lines
  ``{"question_id", "image", "text", "label"}``), images are COCO file names;
* ``mme``: a directory of MME eval-tool files ``<subtask>.txt`` (``image<TAB>question<TAB>answer`` lines, a
  prediction column is ignored), images at ``<root>/<subtask>/<image>`` or ``<root>/<subtask>/images/<image>``;
* ``chair``: a COCO annotation directory (``instances_*.json`` + ``captions_*.json``); every image listed is
  captioned with CHAIR's prompt ("Please describe this image in detail.");
* ``consistency``: HallusionBench's question list (``HallusionBench.json``: ``category``, ``subcategory``,
  ``set_id``, ``figure_id``, ``question_id``, ``question``, ``gt_answer`` 1/0, ``filename``; ``visual_input``
  "0" means a question without an image);
* ``dialogue`` / ``preference``: a LLaVA-Bench directory (``questions.jsonl``, ``answers_gpt4.jsonl`` as the
  reference, optional ``context.jsonl`` with the image captions given to the judge, images in ``images/``);
* ``reward``: preference pairs in any format ``mmalign data`` reads (JSONL, Parquet, a ``datasets`` dir);
  ``meta.category`` (or ``source``) is the category;
* any task: mmalign evaluation items (``EvalItem`` JSON lines), e.g. safety items with ``meta.kind``
  (harmful, benign, adversarial, VLGuard's unsafes / safe_unsafes / safe_safes) and ``meta.category``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmalign.data.io import read_json
from mmalign.data.records import EvalItem, Origin, PreferenceRecord
from mmalign.errors import DataError
from mmalign.eval.metrics.mme import mme_parse
from mmalign.eval.metrics.official import field_value, read_jsonl, read_pope_questions, record_id
from mmalign.eval.metrics.safety import BENIGN_KINDS, HARMFUL_KINDS
from mmalign.eval.tasks.items import TaskInput, read_eval_items
from mmalign.eval.tasks.specs import TaskSpec

CHAIR_PROMPT = "Please describe this image in detail."


def _root(path: Path, image_root: Path | None) -> Path:
    return image_root if image_root is not None else (path if path.is_dir() else path.parent)


def _pope(spec: TaskSpec, path: Path) -> list[EvalItem]:
    return [
        EvalItem(
            q.question_id,
            spec.name,
            q.text,
            q.label,
            [q.image],
            meta={"split": q.split},
            origin=Origin(str(path), q.line),
        )
        for q in read_pope_questions(path)
    ]


def _mme(path: Path, root: Path) -> list[EvalItem]:
    files = sorted(path.glob("*.txt"))
    if not files:
        raise DataError("no MME <subtask>.txt files in this directory", file=path)
    items = []
    seen: dict[str, int] = {}
    for file in files:
        subtask = file.stem
        for number, raw in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not raw.strip():
                continue
            parts = raw.split("\t")
            if len(parts) not in (3, 4) or mme_parse(parts[2].strip()) not in ("yes", "no"):
                raise DataError("expected image<TAB>question<TAB>Yes|No", file=file, line=number)
            image = parts[0]
            nested = f"{subtask}/images/{image}"
            rel = nested if (root / nested).is_file() else f"{subtask}/{image}"
            group = f"{subtask}/{image}"
            n = seen[group] = seen.get(group, -1) + 1
            items.append(
                EvalItem(
                    f"{group}#{n}",
                    "mme",
                    parts[1],
                    parts[2].strip().lower(),
                    [rel],
                    meta={"group": group, "subtask": subtask},
                    origin=Origin(str(file), number),
                )
            )
    return items


def _coco(path: Path) -> list[EvalItem]:
    files = sorted(path.glob("instances_*.json"))
    if not files:
        raise DataError("no COCO instances_*.json in this directory", file=path)
    images: dict[int, str] = {}
    for file in files:
        data = read_json(file)
        rows = data.get("images") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise DataError("a COCO instances file needs an 'images' list", file=file, field="images")
        for k, row in enumerate(rows):
            where = {"file": file, "index": k}
            if not isinstance(row, dict):
                raise DataError("an image entry must be an object", **where)
            images[int(field_value(row, ("id",), int, where))] = field_value(row, ("file_name",), str, where)
    return [
        EvalItem(str(i), "chair", CHAIR_PROMPT, "", [name], meta={"image_id": i}) for i, name in sorted(images.items())
    ]


def _hallusion(path: Path) -> list[EvalItem]:
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError("expected HallusionBench's JSON list of questions", file=path)
    items = []
    for k, rec in enumerate(data):
        where = {"file": path, "index": k}
        if not isinstance(rec, dict):
            raise DataError("expected an object", **where)
        keys = ("category", "subcategory", "set_id", "figure_id", "question_id", "question", "gt_answer")
        values = {key: str(field_value(rec, (key,), (str, int), where)) for key in keys}
        answer = {"1": "yes", "0": "no"}.get(values["gt_answer"].strip(), values["gt_answer"].strip().lower())
        if answer not in ("yes", "no"):
            raise DataError(f"must be 1/0 (yes/no), got {rec['gt_answer']!r}", field="gt_answer", **where)
        base = f"{values['category']}/{values['subcategory']}/{values['set_id']}"
        visual = str(rec.get("visual_input", "1")) != "0" and rec.get("filename")
        images = [str(rec["filename"]).removeprefix("./")] if visual else []
        meta = {
            "pair_id": f"{base}/q{values['question_id']}",
            "figure_id": f"{base}/f{values['figure_id']}",
            "category": values["category"],
        }
        rid = f"{base}/{values['figure_id']}/{values['question_id']}"
        items.append(
            EvalItem(
                rid, "consistency", values["question"], answer, images, meta=meta, origin=Origin(str(path), index=k)
            )
        )
    return items


def _llava_bench(spec: TaskSpec, path: Path, root: Path) -> list[EvalItem]:
    questions = read_jsonl(path / "questions.jsonl")
    answers_path = path / "answers_gpt4.jsonl"
    references = {}
    for line, obj in read_jsonl(answers_path):
        where = {"file": answers_path, "line": line}
        references[record_id(obj, ("question_id",), where)] = field_value(obj, ("text",), str, where)
    context: dict[str, str] = {}
    if (path / "context.jsonl").is_file():
        for line, obj in read_jsonl(path / "context.jsonl"):
            where = {"file": path / "context.jsonl", "line": line}
            context[field_value(obj, ("image",), str, where)] = field_value(obj, ("caption",), str, where)
    items = []
    for line, obj in questions:
        where = {"file": path / "questions.jsonl", "line": line}
        qid = record_id(obj, ("question_id",), where)
        if qid not in references:
            raise DataError("no reference answer in answers_gpt4.jsonl", record_id=qid, **where)
        image = field_value(obj, ("image",), str, where)
        meta = {"category": str(obj.get("category", "")), "context": context.get(image, "")}
        items.append(
            EvalItem(
                qid,
                spec.name,
                field_value(obj, ("text",), str, where),
                references[qid],
                [f"images/{image}" if (root / "images" / image).is_file() else image],
                meta=meta,
                origin=Origin(str(path / "questions.jsonl"), line),
            )
        )
    return items


def _check_items(spec: TaskSpec, items: list[EvalItem], path: Path) -> None:
    for item in items:
        where: dict[str, Any] = {"file": path, "record_id": item.id}
        if spec.kind == "yesno" and item.answer.strip().lower() not in ("yes", "no"):
            raise DataError(f"a {spec.name} item's answer must be yes or no", field="answer", **where)
        if spec.kind == "choice" and not item.choices:
            raise DataError("a multiple-choice item needs choices", field="choices", **where)
        if spec.name == "mme" and "group" not in item.meta:
            raise DataError("an MME item needs meta.group (its image)", field="meta", **where)
        if spec.name == "consistency" and "pair_id" not in item.meta:
            raise DataError("a consistency item needs meta.pair_id", field="meta", **where)
        if spec.kind == "safety" and item.meta.get("kind") not in HARMFUL_KINDS + BENIGN_KINDS:
            kinds = list(HARMFUL_KINDS + BENIGN_KINDS)
            raise DataError(f"a safety item needs meta.kind, one of {kinds}", field="meta", **where)
        if spec.kind in ("dialogue", "battle") and not item.answer.strip():
            raise DataError("a dialogue item needs a reference answer", field="answer", **where)


def _reward(path: Path, root: Path) -> list[PreferenceRecord]:
    from mmalign.data.io import read_records

    pairs = list(read_records(path, kind="preference", root=root))
    if not pairs:
        raise DataError("no preference pairs", file=path)
    return pairs  # type: ignore[return-value]


def benchmark_input(spec: TaskSpec, path: Path, image_root: Path | None) -> TaskInput:
    """The items of ``spec`` read from a public benchmark file or directory (see the module docstring)."""
    if not path.exists():
        raise DataError("benchmark file or directory not found", file=path)
    root = _root(path, image_root)
    source = str(path)
    if spec.kind == "reward":
        return TaskInput(_reward(path, root), root, source)
    if path.is_dir():
        if spec.name == "mme":
            items = _mme(path, root)
        elif spec.name == "chair":
            return TaskInput(_coco(path), root, source, annotations=path)
        elif spec.kind in ("dialogue", "battle"):
            items = _llava_bench(spec, path, root)
        else:
            raise DataError(f"--source for {spec.name} must be a file, not a directory", file=path)
    elif spec.name == "consistency" and path.suffix == ".json":
        items = _hallusion(path)
    elif spec.name.startswith("pope_") and "label" in (read_jsonl(path)[:1] or [(0, {})])[0][1]:
        items = _pope(spec, path)
    else:
        items = read_eval_items(path)  # type: ignore[assignment]
    if spec.name == "chair" and not any(item.objects for item in items):
        raise DataError("CHAIR items need their ground-truth objects (or give a COCO annotation dir)", file=path)
    _check_items(spec, items, path)
    return TaskInput(items, root, source)
