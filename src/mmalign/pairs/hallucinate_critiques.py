"""Truthful critiques of both sides of a ``hallucinate`` pair, from the ground truth the pair was built from
(``critiques: true``): ``meta.chosen_critique`` and ``meta.rejected_critique``, what ``mmalign train rm`` with
``rm.critique`` trains on (critique-then-score, MM-RLHF, Zhang et al., 2025).

Each critique states the evidence, then the verdict, in the world's own words where it can (so the tiny models'
tokenizer has them as whole tokens)::

    add / swap   chosen:   Every object in the answer is in the image, so the answer is right.
                 rejected: There is no green star in the image, so the answer is wrong.
    attribute    rejected: There is no blue circle in the image, so ... (size: The red circle is large, not small, ...)
    count        chosen:   There are three objects, so the answer is right.
                 rejected: There are three objects, not four, so the answer is wrong.
    existence    "There is a red circle in the image, so the answer is right." / "There is no ..., so ... wrong."

The evidence comes from the record's ``meta`` (kind, object, replaced, attribute, from/to, count/said, present),
which both the world's and the COCO-style builders write.
"""

from __future__ import annotations

from typing import Any

from mmalign.data.records import PreferenceRecord
from mmalign.objects import shapes

RIGHT = "so the answer is right."
WRONG = "so the answer is wrong."
ALL_PRESENT = "Every object in the answer is in the image"


def with_critiques(record: PreferenceRecord) -> PreferenceRecord:
    """``record`` with ``meta.chosen_critique`` and ``meta.rejected_critique`` set (in place; returned)."""
    chosen, rejected = pair_critiques(record.meta)
    record.meta["chosen_critique"] = chosen
    record.meta["rejected_critique"] = rejected
    return record


def pair_critiques(meta: dict[str, Any]) -> tuple[str, str]:
    """(chosen critique, rejected critique) of a hallucinate pair described by its ``meta``."""
    kind = meta["kind"]
    if kind in ("add", "swap"):
        return f"{ALL_PRESENT}, {RIGHT}", f"{there_is_no(meta['object'])}, {WRONG}"
    if kind == "attribute":
        name = meta["object"]
        if meta["attribute"] == "colour":
            shape = name.split(" ", 1)[1]
            evidence = there_is_no(shapes.object_name(meta["to"], shape))
        else:
            evidence = f"The {name} is {meta['from']}, not {meta['to']}"
        return f"{ALL_PRESENT}, {RIGHT}", f"{evidence}, {WRONG}"
    if kind == "count":
        n, said = meta["count"], meta["said"]
        there = f"There is {shapes.NUMBER_WORDS[n]} object" if n == 1 else f"There are {shapes.NUMBER_WORDS[n]} objects"
        return f"{there}, {RIGHT}", f"{there}, not {shapes.NUMBER_WORDS[said]}, {WRONG}"
    if kind == "existence":
        name = meta["object"]
        evidence = f"There is {shapes.article(name)} {name} in the image" if meta["present"] else there_is_no(name)
        return f"{evidence}, {RIGHT}", f"{evidence}, {WRONG}"
    raise ValueError(f"no critique for a hallucinate pair of kind {kind!r}")


def there_is_no(name: str) -> str:
    return f"There is no {name} in the image"
