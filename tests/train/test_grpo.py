"""Online RL on the trainer core: prompts from a world split, the step's loss is losses.grpo on the policy's and
the reference's log-probs of the sampled tokens with advantages from the rewards, rewards follow TRL's
reward_funcs convention, a run logs TRL's metrics, saves a loadable model and raises a simple reward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmalign.config import apply_overrides, config_from_dict
from mmalign.errors import ConfigError
from mmalign.losses.advantages import combine_rewards, group_advantages
from mmalign.losses.grpo import RolloutLogps
from mmalign.models import load, sequence_logps
from mmalign.models.examples import Example
from mmalign.models.rollout import sample_groups
from mmalign.train.grpo import GRPOConfig, build_trainer, train_grpo
from mmalign.train.prompts import read_prompts
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("grpo") / "world"
    generate_world(out, WorldConfig(train_scenes=24, val_scenes=4, test_scenes=2))
    return out


def make_config(world: Path, model: Path, out: Path, *overrides: str) -> GRPOConfig:
    base = {
        "model": {"path": str(model)},
        "data": {"train": str(world / "train" / "scenes.jsonl"), "eval": str(world / "val" / "scenes.jsonl")},
        "train": {"output_dir": str(out), "batch_size": 2, "max_steps": 2, "logging_steps": 1, "learning_rate": 1e-3},
        "grpo": {"group_size": 4, "max_new_tokens": 6},
    }
    return config_from_dict(GRPOConfig, apply_overrides(base, list(overrides)), "test")


def says_red(prompts, completions, **_):
    """1 when the completion names red, 0 otherwise; None (cannot score) for an empty completion."""
    return [None if not c[0]["content"] else float("red" in c[0]["content"]) for c in completions]


def shortness(prompts, completions, completion_ids, objects, **_):
    assert len(objects) == len(completions) and all(isinstance(o, list) for o in objects)  # a column, per row
    return [-len(ids) / 6 for ids in completion_ids]


def test_world_split_prompts_carry_the_scene_truth(world):
    prompts = read_prompts(world / "train" / "scenes.jsonl", question="What is in the image?")
    scenes = [json.loads(line) for line in (world / "train" / "scenes.jsonl").read_text().splitlines()]
    assert len(prompts) == 24 and prompts.root == world
    first = prompts[0]
    assert first.id == scenes[0]["id"] and first.images == [scenes[0]["image"]]
    assert first.columns["objects"] == scenes[0]["present"] and first.columns["scene"] == scenes[0]
    assert first.columns["answer"].startswith("There is")
    assert first.prompt[0]["content"][-1]["text"] == "What is in the image?"


def test_step_loss_is_losses_grpo_on_separately_computed_log_probs(world, tiny_dir, tmp_path):
    config = make_config(world, tiny_dir("tiny-llava"), tmp_path / "run", "loss.beta=0.1", "loss.loss_type=grpo")
    loaded = load(tiny_dir("tiny-llava"))
    trainer = build_trainer(config, loaded, reward_funcs=[says_red, shortness])
    prompts = [trainer.train_dataset[i] for i in range(2)]
    items = [Example(p.id, p.prompt, p.images) for p in prompts]
    rollouts = sample_groups(loaded, items, 4, config.grpo.sampling(), seed=5, image_root=world)
    trainer.rollouts = lambda model, prompts, root: rollouts  # the same completions for the step and the oracle
    model = trainer.model.train()
    step = trainer.batch_loss(model, {"prompts": prompts, "root": world})
    step.loss.backward()
    grad = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    # the oracle: rewards by hand, TRL-style advantages, log-probs from the plain forward
    texts = rollouts.texts
    red = torch.tensor([float("nan") if not t else float("red" in t) for t in texts])
    short = -rollouts.completion_mask.sum(-1).float() / 6
    advantages = group_advantages(combine_rewards(torch.stack([red, short], 1)), 4).advantages
    batch = rollouts.batch()
    policy = sequence_logps(model, batch, token_level=True).token_logps
    with torch.no_grad():
        reference = sequence_logps(load(tiny_dir("tiny-llava")).model.eval(), batch, token_level=True).token_logps
    width = rollouts.completion_ids.shape[1]
    policy, reference = policy[:, :width], reference[:, :width]
    mask = rollouts.completion_mask.float()[:, : policy.shape[1]]
    expected = config.loss(RolloutLogps(policy, mask, None, reference), advantages)
    assert step.loss.item() == pytest.approx(expected.loss.item(), abs=1e-5)
    expected.loss.backward()
    for name, p in model.named_parameters():
        if name in grad:
            assert torch.allclose(grad[name], p.grad, atol=1e-5), name
    assert step.metrics["reward"] == pytest.approx(float(torch.nanmean(combine_rewards(torch.stack([red, short], 1)))))
    assert step.metrics["completions/mean_length"] == pytest.approx(rollouts.completion_mask.sum(-1).float().mean())
    assert "kl" in step.metrics and "rewards/says_red/mean" in step.metrics and step.weight == 2


def test_a_run_logs_trl_metrics_saves_and_raises_a_simple_reward(world, tiny_dir, tmp_path):
    model = tiny_dir("tiny-llava")

    def even_tokens(prompts, completions, completion_ids, **_):
        """The share of the completion's token ids that are even: about 0.5 for the random model."""
        return [sum(t % 2 == 0 for t in ids) / max(len(ids), 1) for ids in completion_ids]

    config = make_config(
        world, model, tmp_path / "run", "train.max_steps=30", "train.learning_rate=1e-2", "train.eval_steps=30",
        "grpo.temperature=1.5", "train.lr_scheduler=constant", "train.eval_on_start=true",
    )  # fmt: skip
    result = train_grpo(config, reward_funcs=[even_tokens], progress=False, write=lambda _: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "reward" in r and "eval_reward" not in r]
    assert len(train_rows) == 30
    for key in ("rewards/even_tokens/mean", "frac_reward_zero_std", "completions/mean_length", "clip_ratio/low_mean"):
        assert key in train_rows[0], key
    first, last = [sum(r["reward"] for r in rows) / 3 for rows in (train_rows[:3], train_rows[-3:])]
    assert first < 0.65 and last > 0.9, (first, last)  # the policy learned to favour even token ids (seeded run)
    assert result.eval_metrics["eval_reward"] > 0.9  # on held-out prompts too
    start = [r for r in rows if "eval_reward" in r and r["step"] == 0]  # train.eval_on_start: the curve's step 0
    assert len(start) == 1 and start[0]["eval_reward"] < 0.65
    reloaded = load(result.model_dir)
    assert reloaded.model.config.model_type == "llava"


def test_the_guard_stops_when_the_held_out_reward_falls(world, tiny_dir, tmp_path):
    def fading(completions, trainer_state, **_):
        """The same for every completion (no learning signal), lower at every step: the held-out reward falls."""
        return [1.0 - 0.1 * trainer_state.global_step] * len(completions)

    config = make_config(
        world, tiny_dir("tiny-llava"), tmp_path / "run", "train.max_steps=6", "train.eval_steps=1",
        "guard.margin_drop=0.15", "grpo.max_new_tokens=2",
    )  # fmt: skip
    result = train_grpo(config, reward_funcs=[fading], progress=False, write=lambda _: None)
    # evaluations at steps 1, 2, 3: 0.9 (best), 0.8, 0.7 = 0.2 below the best > 0.15: stop at step 3
    assert result.global_step == 3
    assert "held-out reward 0.7 is 0.2 below its best 0.9 (step 1" in (result.guard_stop or "")


def test_config_checks(world, tiny_dir, tmp_path):
    with pytest.raises(ConfigError, match="group_size"):
        make_config(world, tiny_dir("tiny-llava"), tmp_path, "grpo.group_size=1")
    with pytest.raises(ConfigError, match="weight must be a finite number"):
        make_config(world, tiny_dir("tiny-llava"), tmp_path, "grpo.rewards={object_f1: .nan}")
    with pytest.raises(ConfigError, match="unknown reward 'f1'; built in: object_f1"):
        make_config(world, tiny_dir("tiny-llava"), tmp_path, "grpo.rewards={f1: 1}")
    with pytest.raises(ConfigError, match="max_completion_length"):
        make_config(world, tiny_dir("tiny-llava"), tmp_path, "loss.loss_type=dr_grpo", "loss.max_completion_length=9")
    with pytest.raises(ConfigError, match="the guard watches held-out evaluations"):
        make_config(world, tiny_dir("tiny-llava"), tmp_path, "guard.margin_drop=0.1")  # no train.eval_steps
    with pytest.raises(ConfigError, match=r"set loss\.beta > 0"):
        make_config(world, tiny_dir("tiny-llava"), tmp_path, "train.eval_steps=1", "guard.max_kl=0.1")
    with pytest.raises(ConfigError, match=r"train\.eval_on_start is set but there is no data\.eval"):
        make_config(world, tiny_dir("tiny-llava"), tmp_path, "data.eval=null", "train.eval_on_start=true")
    with pytest.raises(ConfigError, match=r"no data\.eval"):
        make_config(world, tiny_dir("tiny-llava"), tmp_path, "data.eval=null", "train.eval_steps=5")
    config = make_config(world, tiny_dir("tiny-llava"), tmp_path, "loss.beta=0.1", "grpo.reference=adapter")
    with pytest.raises(ConfigError, match="lora"):
        config.reference_source()
