"""Checking a whole data file in one pass, and describing it (``mmalign data validate`` / ``data stats``).

Both stream: memory stays flat however long the file is. ``validate`` reports every bad record (up to a limit),
not just the first: schema errors, unreadable lines, image files that are missing, corrupt, empty, too large or
outside the data root, and duplicate ids. A file shared by many records is decoded once (bounded cache).
"""

from __future__ import annotations

import hashlib
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmalign.data.images import ImageChecker
from mmalign.data.io import Row, check_kind, default_root, iter_rows, parse_row
from mmalign.data.limits import DEFAULT_MAX_PIXELS
from mmalign.data.records import EvalItem, FeedbackRecord, PreferenceRecord, Record, SFTRecord, response_text
from mmalign.errors import ConfigError, DataError

PROGRESS_EVERY = 1000
"""Records between two progress callbacks."""


@dataclass
class ValidationReport:
    """What :func:`validate` found."""

    path: str
    n_records: int = 0
    """Records (non-blank lines, or rows) seen."""
    n_bad: int = 0
    errors: list[str] = field(default_factory=list)
    """One line per bad record, at most ``max_errors`` of them."""
    tracebacks: list[str] = field(default_factory=list)
    """The traceback behind each error, when asked for (``--debug``)."""
    kinds: Counter[str] = field(default_factory=Counter)
    images_checked: int = 0
    """Distinct image files or blobs actually checked (the rest were cache hits)."""
    seconds: float = 0.0

    @property
    def n_ok(self) -> int:
        return self.n_records - self.n_bad

    @property
    def ok(self) -> bool:
        return self.n_bad == 0

    @property
    def truncated(self) -> bool:
        """True when there were more bad records than errors kept."""
        return self.n_bad > len(self.errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "records": self.n_records,
            "ok": self.n_ok,
            "bad": self.n_bad,
            "errors": self.errors,
            "kinds": dict(self.kinds),
            "images_checked": self.images_checked,
            "seconds": round(self.seconds, 3),
        }


def validate(
    path: str | Path,
    *,
    kind: str | None = None,
    root: str | Path | None = None,
    max_errors: int = 50,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    check_images: str = "decode",
    check_ids: bool = True,
    keep_tracebacks: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ValidationReport:
    """Check every record of a JSONL/Parquet/``datasets`` file: schema, images (decoded), unique ids.

    A file that cannot be opened at all raises :class:`DataError`; bad records are collected instead.
    """
    if max_errors < 1:
        raise ConfigError(f"max_errors must be at least 1, got {max_errors}")
    check_kind(kind)
    start = time.perf_counter()
    report = ValidationReport(str(path))
    checker = ImageChecker(default_root(path) if root is None else root, check_images, max_pixels)
    seen = _IdFilter() if check_ids else None
    for row in iter_rows(path):
        report.n_records += 1
        try:
            record = parse_row(row, file=path, kind=kind, checker=checker)
        except DataError as err:
            _add_error(report, err, max_errors, keep_tracebacks)
        else:
            report.kinds[record.kind] += 1
            if seen is not None:
                seen.add(record.id)
        if on_progress is not None and report.n_records % PROGRESS_EVERY == 0:
            on_progress(report.n_records)
    if seen is not None and seen.suspects:
        for err, record_kind in _duplicate_ids(path, kind, seen.suspects):
            _add_error(report, err, max_errors, keep_tracebacks)
            report.kinds[record_kind] -= 1
    if on_progress is not None:
        on_progress(report.n_records)
    report.images_checked = checker.decoded
    report.seconds = time.perf_counter() - start
    return report


def _add_error(report: ValidationReport, err: DataError, max_errors: int, keep_tracebacks: bool) -> None:
    report.n_bad += 1
    if len(report.errors) < max_errors:
        report.errors.append(" ".join(str(err).split("\n")))
        if keep_tracebacks:
            report.tracebacks.append("".join(traceback.format_exception(err)))


class _IdFilter:
    """Remembers ids in a fixed-size Bloom filter (16 MiB, whatever the file's length), so memory stays flat.

    An id that may have been seen before becomes a *suspect*; a second pass over the suspects alone confirms
    real duplicates, so a false positive (about 1 in 10^8 per id at a million records) costs nothing wrong.
    """

    BITS = 1 << 27
    HASHES = 6

    def __init__(self) -> None:
        self.bits = bytearray(self.BITS // 8)
        self.suspects: set[str] = set()

    def add(self, record_id: str) -> None:
        digest = hashlib.blake2b(record_id.encode("utf-8"), digest_size=4 * self.HASHES).digest()
        present = True
        for k in range(self.HASHES):
            bit = int.from_bytes(digest[4 * k : 4 * k + 4], "little") % self.BITS
            byte, mask = bit >> 3, 1 << (bit & 7)
            if not self.bits[byte] & mask:
                present = False
                self.bits[byte] |= mask
        if present:
            self.suspects.add(record_id)


def _duplicate_ids(path: str | Path, kind: str | None, suspects: set[str]) -> Iterator[tuple[DataError, str]]:
    """Second pass: every record whose id is a suspect and has already been seen is a duplicate."""
    first: dict[str, Row] = {}
    for row in iter_rows(path):
        rid = row.data.get("id") if isinstance(row.data, dict) else None
        rid = str(rid) if isinstance(rid, str | int) and not isinstance(rid, bool) else None
        if rid not in suspects:
            continue
        try:
            record = parse_row(row, file=path, kind=kind)  # a bad record was already reported as such
        except DataError:
            continue
        if rid not in first:
            first[rid] = row
            continue
        where = f"line {first[rid].line}" if first[rid].line is not None else f"record {first[rid].index}"
        error = DataError(f"duplicate id (first used at {where})", file=path, line=row.line, index=row.index)
        yield error.located(record_id=rid, field="id"), record.kind


# ------------------------------------------------------------------------------------------------ stats


def quantile(counts: Counter[int], q: float) -> float:
    """The ``q`` quantile of the values counted in ``counts``, interpolated like ``numpy.quantile``."""
    n = sum(counts.values())
    if n == 0:
        return 0.0
    position = q * (n - 1)
    lo_rank, frac = int(position), position - int(position)
    lo = hi = None
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if lo is None and seen > lo_rank:
            lo = value
        if seen > lo_rank + (1 if frac > 0 else 0):
            hi = value
            break
    assert lo is not None and hi is not None
    return lo + (hi - lo) * frac


def summarize(counts: Counter[int]) -> dict[str, float]:
    """count, mean, median, p95 and max of the values counted in ``counts``."""
    n = sum(counts.values())
    if n == 0:
        return {"count": 0, "mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0}
    return {
        "count": n,
        "mean": sum(v * c for v, c in counts.items()) / n,
        "median": quantile(counts, 0.5),
        "p95": quantile(counts, 0.95),
        "max": max(counts),
    }


@dataclass
class DataStats:
    """What :func:`stats` counted. Lengths are kept as value counts (exact quantiles in bounded memory)."""

    path: str
    n_records: int = 0
    n_bad: int = 0
    errors: list[str] = field(default_factory=list)
    """The first few bad records (they are left out of every count below)."""
    kinds: Counter[str] = field(default_factory=Counter)
    chars: dict[str, Counter[int]] = field(default_factory=dict)
    """Per text field (prompt, chosen, rejected, completion, question, answer): length in characters."""
    words: dict[str, Counter[int]] = field(default_factory=dict)
    images_per_record: Counter[int] = field(default_factory=Counter)
    videos_per_record: Counter[int] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    """Preference and SFT records by ``source``; evaluation items by ``task``."""
    image_side_pairs: int = 0
    """Preference pairs with their own ``rejected_images`` (image-side preference)."""
    pairs_with_spans: int = 0
    """Preference pairs with ``chosen_spans`` or ``rejected_spans`` (dense, segment-level preference)."""
    desirable: int = 0
    """Binary-feedback records labelled desirable (the rest of the ``feedback`` kind are undesirable)."""

    def add(self, record: Record) -> None:
        self.kinds[record.kind] += 1
        self.images_per_record[len(record.images)] += 1
        self.videos_per_record[len(record.videos)] += 1
        for name, text in _texts(record).items():
            self.chars.setdefault(name, Counter())[len(text)] += 1
            self.words.setdefault(name, Counter())[len(text.split())] += 1
        if isinstance(record, EvalItem):
            self.sources[record.task] += 1
        else:
            self.sources[record.source or "(none)"] += 1
        if isinstance(record, PreferenceRecord):
            self.image_side_pairs += record.rejected_images is not None
            self.pairs_with_spans += bool(record.chosen_spans or record.rejected_spans)
        if isinstance(record, FeedbackRecord):
            self.desirable += record.label

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "records": self.n_records,
            "bad": self.n_bad,
            "errors": self.errors,
            "kinds": dict(self.kinds),
            "lengths": {
                name: {"chars": summarize(self.chars[name]), "words": summarize(self.words[name])}
                for name in self.chars
            },
            "images_per_record": {str(k): v for k, v in sorted(self.images_per_record.items())},
            "videos_per_record": {str(k): v for k, v in sorted(self.videos_per_record.items())},
            "sources": dict(self.sources.most_common()),
            "image_side_pairs": self.image_side_pairs,
            "pairs_with_spans": self.pairs_with_spans,
            "desirable": self.desirable,
        }


def _texts(record: Record) -> dict[str, str]:
    if isinstance(record, PreferenceRecord):
        return {"prompt": response_text(record.prompt), "chosen": record.chosen_text, "rejected": record.rejected_text}
    if isinstance(record, SFTRecord | FeedbackRecord):
        return {"prompt": response_text(record.prompt), "completion": record.completion_text}
    return {"question": record.question, "answer": record.answer}


def stats(
    path: str | Path,
    *,
    kind: str | None = None,
    max_errors: int = 10,
    on_progress: Callable[[int], None] | None = None,
) -> DataStats:
    """Count kinds, text lengths, images per record and sources, streaming. Images are not opened.

    Bad records are counted in ``n_bad`` (the first ``max_errors`` listed) and left out of the statistics.
    """
    check_kind(kind)
    out = DataStats(str(path))
    for row in iter_rows(path):
        out.n_records += 1
        try:
            out.add(parse_row(row, file=path, kind=kind))
        except DataError as err:
            out.n_bad += 1
            if len(out.errors) < max_errors:
                out.errors.append(" ".join(str(err).split("\n")))
        if on_progress is not None and out.n_records % PROGRESS_EVERY == 0:
            on_progress(out.n_records)
    return out


def plot_stats(data: DataStats, png: str | Path) -> Path:
    """Save a PNG of word-length distributions, sources and images per record (written atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mmalign.files import atomic_path

    figure = Figure(figsize=(12, 8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2)
    for ax, names, title in (
        (axes[0, 0], [n for n in data.words if n in ("prompt", "question")], "prompt length"),
        (axes[0, 1], [n for n in data.words if n not in ("prompt", "question")], "response length"),
    ):
        for name in names:
            counts = data.words[name]
            ax.hist(list(counts), weights=list(counts.values()), bins=min(50, len(counts) or 1), alpha=0.5, label=name)
        ax.set(title=f"{title} (words)", xlabel="words", ylabel="records")
        if names:
            ax.legend()
    top = data.sources.most_common(20)
    axes[1, 0].barh([name for name, _ in reversed(top)], [n for _, n in reversed(top)])
    axes[1, 0].set(title="sources (top 20)" if len(data.sources) > 20 else "sources", xlabel="records")
    images = sorted(data.images_per_record.items())
    axes[1, 1].bar([str(k) for k, _ in images], [n for _, n in images])
    axes[1, 1].set(title="images per record", xlabel="images", ylabel="records")
    figure.suptitle(f"{Path(data.path).name}: {data.n_records - data.n_bad} records")
    png = Path(png)
    with atomic_path(png) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return png
