"""Group advantages and RLOO: by hand, and equal to TRL 1.16's trainers on the same rewards.

The hand-worked groups (G = 3): (1, 2, 6) and (4, 4, NaN), the NaN an unscorable completion.
Group 1: mean 3, sample std √((4 + 1 + 9)/2) = √7 = 2.6457513; leave-one-out baselines (4, 3.5, 1.5).
Group 2: mean 4 over the two scorable rewards, std 0; RLOO baselines 4 and 4 (each the other's).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import trl.trainer.grpo_trainer
import trl.trainer.rloo_trainer
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.rloo_trainer import RLOOTrainer
from trl.trainer.utils import nanstd as trl_nanstd

from mmalign.errors import ConfigError
from mmalign.losses.advantages import (
    SCALE_REWARDS,
    combine_rewards,
    gdpo_advantages,
    group_advantages,
    nanstd,
    rloo_advantages,
)

NAN = float("nan")
S7 = math.sqrt(7)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_nanstd_by_hand_and_as_trl():
    assert nanstd(t([3.0, 5.0, NAN])).item() == pytest.approx(math.sqrt(2), abs=1e-12)
    assert math.isnan(nanstd(t([3.0, NAN])).item())  # one value: no sample std
    x = t([[1.0, 2.0, 6.0], [4.0, 4.0, NAN], [NAN, 1.0, NAN]])
    assert torch.allclose(nanstd(x, dim=1), trl_nanstd(x, dim=1), equal_nan=True)


def test_group_advantages_by_hand():
    rewards = t([1.0, 2.0, 6.0, 4.0, 4.0, NAN])
    out = group_advantages(rewards, 3, "group")
    expected = [-2 / (S7 + 1e-4), -1 / (S7 + 1e-4), 3 / (S7 + 1e-4), 0.0, 0.0, 0.0]
    assert torch.allclose(out.advantages, t(expected), atol=1e-12)
    assert out.zero_std_fraction == pytest.approx(0.5)  # group 2's std is 0
    none = group_advantages(rewards, 3, "none")
    assert torch.allclose(none.advantages, t([-2.0, -1.0, 3.0, 0.0, 0.0, 0.0]), atol=1e-12)
    # batch: the 5 scorable rewards (1, 2, 6, 4, 4), mean 3.4,
    # squared deviations 5.76 + 1.96 + 6.76 + 0.36 + 0.36 = 15.2, / 4 → std √3.8
    batch = group_advantages(rewards, 3, "batch")
    s = math.sqrt(3.8) + 1e-4
    assert torch.allclose(batch.advantages, t([-2 / s, -1 / s, 3 / s, 0.0, 0.0, 0.0]), atol=1e-12)


def test_rloo_advantages_by_hand():
    rewards = t([1.0, 2.0, 6.0, 4.0, 4.0, NAN])
    out = rloo_advantages(rewards, 3)
    assert torch.allclose(out.advantages, t([-3.0, -1.5, 4.5, 0.0, 0.0, 0.0]), atol=1e-12)
    # normalised over the 5 scorable advantages (−3, −1.5, 4.5, 0, 0): mean 0, squared sum 31.5, / 4 → std √7.875
    s = math.sqrt(7.875) + 1e-4
    normed = rloo_advantages(rewards, 3, normalize=True)
    assert torch.allclose(normed.advantages, t([-3 / s, -1.5 / s, 4.5 / s, 0.0, 0.0, 0.0]), atol=1e-12)
    # a group with one scorable completion has no baseline: advantage 0
    assert rloo_advantages(t([5.0, NAN]), 2).advantages.tolist() == [0.0, 0.0]


def test_gdpo_advantages_by_hand():
    # one group of 2; function A scores (0, 1): mean 0.5, std √0.5; function B (3, 10): mean 6.5, std √24.5
    per_function = t([[0.0, 3.0], [1.0, 10.0]])
    s = 0.5 / (math.sqrt(0.5) + 1e-4) + 3.5 / (math.sqrt(24.5) + 1e-4)  # the sums are (−s, s)
    expected = s / (s * math.sqrt(2) + 1e-4)  # batch mean 0, sample std s·√2
    out = gdpo_advantages(per_function, 2)
    assert torch.allclose(out.advantages, t([-expected, expected]), atol=1e-12)
    # a row every function left None: advantage 0, and left out of the batch statistics
    with_none = gdpo_advantages(t([[0.0, 3.0], [1.0, 10.0], [NAN, NAN], [NAN, NAN]]), 2)
    assert torch.allclose(with_none.advantages, t([-expected, expected, 0.0, 0.0]), atol=1e-12)


def test_combine_rewards_counts_none_as_zero_unless_all_are():
    per_function = t([[1.0, 0.5], [NAN, 0.5], [NAN, NAN]])
    out = combine_rewards(per_function, [2.0, 1.0])
    assert out[:2].tolist() == [2.5, 0.5] and math.isnan(out[2].item())
    with pytest.raises(ConfigError, match="1 reward weights for 2 reward functions"):
        combine_rewards(per_function, [1.0])


def test_bad_shapes_and_options():
    with pytest.raises(ConfigError, match="do not split into groups of 4"):
        group_advantages(t([1.0, 2.0, 3.0]), 4)
    with pytest.raises(ConfigError, match="scale_rewards must be one of group, batch, none"):
        group_advantages(t([1.0, 2.0]), 2, "std")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ TRL 1.16's own code


@pytest.fixture(autouse=True)
def plain_logger(monkeypatch):
    """TRL's accelerate logger refuses to log (its warning on unscorable rows) without an accelerate state."""
    for module in (trl.trainer.grpo_trainer, trl.trainer.rloo_trainer):
        monkeypatch.setattr(module, "logger", logging.getLogger("trl"))


class _OneProcess:
    device = torch.device("cpu")
    process_index = 0
    num_processes = 1
    is_main_process = True

    def gather(self, tensor):
        return tensor


def trl_advantages(trainer_class, rewards_per_function: list[list[float | None]], group_size: int, **config):
    """Advantages from TRL's ``_generate_and_score_completions`` (its real ``_calculate_rewards`` too), with
    generation stubbed: each reward function returns its column of ``rewards_per_function`` (None = unscorable)."""
    n = len(rewards_per_function)
    k = len(rewards_per_function[0])

    def reward_function(j):
        def reward(prompts, completions, **kwargs):
            return [row[j] for row in rewards_per_function]

        reward.__name__ = f"r{j}"
        return reward

    generated = ([[1, 2]] * n, [[3, 4, 5]] * n, None, ["c"] * n, None, None, None, None)  # GRPO's 8 fields
    if trainer_class is RLOOTrainer:
        generated = (generated[0], generated[1], generated[3])
    trainer = SimpleNamespace(
        accelerator=_OneProcess(),
        model=SimpleNamespace(training=True, is_gradient_checkpointing=False),
        environment_factories=None,
        environments=None,
        tools=None,
        _generate=lambda prompts: generated,
        _get_per_token_logps_and_entropies=lambda *args, **kwargs: (torch.zeros(n, 3), None, None),  # RLOO's old
        _tokenizer=SimpleNamespace(pad_token_id=0),
        pad_to_multiple_of=None,
        mask_truncated_completions=False,
        args=SimpleNamespace(
            per_device_train_batch_size=n,
            steps_per_generation=1,
            gradient_accumulation_steps=1,
            gradient_checkpointing_kwargs=None,
            report_to=[],
        ),
        num_iterations=1,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        beta=0.0,
        reward_funcs=[reward_function(j) for j in range(k)],
        reward_processing_classes=[None] * k,
        reward_func_names=[f"r{j}" for j in range(k)],
        reward_weights=torch.tensor(config.pop("weights", [1.0] * k)),
        state=SimpleNamespace(global_step=0),
        num_generations=group_size,
        multi_objective_aggregation=config.pop("aggregation", "sum_then_normalize"),
        reward_clip_range=None,
        _metrics={"train": defaultdict(list)},
        _logs={
            "prompt": [],
            "completion": [],
            "rewards": defaultdict(list),
            "advantages": [],
            "extra": defaultdict(list),
        },
        _pending_extra_logs={},
        _pending_metrics={},
        log_multimodal=False,
        **config,
    )
    trainer._calculate_rewards = lambda *args: trainer_class._calculate_rewards(trainer, *args)
    trainer._log_completion_extra = trainer._log_metric = lambda *args: None
    out = trainer_class._generate_and_score_completions(trainer, [{"prompt": "p"}] * n)
    return out["advantages"], trainer._metrics["train"]


def rows(seed: int, n: int = 12, k: int = 2) -> list[list[float | None]]:
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 4, (n, k), generator=g).double() / 2  # ties: some groups have std 0
    out: list[list[float | None]] = values.tolist()
    out[1][0] = None  # one function's None counts as 0
    out[5] = [None] * k  # an unscorable completion
    return out


def as_tensor(per_function: list[list[float | None]]) -> torch.Tensor:
    return torch.tensor([[NAN if v is None else v for v in row] for row in per_function], dtype=torch.float32)


@pytest.mark.parametrize("scale", SCALE_REWARDS)
@pytest.mark.parametrize("group_size", [3, 4])
def test_group_advantages_equal_trl(scale, group_size):
    for seed in range(3):
        per_function = rows(seed)
        theirs, metrics = trl_advantages(GRPOTrainer, per_function, group_size, scale_rewards=scale, weights=[1.0, 0.5])
        ours = group_advantages(combine_rewards(as_tensor(per_function), [1.0, 0.5]), group_size, scale)
        assert torch.allclose(ours.advantages, theirs, atol=1e-6, rtol=0)
        assert ours.zero_std_fraction == pytest.approx(metrics["frac_reward_zero_std"][0])
        assert theirs.abs().sum() > 0


@pytest.mark.parametrize("group_size", [3, 4])
def test_gdpo_advantages_equal_trl(group_size):
    for seed in range(3):
        per_function = rows(seed)
        per_function[6] = [1.0, None]  # with group size 3, function 1 has one scorable reward in a group
        per_function[7] = [0.5, None]
        theirs, _ = trl_advantages(
            GRPOTrainer,
            per_function,
            group_size,
            aggregation="normalize_then_sum",
            weights=[1.0, 0.5],
            scale_rewards="group",
        )
        ours = gdpo_advantages(as_tensor(per_function), group_size, [1.0, 0.5])
        assert torch.allclose(ours.advantages, theirs, atol=1e-6, rtol=0)
        assert theirs.abs().sum() > 0


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("group_size", [3, 4])
def test_rloo_advantages_equal_trl(normalize, group_size):
    for seed in range(3):
        per_function = rows(seed)
        theirs, metrics = trl_advantages(RLOOTrainer, per_function, group_size, normalize_advantages=normalize)
        ours = rloo_advantages(combine_rewards(as_tensor(per_function)), group_size, normalize)
        assert torch.allclose(ours.advantages, theirs, atol=1e-6, rtol=0)
        assert ours.zero_std_fraction == pytest.approx(metrics["frac_reward_zero_std"][0])
