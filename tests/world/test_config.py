from __future__ import annotations

import pytest

from mmalign.config import config_from_dict
from mmalign.errors import ConfigError
from mmalign.world.config import WorldConfig


def test_defaults_are_the_demo_world():
    cfg = WorldConfig()
    assert (cfg.n_colours, cfg.n_shapes, cfg.n_types) == (5, 4, 20)
    assert (cfg.grid_rows, cfg.grid_cols, cfg.image_size) == (3, 3, 48)  # 16 px a cell: one patch per cell
    assert (cfg.n_partner_pairs, cfg.partner_prob, cfg.caption_noise) == (10, 0.8, 0.6)
    assert cfg.colours == ("red", "green", "blue", "yellow", "purple")
    assert cfg.shapes == ("circle", "square", "triangle", "star")


def test_split_sizes_default_to_a_capped_fraction():
    assert WorldConfig(train_scenes=40_000).split_sizes() == {"train": 40_000, "val": 2000, "test": 2000}
    assert WorldConfig(train_scenes=5000).split_sizes() == {"train": 5000, "val": 500, "test": 500}
    assert WorldConfig(train_scenes=3).split_sizes() == {"train": 3, "val": 1, "test": 1}
    assert WorldConfig(train_scenes=100, val_scenes=0, test_scenes=7).split_sizes() == {
        "train": 100,
        "val": 0,
        "test": 7,
    }


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"n_colours": 9}, "'n_colours' must be an integer in \\[1, 8\\], got 9"),
        ({"n_shapes": 0}, "'n_shapes' must be an integer in \\[1, 8\\], got 0"),
        ({"max_objects": 10}, "exceeds the 9 grid cells"),
        ({"min_objects": 3, "max_objects": 2}, "below min_objects"),
        ({"min_objects": 0}, "'min_objects' must be an integer >= 1, got 0"),
        ({"n_colours": 1, "n_shapes": 4}, "must be below the 4 object types"),
        (
            {"grid_rows": 4, "grid_cols": 4, "max_objects": 11, "n_colours": 8},
            "'max_objects' must be an integer in \\[1, 10\\], got 11",
        ),
        ({"n_partner_pairs": 11}, "n_partner_pairs must be between 0 and 10"),
        ({"partner_prob": 1.5}, "'partner_prob' must be a finite number in \\[0, 1\\], got 1.5"),
        ({"caption_noise": -0.1}, "'caption_noise' must be a finite number in \\[0, 1\\], got -0.1"),
        ({"image_size": 8}, "too small for a 3x3 grid"),
        ({"train_scenes": 0}, "'train_scenes' must be an integer >= 1, got 0"),
        ({"val_scenes": -1}, "'val_scenes' must be an integer >= 0, got -1"),
        ({"frequency_skew": -1.0}, "'frequency_skew' must be a finite number >= 0, got -1.0"),
        ({"pope_k": 0}, "'pope_k' must be an integer >= 1, got 0"),
        ({"seed": 1.5}, "seed must be int"),
        ({"object_sizes": 1}, "object_sizes must be bool"),
    ],
)
def test_impossible_settings_are_config_errors(changes, needle):
    with pytest.raises(ConfigError, match=needle):
        WorldConfig(**changes)


def test_from_dict_names_unknown_keys_and_accepts_ints_for_floats():
    with pytest.raises(ConfigError, match="unknown key 'noise'"):
        config_from_dict(WorldConfig, {"noise": 0.5}, where="w.yaml")
    cfg = config_from_dict(WorldConfig, {"partner_prob": 1, "train_scenes": 10})
    assert cfg.partner_prob == 1.0 and isinstance(cfg.partner_prob, float)
    assert WorldConfig(**cfg.to_dict()) == cfg  # round trip through world.json's form


def test_every_option_is_documented():
    import dataclasses

    for f in dataclasses.fields(WorldConfig):
        assert len(f.metadata.get("help", "")) > 15, f.name
