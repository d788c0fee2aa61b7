"""Critique-then-score reward-model training (``rm.critique``) on the shapes world's hallucination pairs with
ground-truth critiques: the step's loss is Bradley-Terry on the critique-conditioned rewards plus w × the critique
tokens' mean NLL (checked against separate forwards), missing critiques are refused before the model loads, the
saved model (full and LoRA-merged) keeps the mode, and a short run is scored with critiques it writes itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from mmalign.config import apply_overrides, config_from_dict
from mmalign.data.io import read_records, write_records
from mmalign.errors import ConfigError, DataError
from mmalign.losses.reward import bradley_terry
from mmalign.models import load
from mmalign.models.collate import IGNORE
from mmalign.models.critique import critique_pair, generate_critiques, score_critiqued, score_with
from mmalign.models.examples import examples_from
from mmalign.models.logps import sequence_logps
from mmalign.models.reward import HEAD_FILE, HEAD_KEY, batch_rewards, load_reward_model
from mmalign.pairs.registry import BuildInputs, make_builder
from mmalign.pairs.shards import run_build
from mmalign.train.reward import CritiqueRewardTrainer, RewardConfig, build_trainer, train_reward
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world

pytestmark = pytest.mark.usefixtures("one_thread")
REQUEST = "Critique the answer above: is everything it says true of the image?"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small shapes world with `add` hallucination pairs carrying ground-truth critiques (train, val)."""
    out = tmp_path_factory.mktemp("critique") / "world"
    generate_world(out, WorldConfig(train_scenes=120, val_scenes=32, test_scenes=4))
    options = {"kinds": ["add"], "critiques": True}
    run_build(make_builder("hallucinate", options), BuildInputs(world=out), out / "train.jsonl", out_root=out)
    val = BuildInputs(world=out, split="val")
    run_build(make_builder("hallucinate", options), val, out / "val.jsonl", out_root=out)
    return out


def make_config(world: Path, model_dir: Path, out: Path, *overrides: str) -> RewardConfig:
    base = {
        "model": {"path": str(model_dir)},
        "data": {"train": str(world / "train.jsonl"), "eval": str(world / "val.jsonl"), "root": str(world)},
        "train": {
            "output_dir": str(out),
            "batch_size": 8,
            "max_steps": 2,
            "logging_steps": 1,
            "learning_rate": 1e-3,
            "lr_scheduler": "constant",
        },
        "rm": {"critique": True},
    }
    return config_from_dict(RewardConfig, apply_overrides(base, list(overrides)), "test")


def pairs(world: Path, name: str, n: int) -> list[Any]:
    return list(read_records(world / name, root=world))[:n]


def test_step_is_bt_on_the_critique_rewards_plus_weighted_critique_nll(world, tiny_dir, tmp_path):
    config = make_config(world, tiny_dir("tiny-llava"), tmp_path / "run", "rm.critique_weight=0.5")
    loaded = load(tiny_dir("tiny-llava"))
    trainer = build_trainer(config, loaded)
    assert isinstance(trainer, CritiqueRewardTrainer) and trainer.model.critique_request == REQUEST
    records = pairs(world, "train.jsonl", 4)
    inputs = trainer.data_collator(records)
    rows = inputs["batch"].rows
    # the mask: labels on exactly each critique's tokens and its end-of-turn token, chosen rows then rejected
    critiques = [r.meta["chosen_critique"] for r in records] + [r.meta["rejected_critique"] for r in records]
    for row, critique in enumerate(critiques):
        labelled = rows.labels[row][rows.labels[row] != IGNORE]
        assert loaded.tokenizer.decode(labelled) == critique + "<|end|>"
    model = trainer.model.eval()
    with torch.no_grad():
        step = trainer.batch_loss(model, inputs)
        # the oracle: each side alone through the plain head path, and the critique NLL by models.logps
        collator = loaded.collator(mode="train", image_root=world)
        sides = list(zip(*(critique_pair(r, REQUEST) for r in records), strict=True))
        chosen, rejected = (batch_rewards(model, collator(list(side))) for side in sides)
        logps = [sequence_logps(model.base, collator(list(side))) for side in sides]
    nll = -sum(float(lp.sum.sum()) for lp in logps) / sum(int(lp.n_tokens.sum()) for lp in logps)
    bt = float(bradley_terry(chosen, rejected).mean())
    assert float(step.loss) == pytest.approx(bt + 0.5 * nll, abs=1e-4)
    assert step.metrics["critique_nll"] == pytest.approx(nll, abs=1e-4) and step.weight == 4
    assert step.metrics["accuracy"] == float((chosen > rejected).float().mean())
    assert step.metrics["margin"] == pytest.approx(float((chosen - rejected).mean()), abs=1e-5)


def test_options_that_contradict_the_mode_are_refused(world, tiny_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"share_prefix: true does not apply with rm\.critique"):
        make_config(world, tiny_dir("tiny-llava"), tmp_path, "share_prefix=true")
    with pytest.raises(ConfigError, match="critique_request must not be empty"):
        make_config(world, tiny_dir("tiny-llava"), tmp_path, "rm.critique_request=' '")
    with pytest.raises(ConfigError, match="critique_weight"):
        make_config(world, tiny_dir("tiny-llava"), tmp_path, "rm.critique_weight=-1")
    assert make_config(world, tiny_dir("tiny-llava"), tmp_path).sharing() is False  # auto: off


def test_missing_critique_is_refused_before_the_model_loads(world, tiny_dir, tmp_path):
    records = pairs(world, "train.jsonl", 3)
    del records[2].meta["rejected_critique"]
    bad = tmp_path / "bad.jsonl"
    write_records(bad, records)
    config = make_config(world, tiny_dir("tiny-llava"), tmp_path / "run", f"data.train={bad}")
    with pytest.raises(DataError) as err:
        train_reward(config, progress=False, write=lambda text: None)
    message = str(err.value)
    assert "bad.jsonl" in message and "line 3" in message and f"(id {records[2].id!r})" in message
    assert "field 'meta.rejected_critique'" in message and "missing" in message
    assert not (tmp_path / "run").exists()
    plain = make_config(world, tiny_dir("tiny-llava"), tmp_path / "plain", f"data.train={bad}", "rm.critique=false")
    assert train_reward(plain, progress=False, write=lambda text: None).global_step == 2  # plain mode: not needed


def test_lora_run_saves_the_mode_with_the_adapter_and_the_merged_model(world, tiny_dir, tmp_path):
    out = tmp_path / "lora"
    config = make_config(world, tiny_dir("tiny-llava"), out, "model.lora.enabled=true", "model.lora.r=4")
    result = train_reward(config, progress=False, write=lambda text: None)
    merged = json.loads((out / "config.json").read_text())[HEAD_KEY]
    with safe_open(str(out / "adapter" / HEAD_FILE), "pt") as head:  # the adapter's head file carries the spec
        adapter = json.loads(head.metadata()[HEAD_KEY])
    for spec in (merged, adapter):
        assert spec["critique"] is True and spec["critique_request"] == REQUEST
    assert load_reward_model(result.model_dir).model.critique_request == REQUEST


def test_short_run_scored_with_its_own_critiques(world, tiny_dir, tmp_path):
    """60 steps from random tiny-llava weights; held-out accuracy with critiques the model writes (greedy)."""
    config = make_config(world, tiny_dir("tiny-llava"), tmp_path / "run", "train.max_steps=60", "train.eval_steps=60")
    result = train_reward(config, progress=False, write=lambda text: None)
    loaded = load_reward_model(result.model_dir)
    assert loaded.model.critique_request == REQUEST
    val = pairs(world, "val.jsonl", 32)
    n = len(val)
    examples = [examples_from(r)[0] for r in val] + [examples_from(r)[1] for r in val]
    written = generate_critiques(loaded, examples, max_new_tokens=32, image_root=world)
    rewards = score_critiqued(loaded, examples, written, image_root=world)
    assert score_with(loaded, examples[:4], image_root=world, max_new_tokens=32) == pytest.approx(rewards[:4], abs=1e-5)
    accuracy = sum(rewards[i] > rewards[n + i] for i in range(n)) / n
    verdicts = sum(c.endswith("right.") for c in written[:n]) + sum(c.endswith("wrong.") for c in written[n:])
    print(
        f"critique RM, 60 steps: held-out accuracy {accuracy:.3f} with its own critiques, "
        f"{verdicts}/{2 * n} verdicts right, eval_accuracy {result.eval_metrics['eval_accuracy']:.3f} "
        f"with the reference critiques"
    )
    # measured (seed 0, CPU): accuracy 0.750 with its own critiques, 51/64 verdicts right; eval_accuracy 1.000
    # and eval_critique_nll 0.15 with the reference ones (the plain RM, same data and steps: 1.000)
    assert result.eval_metrics["eval_critique_nll"] < 0.5
    assert verdicts >= 0.7 * 2 * n and accuracy >= 0.65


def test_cli_says_the_held_out_accuracy_is_given_the_reference_critiques(world, tiny_dir, tmp_path, cli_run):
    code, out, _ = cli_run(["train", "rm", "--show-options"])
    assert code == 0 and "rm.critique_weight" in out and "rm.critique_request" in out
    argv = ["train", "rm", f"model.path={tiny_dir('tiny-llava')}", f"data.train={world / 'train.jsonl'}"]
    argv += [f"data.eval={world / 'val.jsonl'}", f"data.root={world}", f"train.output_dir={tmp_path / 'cli'}"]
    code, out, err = cli_run([*argv, "rm.critique=true", "train.max_steps=2", "train.batch_size=4", "--no-progress"])
    assert code == 0, err
    assert "held-out accuracy (given the reference critiques)" in out
    loaded = load_reward_model(tmp_path / "cli")
    assert loaded.model.critique_request == REQUEST
    # mmalign rm score on a critique model: its critique-then-score rewards (score_with), not a refusal
    val = tmp_path / "val3.jsonl"
    write_records(val, pairs(world, "val.jsonl", 3), root=world)
    scored = tmp_path / "scored.jsonl"
    argv = ["rm", "score", "--reward-model", str(tmp_path / "cli"), "--data", str(val), "--root", str(world)]
    code, out, err = cli_run([*argv, "--out", str(scored), "--no-progress"])
    assert code == 0, err
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    records = pairs(world, "val.jsonl", 3)
    examples = [e for r in records for e in examples_from(r)]
    expected = score_with(loaded, examples, image_root=world)
    got = [v for row in rows for v in (row["meta"]["reward_chosen"], row["meta"]["reward_rejected"])]
    assert got == pytest.approx(expected, abs=1e-5)
