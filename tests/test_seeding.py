"""One home for derived seeds (mmalign.seeding): each equals the formula it replaced, on a few inputs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mmalign.seeding import derive_seed, record_rng, text_seed, unit_interval

SEEDS = (0, 3, 12345, 2**40 + 7)
NAMES = ("", "s-000001", "coco-42", "hallucinate", "naïve ünit", "a|b")


def _blake(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", NAMES)
def test_each_old_formula(seed, name):
    # pairs.registry.unit_seed(seed, strategy, unit_id): 63 bits
    assert derive_seed(seed, "sample-rank", name) == _blake(f"{seed}|sample-rank|{name}") >> 1
    # pairs.adversarial._item_seed(seed, item_id): 63 bits
    assert derive_seed(seed, name) == _blake(f"{seed}|{name}") >> 1
    # pairs.corrupt_image._image_seed(seed, mode, index): all 64 bits
    assert derive_seed(seed, name, 7, bits=64) == _blake(f"{seed}|{name}|7")
    # world.scene.key_region(key, seed): the 64-bit hash over 2**64
    assert unit_interval(seed, name) == _blake(f"{seed}|{name}") / 2**64
    # eval.world_tasks._stable_seed(text): 4 bytes of SHA-256, little-endian
    text = f"{seed}:{name}"
    assert text_seed(text, 4) == int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    # train.pref_batch.record_rng(seed, record_id): numpy's generator from (seed, 8 bytes of SHA-256)
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    old = np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])
    assert (record_rng(seed, name).integers(0, 2**62, 8) == old.integers(0, 2**62, 8)).all()


def test_ranges():
    assert derive_seed("x") < 2**63 and derive_seed("x", bits=64) < 2**64 and derive_seed("x", bits=1) in (0, 1)
    assert 0 <= unit_interval("x") < 1 and text_seed("x", 1) < 256
    with pytest.raises(ValueError):
        derive_seed("x", bits=65)
