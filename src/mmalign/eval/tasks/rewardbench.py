"""The reward-model benchmarks' own input files as preference pairs (``--source TASK=PATH``), for ``mmalign eval run``.

Each pair is a :class:`~mmalign.data.records.PreferenceRecord` (the question as the user turn with its image, the
better and the worse answer) whose ``meta["row"]`` keeps the benchmark's row as it was read (without embedded image
bytes), so the prediction file can be written in the benchmark's official format (:mod:`mmalign.eval.run.rewardbench`).

* ``vl_rewardbench``: VL-RewardBench's ``data/data.jsonl`` (rows ``{"id", "image_path", "query", "response": [two
  answers], "human_ranking": [0 = the better], ...}``; images under the folder of the file, as ``inference.py``'s
  ``--images_parent_dir ./data`` opens them) or the Hugging Face ``test-00000-of-00001.parquet`` (the same rows,
  the image embedded as ``image: {bytes, path}`` and no ``image_path``, as ``inference_hf.py`` reads it);
* ``multimodal_rewardbench``: Multimodal RewardBench's ``data/all_data.json`` (a JSON list of ``{"ID", "Text",
  "Image", "Output1", "Output2", "Better": "Output1" | "Output2", "Category"}``; images under the folder of the
  file, as ``1_run_model_as_judge_gpt4o.py``'s ``--image-folder data``);
* ``mm_rlhf_rewardbench``: MM-RLHF-RewardBench's ``mm_reward_bench.jsonl`` (rows ``{"id", "image" | "video",
  "prompt", "chosen", "rejected", ...}``; several pairs may share an ``id``; images under ``--image-root``, default
  the folder of the file). A pair with a video and no image is skipped and counted: mmalign has no video input yet.

A literal ``<image>`` tag in a question is dropped (the official scripts drop it too), as the image is given as an
image. Record ids are the benchmark's ids, made unique with ``#2``, ``#3``... where an id repeats.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmalign.data.records import ImageBlob, Origin, PreferenceRecord, assistant, user_prompt
from mmalign.errors import DataError
from mmalign.eval.tasks.items import TaskInput

BENCHMARKS = ("vl_rewardbench", "multimodal_rewardbench", "mm_rlhf_rewardbench")


def without_image_tag(text: str) -> str:
    """The question without ``<image>`` tags (the image goes in as an image, never as its tag)."""
    return text.replace("<image>\n", "").replace("<image>", "").strip()


def _text(row: dict[str, Any], key: str, where: dict[str, Any]) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        found = "missing" if key not in row else f"must be a string, got {type(value).__name__}"
        raise DataError(found, field=key, **where)
    return value


def _id(row: dict[str, Any], key: str, where: dict[str, Any]) -> str:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DataError(f"missing, or not a string or integer: {value!r}", field=key, **where)
    return str(value)


class _Ids:
    """Unique record ids: a repeated benchmark id gets ``#2``, ``#3``... (the official id stays in the row)."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, item_id: str) -> str:
        n = self.seen[item_id] = self.seen.get(item_id, 0) + 1
        return item_id if n == 1 else f"{item_id}#{n}"


def _pair(
    record_id: str, question: str, image: Any, chosen: str, rejected: str, row: dict[str, Any], origin: Origin
) -> PreferenceRecord:
    images = [] if image is None else [image]
    return PreferenceRecord(
        record_id,
        user_prompt(without_image_tag(question), len(images)),
        assistant(chosen),
        assistant(rejected),
        images,
        meta={"row": row, "category": row.get("Category") or row.get("query_source") or ""},
        origin=origin,
    )


# ------------------------------------------------------------------------------------------------- VL-RewardBench


def _vl_rows(path: Path) -> Iterator[tuple[int | None, int, dict[str, Any]]]:
    if path.suffix == ".parquet":
        from mmalign.data.columnar import iter_dicts

        for index, row in enumerate(iter_dicts(path, "parquet")):
            yield None, index, row
        return
    from mmalign.eval.metrics.official import read_jsonl

    for index, (line, row) in enumerate(read_jsonl(path)):
        yield line, index, row


def _vl(path: Path) -> list[PreferenceRecord]:
    ids, pairs = _Ids(), []
    for line, index, raw in _vl_rows(path):
        where: dict[str, Any] = {"file": path, "line": line, "index": index}
        item_id = _id(raw, "id", where)
        where["record_id"] = item_id
        answers = raw.get("response")
        if not (isinstance(answers, list) and len(answers) == 2 and all(isinstance(a, str) for a in answers)):
            raise DataError("must be a list of two answers (strings)", field="response", **where)
        ranking = raw.get("human_ranking", raw.get("ranking"))
        ok = isinstance(ranking, list) and all(isinstance(r, int) and not isinstance(r, bool) for r in ranking)
        if not (ok and sorted(ranking) == [0, 1]):
            raise DataError(
                f"must be [0, 1] or [1, 0] (0 marks the better answer), got {ranking!r}", field="human_ranking", **where
            )
        image: Any
        if "image_path" in raw:
            image = _text(raw, "image_path", where)
        elif isinstance(raw.get("image"), dict) and raw["image"].get("bytes") is not None:
            image = ImageBlob(raw["image"].get("path"), bytes(raw["image"]["bytes"]))
        else:
            raise DataError("no image: expected image_path (data.jsonl) or image.bytes (the parquet)", **where)
        row = {k: v for k, v in raw.items() if k not in ("image", "human_ranking")}
        row["ranking"] = ranking
        better = answers[ranking.index(0)]
        worse = answers[ranking.index(1)]
        origin = Origin(str(path), line, index)
        pairs.append(_pair(ids(item_id), _text(raw, "query", where), image, better, worse, row, origin))
    return pairs


# -------------------------------------------------------------------------------------------- Multimodal RewardBench


def _multimodal(path: Path) -> list[PreferenceRecord]:
    from mmalign.data.io import read_json

    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"expected a JSON list of examples (data/all_data.json), got {type(data).__name__}", file=path)
    ids, pairs = _Ids(), []
    for index, ex in enumerate(data):
        where: dict[str, Any] = {"file": path, "index": index}
        if not isinstance(ex, dict):
            raise DataError(f"expected an object, got {type(ex).__name__}", **where)
        item_id = _id(ex, "ID", where)
        where["record_id"] = item_id
        better = ex.get("Better")
        if better not in ("Output1", "Output2"):
            raise DataError(f"must be 'Output1' or 'Output2', got {better!r}", field="Better", **where)
        one, two = _text(ex, "Output1", where), _text(ex, "Output2", where)
        _text(ex, "Category", where)  # the official accuracy is per category
        chosen, rejected = (one, two) if better == "Output1" else (two, one)
        origin = Origin(str(path), None, index)
        pairs.append(
            _pair(ids(item_id), _text(ex, "Text", where), _text(ex, "Image", where), chosen, rejected, ex, origin)
        )
    return pairs


# --------------------------------------------------------------------------------------------- MM-RLHF-RewardBench


def _mm_rlhf(path: Path) -> tuple[list[PreferenceRecord], int]:
    from mmalign.eval.metrics.official import read_jsonl

    ids, pairs, videos = _Ids(), [], 0
    for index, (line, raw) in enumerate(read_jsonl(path)):
        where: dict[str, Any] = {"file": path, "line": line}
        item_id = _id(raw, "id", where)
        where["record_id"] = item_id
        image, video = raw.get("image") or None, raw.get("video") or None
        if image is None and video is None:
            raise DataError("no media: expected an image or a video path", field="image", **where)
        if image is None:  # the official script reads the image when a row has both
            videos += 1
            continue
        if not isinstance(image, str):
            raise DataError(f"must be a path (string), got {type(image).__name__}", field="image", **where)
        chosen, rejected = _text(raw, "chosen", where), _text(raw, "rejected", where)
        record = _pair(
            ids(item_id), _text(raw, "prompt", where), image, chosen, rejected, raw, Origin(str(path), line, index)
        )
        record.meta["group"] = item_id  # ACC+ needs whole ids: --limit never cuts one
        pairs.append(record)
    return pairs, videos


def rewardbench_input(task: str, path: Path, image_root: Path | None) -> TaskInput:
    """A reward-model benchmark's input file as a :class:`TaskInput` of preference pairs (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"not found (the {task} input file)", file=path)
    root = image_root if image_root is not None else path.parent
    skipped: dict[str, int] = {}
    if task == "vl_rewardbench":
        pairs = _vl(path)
    elif task == "multimodal_rewardbench":
        pairs = _multimodal(path)
    else:
        pairs, videos = _mm_rlhf(path)
        if videos:
            skipped["video"] = videos
    return TaskInput(pairs, root, str(path), skipped=skipped)  # type: ignore[arg-type]
