"""Importers by format name, and :func:`import_file`, which runs one over a source into a records file.

Record ids are stable: the source's own id (``rlaif-v-<idx>``) or a hash of the row's content, with
``-2``, ``-3``... appended to repeats in file order, so importing the same file twice gives the same bytes.

Nothing is written half: the records go to a temporary file renamed into place at the end, and image files
(embedded images written out, source images copied under the output root) go to a staging folder inside the
output root that is moved into place only when every row has imported; a failed import leaves neither.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmalign.config import config_from_dict, describe
from mmalign.data.images import ImageChecker, resolve_image
from mmalign.data.importers.base import Importer, SkipRow, iter_source
from mmalign.data.io import default_out_root, nonempty, write_records
from mmalign.data.parse import record_from_dict
from mmalign.data.records import FeedbackRecord, PreferenceRecord
from mmalign.errors import ConfigError, DataError

FORMATS: dict[str, str] = {
    "rlhf-v": "mmalign.data.importers.rlhf_v:RLHFVImporter",
    "rlaif-v": "mmalign.data.importers.rlaif_v:RLAIFVImporter",
    "llava-rlhf": "mmalign.data.importers.llava_rlhf:LLaVARLHFImporter",
    "vlfeedback": "mmalign.data.importers.vlfeedback:VLFeedbackImporter",
    "povid": "mmalign.data.importers.povid:POVIDImporter",
    "trl": "mmalign.data.importers.trl:TRLImporter",
    "trl-unpaired": "mmalign.data.importers.trl:TRLUnpairedImporter",
}
"""Format name → ``module:Class`` (imported on first use)."""


def importer_class(fmt: str) -> type[Importer]:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown import format {fmt!r}; choose one of {', '.join(sorted(FORMATS))}")
    module, name = FORMATS[fmt].split(":")
    return getattr(importlib.import_module(module), name)


def make_importer(
    fmt: str,
    options: dict[str, Any] | None = None,
    *,
    image_prefix: str = "",
    ignore_fields: tuple[str, ...] = (),
    seed: int = 0,
) -> Importer:
    cls = importer_class(fmt)
    opts = config_from_dict(cls.options_class, dict(options or {}), f"{fmt} options (--option KEY=VALUE)")
    return cls(opts, image_prefix=image_prefix, ignore_fields=tuple(ignore_fields), seed=seed)


def options_help(fmt: str) -> list[tuple[str, str, str, str]]:
    return describe(importer_class(fmt).options_class)


@dataclass
class ImportReport:
    rows: int = 0
    records: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)
    """Source fields kept in ``meta["source_fields"]``, by the number of rows that had them."""
    dropped: Counter[str] = field(default_factory=Counter)
    """``drop_fields`` of the format, by the number of rows that had them."""
    drop_reasons: dict[str, str] = field(default_factory=dict)
    out: Path | None = None
    out_root: Path | None = None

    def notes(self) -> list[str]:
        """The summary's lines about fields: one for the kept ones, one per reason for the dropped ones."""
        lines = []
        if self.unmapped:
            kept = ", ".join(f"{name} ({n} rows)" for name, n in sorted(self.unmapped.items()))
            lines.append(f"kept source fields no importer maps in meta['source_fields']: {kept}")
        by_reason: dict[str, list[str]] = {}
        for name in sorted(self.dropped):
            by_reason.setdefault(self.drop_reasons.get(name, "not used"), []).append(name)
        for reason, names in by_reason.items():
            rows = max(self.dropped[n] for n in names)
            lines.append(f"dropped {', '.join(names)} ({rows} rows): {reason}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "records": self.records,
            "skipped": dict(sorted(self.skipped.items())),
            "unmapped": dict(sorted(self.unmapped.items())),
            "dropped": dict(sorted(self.dropped.items())),
            "out": str(self.out),
            "out_root": str(self.out_root),
        }


def import_records(
    importer: Importer,
    src: str | Path,
    report: ImportReport,
    limit: int | None = None,
    image_root: Path | None = None,
    split: str | None = None,
) -> Iterator[PreferenceRecord | FeedbackRecord]:
    """Checked records of ``src`` (of the importer's ``kind``), ids made unique; ``report`` counts rows, records and
    skips. With ``image_root``, every image path must name a file there (errors name the source row)."""
    seen: Counter[str] = Counter()
    report.drop_reasons = dict(importer.drop_fields)
    checker = ImageChecker(image_root, "decode")  # every image decodes, within the pixel limit, before it is kept
    for row in iter_source(src, split):
        if limit is not None and report.rows >= limit:
            return
        report.rows += 1
        where = row.where()
        if row.error is not None:
            raise row.error.located(**where)
        rid = importer.row_id(row.data) if isinstance(row.data, dict) else None
        try:
            data = importer.check_fields(row.data)
            dicts = importer.convert(data, rid)
        except SkipRow as skip:
            report.skipped[skip.reason] += 1
            continue
        except DataError as err:
            raise with_flag_hint(err, importer, row.data).located(**where, record_id=rid) from None
        report.unmapped.update(importer.unmapped.keys())
        report.dropped.update(importer.dropped)
        for item in dicts:
            if importer.unmapped:
                item["meta"] = {**item.get("meta", {}), "source_fields": dict(importer.unmapped)}
            seen[item["id"]] += 1
            if seen[item["id"]] > 1:
                item["id"] = f"{item['id']}-{seen[item['id']]}"
            try:
                record = record_from_dict(item, importer.kind)
                if image_root is not None:
                    for key, refs in record.image_lists().items():
                        for i, ref in enumerate(refs):
                            if isinstance(ref, str):
                                find_image(image_root, ref, f"{key}[{i}]")
                checker.check_record(record)
            except DataError as err:
                raise err.located(**where, record_id=item["id"]) from None
            assert isinstance(record, PreferenceRecord | FeedbackRecord)
            report.records += 1
            yield record


def find_image(image_root: Path, path: str, field_name: str) -> None:
    """The source image ``path`` is a file under ``--image-root`` (errors say which flags set where to look)."""
    try:
        resolve_image(image_root, path, field_name)
    except DataError as err:
        hint = " (the row's path, after --image-prefix, under --image-root)"
        raise DataError(err.message + hint, field=err.field) from None


def with_flag_hint(err: DataError, importer: Importer, row: Any) -> DataError:
    """``err``, saying how to drop the field when it is an optional one the row has (``--ignore-field``)."""
    name = (err.field or "").split(".")[0].split("[")[0]
    if not name or name in importer.required or not isinstance(row, dict) or name not in row:
        return err
    if "--ignore-field" in err.message:
        return err
    hint = f" (an optional field: --ignore-field {name} imports the rows without it)"
    return DataError(
        err.message + hint, file=err.file, line=err.line, index=err.index, record_id=err.record_id, field=err.field
    )


def import_file(
    fmt: str,
    src: str | Path,
    out: str | Path,
    *,
    image_root: str | Path | None = None,
    out_root: str | Path | None = None,
    image_prefix: str = "",
    ignore_fields: tuple[str, ...] = (),
    options: dict[str, Any] | None = None,
    seed: int = 0,
    limit: int | None = None,
    split: str | None = None,
) -> ImportReport:
    """Import ``src`` (in ``fmt``'s published layout) into ``out`` (.jsonl, .parquet or a datasets dir).

    Embedded images are written under the output root (JSONL) or embedded again (Parquet, datasets). Image
    paths are ``image_prefix`` + the row's path; with ``image_root`` (where those files are) they are
    checked and copied under the output root when it differs; without, they are written as they are.
    ``split`` picks the split of a ``DatasetDict`` directory. On failure nothing is left behind.
    """

    out = Path(out)
    importer = make_importer(fmt, options, image_prefix=image_prefix, ignore_fields=ignore_fields, seed=seed)
    if out_root is not None:
        root = Path(out_root)
    elif image_root is not None:
        root = default_out_root(out, Path(image_root))
    else:
        root = out.resolve().parent
    src_root = Path(image_root) if image_root is not None else root
    report = ImportReport(out=out, out_root=root)
    records = import_records(importer, src, report, limit, Path(image_root) if image_root is not None else None, split)

    def why() -> str:
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(report.skipped.items()))
        return f"{src}: no record imported of {report.rows} rows (skipped: {skipped or 'none'}): {out} not written"

    records = nonempty(records, why)
    # JSONL: image files appear under ``root`` only if every record is written (staged, then moved in), and a
    # failure leaves no output folder the import made; Parquet and datasets embed the images
    write_records(out, records, root=root, src_root=src_root, kind=importer.kind)
    return report
