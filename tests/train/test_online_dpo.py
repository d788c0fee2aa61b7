"""On-policy DPO: each round samples from its own starting policy on new prompts, ranks with the builder's scorer,
and trains DPO from that policy on those pairs; the next round starts from the trained model; reruns skip
finished rounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmalign.config import apply_overrides, config_from_dict
from mmalign.demo.checkpoint import shipped_dir
from mmalign.errors import ConfigError
from mmalign.train.online_dpo import OnlineDPOConfig, train_online_dpo
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("online") / "world"
    generate_world(out, WorldConfig(train_scenes=16, val_scenes=2, test_scenes=2))
    return out


def make_config(world: Path, out: Path, *overrides: str) -> OnlineDPOConfig:
    base = {
        "model": {"path": str(shipped_dir())},
        "online": {
            "world": str(world),
            "rounds": 2,
            "prompts_per_round": 8,
            "sample": {"k": 4, "scorer": "truth", "temperature": 1.2, "max_new_tokens": 40, "min_gap": 0.01},
        },
        "train": {"output_dir": str(out), "batch_size": 4, "max_steps": 2, "learning_rate": 1e-5, "logging_steps": 1},
        "loss": {"name": "sigmoid", "options": {"beta": 0.1}},
    }
    return config_from_dict(OnlineDPOConfig, apply_overrides(base, list(overrides)), "test")


def test_rounds_sample_from_their_own_policy_on_new_prompts(world, tmp_path):
    config = make_config(world, tmp_path / "run")
    result = train_online_dpo(config, progress=False, write=lambda _: None)
    first, second = result.rounds
    assert first["policy"] == str(shipped_dir()) and second["policy"] == first["model_dir"]
    assert result.model_dir == Path(second["model_dir"]) and (result.model_dir / "config.json").is_file()
    ids = [
        {
            json.loads(line)["id"]
            for line in (tmp_path / "run" / f"round-{r}" / "prompts.jsonl").read_text().splitlines()
        }
        for r in (0, 1)
    ]
    assert len(ids[0]) == len(ids[1]) == 8 and not ids[0] & ids[1]  # new prompts each round
    for r, summary in enumerate(result.rounds):
        pairs = [
            json.loads(line) for line in (tmp_path / "run" / f"round-{r}" / "pairs.jsonl").read_text().splitlines()
        ]
        assert summary["pairs"] == len(pairs) > 0
        assert all(p["meta"]["model"] == summary["policy"] for p in pairs)  # sampled from the round's policy
        assert all(p["meta"]["chosen_score"] > p["meta"]["rejected_score"] for p in pairs)
        assert {p["meta"]["from_id"] for p in pairs} <= ids[r]
        assert summary["steps"] == 2
    saved = json.loads((tmp_path / "run" / "online_result.json").read_text())
    assert saved["rounds"] == json.loads(json.dumps(result.rounds))
    # a rerun skips both rounds (no new training: the same models)
    again = train_online_dpo(config, progress=False, write=lambda _: None)
    assert again.rounds == result.rounds


def test_config_checks(world, tmp_path):
    with pytest.raises(ConfigError, match="exactly one"):
        make_config(world, tmp_path, f"online.input={world}/x.jsonl")
    with pytest.raises(ConfigError, match="drop the key"):
        make_config(world, tmp_path, "online.sample.model=x")
    with pytest.raises(ConfigError, match="scorer"):
        make_config(world, tmp_path, "online.sample.scorer=nope")
    config = make_config(world, tmp_path / "run", "online.prompts_per_round=12")
    with pytest.raises(ConfigError, match="= 24 prompts, but the source holds 16"):
        train_online_dpo(config, progress=False, write=lambda _: None)
