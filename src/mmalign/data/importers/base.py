"""What every importer shares: reading the source rows, checking fields, images, prompts, stable ids.

An importer turns one row of a public dataset, in the layout its authors publish, into preference records.
Rows come from a ``.json`` file (a list), ``.jsonl``, ``.parquet``, a directory of ``.parquet`` files (the
Hub's shards) or a ``datasets`` ``save_to_disk`` directory (one split of a ``DatasetDict``: ``--split``). A row
that breaks the format (missing field, wrong type) raises :class:`DataError` naming the file, the row and the
field; a row that is well formed but holds no usable pair (chosen identical to rejected, an empty answer, all
ratings tied) is skipped and counted by reason.

Source fields an importer does not map (a release adds a column; LLaVA-RLHF's ``hallucination`` before it was
mapped) never reject a row: they are kept, as they are, in the record's ``meta["source_fields"]`` and listed
once in the import summary. Fields a format declares in ``drop_fields`` (RLAIF-V's cached reference log-probs)
are dropped with one summary line saying why; ``--ignore-field NAME`` drops any field silently.

Images: an embedded image (a ``{"bytes", "path"}`` struct, as ``datasets.Image`` stores it) becomes an
:class:`ImageBlob` at ``images/<format>/<content hash><suffix>``; a path becomes ``image_prefix + path``,
relative to the image root given to the import.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mmalign.data.images import blob_target
from mmalign.data.io import read_json
from mmalign.data.parse import check_image_path
from mmalign.data.records import ImageBlob, ImageRef, Message, text_message
from mmalign.errors import DataError

IMAGE_TOKEN = "<image>"


class SkipRow(Exception):
    """A well-formed row without a usable pair; ``reason`` is counted in the import report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class NoOptions:
    """This format has no options."""


@dataclass
class Importer(ABC):
    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]
    """The fields this importer maps; any other is kept in ``meta["source_fields"]``."""
    required: ClassVar[tuple[str, ...]]
    drop_fields: ClassVar[dict[str, str]] = {}
    """Fields recognised and dropped, each with the reason the import summary gives (one line per reason)."""
    options_class: ClassVar[type] = NoOptions
    kind: ClassVar[str] = "preference"
    """The kind of record this format imports to (``preference``; ``feedback`` for binary-feedback data)."""

    options: Any = None
    image_prefix: str = ""
    """Joined before image paths found in the rows (e.g. ``coco/train2017/``)."""
    ignore_fields: tuple[str, ...] = ()
    """Fields to drop silently instead of failing on them."""
    seed: int = 0
    """For formats that draw (VLFeedback's random rejected completion)."""
    unmapped: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    """The current row's fields that no importer code maps (set by :meth:`check_fields`, added to by :meth:`keep`)."""
    dropped: list[str] = field(default_factory=list, init=False, repr=False)
    """The current row's ``drop_fields`` that were present."""

    def __post_init__(self) -> None:
        if self.options is None:
            self.options = self.options_class()

    @abstractmethod
    def convert(self, row: dict[str, Any], row_id: str | None) -> list[dict[str, Any]]:
        """Record dicts (``record_from_dict`` input) of one row, whose fields are already checked."""

    def row_id(self, row: dict[str, Any]) -> str | None:
        """The source's own id of a row, if it has one (used in record ids and error messages)."""
        for key in ("id", "idx"):
            value = row.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
                return str(value)
        return None

    def check_fields(self, row: Any) -> dict[str, Any]:
        """The row's mapped fields. Starts a row: unmapped fields go to :attr:`unmapped`, ``drop_fields`` to
        :attr:`dropped`, ``--ignore-field`` ones nowhere."""
        if not isinstance(row, dict):
            raise DataError(f"a {self.name} row must be an object, got {type(row).__name__}")
        self.unmapped, self.dropped = {}, []
        known: dict[str, Any] = {}
        for key, value in row.items():
            if key in self.ignore_fields:
                continue
            if key in self.fields:
                known[key] = value
            elif value is None:
                continue  # a column this row leaves empty: nothing to keep or drop
            elif key in self.drop_fields:
                self.dropped.append(key)
            else:
                self.keep(str(key), value)
        for key in self.required:
            if known.get(key) is None:
                raise DataError(f"missing required field of {self.name}", field=key)
        return known

    def keep(self, name: str, value: Any) -> None:
        """Keep a source field no code maps (``name`` may be nested: ``text.note``) in ``meta["source_fields"]``."""
        if name.split(".")[0].split("[")[0] not in self.ignore_fields:
            self.unmapped[name] = json_value(value)

    # ------------------------------------------------------------------------------------------ helpers

    def image(self, value: Any, field_name: str) -> ImageRef:
        """An image cell: an embedded ``{"bytes", "path"}`` struct, raw bytes, or a path string."""
        if isinstance(value, dict) and value.get("bytes") is not None:
            data = value["bytes"]
            if not isinstance(data, bytes | bytearray) or not data:
                raise DataError("embedded image bytes must be non-empty bytes", field=f"{field_name}.bytes")
            return blob(self.name, bytes(data))
        if isinstance(value, bytes | bytearray) and value:
            return blob(self.name, bytes(value))
        path = value.get("path") if isinstance(value, dict) else value
        if not isinstance(path, str) or not path.strip():
            raise DataError("must be an image path or an embedded image {'bytes', 'path'}", field=field_name)
        full = self.image_prefix + path
        check_image_path(full, field_name)
        return full


def json_value(value: Any) -> Any:
    """``value`` as JSON can hold it (meta must be JSON): bytes become a ``"<N bytes>"`` note, other
    non-JSON leaves their ``str``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return str(value)


def blob(fmt: str, data: bytes) -> ImageBlob:
    """An embedded image at a stable, content-named path under ``images/<format>/``."""
    suffix = Path(blob_target(ImageBlob(None, data))).suffix  # from the file's signature
    return ImageBlob(f"images/{fmt}/{hashlib.sha256(data).hexdigest()[:20]}{suffix}", data)


def string(row: dict[str, Any], key: str, *, allow_empty: bool = False, prefix: str = "") -> str:
    """``row[key]`` as a string (DataError on ``prefix + key`` otherwise); SkipRow when empty, unless allowed."""
    value = row.get(key)
    if not isinstance(value, str):
        raise DataError(f"must be a string, got {type(value).__name__}", field=prefix + key)
    if not allow_empty and not value.strip():
        raise SkipRow(f"empty {key}")
    return value


def user_message(text: str, n_images: int, field_name: str) -> tuple[Message, int]:
    """A user turn from text that may hold ``<image>`` tokens (LLaVA's convention): each token becomes an image
    placeholder where it stands (the newline beside it dropped). Returns the message and the tokens found.
    Without tokens, ``n_images`` placeholders go first."""
    count = text.count(IMAGE_TOKEN)
    if count == 0:
        return text_message("user", text.strip(), n_images), 0
    pieces = text.split(IMAGE_TOKEN)
    content: list[dict[str, Any]] = []
    for i, piece in enumerate(pieces):
        piece = piece.lstrip("\n") if i > 0 else piece
        piece = piece.rstrip("\n") if i < len(pieces) - 1 else piece
        if piece.strip():
            content.append({"type": "text", "text": piece.strip()})
        if i < len(pieces) - 1:
            content.append({"type": "image"})
    if not any(part["type"] == "text" for part in content):
        content.append({"type": "text", "text": ""})
    return {"role": "user", "content": content}, count


def conversation_prompt(turns: Any, field_name: str, n_images: int) -> tuple[list[Message], str]:
    """LLaVA conversations (``[{"from": "human"|"gpt", "value": ...}, ...]``, ending with the answer turn) →
    the prompt messages and the final answer text. Images go where ``<image>`` tokens are, or first."""
    if not isinstance(turns, list) or len(turns) < 2:
        raise DataError("must be a list of at least two turns (human, then gpt)", field=field_name)
    roles = {"human": "user", "gpt": "assistant"}
    messages: list[Message] = []
    tokens = 0
    for i, turn in enumerate(turns):
        where = f"{field_name}[{i}]"
        if not isinstance(turn, dict) or turn.get("from") not in roles or not isinstance(turn.get("value"), str):
            raise DataError("a turn must be {'from': 'human' | 'gpt', 'value': string}", field=where)
        expected = "human" if i % 2 == 0 else "gpt"
        if turn["from"] != expected:
            raise DataError(f"turns must alternate human/gpt; expected {expected!r} here", field=f"{where}.from")
        if i == len(turns) - 1:
            if expected != "gpt":
                raise DataError("the last turn must be the model's ('gpt')", field=f"{where}.from")
            break
        if expected == "human":
            message, found = user_message(turn["value"], 0, f"{where}.value")
            tokens += found
            messages.append(message)
        else:
            messages.append(text_message("assistant", turn["value"]))
    if tokens == 0 and n_images:
        first = messages[0]
        first["content"] = [{"type": "image"} for _ in range(n_images)] + first["content"]
    elif tokens != n_images:
        raise DataError(f"has {tokens} {IMAGE_TOKEN} token(s) but the row has {n_images} image(s)", field=field_name)
    return messages, turns[-1]["value"]


def pair_record(
    record_id: str,
    prompt: list[Message],
    chosen: str,
    rejected: str,
    images: list[ImageRef],
    source: str,
    meta: dict[str, Any],
    chosen_spans: list[tuple[int, int]] | None = None,
    rejected_spans: list[tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """A preference record dict; SkipRow when the pair prefers nothing (an empty or identical answer)."""
    if not chosen.strip() or not rejected.strip():
        raise SkipRow("empty response")
    if chosen.strip() == rejected.strip():
        raise SkipRow("chosen identical to rejected")
    return {
        "id": record_id,
        "images": list(images),
        "prompt": prompt,
        "chosen": [text_message("assistant", chosen)],
        "rejected": [text_message("assistant", rejected)],
        "chosen_spans": None if chosen_spans is None else [list(s) for s in chosen_spans],
        "rejected_spans": None if rejected_spans is None else [list(s) for s in rejected_spans],
        "source": source,
        "meta": meta,
    }


def content_id(name: str, *parts: Any) -> str:
    """A record id from a row's content, for sources without ids: stable across re-imports."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()
    return f"{name}-{digest[:16]}"


def parse_json_text(value: Any, field_name: str) -> Any:
    """A cell holding JSON as a string (RLHF-V's ``text``), or already parsed."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            raise DataError(f"not valid JSON: {err.msg}", field=field_name) from None
    return value


def maybe_json(value: Any) -> Any:
    """Meta cells that are JSON strings in some releases (``origin_split``): parsed when they parse."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


# --------------------------------------------------------------------------------------------- reading


@dataclass
class SourceRow:
    file: Path
    line: int | None
    index: int
    data: Any = None
    error: DataError | None = field(default=None, repr=False)

    def where(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "index": self.index}


def iter_source(path: str | Path, split: str | None = None) -> Iterator[SourceRow]:
    """Rows of a ``.json`` list, ``.jsonl``, ``.parquet``, a directory of ``.parquet`` files or a datasets dir
    (``split``: which split of a ``DatasetDict`` directory)."""
    from mmalign.data.columnar import iter_dicts
    from mmalign.data.io import iter_rows

    path = Path(path)
    if not path.exists():
        raise DataError("no such file or directory", file=path)
    path = split_dir(path, split)
    suffix = path.suffix.lower()
    if path.is_dir() and not (path / "state.json").exists():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise DataError("not a datasets directory (no state.json) and holds no .parquet files", file=path)
        for file in files:
            yield from (SourceRow(file, None, i, row) for i, row in enumerate(iter_dicts(file, "parquet")))
    elif path.is_dir():
        yield from (SourceRow(path, None, i, row) for i, row in enumerate(iter_dicts(path, "datasets")))
    elif suffix == ".parquet":
        yield from (SourceRow(path, None, i, row) for i, row in enumerate(iter_dicts(path, "parquet")))
    elif suffix == ".jsonl":
        yield from (SourceRow(path, r.line, r.index, r.data, r.error) for r in iter_rows(path))
    elif suffix == ".json":
        data = read_json(path)
        if not isinstance(data, list):
            raise DataError(f"expected a JSON list of rows, got {type(data).__name__}", file=path)
        yield from (SourceRow(path, None, i, row) for i, row in enumerate(data))
    else:
        raise DataError("expected .json, .jsonl, .parquet, or a directory (parquet files or datasets)", file=path)


def split_dir(path: Path, split: str | None) -> Path:
    """The directory of ``split`` in a ``DatasetDict`` saved with ``save_to_disk`` (``dataset_dict.json`` and
    one folder per split); ``path`` itself when it is not one. A DatasetDict without a split is an error
    that names its splits."""
    index = path / "dataset_dict.json"
    if not path.is_dir() or not index.exists():
        if split is not None:
            raise DataError(f"--split {split} needs a DatasetDict directory (with dataset_dict.json)", file=path)
        return path
    data = read_json(index)
    splits = data.get("splits") if isinstance(data, dict) else None
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        splits = sorted(p.name for p in path.iterdir() if (p / "state.json").exists())
    if split is None:
        raise DataError(
            f"is a DatasetDict with splits {', '.join(splits)}: pick one with --split "
            f"(e.g. --split {splits[0] if splits else 'train'})",
            file=path,
        )
    if split not in splits:
        raise DataError(f"has no split {split!r}; its splits are {', '.join(splits)}", file=path)
    return path / split
