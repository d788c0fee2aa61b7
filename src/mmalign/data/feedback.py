"""Binary feedback from preference pairs: each pair becomes one desirable and one undesirable record.

KTO (Ethayarajh et al., 2024) and reward models trained on labels read unpaired thumbs-up / thumbs-down data
(:class:`~mmalign.data.records.FeedbackRecord`). Any preference file gives such data: the chosen response is a
desirable completion of the prompt, the rejected one an undesirable completion (of the same prompt, under the
pair's ``rejected_images`` when it has its own). This is how TRL's ``unpair_preference_dataset`` unpairs a dataset;
here the two records get their own ids, ``PAIR-chosen`` and ``PAIR-rejected``, and ``meta`` gains ``pair`` (the
pair's id) so that the two halves can be found again. Span annotations are not carried (a feedback record labels
a whole response).

    n = unpair_file("pairs.jsonl", "feedback.jsonl")     # or: mmalign data unpair pairs.jsonl feedback.jsonl
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from mmalign.data.io import default_out_root, default_root, nonempty, read_records, write_records
from mmalign.data.records import FeedbackRecord, PreferenceRecord
from mmalign.errors import DataError


def unpair(record: PreferenceRecord) -> tuple[FeedbackRecord, FeedbackRecord]:
    """The desirable (chosen) and the undesirable (rejected) half of a pair."""
    if not isinstance(record, PreferenceRecord):
        raise DataError(
            f"only preference pairs can be unpaired, got a {record.kind} record", record_id=getattr(record, "id", None)
        )
    rejected_images = record.images if record.rejected_images is None else record.rejected_images
    halves = []
    for side, completion, images, label in (
        ("chosen", record.chosen, record.images, True),
        ("rejected", record.rejected, rejected_images, False),
    ):
        meta = {**record.meta, "pair": record.id}
        halves.append(
            FeedbackRecord(f"{record.id}-{side}", record.prompt, completion, label, list(images), record.source, meta)
        )
    return halves[0], halves[1]


def unpaired(records: Iterable[PreferenceRecord]) -> Iterator[FeedbackRecord]:
    """Every pair's two halves, in order (desirable first)."""
    for record in records:
        yield from unpair(record)


def unpair_file(
    src: str | Path, dst: str | Path, *, root: str | Path | None = None, out_root: str | Path | None = None
) -> int:
    """Write the feedback records of the pairs in ``src`` to ``dst`` (any format; atomic, nothing written when
    ``src`` holds no pair). ``root``: the data root of ``src``'s image paths; ``out_root``: of a JSONL output's
    (default: ``src``'s root when ``dst`` lies inside it, else ``dst``'s folder). Returns the records written."""
    src, dst = Path(src), Path(dst)
    src_root = Path(root) if root is not None else default_root(src)
    records = read_records(src, kind="preference", root=src_root)
    halves = nonempty(unpaired(records), lambda: f"{src} holds no preference pairs: {dst} not written")  # type: ignore[arg-type]
    out = Path(out_root) if out_root is not None else default_out_root(dst, src_root)
    return write_records(dst, halves, root=out, src_root=src_root, kind="feedback")
