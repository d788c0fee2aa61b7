"""Reward-model training on the shapes world: the trainer's loss and metrics are losses.reward's on the model's
rewards, margins come from meta (a bad one is refused naming file, record and field), held-out accuracy rises,
image-side pairs work, LoRA saves the adapter and the merged model with the head, and a run resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from mmalign.config import apply_overrides, config_from_dict
from mmalign.data.io import read_records, write_records
from mmalign.errors import ConfigError, DataError
from mmalign.losses.reward import RewardLoss, bradley_terry, reward_metrics
from mmalign.models import load
from mmalign.models.reward import HEAD_FILE, RewardModel, batch_rewards, load_reward_model, new_head, read_head
from mmalign.pairs.registry import BuildInputs, make_builder
from mmalign.pairs.shards import run_build
from mmalign.train.reward import RewardConfig, build_trainer, record_margin, train_reward
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small shapes world with hallucination pairs (train, val) and image-side pairs (rejected_images)."""
    out = tmp_path_factory.mktemp("rm") / "world"
    generate_world(out, WorldConfig(train_scenes=120, val_scenes=32, test_scenes=4))
    add = {"kinds": ["add"]}
    run_build(make_builder("hallucinate", add), BuildInputs(world=out), out / "train.jsonl", out_root=out)
    run_build(make_builder("hallucinate", add), BuildInputs(world=out, split="val"), out / "val.jsonl", out_root=out)
    image_side = make_builder("corrupt-image", {"modes": ["mask"]})
    run_build(image_side, BuildInputs(world=out), out / "image.jsonl", out_root=out)
    return out


def make_config(world: Path, model_dir: Path, out: Path, *overrides: str, train: str = "train.jsonl") -> RewardConfig:
    base = {
        "model": {"path": str(model_dir)},
        "data": {"train": str(world / train), "eval": str(world / "val.jsonl"), "root": str(world)},
        "train": {
            "output_dir": str(out),
            "batch_size": 8,
            "max_steps": 2,
            "logging_steps": 1,
            "learning_rate": 1e-3,
            "lr_scheduler": "constant",
        },
    }
    return config_from_dict(RewardConfig, apply_overrides(base, list(overrides)), "test")


def pairs(world: Path, name: str, n: int) -> list[Any]:
    return list(read_records(world / name, root=world))[:n]


def test_batch_loss_and_metrics_are_losses_reward_on_separate_forwards(world, tiny_dir, tmp_path):
    config = make_config(world, tiny_dir("tiny-llava"), tmp_path / "run", "loss.center_rewards_coefficient=0.01")
    loaded = load(tiny_dir("tiny-llava"))
    trainer = build_trainer(config, loaded)
    records = pairs(world, "train.jsonl", 6)
    for i, record in enumerate(records[:3]):  # three pairs carry a margin, the others none (0)
        record.meta["margin"] = 0.5 * (i + 1)
    inputs = trainer.data_collator(records)
    assert inputs["margin"].tolist() == [0.5, 1.0, 1.5, 0.0, 0.0, 0.0]
    model = trainer.model.eval()
    with torch.no_grad():
        step = trainer.batch_loss(model, inputs)
        # the oracle: chosen and rejected each scored by their own forward (other padding, other batch)
        collator = loaded.collator(mode="train", image_root=world)
        chosen = batch_rewards(model, collator([r.__class__(**{**vars(r), "rejected": r.chosen}) for r in records]))
        rejected = batch_rewards(model, collator([r.__class__(**{**vars(r), "chosen": r.rejected}) for r in records]))
    n = len(records)
    chosen, rejected = chosen[:n], rejected[n:]
    margin = torch.tensor([0.5, 1.0, 1.5, 0.0, 0.0, 0.0])
    # L = mean(-log σ(r_c - r_r - m)) + 0.01·mean((r_c + r_r)²)
    expected = bradley_terry(chosen, rejected, margin).mean() + 0.01 * ((chosen + rejected) ** 2).mean()
    assert float(step.loss) == pytest.approx(float(expected), abs=1e-5)
    assert float(step.loss) == pytest.approx(float(RewardLoss(0.01)(chosen, rejected, margin).loss), abs=1e-5)
    assert step.weight == n and step.metrics["loss"] == pytest.approx(float(expected), abs=1e-5)
    for key, value in reward_metrics(chosen, rejected).items():
        assert step.metrics[key] == pytest.approx(value, abs=1e-5), key
    assert step.metrics["centering"] == pytest.approx(float(((chosen + rejected) ** 2).mean()), abs=1e-5)
    assert trainer.share_prefix == "auto"  # the default
    trainer.share_prefix = True  # each pair's prompt + image computed once: the same loss
    with torch.no_grad():
        assert float(trainer.batch_loss(model, inputs).loss) == pytest.approx(float(expected), abs=1e-5)


def test_image_side_pairs_score_each_side_with_its_own_images(world, tiny_dir, tmp_path):
    config = make_config(world, tiny_dir("tiny-llava"), tmp_path / "run", train="image.jsonl")
    loaded = load(tiny_dir("tiny-llava"))
    trainer = build_trainer(config, loaded)
    records = pairs(world, "image.jsonl", 3)
    assert all(r.rejected_images is not None and r.chosen == r.rejected for r in records)
    inputs = trainer.data_collator(records)
    pixels = inputs["batch"].rows.extras["pixel_values"]
    assert not torch.equal(pixels[:3], pixels[3:])  # the rejected rows see the masked images
    with torch.no_grad():
        step = trainer.batch_loss(trainer.model.eval(), inputs)
    assert step.metrics["margin"] != 0.0  # same text, different images: different rewards
    result = train_reward(config, progress=False, write=lambda text: None)
    assert result.global_step == 2 and result.train_loss > 0


def test_bad_margin_is_refused_naming_file_record_and_field(world, tiny_dir, tmp_path):
    records = pairs(world, "train.jsonl", 3)
    records[1].meta["margin"] = "large"
    bad = tmp_path / "bad.jsonl"
    write_records(bad, records)
    config = make_config(world, tiny_dir("tiny-llava"), tmp_path / "run", f"data.train={bad}")
    with pytest.raises(DataError) as err:
        train_reward(config, progress=False, write=lambda text: None)
    message = str(err.value)
    assert "bad.jsonl" in message and "line 2" in message and f"(id {records[1].id!r})" in message
    assert "field 'meta.margin'" in message and "'large'" in message
    assert not (tmp_path / "run").exists()  # refused before the model loaded
    for value in (True, float("nan"), [1]):
        records[1].meta["margin"] = value
        with pytest.raises(DataError, match="must be a finite number"):
            record_margin(records[1], "margin")
    records[1].meta["margin"] = 2
    assert record_margin(records[1], "margin") == 2.0 and record_margin(records[1], None) is None


def test_training_lowers_the_held_out_loss_and_raises_accuracy(world, tiny_dir, tmp_path):
    config = make_config(world, tiny_dir("tiny-llava"), tmp_path / "run", "train.max_steps=16", "train.eval_steps=8")
    before = build_trainer(config, load(tiny_dir("tiny-llava"))).evaluate()
    result = train_reward(config, progress=False, write=lambda text: None)
    after = result.eval_metrics
    # measured on 32 held-out pairs (seed 0, CPU): eval_loss 0.691 -> 0.275, accuracy 0.781 -> 0.938
    assert after["eval_loss"] < before["eval_loss"] - 0.2
    assert after["eval_accuracy"] > before["eval_accuracy"] and after["eval_accuracy"] >= 0.9
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval_accuracy" in r] == [8, 16]
    assert {"accuracy", "margin", "chosen_reward_mean", "rejected_reward_std"} <= set(rows[0])
    loaded = load_reward_model(tmp_path / "run")
    assert torch.equal(loaded.model.reward_head.weight, read_head(tmp_path / "run").weight)
    assert not torch.equal(loaded.model.reward_head.weight, new_head(128, seed=0).weight)  # the head trained


def test_lora_saves_the_adapter_and_the_merged_model_with_the_head(world, tiny_dir, tmp_path):
    out = tmp_path / "lora"
    config = make_config(world, tiny_dir("tiny-llava"), out, "model.lora.enabled=true", "model.lora.r=4")
    result = train_reward(config, progress=False, write=lambda text: None)
    assert result.adapter_dir == out / "adapter" and result.model_dir == out
    assert {"adapter_model.safetensors", "adapter_config.json", HEAD_FILE} <= {p.name for p in out.glob("adapter/*")}
    head = read_head(out / "adapter")
    assert torch.equal(head.weight, read_head(out).weight)
    assert not torch.equal(head.weight, new_head(128, seed=0).weight)  # with LoRA the head trains too
    merged = load_reward_model(out)
    # the adapter on the base model, with the head: the same rewards as the merged model
    from peft import PeftModel

    base = load(tiny_dir("tiny-llava"))
    adapted = RewardModel(PeftModel.from_pretrained(base.model, out / "adapter"), head).eval()
    batch = merged.collator(mode="train", image_root=world)(pairs(world, "val.jsonl", 4))
    with torch.no_grad():
        torch.testing.assert_close(batch_rewards(adapted, batch), batch_rewards(merged.model, batch), atol=1e-5, rtol=0)


class Crash(Exception):
    pass


class CrashAfterSave(TrainerCallback):
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 2:
            raise Crash("stopped after saving step 2")


@pytest.mark.parametrize("lora", [False, True])
def test_resume_through_the_core_gives_the_straight_runs_weights(world, tiny_dir, tmp_path, lora):
    options = ["train.max_steps=3", "train.save_steps=2", "train.seed=1", f"model.lora.enabled={str(lora).lower()}"]
    torch.manual_seed(0)  # LoRA's A matrices are drawn when the model loads, before train.seed is applied
    straight = train_reward(make_config(world, tiny_dir("tiny-llava"), tmp_path / "a", *options), progress=False)
    out = tmp_path / "b"
    torch.manual_seed(0)
    with pytest.raises(Crash):
        train_reward(make_config(world, tiny_dir("tiny-llava"), out, *options), callbacks=[CrashAfterSave()])
    assert (out / "checkpoint-2" / HEAD_FILE).is_file()
    resumed = train_reward(make_config(world, tiny_dir("tiny-llava"), out, *options, "train.resume=true"))
    assert resumed.resumed_from == out / "checkpoint-2" and resumed.global_step == 3
    for name in ("model.safetensors", HEAD_FILE):
        a, b = load_file(tmp_path / "a" / name), load_file(out / name)
        assert a.keys() == b.keys()
        for key, value in a.items():
            torch.testing.assert_close(b[key], value, rtol=0, atol=1e-6, msg=f"{name}: {key}")
    assert straight.train_loss == pytest.approx(
        json.loads((tmp_path / "a" / "train_result.json").read_text())["train_loss"]
    )


def test_cli_trains_and_shows_options(world, tiny_dir, tmp_path, cli_run):
    code, out, _ = cli_run(["train", "rm", "--show-options"])
    assert code == 0 and "rm.margin_key" in out and "loss.center_rewards_coefficient" in out
    argv = ["train", "rm", f"model.path={tiny_dir('tiny-llava')}", f"data.train={world / 'train.jsonl'}"]
    argv += [f"data.eval={world / 'val.jsonl'}", f"data.root={world}", f"train.output_dir={tmp_path / 'cli'}"]
    code, out, err = cli_run([*argv, "train.max_steps=2", "train.batch_size=4", "--no-progress"])
    assert code == 0, err
    assert "trained 2 steps" in out and "held-out accuracy" in out
    assert (tmp_path / "cli" / HEAD_FILE).is_file() and (tmp_path / "cli" / "rm_config.yaml").is_file()


def test_eval_steps_without_held_out_pairs_is_refused(world, tiny_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"no data\.eval"):
        make_config(world, tiny_dir("tiny-llava"), tmp_path, "data.eval=null", "train.eval_steps=5")
