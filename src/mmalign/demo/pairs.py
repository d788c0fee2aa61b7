"""The demo's training data, made by two builders from the world's training split.

* ``hallucinate.jsonl`` (:mod:`mmalign.pairs.hallucinate`): per scene, in split order, caption pairs
  (chosen: the clean caption; rejected: an absent object added or swapped in, the most co-occurring one, so
  usually the absent partner) and existence questions; cut to exactly the budget's pair count;
* ``corrupt-image.jsonl`` (:mod:`mmalign.pairs.corrupt_image`): the same pairs, same order, each with a
  corrupted copy of its image as ``rejected_images`` (mDPO's image-conditional term);
* ``chosen.jsonl``: the chosen side of the same pairs as SFT records (the control trains on these alone).

Every method sees the same pairs in the same order (same count, same seed), so they differ only by objective.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from mmalign.data.io import write_records
from mmalign.data.records import PreferenceRecord, SFTRecord
from mmalign.demo.settings import CORRUPT_IMAGE_OPTIONS, HALLUCINATE_OPTIONS
from mmalign.demo.training import Layout
from mmalign.errors import ConfigError
from mmalign.files import atomic_path
from mmalign.pairs import BuildInputs, make_builder, run_build
from mmalign.seeding import derive_seed

SUMMARY = "summary.json"


def first_pairs(
    world: Path,
    strategy: str,
    options: dict[str, Any],
    n_pairs: int,
    seed: int,
    what: str = "scenes",
    budget: str = "the budget",
) -> tuple[list[PreferenceRecord], int]:
    """The first ``n_pairs`` pairs of the ``strategy`` builder over the world's training ``what`` (scenes, or clips
    of a video world) in order, and how many they came from (only those are built); a ConfigError naming
    ``--train-<what>`` when the world gives fewer."""
    builder = make_builder(strategy, options)
    plan = builder.plan(BuildInputs(world=world, split="train"), seed)
    records: list[PreferenceRecord] = []
    used = 0
    for unit in plan.units:
        if len(records) >= n_pairs:
            break
        records += builder.build(unit, plan.shared, derive_seed(seed, builder.name, str(unit["id"])))
        used += 1
    if len(records) < n_pairs:
        raise ConfigError(
            f"the world's {used} training {what} give {len(records)} pairs, fewer than the {n_pairs} {budget} "
            f"needs: raise --train-{what}"
        )
    return records[:n_pairs], used


def chosen_records(pairs: list[PreferenceRecord]) -> list[SFTRecord]:
    """The chosen response of each pair as an SFT example (same id, prompt, images and videos)."""
    return [
        SFTRecord(
            id=p.id,
            prompt=p.prompt,
            completion=p.chosen,
            images=list(p.images),
            videos=list(p.videos),
            source="chosen",
            meta={"from_source": p.source, **p.meta},
        )
        for p in pairs
    ]


def build_pairs(layout: Layout, n_pairs: int, seed: int, say: Any = print) -> dict[str, Any]:
    """Write the three training files into ``layout.pairs`` and ``summary.json``; returns the summary."""
    pairs, scenes = first_pairs(layout.world, "hallucinate", HALLUCINATE_OPTIONS, n_pairs, seed)
    text_file = layout.pair_file("hallucinate")
    write_records(text_file, pairs, root=layout.world)
    write_records(layout.pair_file("chosen"), chosen_records(pairs), root=layout.world)
    say(f"hallucinate: {len(pairs)} pairs from the first {scenes} training scenes")
    result = run_build(
        make_builder("corrupt-image", CORRUPT_IMAGE_OPTIONS),
        BuildInputs(input=text_file, root=layout.world),
        layout.pair_file("corrupt-image"),
        seed=seed,
        out_root=layout.pair_root("corrupt-image"),
    )
    say(f"corrupt-image: {result.pairs} pairs with corrupted rejected images in {result.seconds:.1f} s")
    kinds = Counter(str(p.meta.get("kind")) for p in pairs)
    captions = [p for p in pairs if p.meta.get("kind") in ("add", "swap")]
    summary = {
        "pairs": len(pairs),
        "scenes": scenes,
        "kinds": dict(sorted(kinds.items())),
        "caption_pairs_with_absent_partner": sum(bool(p.meta.get("absent_partner")) for p in captions),
        "caption_pairs": len(captions),
        "builders": {"hallucinate": HALLUCINATE_OPTIONS, "corrupt-image": CORRUPT_IMAGE_OPTIONS},
        "seed": seed,
    }
    with atomic_path(layout.pairs / SUMMARY) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def read_summary(layout: Layout) -> dict[str, Any]:
    return json.loads((layout.pairs / SUMMARY).read_text(encoding="utf-8"))
