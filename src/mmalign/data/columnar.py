"""Columnar forms of records: Parquet files and ``datasets`` directories, read and written batch by batch.

Images are ``datasets.Image`` values (a struct of encoded ``bytes`` and ``path``), so ``datasets.load_from_disk``
returns PIL images and TRL can train on the dataset directly. ``meta`` is stored as a JSON string.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mmalign.data.images import content_path, encode_png, resolve_image
from mmalign.data.limits import MAX_LINE_BYTES_ENV, max_line_bytes
from mmalign.data.records import ImageBlob, ImageRef, Record
from mmalign.errors import DataError

BATCH_ROWS = 256
"""Rows per Arrow batch when reading or writing (bounds memory when images are embedded)."""

PATH_COLUMNS = {"images": "image_paths", "rejected_images": "rejected_image_paths"}
"""Each image's relative path is kept beside it: ``save_to_disk`` cuts the path inside an ``Image`` value down
to its base name, so these columns are what makes a round trip lossless."""


def iter_dicts(path: Path, fmt: str) -> Iterator[dict[str, Any]]:
    """Stream the rows of a Parquet file or ``datasets`` directory as plain dicts (one batch in memory).

    The file is opened now (a damaged one fails here), the rows are read as the iterator is consumed.
    """
    batches = parquet_batches(path) if fmt == "parquet" else datasets_batches(path)
    return _checked_rows(batches, path, max_line_bytes())


def _checked_rows(batches: Iterator[Any], path: Path, limit: int) -> Iterator[dict[str, Any]]:
    """The batches' rows as dicts, each batch's text cells checked against ``limit`` before any becomes Python."""
    start = 0
    for batch in batches:
        for name in batch.schema.names:
            _check_text_cells(batch.column(name), limit, path, name, start)
        yield from batch.to_pylist()
        start += batch.num_rows


def _check_text_cells(column: Any, limit: int, path: Path, name: str, start: int) -> None:
    """A row whose text in ``column`` (strings at any depth: messages' contents too) exceeds ``limit`` bytes is
    a :class:`DataError` naming the file, the row and the column. Image bytes are not text and are not counted."""
    if _text_bytes(column) <= limit:  # the whole column of the batch: the common case, no row looked at
        return
    for i in range(len(column)):
        if (size := _text_bytes(column.slice(i, 1))) > limit:
            raise DataError(
                f"holds {size:,} bytes of text, over the limit of {limit:,} for one record "
                f"(set {MAX_LINE_BYTES_ENV} to raise it if the record is genuine)",
                file=path,
                index=start + i,
                field=name,
            )


def _text_bytes(array: Any) -> int:
    """Bytes of the strings in ``array`` (an Arrow array or chunked array, nested lists and structs included)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        return sum(_text_bytes(chunk) for chunk in array.chunks)
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return int(pc.sum(pc.binary_length(array)).as_py() or 0)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _text_bytes(array.flatten())
    if pa.types.is_struct(kind):
        return sum(_text_bytes(child) for child in array.flatten())
    return 0


def parquet_batches(path: Path) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"not a readable Parquet file: {_one_line(err)}", file=path) from None
    return _guard_arrow(parquet.iter_batches(batch_size=BATCH_ROWS), path)


def datasets_batches(path: Path) -> Iterator[Any]:
    if (path / "dataset_dict.json").exists():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise DataError(f"holds a DatasetDict (splits: {', '.join(splits)}): give one split's directory", file=path)
    if not (path / "state.json").exists():
        raise DataError("not a datasets directory (no state.json; write it with save_to_disk)", file=path)
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as err:  # datasets raises many types for a damaged directory
        raise DataError(f"cannot load the datasets directory: {_one_line(err)}", file=path) from None
    return _guard_arrow(dataset.with_format("arrow").iter(batch_size=BATCH_ROWS), path)


def _guard_arrow(batches: Iterator[Any], path: Path) -> Iterator[Any]:
    import pyarrow as pa

    try:
        yield from batches
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"damaged columnar data: {_one_line(err)}", file=path) from None


def from_columns(row: dict[str, Any]) -> dict[str, Any]:
    """A columnar row as a record dict: image structs become blobs (or paths), ``meta`` JSON is parsed."""
    data = {k: v for k, v in row.items() if k not in PATH_COLUMNS.values()}
    for key, path_key in PATH_COLUMNS.items():
        images = data.get(key)
        if not isinstance(images, list):
            continue
        paths = row.get(path_key) or []
        data[key] = [
            _image_from_struct(image, paths[i] if i < len(paths) else None, f"{key}[{i}]")
            for i, image in enumerate(images)
        ]
    if isinstance(data.get("meta"), str):
        try:
            data["meta"] = json.loads(data["meta"])
        except json.JSONDecodeError as err:
            raise DataError(f"not valid JSON: {err.msg}", field="meta") from None
    return data


def _image_from_struct(image: Any, path: str | None, field: str) -> Any:
    if not isinstance(image, dict):
        return image  # a plain path string (or garbage, which the schema check reports)
    if image.get("bytes") is not None:
        return ImageBlob(path or image.get("path"), bytes(image["bytes"]))
    if image.get("path"):
        return image["path"]
    raise DataError("image has neither bytes nor a path", field=field)


def to_columns(record: Record, src_root: Path) -> dict[str, Any]:
    row = record.to_dict()
    for key, refs in record.image_lists().items():
        structs = [_image_struct(ref, src_root, f"{key}[{i}]") for i, ref in enumerate(refs)]
        row[key] = structs
        row[PATH_COLUMNS[key]] = [s["path"] for s in structs]
    row["meta"] = json.dumps(row["meta"], ensure_ascii=False)
    return row


def _image_struct(ref: ImageRef, src_root: Path, field: str) -> dict[str, Any]:
    if isinstance(ref, str):
        return {"bytes": resolve_image(src_root, ref, field).read_bytes(), "path": ref}
    if isinstance(ref, ImageBlob):
        return {"bytes": ref.data, "path": ref.path}
    data = encode_png(ref)
    return {"bytes": data, "path": content_path(data)}


def features_for(kind: str) -> Any:
    """The ``datasets.Features`` of a record kind in columnar form (images as ``List(Image())``)."""
    from datasets import Features, Image, List, Value

    text = Value("string")
    messages = List({"role": text, "content": List({"type": text, "text": text})})
    images, spans = List(Image()), List(List(Value("int64")))
    columns: dict[str, dict[str, Any]] = {
        "preference": {
            "id": text,
            "images": images,
            "prompt": messages,
            "chosen": messages,
            "rejected": messages,
            "rejected_images": images,
            "chosen_spans": spans,
            "rejected_spans": spans,
            "source": text,
            "meta": text,
            "image_paths": List(text),
            "rejected_image_paths": List(text),
        },
        "feedback": {
            "id": text,
            "images": images,
            "prompt": messages,
            "completion": messages,
            "label": Value("bool"),
            "source": text,
            "meta": text,
            "image_paths": List(text),
        },
        "sft": {
            "id": text,
            "images": images,
            "prompt": messages,
            "completion": messages,
            "source": text,
            "meta": text,
            "image_paths": List(text),
        },
        "eval": {
            "id": text,
            "task": text,
            "images": images,
            "question": text,
            "answer": text,
            "objects": List(text),
            "choices": List(text),
            "meta": text,
            "image_paths": List(text),
        },
    }
    if kind not in columns:
        raise DataError(f"unknown record kind {kind!r}; expected one of {sorted(columns)}")
    return Features(columns[kind])


def write_columnar(tmp: Path, fmt: str, records: Iterable[Record], src_root: Path, kind: str | None) -> int:
    """Write records to ``tmp`` as Parquet or a ``datasets`` directory (the caller renames it into place)."""
    import pyarrow as pa

    iterator = iter(records)
    first = next(iterator, None)
    kind = kind or (first.kind if first is not None else "preference")
    schema = features_for(kind).arrow_schema
    n = 0
    arrow_file = tmp if fmt == "parquet" else tmp.parent / "data.arrow"
    writer = _arrow_writer(arrow_file, fmt, schema)
    try:
        batch: list[dict[str, Any]] = []
        for record in itertools.chain([] if first is None else [first], iterator):
            if record.kind != kind:
                raise DataError(f"a {record.kind} record in a {kind} file", index=n, record_id=record.id)
            if any(record.video_lists().values()):  # not silently dropped: the file would not read back
                raise DataError(
                    f"{fmt} files carry no videos yet; write records with videos as JSONL",
                    index=n,
                    record_id=record.id,
                    field="videos",
                )
            try:
                batch.append(to_columns(record, src_root))
            except DataError as err:
                raise err.located(index=n, record_id=record.id) from None
            n += 1
            if len(batch) == BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch or n == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    finally:
        writer.close()
    if fmt == "datasets":
        _save_to_disk(arrow_file, tmp)
    return n


def _arrow_writer(path: Path, fmt: str, schema: Any) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt == "parquet":
        return pq.ParquetWriter(path, schema)
    return pa.ipc.new_stream(str(path), schema)  # the layout datasets' own Arrow files use


def _save_to_disk(arrow_file: Path, target: Path) -> None:
    import datasets

    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        dataset = datasets.Dataset.from_file(str(arrow_file))
        # an empty dataset needs one explicit shard, or load_from_disk fails on it later
        dataset.save_to_disk(str(target), num_shards=None if len(dataset) else 1)
        del dataset
    finally:
        if not quiet:
            datasets.enable_progress_bars()


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
