"""Importers by format name, and :func:`import_file`, which runs one over a source into a records file.

Record ids are stable: the source's own id (``rlaif-v-<idx>``) or a hash of the row's content, with
``-2``, ``-3``... appended to repeats in file order, so importing the same file twice gives the same bytes.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmalign.config import config_from_dict, describe
from mmalign.data.images import resolve_image
from mmalign.data.importers.base import Importer, SkipRow, iter_source
from mmalign.data.io import write_records
from mmalign.data.parse import record_from_dict
from mmalign.data.records import PreferenceRecord
from mmalign.errors import ConfigError, DataError

FORMATS: dict[str, str] = {
    "rlhf-v": "mmalign.data.importers.rlhf_v:RLHFVImporter",
    "rlaif-v": "mmalign.data.importers.rlaif_v:RLAIFVImporter",
    "llava-rlhf": "mmalign.data.importers.llava_rlhf:LLaVARLHFImporter",
    "vlfeedback": "mmalign.data.importers.vlfeedback:VLFeedbackImporter",
    "povid": "mmalign.data.importers.povid:POVIDImporter",
    "trl": "mmalign.data.importers.trl:TRLImporter",
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
    opts = config_from_dict(cls.options_class, dict(options or {}), f"{fmt} options")
    return cls(opts, image_prefix=image_prefix, ignore_fields=tuple(ignore_fields), seed=seed)


def options_help(fmt: str) -> list[tuple[str, str, str, str]]:
    return describe(importer_class(fmt).options_class)


@dataclass
class ImportReport:
    rows: int = 0
    records: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    out: Path | None = None
    out_root: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "records": self.records, "skipped": dict(sorted(self.skipped.items())),
                "out": str(self.out), "out_root": str(self.out_root)}  # fmt: skip


def import_records(
    importer: Importer,
    src: str | Path,
    report: ImportReport,
    limit: int | None = None,
    image_root: Path | None = None,
) -> Iterator[PreferenceRecord]:
    """Checked preference records of ``src``, ids made unique; ``report`` counts rows, records and skips.
    With ``image_root``, every image path must name a file there (errors name the source row)."""
    seen: Counter[str] = Counter()
    for row in iter_source(src):
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
            raise err.located(**where, record_id=rid) from None
        for item in dicts:
            seen[item["id"]] += 1
            if seen[item["id"]] > 1:
                item["id"] = f"{item['id']}-{seen[item['id']]}"
            try:
                record = record_from_dict(item, "preference")
                if image_root is not None:
                    for key, refs in record.image_lists().items():
                        for i, ref in enumerate(refs):
                            if isinstance(ref, str):
                                resolve_image(image_root, ref, f"{key}[{i}]")
            except DataError as err:
                raise err.located(**where, record_id=item["id"]) from None
            assert isinstance(record, PreferenceRecord)
            report.records += 1
            yield record


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
) -> ImportReport:
    """Import ``src`` (in ``fmt``'s published layout) into ``out`` (.jsonl, .parquet or a datasets dir).

    Embedded images are written under the output root (JSONL) or embedded again (Parquet, datasets). Image
    paths are ``image_prefix`` + the row's path; with ``image_root`` (where those files are) they are
    checked and copied under the output root when it differs; without, they are written as they are.
    """
    from mmalign.data.build.shards import default_out_root

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
    records = import_records(importer, src, report, limit, Path(image_root) if image_root is not None else None)
    write_records(out, records, root=root, src_root=src_root, kind="preference")
    return report
