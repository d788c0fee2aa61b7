"""Scene sampling: the co-occurrence structure, popularity weights, determinism and disjoint splits."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from mmalign.errors import ConfigError
from mmalign.seeding import unit_interval
from mmalign.world.config import WorldConfig
from mmalign.world.scene import (
    SPLIT_REGIONS,
    object_types,
    partner_of,
    partner_pairs,
    sample_scene,
    sample_split,
    type_weights,
)
from mmalign.world.stats import compute_stats


def within(observed: float, expected: float, n: int, sigmas: float = 4.0) -> bool:
    """A proportion over n Bernoulli trials is within ``sigmas`` standard errors of ``expected``."""
    return abs(observed - expected) <= sigmas * math.sqrt(expected * (1 - expected) / n)


def test_partner_pairs_are_disjoint_seeded_and_symmetric():
    cfg = WorldConfig()
    pairs = partner_pairs(cfg)
    assert len(pairs) == 10
    members = [t for pair in pairs for t in pair]
    assert len(set(members)) == 20 and set(members) == set(object_types(cfg))  # 10 pairs cover the 20 types
    assert partner_pairs(WorldConfig()) == pairs
    assert partner_pairs(WorldConfig(seed=1)) != pairs
    partners = partner_of(cfg)
    assert all(partners[partners[t]] == t for t in partners)
    assert len(partner_of(WorldConfig(n_partner_pairs=3))) == 6


def test_partner_is_added_at_the_configured_rate():
    cfg = WorldConfig(partner_prob=0.8, train_scenes=4000)
    stats = compute_stats(sample_split(cfg, "train", 4000), cfg)
    assert stats.partner_trials > 4000
    assert within(stats.partner_added / stats.partner_trials, 0.8, stats.partner_trials)
    never = WorldConfig(partner_prob=0.0)
    stats = compute_stats(sample_split(never, "train", 500), never)
    assert stats.partner_trials > 0 and stats.partner_added == 0


def test_pair_probability_matches_the_worked_out_value():
    # Two objects a scene, uniform draws over 20 types, every type paired. The first draw A is followed by its
    # partner with p = 0.5; otherwise the second draw is uniform over the 19 other types, 1 of which is the
    # partner. P(the two objects are partners) = 0.5 + 0.5 * 1/19 = 0.5263.
    cfg = WorldConfig(min_objects=2, max_objects=2, frequency_skew=0.0, partner_prob=0.5, train_scenes=4000)
    rng = random.Random(0)
    scenes = [sample_scene(rng, cfg) for _ in range(4000)]
    partners = partner_of(cfg)
    paired = sum(partners[s.names[0]] == s.names[1] for s in scenes)
    expected = 0.5 + 0.5 / 19
    assert within(paired / len(scenes), expected, len(scenes))
    # ...and each type's P(partner | object) recorded in the statistics estimates the same number.
    summary = compute_stats(scenes, cfg).summary(cfg)
    ratios = list(summary["p_partner_given_object"].values())
    assert len(ratios) == 20
    assert abs(sum(ratios) / 20 - expected) < 0.03
    assert summary["p_other_given_object_mean"] < 0.05  # the other 18 types share the rest: 0.4737 / 18


def test_single_objects_follow_the_popularity_weights():
    cfg = WorldConfig(min_objects=1, max_objects=1, n_partner_pairs=0, frequency_skew=1.0, train_scenes=6000)
    weights = type_weights(cfg)
    assert abs(sum(weights.values()) - 1) < 1e-12
    ranked = sorted(weights.values(), reverse=True)
    assert ranked[0] / ranked[-1] == pytest.approx(20.0)  # Zipf with exponent 1 over 20 ranks: 1/1 over 1/20
    # sample_scene itself (a split keeps only the scenes whose key hashes into its region, which in a world of
    # 180 possible one-object scenes visibly reweights the types).
    rng = random.Random(0)
    counts = Counter(sample_scene(rng, cfg).names[0] for _ in range(6000))
    for name, w in weights.items():
        assert within(counts[name] / 6000, w, 6000), name


def test_scene_structure():
    cfg = WorldConfig()
    rng = random.Random(3)
    for _ in range(300):
        scene = sample_scene(rng, cfg)
        names = scene.names
        cells = [(o.row, o.col) for o in scene.objects]
        assert cfg.min_objects <= len(names) <= cfg.max_objects
        assert len(set(names)) == len(names) and len(set(cells)) == len(cells)
        assert cells == sorted(cells)  # grid order
        assert all(abs(o.dx) <= cfg.jitter and abs(o.dy) <= cfg.jitter for o in scene.objects)
        for obj in scene.objects:
            if obj.via == "partner":
                assert partner_of(cfg)[obj.name] in names
        assert scene.partner_added == sum(o.via == "partner" for o in scene.objects) <= scene.partner_trials
    flat = WorldConfig(object_sizes=False)
    assert {o.size for _ in range(50) for o in sample_scene(rng, flat).objects} == {"large"}


def test_sampling_is_deterministic_by_seed():
    cfg = WorldConfig(train_scenes=200)
    assert sample_split(cfg, "val", 50) == sample_split(cfg, "val", 50)
    assert sample_split(cfg, "val", 50) != sample_split(cfg.replace(seed=1), "val", 50)
    # Split sizes do not reshuffle a split: the first 20 scenes are the same when 50 are asked for.
    assert sample_split(cfg, "train", 20) == sample_split(cfg, "train", 50)[:20]


def test_no_scene_is_in_two_splits_even_in_a_tiny_world():
    # One object a scene: 20 types x 9 cells = 180 distinct scenes, so 600 train scenes repeat inside train,
    # and drawing val/test independently would certainly collide with train.
    cfg = WorldConfig(min_objects=1, max_objects=1, n_partner_pairs=0, train_scenes=600)
    keys = {
        split: [s.key() for s in sample_split(cfg, split, n)]
        for split, n in (("train", 600), ("val", 60), ("test", 60))
    }
    assert len(set(keys["train"])) < 600  # repeats inside a split are allowed
    assert not set(keys["train"]) & set(keys["val"])
    assert not set(keys["train"]) & set(keys["test"])
    assert not set(keys["val"]) & set(keys["test"])
    for split, split_keys in keys.items():
        lo, hi = SPLIT_REGIONS[split]
        assert all(lo <= unit_interval(cfg.seed, k) < hi for k in split_keys)


def test_a_world_too_small_for_disjoint_splits_is_a_config_error():
    # 2 object types on a 1x1 grid: only 2 distinct scenes, and at most 2 of the 3 splits can get one.
    cfg = WorldConfig(n_colours=1, n_shapes=2, grid_rows=1, grid_cols=1, image_size=8, max_objects=1, n_partner_pairs=0)
    regions = {unit_interval(cfg.seed, k) for k in ("red circle@0,0", "red square@0,0")}
    empty = [s for s, (lo, hi) in SPLIT_REGIONS.items() if not any(lo <= r < hi for r in regions)]
    assert empty
    with pytest.raises(ConfigError, match="too few distinct scenes"):
        sample_split(cfg, empty[0], 1)
