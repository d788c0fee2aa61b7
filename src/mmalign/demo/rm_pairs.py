"""The reward-model study's pairs: a balanced training mix of every builder kind, and the held-out suite.

Seven kinds, each with an exact truth from the shapes world's scenes:

* ``add``, ``swap``, ``attribute``, ``count``, ``existence``: :mod:`mmalign.pairs.hallucinate` (a caption with an
  absent object added or swapped in, an object's colour or size changed, a count one off, a yes/no question
  about a present or an absent object answered wrongly);
* ``corrupt-image``: :mod:`mmalign.pairs.corrupt_image`, the clean caption with the real image over the same
  caption with a degraded image (blur, pixelate, noise, mask or crop);
* ``multi-image``: :mod:`mmalign.pairs.multi_image`, 2-4 images whose rejected answer confuses which image
  holds an object (``which``, ``exists``, ``describe``; ``meta.kind`` keeps the sub-kind).

Each kind is built from one split (the training mix from ``train``; the suite from ``val``, scenes the RM never
saw) and every pair gets ``meta.suite_kind``. The training mix draws the same number of pairs of each kind
(seeded, then shuffled); the suite keeps the first ``per_kind`` pairs of each kind in build order. Image paths
are relative to the world directory (the corrupted images are written under it).
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from mmalign.data.io import read_records, write_records
from mmalign.data.records import PreferenceRecord
from mmalign.demo.pairs import chosen_records
from mmalign.errors import ConfigError
from mmalign.pairs import BuildInputs, make_builder, run_build

HALLUCINATE_KINDS: tuple[str, ...] = ("add", "swap", "attribute", "count", "existence")
KINDS: tuple[str, ...] = (*HALLUCINATE_KINDS, "corrupt-image", "multi-image")
"""Every kind of the suite, in report order."""
HALLUCINATE_OPTIONS: dict[str, Any] = {"kinds": list(HALLUCINATE_KINDS), "cooccur_prob": 0.5}
CORRUPT_IMAGE_OPTIONS: dict[str, Any] = {"modes": ["blur", "pixelate", "noise", "mask", "crop"]}
MULTI_IMAGE_OPTIONS: dict[str, Any] = {}


def kind_of(record: PreferenceRecord) -> str:
    """The suite kind of a pair (``meta.suite_kind``)."""
    kind = record.meta.get("suite_kind")
    if kind not in KINDS:
        raise ConfigError(f"pair {record.id!r} has no suite kind (meta.suite_kind: {kind!r})")
    return str(kind)


def build_split(world: Path, split: str, work: Path, seed: int) -> dict[str, list[PreferenceRecord]]:
    """Every pair the three builders make from one split of the world, by kind (files under ``work``)."""
    work.mkdir(parents=True, exist_ok=True)
    text = work / f"hallucinate-{split}.jsonl"
    inputs = BuildInputs(world=world, split=split)
    run_build(make_builder("hallucinate", HALLUCINATE_OPTIONS), inputs, text, seed=seed, out_root=world)
    pairs = list(read_records(text, root=world))
    captions = work / f"captions-{split}.jsonl"  # the clean captions (the `add` pairs' chosen side), one per scene
    write_records(captions, chosen_records([p for p in pairs if p.meta.get("kind") == "add"]), root=world)
    image_side = work / f"corrupt-image-{split}.jsonl"
    run_build(
        make_builder("corrupt-image", CORRUPT_IMAGE_OPTIONS),
        BuildInputs(input=captions, root=world),
        image_side,
        seed=seed,
        out_root=world,
    )
    multi = work / f"multi-image-{split}.jsonl"
    run_build(make_builder("multi-image", MULTI_IMAGE_OPTIONS), inputs, multi, seed=seed, out_root=world)
    by_kind: dict[str, list[PreferenceRecord]] = {k: [] for k in KINDS}
    for record in pairs:
        by_kind[str(record.meta["kind"])].append(record)
    by_kind["corrupt-image"] = list(read_records(image_side, root=world))
    by_kind["multi-image"] = list(read_records(multi, root=world))
    for kind, records in by_kind.items():
        for record in records:
            record.meta["suite_kind"] = kind
    return by_kind


def training_mix(by_kind: dict[str, list[PreferenceRecord]], n_pairs: int, seed: int) -> list[PreferenceRecord]:
    """``n_pairs`` pairs, as many of each kind as possible (the remainder to the first kinds), drawn without
    replacement and shuffled, seeded."""
    rng = random.Random(seed)
    share, extra = divmod(n_pairs, len(KINDS))
    mix: list[PreferenceRecord] = []
    for k, kind in enumerate(KINDS):
        want = share + (k < extra)
        have = by_kind.get(kind, [])
        if len(have) < want:
            raise ConfigError(
                f"the training split gives {len(have)} {kind} pairs, fewer than the {want} the mix needs: "
                "raise the training scenes or lower the RM's steps × batch size"
            )
        mix += rng.sample(have, want)
    rng.shuffle(mix)
    return mix


def suite_pairs(by_kind: dict[str, list[PreferenceRecord]], per_kind: int) -> list[PreferenceRecord]:
    """The first ``per_kind`` pairs of each kind, kinds in :data:`KINDS` order."""
    return [record for kind in KINDS for record in by_kind.get(kind, [])[:per_kind]]


def build_study_pairs(
    world: Path, out: Path, *, n_train: int, per_kind: int, seed: int, say: Any = print
) -> dict[str, Any]:
    """Write ``out/train.jsonl`` (the training mix) and ``out/suite.jsonl`` (the held-out suite); returns the
    counts per kind."""
    train = training_mix(build_split(world, "train", out / "build", seed), n_train, seed)
    suite = suite_pairs(build_split(world, "val", out / "build", seed), per_kind)
    write_records(out / "train.jsonl", train, root=world)
    write_records(out / "suite.jsonl", suite, root=world)
    counts = {
        "train": dict(Counter(kind_of(r) for r in train)),
        "suite": {k: sum(kind_of(r) == k for r in suite) for k in KINDS},
    }
    say(f"pairs: {len(train)} training pairs (balanced over {len(KINDS)} kinds), {len(suite)} held-out suite pairs")
    return counts
