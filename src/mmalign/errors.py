"""Errors meant for a person: the CLI prints them in one line, with no traceback unless ``--debug``.

Exit codes of the ``mmalign`` command (:func:`mmalign.cli.main.main`):

- 0: done; 1: ``data validate`` found bad records;
- 2 (:data:`EXIT_BAD_INPUT`): bad input, config, data or command line (every :class:`MMAlignError`, and
  click's usage errors);
- 3 (:data:`EXIT_SYSTEM`): the operating system refused: disk full, read-only file system, permission denied,
  a file where a folder is expected, a missing path;
- 4 (:data:`EXIT_IN_USE`): the output is in use by another mmalign run (:class:`OutputInUseError`);
- 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_SYSTEM = 3
EXIT_IN_USE = 4


class MMAlignError(Exception):
    """Base class of every error mmalign raises on purpose (bad input, bad config, bad model dir)."""

    exit_code = EXIT_BAD_INPUT


class OutputInUseError(MMAlignError):
    """Another mmalign run holds the lock of the output this run would write (:class:`mmalign.files.OutputLock`)."""

    exit_code = EXIT_IN_USE


class UntrustedFileError(MMAlignError):
    """A pickle file that torch's safe loading refused (it holds more than tensors): it was not loaded."""


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
