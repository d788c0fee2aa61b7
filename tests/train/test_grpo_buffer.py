"""Rollouts reused for several updates (grpo.num_iterations μ, grpo.steps_per_generation): the second use of a
generation sees the same completions and the same old log-probs, and its loss is GRPOLoss with them; the schedule
is TRL's RepeatSampler; TRL 1.16's own GRPOTrainer, its generation stubbed with the same completions, logs the same
per-step losses; μ = 1 is what it was; resume is as documented."""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import pytest
import torch

from mmalign.config import apply_overrides, config_from_dict
from mmalign.data.records import user_prompt
from mmalign.errors import ConfigError
from mmalign.losses.advantages import group_advantages
from mmalign.losses.grpo import RolloutLogps
from mmalign.models import load, sequence_logps
from mmalign.models.examples import Example
from mmalign.models.rollout import SamplingOptions, sample_groups
from mmalign.train.grpo import GRPOConfig, build_trainer, train_grpo
from mmalign.train.grpo_buffer import GenerationBuffer, RepeatSampler
from mmalign.train.prompts import Prompt, PromptDataset
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("grpo-buffer") / "world"
    generate_world(out, WorldConfig(train_scenes=24, val_scenes=4, test_scenes=2))
    return out


def make_config(world: Path, model: Path, out: Path, *overrides: str) -> GRPOConfig:
    base = {
        "model": {"path": str(model)},
        "data": {"train": str(world / "train" / "scenes.jsonl")},
        "train": {"output_dir": str(out), "batch_size": 2, "max_steps": 2, "logging_steps": 1, "learning_rate": 1e-2},
        "grpo": {"group_size": 4, "max_new_tokens": 6},
    }
    return config_from_dict(GRPOConfig, apply_overrides(base, list(overrides)), "test")


def even_tokens(completion_ids, **_):
    """The share of a completion's token ids that are even."""
    return [sum(t % 2 == 0 for t in ids) / max(len(ids), 1) for ids in completion_ids]


class RecordingLoss:
    """The config's GRPOLoss, noting what each call got."""

    def __init__(self, loss):
        self.loss, self.calls = loss, []

    def __getattr__(self, name):
        return getattr(self.loss, name)

    def __call__(self, logps, advantages, num_tokens=None):
        self.calls.append((logps, advantages))
        return self.loss(logps, advantages, num_tokens)


def test_the_second_use_reuses_completions_and_old_logps_and_is_grpo_loss_with_them(world, tiny_dir, tmp_path):
    model_dir = tiny_dir("tiny-llava")
    config = make_config(world, model_dir, tmp_path / "run", "grpo.num_iterations=2", "loss.beta=0.1")
    trainer = build_trainer(config, load(model_dir), reward_funcs=[even_tokens])
    made = []
    sample = trainer.rollouts
    trainer.rollouts = lambda *a, **kw: made.append(sample(*a, **kw)) or made[-1]
    trainer.loss = recording = RecordingLoss(config.loss)
    batches = iter(trainer.get_train_dataloader())
    first, second, third = next(batches), next(batches), next(batches)
    ids = [[p.id for p in b["prompts"]] for b in (first, second, third)]
    assert [b["use"] for b in (first, second, third)] == [0, 1, 0] and ids[0] == ids[1] != ids[2]

    model = trainer.model.train()
    step = trainer.batch_loss(model, first)
    rollouts = made[0]
    batch, width = rollouts.batch(), rollouts.completion_ids.shape[1]
    with torch.no_grad():  # the oracle's old log-probs: the policy before any update, plain forward, eval mode
        old = sequence_logps(model.eval(), batch, token_level=True).token_logps[:, :width]
    model.train()
    step.loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.05).step()  # an update between the two uses
    model.zero_grad(set_to_none=True)
    step = trainer.batch_loss(model, second)
    step.loss.backward()
    grad = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    assert len(made) == 1 and trainer.buffer.generations == 1  # sampled once for both uses
    (use0, _), (use1, _) = recording.calls
    assert use1.old is not None and torch.equal(use0.old, use1.old)  # the same old log-probs, captured
    assert torch.allclose(use0.old, old, atol=1e-5)  # and they are the policy's before the update
    assert torch.allclose(use0.policy.detach(), use0.old, atol=1e-5)  # first use: ratio 1
    assert torch.equal(use0.reference, use1.reference)  # the reference's, buffered too

    # the oracle for the second use: rewards by hand, advantages, the updated policy's log-probs
    ids_list = [r[m.bool()].tolist() for r, m in zip(rollouts.completion_ids, rollouts.completion_mask, strict=True)]
    advantages = group_advantages(torch.tensor(even_tokens(ids_list)), 4).advantages
    policy = sequence_logps(model, batch, token_level=True).token_logps[:, :width]
    with torch.no_grad():
        reference = sequence_logps(load(model_dir).model.eval(), batch, token_level=True).token_logps[:, :width]
    mask = rollouts.completion_mask.float()[:, :width]
    expected = config.loss(RolloutLogps(policy, mask, old, reference), advantages)
    assert step.loss.item() == pytest.approx(expected.loss.item(), abs=1e-5)
    expected.loss.backward()
    for name, p in model.named_parameters():
        if name in grad:
            assert torch.allclose(grad[name], p.grad, atol=1e-5), name
    assert step.metrics["clip_ratio/region_mean"] == pytest.approx(expected.metrics["clip_ratio/region_mean"])
    assert step.metrics["clip_ratio/region_mean"] > 0  # the update moved the ratio past the clip on some tokens


def test_the_schedule_is_trls_repeat_sampler_and_old_logps_rule():
    from trl.trainer.grpo_trainer import RepeatSampler as TRLRepeatSampler

    n, b, steps, mu = 13, 2, 3, 2  # generations of 6 prompts (the 13th is dropped), each used S·μ = 6 times
    ours = [(i // n, i % n) for i in RepeatSampler(range(n), n, b * steps, 1, steps * mu)]
    theirs = list(
        TRLRepeatSampler(range(n), mini_repeat_count=1, batch_size=b * steps, repeat_count=steps * mu, shuffle=False)
    )
    assert [i for _, i in ours] == theirs and len(ours) == 2 * 6 * 6
    assert [use for use, _ in ours[::6]] == [0, 1, 2, 3, 4, 5] * 2  # each dataloader batch: one use of a generation
    # TRL computes old log-probs when grad_accum % (S·μ) != 0: an update may fall between sampling and a use
    assert GenerationBuffer(1, 2, 4, b).needs_old is False  # 2 micro-batches a generation, 4 a step: never stale
    assert GenerationBuffer(2, 2, 4, b).needs_old is False  # S·μ = 4 = grad_accum: all uses in one step
    assert GenerationBuffer(2, 1, 1, b).needs_old is True
    assert GenerationBuffer(1, 3, 2, b).needs_old is True  # a generation straddles optimiser steps


def scene_prompts(n: int) -> list[Prompt]:
    from mmalign.world import render, sample_scene

    rng, cfg = random.Random(0), WorldConfig(image_size=48)
    images = [render(sample_scene(rng, cfg, f"s{i}"), 48) for i in range(n)]
    return [Prompt(f"s{i}", user_prompt("Describe the image.", 1), [im]) for i, im in enumerate(images)]


@pytest.mark.parametrize(("grad_accum", "loss_type", "temperature"), [(1, "grpo", 1.0), (2, "dapo", 0.7)])
def test_per_step_losses_equal_trl_grpo_trainer_with_num_iterations_2(
    tiny_dir, tmp_path, grad_accum, loss_type, temperature
):
    """Both trainers from the same weights, SGD, 4 optimiser steps; TRL's generation and ours return the same
    completions (sampled beforehand), so what differs is only how each buffers, reuses and scores them. With
    grad_accum 2 a generation is 2 micro-batches (TRL shuffles completions across them, we keep groups; the step
    total of grpo's loss (equal rows per micro-batch) and of dapo's (a sum over the generation's tokens) is the same
    either way). At temperature 0.7 both score every log-prob (old, current) on the logits divided by it."""
    from datasets import Dataset
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer as TRLTrainer

    model_dir, b, g, steps = tiny_dir("tiny-llava"), 2, 4, 4
    per_generation = b * grad_accum
    prompts = scene_prompts(steps * grad_accum * b // 2)
    loaded = load(model_dir)
    generations = [
        sample_groups(loaded, [Example(p.id, p.prompt, p.images) for p in chunk], g, SamplingOptions(6), seed=k)
        for k, chunk in enumerate(prompts[i : i + per_generation] for i in range(0, len(prompts), per_generation))
    ]
    for rollouts in generations:  # lengths 2 … 6 (the random model rarely ends early): dapo's denominator matters
        keep = torch.arange(6).unsqueeze(0) < 2 + torch.arange(len(rollouts)).unsqueeze(1) % 5
        rollouts.completion_mask = rollouts.completion_mask * keep
        rollouts.completion_ids = rollouts.completion_ids.masked_fill(~rollouts.completion_mask.bool(), 0)
    train = {"max_steps": steps, "batch_size": b, "grad_accum": grad_accum, "learning_rate": 0.05}
    train |= {"output_dir": str(tmp_path / "ours"), "lr_scheduler": "constant", "max_grad_norm": 1.0}
    config = config_from_dict(
        GRPOConfig,
        {
            "model": {"path": str(model_dir)},
            "data": {"train": "in-memory"},
            "train": train | {"logging_steps": 1},
            "loss": {"loss_type": loss_type, "beta": 0.0},
            "grpo": {"group_size": g, "max_new_tokens": 6, "num_iterations": 2, "temperature": temperature},
        },
    )
    ours = build_trainer(
        config, load(model_dir), reward_funcs=[even_tokens], sets={"train": PromptDataset(prompts, tmp_path, "x")},
        optim="sgd", train_sampling_strategy="sequential", use_cpu=True,
    )  # fmt: skip
    calls: list[list[str]] = []
    ours.rollouts = lambda model, chunk, root, seed=None: (
        calls.append([p.id for p in chunk]) or generations[len(calls) - 1]
    )
    ours.train()

    def their_generation(prompt_ids, images, fields, n):
        mine = generations[len(their_calls)]
        their_calls.append(prompt_ids)
        rows = mine.prompt_index.tolist()
        assert prompt_ids == [mine.prompts.input_ids[r, : mine.prompts.prompt_lengths[r]].tolist() for r in rows]
        return [r[m.bool()].tolist() for r, m in zip(mine.completion_ids, mine.completion_mask, strict=True)], None

    their_calls: list = []
    question = [{"role": "user", "content": "Describe the image."}]
    trl = TRLTrainer(
        model=load(model_dir).model,
        reward_funcs=[even_tokens],
        train_dataset=Dataset.from_list([{"prompt": question, "image": p.images[0]} for p in prompts]),
        processing_class=loaded.processor,
        args=TRLConfig(
            output_dir=str(tmp_path / "trl"), max_steps=steps, per_device_train_batch_size=b * g,
            gradient_accumulation_steps=grad_accum, num_generations=g, num_iterations=2, max_completion_length=6,
            learning_rate=0.05, lr_scheduler_type="constant", max_grad_norm=1.0, beta=0.0, loss_type=loss_type,
            optim="sgd", bf16=False, fp16=False, shuffle_dataset=False, logging_steps=1, save_strategy="no",
            temperature=temperature,
            report_to=[], use_cpu=True, disable_tqdm=True,
        ),
    )  # fmt: skip
    trl._generate_single_turn = their_generation
    trl.train()

    assert len(calls) == len(their_calls) == len(generations) == 2  # one generation every 2 optimiser steps
    mine_rows = [r for r in ours.state.log_history if "loss" in r and "train_loss" not in r]
    their_rows = [r for r in trl.state.log_history if "loss" in r and "train_loss" not in r]
    assert len(mine_rows) == len(their_rows) == steps
    for mine, theirs in zip(mine_rows, their_rows, strict=True):
        # the clip metrics are means over micro-batches: equal where a step is one micro-batch (TRL's hold other
        # completions than ours at grad_accum 2, so their means differ a little there)
        same = ("clip_ratio/region_mean", "clip_ratio/low_mean", "clip_ratio/high_mean") if grad_accum == 1 else ()
        for key in ("loss", "grad_norm", *same):
            assert mine[key] == pytest.approx(theirs[key], abs=1e-5), (mine["step"], key)
    assert mine_rows[1]["clip_ratio/region_mean"] > 0  # the second use is off-policy, and clipped somewhere


MAIN_LOSSES = [4.22199555316638e-08, 0.0025868515949696302, -0.047560762614011765]
"""train grpo on main (7ff2109) before num_iterations existed, the run of the test below: per-step losses (at
temperature 1, where the tempered log-probs of the update, added since, change nothing)."""
MAIN_REWARDS = [0.5000000298023224, 0.5208333134651184, 0.4479166716337204]


def test_one_iteration_is_the_unbuffered_step_of_before(world, tiny_dir, tmp_path):
    model_dir = tiny_dir("tiny-llava")
    overrides = ("train.max_steps=3", "train.grad_accum=2", "train.lr_scheduler=constant", "grpo.temperature=1.0")
    overrides += ("loss.loss_type=bnpo", "loss.beta=0.05", "grpo.steps_per_generation=2")
    config = make_config(world, model_dir, tmp_path / "run", *overrides)
    assert build_trainer(config, load(model_dir)).buffer is None  # μ = 1, S = grad_accum: nothing buffered
    train_grpo(config, reward_funcs=[even_tokens], progress=False, write=lambda _: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "reward" in r]
    assert [r["loss"] for r in rows] == pytest.approx(MAIN_LOSSES, rel=1e-6, abs=1e-12)
    assert [r["reward"] for r in rows] == pytest.approx(MAIN_REWARDS, rel=1e-6)


def test_resume_at_a_generation_start_samples_alike_and_inside_one_resamples(world, tiny_dir, tmp_path, caplog):
    model_dir = tiny_dir("tiny-llava")
    run = tmp_path / "run"
    options = ("grpo.num_iterations=2", "train.save_steps=1", "train.max_steps=3", "train.save_total_limit=null")
    lines: list[str] = []
    train_grpo(
        make_config(world, model_dir, run, *options), reward_funcs=[even_tokens], progress=False, write=lines.append
    )
    reuse = "rollouts reused: generations of 1 × 2 prompts, each used μ=2 times, 2 optimiser steps a generation"
    assert reuse + " (old log-probs kept)" in lines[0]

    def resumed(keep: int) -> dict:
        out = tmp_path / f"from-{keep}"
        shutil.copytree(run, out)
        for later in range(keep + 1, 4):
            shutil.rmtree(out / f"checkpoint-{later}")
        config = make_config(world, model_dir, out, *options, "train.resume=true")
        train_grpo(config, reward_funcs=[even_tokens], progress=False, write=lambda _: None)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [r for r in rows if "reward" in r][-1]

    whole = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    step3 = [r for r in whole if "reward" in r][-1]
    with caplog.at_level(logging.WARNING, logger="mmalign.train.grpo_buffer"):
        again = resumed(2)  # step 3 starts a generation: sampled as the uninterrupted run sampled it
    assert again["step"] == 3 and again["loss"] == pytest.approx(step3["loss"], abs=1e-6)
    assert again["reward"] == step3["reward"] and not [
        r for r in caplog.records if r.name == "mmalign.train.grpo_buffer"
    ]
    with caplog.at_level(logging.WARNING, logger="mmalign.train.grpo_buffer"):
        resumed(1)  # step 2 is the generation's second use: sampled again, and said so
    assert any("resuming inside a generation (use 2 of 2)" in r.getMessage() for r in caplog.records)


def test_bad_options_fail_clearly(world, tiny_dir, tmp_path):
    model_dir = tiny_dir("tiny-llava")
    with pytest.raises(ConfigError, match="num_iterations"):
        make_config(world, model_dir, tmp_path, "grpo.num_iterations=0")
    with pytest.raises(ConfigError, match="steps_per_generation"):
        make_config(world, model_dir, tmp_path, "grpo.steps_per_generation=0")
    with pytest.raises(ConfigError, match=r"data.limit 3 is fewer prompts than one generation: .* = 4"):
        make_config(world, model_dir, tmp_path, "grpo.steps_per_generation=2", "data.limit=3")
    config = make_config(world, model_dir, tmp_path, "grpo.num_iterations=2", "grpo.steps_per_generation=2")
    trainer = build_trainer(config, load(model_dir), sets={"train": PromptDataset(scene_prompts(3), tmp_path, "few")})
    with pytest.raises(ConfigError, match="few: 3 prompts, fewer than one generation"):
        trainer.get_train_dataloader()
