"""Preference trainer mechanics on the tiny LLaVA: every loss trains (with its worked-out first loss), the logged
metrics are the batch's, gradient accumulation is exact, and the over-optimisation guard stops a collapsing run."""

from __future__ import annotations

import dataclasses
import gc
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image, ImageDraw

from mmalign.config import apply_overrides, config_from_dict
from mmalign.data.io import write_records
from mmalign.data.records import PreferenceRecord, assistant, user_prompt
from mmalign.errors import ConfigError
from mmalign.losses import LOSSES, PolicyLogps, ReferenceLogps, build_loss
from mmalign.models import load
from mmalign.models.families import GENERIC_VLM
from mmalign.models.logps import sequence_logps
from mmalign.train.callbacks import read_metrics
from mmalign.train.guard import GuardConfig, OverOptimisationGuard
from mmalign.train.pref_batch import PreferenceCollator, row_scorer, score
from mmalign.train.preference import PreferenceConfig, build_trainer, train_preference
from mmalign.train.reference import AdapterReference, ModelReference

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 205, 30)}
SHAPES = ["circle", "square", "star", "triangle"]


def image(colour: str, shape: int) -> Image.Image:
    img = Image.new("RGB", (48, 48), (64, 64, 64))
    box = (6 + 4 * shape, 8, 30 + 4 * shape, 32)
    ImageDraw.Draw(img).ellipse(box, fill=COLOURS[colour]) if shape % 2 == 0 else ImageDraw.Draw(img).rectangle(
        box, fill=COLOURS[colour]
    )
    return img


def pairs(n: int, prefix: str = "p", swap: bool = False) -> list[PreferenceRecord]:
    """n pairs of varied lengths: chosen names the object, rejected adds a hallucinated one (spanned)."""
    out = []
    for i in range(n):
        colour, other = list(COLOURS)[i % 4], list(COLOURS)[(i + 1) % 4]
        shape, extra = SHAPES[i % 4], SHAPES[(i + 2) % 4]
        chosen = f"There is a {'large ' * (i % 3)}{colour} {shape}."
        rejected = f"{chosen[:-1]} and a small {other} {extra}."
        span = [[len(chosen) - 1, len(rejected) - 1]]
        record = PreferenceRecord(
            f"{prefix}-{i}",
            user_prompt("Describe the image."),
            assistant(chosen),
            assistant(rejected),
            [image(colour, i % 4)],
            rejected_spans=span,
        )
        if swap:  # the held-out preference reversed: what the policy learns on train is wrong here
            record = PreferenceRecord(record.id, record.prompt, record.rejected, record.chosen, record.images)
        out.append(record)
    return out


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tiny_dir) -> Path:
    return tiny_dir("tiny-llava")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pref-data")
    files = {"train4": pairs(4), "train8": pairs(8), "eval": pairs(4, "e"), "anti": pairs(4, "a", swap=True)}
    for name, records in files.items():
        write_records(root / f"{name}.jsonl", records)
    return {name: root / f"{name}.jsonl" for name in files}


def make_config(model_dir: Path, train: Path, out: Path, *overrides: str) -> PreferenceConfig:
    base = {
        "model": {"path": str(model_dir)},
        "data": {"train": str(train)},
        "train": {
            "output_dir": str(out),
            "batch_size": 2,
            "grad_accum": 2,
            "max_steps": 2,
            "logging_steps": 1,
            "learning_rate": 1e-3,
            "lr_scheduler": "constant",
        },
    }
    return config_from_dict(PreferenceConfig, apply_overrides(base, list(overrides)), "test")


def live_models(name: str = "LlavaForConditionalGeneration") -> int:
    """Model objects of class ``name`` alive now."""
    gc.collect()
    return sum(type(o).__name__ == name for o in gc.get_objects())


def expected_loss(name: str, model: Any, records: list[PreferenceRecord], loaded: Any) -> float:
    """The loss over all ``records`` as one batch, with the plain forward, policy = reference (step 1)."""
    loss = build_loss(name)
    batch = PreferenceCollator(loaded.collator(mode="train"), loss)(records)
    with torch.no_grad():
        s = score(model, batch, loss.needs_token_weights, sequence_logps)
    c, r = s.chosen, s.rejected
    extra = {"corrupted_chosen": None if s.corrupted is None else s.corrupted.sum}
    if loss.needs_token_weights:
        policy = PolicyLogps.from_token_logps(
            c.token_logps,
            c.token_mask,
            r.token_logps,
            r.token_mask,
            chosen_span_mask=batch.chosen_span_mask.float(),
            rejected_span_mask=batch.rejected_span_mask.float(),
            **extra,
        )
    else:
        policy = PolicyLogps(c.sum, r.sum, c.n_tokens.float(), r.n_tokens.float(), **extra)
    reference = ReferenceLogps(c.sum, r.sum, c.token_logps, r.token_logps, extra["corrupted_chosen"])
    return loss(policy, reference if loss.needs_reference else None).loss.item()


# At step 1 the policy is the reference, so every log-ratio is 0 and the DPO-family losses are known numbers.
AT_START = {
    "sigmoid": math.log(2),  # -log σ(0)
    "cdpo": math.log(2),  # -(1-ε) log σ(0) - ε log σ(0)
    "robust": math.log(2),  # [(1-ε) ln 2 - ε ln 2] / (1 - 2ε)
    "hinge": 1.0,  # max(0, 1 - β·0)
    "ipo": 25.0,  # (0 - 1/(2·0.1))²
    "mdpo": 3 * math.log(2),  # DPO + image term + anchor -log σ(0 - 0), each ln 2
    "ddpo": math.log(2),
}


@pytest.mark.parametrize("preset", ["tiny-llava", "tiny-qwen2-vl"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_trains_two_steps(name, preset, tiny_dir, data, tmp_path):
    model_dir = tiny_dir(preset)
    kind = {"tiny-llava": "LlavaForConditionalGeneration", "tiny-qwen2-vl": "Qwen2VLForConditionalGeneration"}[preset]
    before = live_models(kind)
    config = make_config(model_dir, data["train4"], tmp_path / "run", f"loss.name={name}")
    loaded = load(model_dir)
    start = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    trainer = build_trainer(config, loaded)
    loss = config.build_loss()
    if loss.needs_reference:
        assert isinstance(trainer.reference, ModelReference) and trainer.reference.model is not trainer.model
        assert live_models(kind) - before == 2  # the policy and its frozen copy
    else:
        assert trainer.reference is None
        assert live_models(kind) - before == 1  # reference-free: no second model anywhere
    assert trainer.shares_prefix
    # 4 records, batch 2 × accumulation 2: step 1 sees all of them, so its loss is the whole set's.
    want = expected_loss(name, loaded.model, pairs(4), loaded)
    if name in AT_START:
        assert want == pytest.approx(AT_START[name], abs=1e-5)
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert losses[0] == pytest.approx(want, abs=1e-4)
    assert losses[1] != pytest.approx(losses[0], abs=1e-6)  # the step changed the model
    moved = [n for n, p in loaded.model.named_parameters() if not torch.equal(p.detach(), start[n])]
    assert len(moved) > 50


@pytest.mark.parametrize("preset", ["tiny-qwen2-vl", "tiny-qwen2.5-vl"])
def test_one_dpo_step_on_qwen_changes_every_trainable_parameter(preset, tiny_dir, data, tmp_path):
    model_dir = tiny_dir(preset)
    config = make_config(model_dir, data["train4"], tmp_path / "run", "train.max_steps=1")
    loaded = load(model_dir)
    start = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    trainer = build_trainer(config, loaded)
    assert trainer.shares_prefix and isinstance(trainer.reference, ModelReference)
    # step 1: policy = reference, every log-ratio is 0, so the loss is -log σ(0) = ln 2 (checked on the plain forward)
    assert expected_loss("sigmoid", loaded.model, pairs(4), loaded) == pytest.approx(math.log(2), abs=1e-5)
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert losses == [pytest.approx(math.log(2), abs=1e-5)]
    params = dict(loaded.model.named_parameters())
    moved = {n for n, p in params.items() if not torch.equal(p.detach(), start[n])}
    trainable = {n for n, p in params.items() if p.requires_grad}
    assert moved == trainable and len(moved) > 60  # vision tower, merger, decoder and head all moved


def test_metrics_are_the_batch_means_and_eval_is_held_out(model_dir, data, tmp_path):
    config = make_config(model_dir, data["train4"], tmp_path / "run", f"data.eval={data['eval']}", "train.eval_steps=1")
    loaded = load(model_dir)
    with torch.no_grad():
        start = sequence_logps(loaded.model, loaded.collator(mode="train")(pairs(4)))
    trainer = build_trainer(config, loaded)
    trainer.train()
    rows = [row for row in trainer.state.log_history if "loss" in row]
    first = rows[0]
    for key in (
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "kl/chosen",
    ):
        assert key in first and key in rows[1]
    # Step 1: policy = reference, so rewards, margin and KL are 0 and no pair is (strictly) won.
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6) and first["kl/chosen"] == pytest.approx(0, abs=1e-6)
    assert first["rewards/accuracies"] == 0.0
    assert first["logps/chosen"] == pytest.approx(start.sum[:4].mean().item(), abs=1e-4)
    assert first["logps/rejected"] == pytest.approx(start.sum[4:].mean().item(), abs=1e-4)
    assert rows[1]["rewards/margins"] > 0  # one DPO step widened the training margin
    evals = [row for row in trainer.state.log_history if "eval_loss" in row]
    assert [row["step"] for row in evals] == [1, 2]
    # The last evaluation, recomputed by hand on the held-out pairs with the trained model and the frozen reference.
    with torch.no_grad():
        batch = loaded.collator(mode="train")(pairs(4, "e"))
        policy, ref = sequence_logps(trainer.model, batch), sequence_logps(trainer.reference.model, batch)
    margin = 0.1 * ((policy.sum[:4] - ref.sum[:4]) - (policy.sum[4:] - ref.sum[4:]))
    assert evals[-1]["eval_rewards/margins"] == pytest.approx(margin.mean().item(), abs=1e-4)
    assert evals[-1]["eval_loss"] == pytest.approx(-torch.nn.functional.logsigmoid(margin).mean().item(), abs=1e-4)


@pytest.mark.parametrize(
    ("name", "preset"), [("sigmoid", "tiny-llava"), ("rpo", "tiny-llava"), ("sigmoid", "tiny-qwen2-vl")]
)
def test_gradient_accumulation_is_exact(name, preset, tiny_dir, data, tmp_path):
    """Batch 8 × accumulation 1 takes the same steps as batch 2 × accumulation 4. For RPO the NLL term averages
    over every chosen token of the step (responses here differ in length, so per-micro-batch means would not)."""
    model_dir = tiny_dir(preset)
    runs = []
    for batch, accum in ((8, 1), (2, 4)):
        config = make_config(
            model_dir,
            data["train8"],
            tmp_path / f"run{batch}",
            f"loss.name={name}",
            f"train.batch_size={batch}",
            f"train.grad_accum={accum}",
            "train.max_steps=3",
        )
        loaded = load(model_dir)
        trainer = build_trainer(config, loaded)
        trainer.train()
        losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
        runs.append((losses, {n: p.detach().clone() for n, p in loaded.model.named_parameters()}))
    (losses_a, weights_a), (losses_b, weights_b) = runs
    assert losses_a == pytest.approx(losses_b, abs=1e-5)
    assert losses_a[2] != pytest.approx(losses_a[0], abs=1e-3)
    for n, w in weights_a.items():
        torch.testing.assert_close(w, weights_b[n], atol=2e-5, rtol=0, msg=n)


def test_lora_trains_with_the_adapter_as_reference(model_dir, data, tmp_path):
    before = live_models()
    config = make_config(
        model_dir,
        data["train4"],
        tmp_path / "run",
        "model.lora.enabled=true",
        "model.lora.r=4",
        "model.lora.dropout=0.0",
    )
    loaded = load(model_dir, **config.model.load_options())
    trainer = build_trainer(config, loaded)
    assert isinstance(trainer.reference, AdapterReference)
    assert live_models() - before == 1  # no second copy of the weights
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)  # a fresh adapter is a no-op: policy = reference
    assert losses[1] < losses[0]


def test_guard_by_hand():
    guard = OverOptimisationGuard(GuardConfig(margin_drop=0.5, max_kl=2.0, patience=2))
    seen = [(1, 0.2, 0.1), (2, 0.9, 0.3), (3, 0.3, 0.5), (4, 0.6, 0.6), (5, 0.35, 1.0), (6, 0.1, 1.0)]
    reasons = [guard.check({"eval_rewards/margins": m, "eval_kl/chosen": kl}, step) for step, m, kl in seen]
    # best 0.9 at step 2; 0.3 is 0.6 below (strike 1); 0.6 is only 0.3 below (reset); 0.35 (strike 1); 0.1 (strike 2)
    assert reasons[:5] == [None] * 5
    assert "held-out reward margin 0.1 is 0.8 below its best 0.9 (step 2" in reasons[5]
    kl_guard = OverOptimisationGuard(GuardConfig(max_kl=0.5))
    assert kl_guard.check({"eval_kl/chosen": 0.4}, 1) is None
    assert "KL to the reference 0.7 is above guard.max_kl=0.5" in kl_guard.check({"eval_kl/chosen": 0.7}, 2)


def test_guard_stops_a_run_whose_held_out_margin_collapses(model_dir, data, tmp_path):
    # Held-out pairs are the training preference reversed: the better the policy fits train, the lower their margin.
    config = make_config(
        model_dir,
        data["train4"],
        tmp_path / "run",
        f"data.eval={data['anti']}",
        "train.eval_steps=1",
        "train.max_steps=12",
        "guard.margin_drop=0.05",
    )
    lines: list[str] = []
    result = train_preference(config, progress=False, write=lines.append)
    assert result.global_step < 12
    assert result.guard_stop is not None and "held-out reward margin" in result.guard_stop
    assert any(line == result.guard_stop for line in lines)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["guard"] for r in rows if "guard" in r] == [result.guard_stop]
    margins = [r["eval_rewards/margins"] for r in rows if "eval_rewards/margins" in r]
    assert margins[-1] < max(margins) - 0.05


@pytest.mark.parametrize("preset", ["tiny-llava", "tiny-qwen2-vl", "tiny-qwen2.5-vl"])
def test_shared_prefix_and_plain_forward_train_alike(preset, tiny_dir, data, tmp_path, monkeypatch):
    """mDPO (three rows a pair, the corrupted one with its own image) through both forwards: same losses."""
    model_dir = tiny_dir(preset)
    runs = {}
    for share in (True, False):
        config = make_config(
            model_dir, data["train4"], tmp_path / f"run{share}", "loss.name=mdpo", f"share_prefix={str(share).lower()}"
        )
        trainer = build_trainer(config, load(model_dir))
        assert trainer.shares_prefix is share
        trainer.train()
        runs[share] = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert runs[True] == pytest.approx(runs[False], abs=1e-4)
    # Without mmalign.models.prefix (an older install), share_prefix falls back to the plain forward.
    monkeypatch.setitem(sys.modules, "mmalign.models.prefix", None)
    assert row_scorer(True) == (sequence_logps, False)


def test_share_prefix_refuses_a_family_it_cannot_split(model_dir, data, tmp_path):
    loaded = load(model_dir)
    config = make_config(model_dir, data["train4"], tmp_path / "run", "share_prefix=true")
    with pytest.raises(ConfigError, match="cannot be split by row; set share_prefix=false"):
        build_trainer(config, dataclasses.replace(loaded, family=GENERIC_VLM))
    plain = make_config(model_dir, data["train4"], tmp_path / "run", "share_prefix=false")
    assert build_trainer(plain, dataclasses.replace(loaded, family=GENERIC_VLM)).shares_prefix is False
    auto = make_config(model_dir, data["train4"], tmp_path / "run")  # the default: auto picks the plain forward
    assert auto.share_prefix == "auto"
    build_trainer(auto, dataclasses.replace(loaded, family=GENERIC_VLM))


def test_share_prefix_takes_auto_true_or_false(model_dir, data, tmp_path):
    with pytest.raises(ConfigError, match=r"share_prefix.*must be bool \| 'auto'"):
        make_config(model_dir, data["train4"], tmp_path / "run", "share_prefix=sometimes")
    checkpointed = ("model.gradient_checkpointing=true",)
    with pytest.raises(ConfigError, match=r"cannot run with model\.gradient_checkpointing"):
        make_config(model_dir, data["train4"], tmp_path / "run", "share_prefix=true", *checkpointed)
    make_config(model_dir, data["train4"], tmp_path / "run", *checkpointed)  # auto: the plain forward then
