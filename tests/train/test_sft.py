"""SFT trainer mechanics on the tiny LLaVA: the loss by hand, what one step changes, gradient accumulation,
exact resume, and LoRA saving (adapter + merged model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from mmalign.config import config_from_dict
from mmalign.models import load
from mmalign.train.callbacks import read_metrics
from mmalign.train.sft import SFTConfig, build_trainer, response_nll, train_sft
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sft") / "world"
    generate_world(out, WorldConfig(train_scenes=40, val_scenes=8, test_scenes=8))
    return out


@pytest.fixture(scope="module")
def model_dir(tiny_dir) -> Path:
    return tiny_dir("tiny-llava")


def make_config(world: Path, model_dir: Path, out: Path, lora: bool = False, **train: Any) -> SFTConfig:
    data = {
        "model": {"path": str(model_dir), "lora": {"enabled": lora, "r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train": str(world / "train" / "sft.jsonl"), "root": str(world)},
        "train": {"output_dir": str(out), "batch_size": 4, "learning_rate": 1e-3, "logging_steps": 1, **train},
    }
    return config_from_dict(SFTConfig, data, "test")


def test_response_nll_by_hand():
    # Position t predicts label t + 1. Labels [-100, 1, 0]: position 0 predicts 1, position 1 predicts 0.
    # Position 0 logits [0, ln 3]: p(1) = 3/4, nll = ln(4/3) = 0.287682. Position 1 logits [0, 0]: nll = ln 2.
    logits = torch.tensor([[[0.0, torch.log(torch.tensor(3.0))], [0.0, 0.0], [5.0, -5.0]]])
    labels = torch.tensor([[-100, 1, 0]])
    expected_sum = 0.287682 + 0.693147
    assert response_nll(logits, labels).item() == pytest.approx(expected_sum / 2, abs=1e-5)
    # Under gradient accumulation the divisor is every labelled token of the accumulated batch.
    assert response_nll(logits, labels, num_items=4).item() == pytest.approx(expected_sum / 4, abs=1e-5)
    # Nothing labelled: zero, not NaN.
    assert response_nll(logits, torch.full((1, 3), -100)).item() == 0.0


def _one_step(config: SFTConfig, model_dir: Path) -> tuple[set[str], set[str], Any]:
    loaded = load(model_dir, **config.model.load_options())
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    trainer, _ = build_trainer(config, loaded, [])
    trainer.train()
    params = dict(loaded.model.named_parameters())
    changed = {n for n, p in params.items() if not torch.equal(p.detach(), before[n])}
    trainable = {n for n, p in params.items() if p.requires_grad}
    return changed, trainable, trainer


def test_one_step_changes_every_trainable_parameter(world, model_dir, tmp_path):
    config = make_config(world, model_dir, tmp_path / "run", max_steps=1)
    changed, trainable, _ = _one_step(config, model_dir)
    assert changed <= trainable
    # LLaVA reads the vision tower's last hidden state, before CLIP's post_layernorm (which only feeds the pooled
    # output): that layer is outside the graph, gets no gradient and rightly stays put. Everything else moves.
    unused = {n for n in trainable if ".post_layernorm." in n}
    assert len(unused) == 2
    assert trainable - changed == unused
    assert len(changed) > 60


@pytest.mark.parametrize("preset", ["tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-idefics3"])
def test_one_step_changes_every_trainable_parameter_of_the_other_families(world, preset, tiny_dir, tmp_path):
    model_dir = tiny_dir(preset)
    changed, trainable, _ = _one_step(make_config(world, model_dir, tmp_path / "run", max_steps=1), model_dir)
    assert changed == trainable and len(changed) > 60  # these towers feed every layer they have to the model


@pytest.mark.parametrize("preset", ["tiny-llava", "tiny-qwen2-vl", "tiny-qwen2.5-vl"])
def test_one_lora_step_changes_only_adapters(world, preset, tiny_dir, tmp_path):
    model_dir = tiny_dir(preset)
    config = make_config(world, model_dir, tmp_path / "run", lora=True, max_steps=1)
    changed, trainable, _ = _one_step(config, model_dir)
    assert trainable and all("lora_" in n for n in trainable)
    assert changed <= trainable  # no base weight moved
    # LoRA's B starts at zero (Hu et al., 2021, Sec. 4.1), so the first step's gradient reaches B only;
    # every B moves, and A starts moving from the second step.
    lora_b = {n for n in trainable if "lora_B" in n}
    assert lora_b and changed == lora_b


@pytest.mark.parametrize("preset", ["tiny-llava", "tiny-qwen2-vl"])
def test_gradient_accumulation_matches_one_big_batch(world, preset, tiny_dir, tmp_path):
    """Batch 8 x accumulation 1 and batch 2 x accumulation 4 see the same 8 records and take the same step (Qwen:
    8 images of their own sizes in one forward, or 2 by 2, each with its own grid and M-RoPE positions)."""
    model_dir = tiny_dir(preset)
    logs = []
    for batch, accum in ((8, 1), (2, 4)):
        config = make_config(world, model_dir, tmp_path / f"b{batch}", max_steps=1, batch_size=batch, grad_accum=accum)
        _, _, trainer = _one_step(config, model_dir)
        logs.append(next(row for row in trainer.state.log_history if "loss" in row))
    big, small = logs
    assert small["loss"] == pytest.approx(big["loss"], rel=1e-5)
    assert small["grad_norm"] == pytest.approx(big["grad_norm"], rel=1e-4)


class Crash(Exception):
    pass


class CrashAfterSave(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Crash(f"stopped after saving step {self.step}")


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_resume_continues_identically(world, model_dir, tmp_path, lora):
    """4 steps straight = 2 steps, a crash, and 2 more resumed from checkpoint-2: same losses, same weights."""
    options = {"lora": lora, "max_steps": 4, "save_steps": 2, "seed": 3, "warmup_steps": 1}
    straight = train_sft(make_config(world, model_dir, tmp_path / "a", **options), progress=False, write=lambda s: None)

    out = tmp_path / "b"
    with pytest.raises(Crash):
        train_sft(make_config(world, model_dir, out, **options), progress=False, callbacks=[CrashAfterSave(2)])
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (out / "model.safetensors").exists()
    resumed = train_sft(make_config(world, model_dir, out, resume=True, **options), progress=False)
    assert resumed.resumed_from == out / "checkpoint-2"
    assert resumed.global_step == 4 and resumed.examples == 2 * 4

    losses_a = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if "loss" in r}
    rows_b = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4]  # the file describes one run, no duplicated steps
    assert {r["step"]: r["loss"] for r in rows_b} == pytest.approx(losses_a, rel=1e-6)
    weights_a = load_file(straight.output_dir / "model.safetensors")
    weights_b = load_file(out / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    for name, value in weights_a.items():
        torch.testing.assert_close(weights_b[name], value, rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("preset", ["tiny-llava", "tiny-qwen2-vl"])
def test_lora_saves_adapter_and_merged_model(world, preset, tiny_dir, tmp_path):
    from peft import PeftModel

    model_dir = tiny_dir(preset)

    config = make_config(world, model_dir, tmp_path / "lora", lora=True, max_steps=3, learning_rate=1e-2)
    result = train_sft(config, progress=False, write=lambda s: None)
    assert result.adapter_dir == tmp_path / "lora" / "adapter"
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert result.model_dir == tmp_path / "lora"
    merged = load(result.model_dir)
    with_adapter = PeftModel.from_pretrained(load(model_dir).model, result.adapter_dir).eval()
    record = {
        "id": "x",
        "images": ["images/test/000000.png"],
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}],
        "completion": [{"role": "assistant", "content": "There is a red circle."}],
    }
    batch = merged.collator(image_root=world)([record])
    again = load(model_dir).collator(image_root=world)([record])  # the saved processor encodes as the original
    assert batch.extras.keys() == again.extras.keys() and torch.equal(batch.input_ids, again.input_ids)
    assert all(torch.equal(value, again.extras[key]) for key, value in batch.extras.items())
    with torch.no_grad():
        merged_logits = merged.model(**batch.model_inputs()).logits
        adapter_logits = with_adapter(**batch.model_inputs()).logits
        base_logits = load(model_dir).model(**batch.model_inputs()).logits
    torch.testing.assert_close(merged_logits, adapter_logits, rtol=1e-4, atol=1e-4)
    assert (merged_logits - base_logits).abs().max() > 1e-3  # the adapters did something
    saved = json.loads((tmp_path / "lora" / "train_result.json").read_text())
    assert saved["adapter_dir"] == str(result.adapter_dir) and saved["global_step"] == 3


def test_lora_initialisation_follows_train_seed_not_what_ran_before(world, model_dir, tmp_path):
    """The adapter's random A matrices are drawn after train.seed is set: two runs whose processes were in
    different random states before give the same adapter (and another seed another one)."""
    adapters = []
    for before, seed in ((1, 3), (2, 3), (1, 4)):
        torch.manual_seed(before)
        torch.rand(100)  # some other work consumed random numbers
        out = tmp_path / f"run-{before}-{seed}"
        config = make_config(world, model_dir, out, lora=True, max_steps=1, seed=seed, learning_rate=1e-12)
        result = train_sft(config, progress=False, write=lambda s: None)
        adapters.append(load_file(result.adapter_dir / "adapter_model.safetensors"))
    a_keys = [k for k in adapters[0] if "lora_A" in k]
    assert a_keys
    assert all(torch.equal(adapters[0][k], adapters[1][k]) for k in a_keys)
    assert not all(torch.equal(adapters[0][k], adapters[2][k]) for k in a_keys)
