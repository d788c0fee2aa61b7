"""Errors meant for a person: the CLI prints them in one line, with no traceback unless ``--debug``."""

from __future__ import annotations

from pathlib import Path


class MMAlignError(Exception):
    """Base class of every error mmalign raises on purpose (bad input, bad config, bad model dir)."""


class ConfigError(MMAlignError):
    """A configuration that cannot work: unknown key, wrong type, contradictory options."""


class DataError(MMAlignError):
    """Bad data, located as precisely as possible: file, record (line number or index, and id), field.

    ``str(err)`` reads like ``data.jsonl: line 3 (id 'p-17'), field 'chosen': empty response``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        index: int | None = None,
        record_id: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.index = index
        self.record_id = record_id
        self.field = field
        super().__init__(self._format())

    def _format(self) -> str:
        where: list[str] = []
        if self.file:
            where.append(self.file)
        rec = []
        if self.line is not None:
            rec.append(f"line {self.line}")
        elif self.index is not None:
            rec.append(f"record {self.index}")
        if self.record_id is not None:
            rec.append(f"(id {self.record_id!r})")
        if rec:
            where.append(" ".join(rec))
        if self.field:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def located(self, **where: object) -> DataError:
        """A copy with location parts filled in where this error does not have them yet."""
        parts = {
            "file": self.file,
            "line": self.line,
            "index": self.index,
            "record_id": self.record_id,
            "field": self.field,
        }
        for key, value in where.items():
            if parts.get(key) is None:
                parts[key] = value
        return DataError(self.message, **parts)  # type: ignore[arg-type]
