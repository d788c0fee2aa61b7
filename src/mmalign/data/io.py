"""Reading and writing records: JSONL (images as files under a root), Parquet, Hugging Face datasets.

Writes are atomic: data goes to a temporary name beside the target and is renamed into place only when
complete, so an interrupted write never leaves a half file under the target name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.data.columnar import from_columns, iter_dicts, write_columnar
from mmalign.data.images import (
    ImageChecker,
    blob_target,
    content_path,
    encode_png,
    image_file_there,
    resolve_image,
    write_image_file,
)
from mmalign.data.limits import (
    DEFAULT_MAX_PIXELS,
    MAX_JSON_BYTES_ENV,
    MAX_LINE_BYTES_ENV,
    max_json_bytes,
    max_line_bytes,
)
from mmalign.data.parse import record_from_dict
from mmalign.data.records import RECORD_TYPES, ImageBlob, ImageRef, Origin, Record, VideoRef
from mmalign.data.staging import remove_empty_dirs, staged_files
from mmalign.data.video_refs import check_record_videos
from mmalign.errors import ConfigError, DataError
from mmalign.files import atomic_path


def read_json(path: str | Path) -> Any:
    """A whole JSON document (a manifest, an annotation file, a benchmark's file); a missing file or bad JSON is a
    :class:`DataError` naming the file (and the line). A file over :func:`mmalign.data.limits.max_json_bytes`
    (2 GiB) is refused before it is read."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=path)
    limit = max_json_bytes()
    if (size := path.stat().st_size) > limit:
        raise DataError(
            f"is {size:,} bytes, over the limit of {limit:,} for a JSON file read whole; convert it to JSONL "
            f"(one record a line, read a line at a time) or set {MAX_JSON_BYTES_ENV} to raise the limit",
            file=path,
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON ({err.msg} at line {err.lineno})", file=path, line=err.lineno) from None
    except UnicodeDecodeError as err:
        raise DataError(f"not valid JSON: not UTF-8 text ({err.reason})", file=path) from None


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write dicts as JSON lines, atomically. Returns the number of rows written."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False))
            f.write("\n")
            n += 1
    return n


# ---------------------------------------------------------------------------------------------- formats

FORMATS = ("jsonl", "parquet", "datasets")
"""On-disk formats: JSON lines (images as files under a root), Parquet, a ``datasets`` ``save_to_disk`` directory."""


def detect_format(path: str | Path, *, writing: bool = False) -> str:
    """``jsonl`` for ``*.jsonl``, ``parquet`` for ``*.parquet``, else ``datasets`` (a directory)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".parquet":
        return "parquet"
    if writing or path.is_dir():
        return "datasets"
    if not path.exists():
        raise DataError("no such file or directory", file=path)
    raise DataError(
        f"unknown data format {suffix or '(no suffix)'!r}: expected a .jsonl or .parquet file "
        "or a directory written by datasets' save_to_disk",
        file=path,
    )


def check_kind(kind: str | None) -> None:
    """Fail at start on an unknown record kind (rather than once per record)."""
    if kind is not None and kind not in RECORD_TYPES:
        raise ConfigError(f"unknown record kind {kind!r}; expected one of {sorted(RECORD_TYPES)}")


def default_root(path: str | Path) -> Path:
    """The data root used when none is given: the shapes world holding the data file (the nearest folder above
    it with a ``world.json``: a world's records and the pairs built into it name images relative to the world),
    else the folder holding the data file."""
    folder = Path(path).resolve().parent
    for candidate in (folder, *folder.parents):
        if (candidate / "world.json").is_file():
            return candidate
    return folder


def default_out_root(out: Path, in_root: Path) -> Path:
    """Image paths of the output are relative to the input's data root when the output file lies inside it
    (no image is copied), else to the output file's folder (input images are copied there)."""
    if out.resolve().parent.is_relative_to(in_root.resolve()):
        return in_root
    return out.parent


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class Row:
    """One raw row of a data file, before parsing: where it is, and its dict or why it could not be read."""

    line: int | None
    """1-based line number (JSONL); None for columnar formats."""
    index: int
    """0-based record index among the file's records (blank lines not counted)."""
    data: Any = None
    error: DataError | None = None


def iter_rows(path: str | Path, max_line_bytes: int | None = None) -> Iterator[Row]:
    """Stream the raw rows of a file (one line or one Arrow batch in memory at a time).

    A JSONL line longer than ``max_line_bytes`` (default :func:`mmalign.data.limits.max_line_bytes`, 16 MiB)
    is a row with an error, read no further than the limit; the lines after it are read as usual."""
    fmt = detect_format(path)
    if fmt != "datasets" and not Path(path).is_file():
        raise DataError("no such file", file=path)
    if fmt == "jsonl":
        return _iter_jsonl(Path(path), _line_limit(max_line_bytes))
    return (Row(None, i, data=data) for i, data in enumerate(iter_dicts(Path(path), fmt)))


def parse_row(row: Row, *, file: str | Path, kind: str | None = None, checker: ImageChecker | None = None) -> Record:
    """Turn a raw row into a checked record (schema, then images); errors are located at file/line/id."""
    where: dict[str, Any] = {"file": str(file), "line": row.line, "index": row.index}
    if row.error is not None:
        raise row.error.located(**where)
    try:
        data = from_columns(row.data) if row.line is None else row.data
        record = record_from_dict(data, kind)
        if checker is not None:
            checker.check_record(record)
            check_record_videos(checker, record)
    except DataError as err:
        rid = row.data.get("id") if isinstance(row.data, dict) else None
        rid = str(rid) if isinstance(rid, str | int) and not isinstance(rid, bool) else None
        raise err.located(**where, record_id=rid).with_traceback(err.__traceback__) from None
    record.origin = Origin(str(file), row.line, row.index)
    return record


def read_records(
    path: str | Path,
    *,
    kind: str | None = None,
    root: str | Path | None = None,
    check_images: str = "exists",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_line_bytes: int | None = None,
) -> Iterator[Record]:
    """Stream the records of a JSONL file, a Parquet file or a ``datasets`` directory, checking each.

    ``root`` is the data root image paths are relative to (default: the file's folder). ``check_images`` is
    ``none``, ``exists`` (present, inside the root, non-empty) or ``decode`` (fully decoded, at most
    ``max_pixels``). ``max_line_bytes`` caps a JSONL line (see :func:`iter_rows`). The first bad record raises
    :class:`DataError`; :func:`mmalign.data.validate.validate` collects them all instead. Images from Parquet
    and ``datasets`` arrive as :class:`ImageBlob`.
    """
    check_kind(kind)
    checker = ImageChecker(default_root(path) if root is None else root, check_images, max_pixels)
    rows = iter_rows(path, max_line_bytes)  # opens (and fails on a missing file) now, not at the first next()
    return (parse_row(row, file=path, kind=kind, checker=checker) for row in rows)


def _line_limit(limit: int | None) -> int:
    if limit is None:
        return max_line_bytes()
    if limit <= 0:
        raise ConfigError(f"the JSONL line limit must be a positive number of bytes, got {limit}")
    return limit


def _iter_jsonl(path: Path, limit: int) -> Iterator[Row]:
    index = 0
    lineno = 0
    with open(path, "rb") as f:
        while raw := f.readline(limit + 1):  # at most the limit and a newline: never a whole giant line
            lineno += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                _skip_line(f)
                message = (
                    f"line longer than {limit:,} bytes, the limit for one record "
                    f"(set {MAX_LINE_BYTES_ENV} to raise it if the record is genuine)"
                )
                yield Row(lineno, index, error=DataError(message))
                index += 1
                continue
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            yield _jsonl_row(raw, lineno, index)
            index += 1


def _skip_line(f: Any, chunk: int = 1 << 20) -> None:
    """Read past the rest of the current line, a chunk at a time."""
    while (part := f.readline(chunk)) and not part.endswith(b"\n"):
        pass


def _jsonl_row(raw: bytes, lineno: int, index: int) -> Row:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return Row(lineno, index, error=DataError(f"not valid UTF-8 (byte {err.start + 1} of the line)"))
    try:
        return Row(lineno, index, data=json.loads(text))
    except json.JSONDecodeError as err:
        if err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated string"):
            message = "truncated line: the JSON ends before the record is complete"
            if not raw.endswith(b"\n"):
                message += " (the file may have been cut off while writing)"
        else:
            message = f"not valid JSON: {err.msg} at column {err.colno}"
        return Row(lineno, index, error=DataError(message))
    except RecursionError:
        return Row(lineno, index, error=DataError("not valid JSON: nested too deeply"))


# ---------------------------------------------------------------------------------------------- writing


def write_records(
    path: str | Path,
    records: Iterable[Record],
    *,
    root: str | Path | None = None,
    src_root: str | Path | None = None,
    kind: str | None = None,
) -> int:
    """Write records atomically; the format comes from ``path`` (see :func:`detect_format`). Returns the count.

    JSONL stores image paths relative to ``root`` (default: the file's folder): in-memory images (and video
    frames) are saved there as PNG files named by content, blobs at their own relative path, and path images are
    copied from ``src_root`` (default: ``root``) when it differs; the files appear only if every record is written
    (:func:`mmalign.data.staging.staged_files`). Parquet and ``datasets`` embed the image bytes as
    ``datasets.Image`` values (``load_from_disk`` gives PIL images, ready for TRL) with their relative paths in
    ``image_paths`` / ``rejected_image_paths``, and ``meta`` as a JSON string. ``kind`` fixes the columnar
    schema when there may be no records.
    """
    check_kind(kind)
    fmt = detect_format(path, writing=True)
    root = default_root(path) if root is None else Path(root)
    src_root = root if src_root is None else Path(src_root)
    if fmt == "jsonl":
        same_root = root.resolve() == src_root.resolve()
        made = root  # the outermost folder this call makes (atomic_path makes the output's folder, often the root)
        while not made.parent.exists():
            made = made.parent
        made_root = not root.exists()
        # image files are staged and moved in before the JSONL is renamed into place: a failure leaves neither,
        # nor a root folder this call made
        try:
            with atomic_path(path) as tmp, staged_files(root) as stage:
                rows = (_located(i, r, _jsonl_dict, root, stage, src_root, same_root) for i, r in enumerate(records))
                return write_jsonl(tmp, rows)
        except BaseException:
            if made_root:
                remove_empty_dirs({root}, made.parent)
            raise
    with atomic_path(path) as tmp:
        return write_columnar(tmp, fmt, records, src_root, kind)


def nonempty(records: Iterable[Record], why: Callable[[], str]) -> Iterator[Record]:
    """``records`` as they come; at their end, when there were none, a :class:`DataError` saying ``why()``. An empty
    output is an error, never a success: raised while :func:`write_records` writes, it leaves nothing written."""
    n = 0
    for record in records:
        n += 1
        yield record
    if n == 0:
        raise DataError(why())


def convert(
    src: str | Path,
    dst: str | Path,
    *,
    root: str | Path | None = None,
    out_root: str | Path | None = None,
    kind: str | None = None,
    check_images: str = "decode",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Convert between formats losslessly (same records, byte-identical image files at the same paths).

    ``root`` is the source's data root, ``out_root`` where a JSONL target's image files go (defaults: each
    file's folder). Every image is decoded and held to ``max_pixels`` on the way by default (``check_images``,
    as in :func:`read_records`), so nothing corrupt or oversized is embedded or copied. Streams; the target
    appears only when complete. ``on_progress(n)`` is called every 1000 records.
    """
    src_root = default_root(src) if root is None else Path(root)
    records = read_records(src, kind=kind, root=src_root, check_images=check_images, max_pixels=max_pixels)
    if on_progress is not None:
        records = _counted(records, on_progress)
    what = f"records of kind {kind}" if kind else "records"
    records = nonempty(records, lambda: f"{src} holds no {what}: {dst} not written")
    return write_records(dst, records, root=out_root, src_root=src_root, kind=kind)


def _counted(records: Iterator[Record], on_progress: Callable[[int], None]) -> Iterator[Record]:
    for n, record in enumerate(records, 1):
        if n % 1000 == 0:
            on_progress(n)
        yield record


def _located(index: int, record: Record, fn: Any, *args: Any) -> Any:
    try:
        return fn(record, *args)
    except DataError as err:
        raise err.located(index=index, record_id=record.id) from None


def _jsonl_dict(record: Record, root: Path, stage: Path, src_root: Path, same_root: bool) -> dict[str, Any]:
    row = record.to_dict()
    for key, refs in record.image_lists().items():
        row[key] = [_image_to_file(ref, root, stage, src_root, same_root, f"{key}[{i}]") for i, ref in enumerate(refs)]
    for key, videos in record.video_lists().items():  # frames as images; a video file copied like one
        if key in row:
            row[key] = [
                _video_to_files(video, root, stage, src_root, same_root, f"{key}[{i}]")
                for i, video in enumerate(videos)
            ]
    return row


def _video_to_files(video: VideoRef, root: Path, stage: Path, src_root: Path, same_root: bool, field: str) -> dict:
    if video.frames is None:
        assert video.path is not None
        return {
            **video.to_dict(),
            "path": _image_to_file(video.path, root, stage, src_root, same_root, f"{field}.path"),
        }
    where = f"{field}.frames"
    return {
        "frames": [
            _image_to_file(f, root, stage, src_root, same_root, f"{where}[{j}]") for j, f in enumerate(video.frames)
        ]
    }


def _image_to_file(ref: ImageRef, root: Path, stage: Path, src_root: Path, same_root: bool, field: str) -> str:
    """The image's path under ``root``; its file is written to ``stage`` unless ``root`` holds it already."""
    if isinstance(ref, str):
        if not same_root:
            data = resolve_image(src_root, ref, field).read_bytes()
            if not image_file_there(root, ref, data, field):
                write_image_file(stage, ref, data, field)
        return ref
    if isinstance(ref, ImageBlob):
        target, data = blob_target(ref), ref.data
    else:
        data = encode_png(ref)
        target = content_path(data)
    if not image_file_there(root, target, data, field):
        write_image_file(stage, target, data, field)
    return target
