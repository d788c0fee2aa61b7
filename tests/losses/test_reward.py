"""Reward-model losses and metrics: by hand, and equal to TRL 1.16's RewardTrainer on the same rewards.

The hand-worked batch: chosen rewards [2, 0.5, 1], rejected [1, 1, 1], so r_c − r_r = [1, −0.5, 0] (a tie last).
softplus(x) = log(1 + e^x) = −log σ(−x).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from mmalign.errors import ConfigError
from mmalign.losses.reward import RewardLoss, bradley_terry, reward_centering, reward_metrics

SP_M1 = 0.31326168751822286  # softplus(−1)
SP_M05 = 0.4740769841801067  # softplus(−0.5)
SP_05 = 0.9740769841801067  # softplus(0.5)
SP_1 = 1.3132616875182228  # softplus(1)
LN2 = 0.6931471805599453  # softplus(0)
TOL = 1e-6


def rewards(requires_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    chosen = torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64, requires_grad=requires_grad)
    rejected = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64, requires_grad=requires_grad)
    return chosen, rejected


def close(tensor: torch.Tensor, expected: list[float], tol: float = 1e-9) -> bool:
    return torch.allclose(tensor.detach(), torch.tensor(expected, dtype=tensor.dtype), atol=tol, rtol=0)


def test_bradley_terry():
    # −log σ(d) = softplus(−d): d = 1 → 0.3132617 ; d = −0.5 → 0.9740770 ; d = 0 → log 2 = 0.6931472
    out = RewardLoss()(*rewards())
    assert close(out.losses, [SP_M1, SP_05, LN2])
    assert abs(out.loss.item() - (SP_M1 + SP_05 + LN2) / 3) < 1e-12
    assert close(out.chosen_rewards, [2.0, 0.5, 1.0]) and close(out.rejected_rewards, [1.0, 1.0, 1.0])
    assert out.metrics == {}


def test_margin_llama2():
    # m = [0.5, 0, 1]: d − m = [0.5, −0.5, −1] → softplus(−0.5), softplus(0.5), softplus(1)
    margin = torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64)
    out = RewardLoss()(*rewards(), margin=margin)
    assert close(out.losses, [SP_M05, SP_05, SP_1])
    # a zero margin is the plain loss
    assert close(bradley_terry(*rewards(), torch.zeros(3, dtype=torch.float64)), [SP_M1, SP_05, LN2])


def test_reward_centering():
    # (r_c + r_r)² = [3², 1.5², 2²] = [9, 2.25, 4]; c = 0.01 adds [0.09, 0.0225, 0.04]
    assert close(reward_centering(*rewards()), [9.0, 2.25, 4.0])
    out = RewardLoss(center_rewards_coefficient=0.01)(*rewards())
    assert close(out.losses, [SP_M1 + 0.09, SP_05 + 0.0225, LN2 + 0.04])
    # the mean adds c·mean = 0.01·15.25/3 = 0.0508333
    assert abs(out.loss.item() - ((SP_M1 + SP_05 + LN2) / 3 + 0.0508333333333333)) < 1e-12
    assert abs(out.metrics["centering"].item() - 15.25 / 3) < 1e-12


def test_gradients_and_detached_rewards():
    chosen, rejected = rewards()
    out = RewardLoss(center_rewards_coefficient=0.01)(chosen, rejected)
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
    out.loss.backward()
    # d/dr_c of softplus(−d)/3 is −σ(−d)/3 (plus 2c(r_c + r_r)/3 from centring): pair 2, σ(0.5) = 0.6224593
    assert abs(chosen.grad[1].item() - (-0.6224593312018546 + 2 * 0.01 * 1.5) / 3) < 1e-12
    assert chosen.grad[1] < 0 < rejected.grad[1]


def test_metrics_count_a_tie_as_wrong():
    # accuracy: 2 > 1 yes, 0.5 > 1 no, 1 > 1 no (tie, strict as TRL) → 1/3 ; margin mean(1, −0.5, 0) = 1/6
    # all rewards [2, 0.5, 1, 1, 1, 1]: min 0.5, mean 6.5/6, max 2
    # chosen mean 3.5/3 = 1.1666667, population std sqrt((0.8333² + 0.6667² + 0.1667²)/3) = sqrt(0.3888889)
    metrics = reward_metrics(*rewards())
    expected = {
        "accuracy": 1 / 3,
        "margin": 1 / 6,
        "min_reward": 0.5,
        "mean_reward": 6.5 / 6,
        "max_reward": 2.0,
        "chosen_reward_mean": 3.5 / 3,
        "chosen_reward_std": 0.3888888888888889**0.5,
        "rejected_reward_mean": 1.0,
        "rejected_reward_std": 0.0,
    }
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(metrics[key] - value) < TOL, key


def test_one_pair_has_zero_std():
    metrics = reward_metrics(torch.tensor([1.0]), torch.tensor([0.0]))
    assert metrics["chosen_reward_std"] == 0.0 and metrics["accuracy"] == 1.0


def test_shapes_are_checked():
    chosen, rejected = rewards()
    with pytest.raises(ValueError, match=re.escape("rejected rewards have shape (3, 1)")):
        RewardLoss()(chosen, rejected.unsqueeze(-1))
    with pytest.raises(ValueError, match=re.escape("margin have shape (2,)")):
        RewardLoss()(chosen, rejected, margin=torch.zeros(2))
    with pytest.raises(ValueError, match="chosen rewards must have shape"):
        RewardLoss()(chosen.unsqueeze(-1), rejected.unsqueeze(-1))


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf")])
def test_bad_coefficient_fails_at_construction(value):
    with pytest.raises(ConfigError, match="loss 'bradley_terry': center_rewards_coefficient must be"):
        RewardLoss(center_rewards_coefficient=value)


# ------------------------------------------------------------------------- against TRL 1.16's own code


def _trl():
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    trl = pytest.importorskip("trl")
    if not trl.__version__.startswith("1.16."):
        pytest.skip(f"parity is pinned to trl 1.16, found {trl.__version__}")
    return trl


class _Accelerator:
    device = torch.device("cpu")

    def gather_for_metrics(self, x):
        return x

    def gather(self, x):
        return x


def _trl_reward(chosen, rejected, margin, coefficient):
    """TRL's RewardTrainer.compute_loss with a stub model returning the rewards as its (2B, 1) logits."""
    trainer = object.__new__(_trl().RewardTrainer)
    trainer.model = SimpleNamespace(training=True)
    trainer.args = SimpleNamespace(center_rewards_coefficient=coefficient)
    trainer.accelerator = _Accelerator()
    trainer._metrics = defaultdict(lambda: defaultdict(list))
    trainer._total_train_tokens = 0
    trainer._tp_size = 1
    logits = torch.cat([chosen, rejected]).unsqueeze(-1)  # the collator stacks [chosen..., rejected...]

    def model(input_ids, attention_mask, use_cache, **kwargs):
        assert input_ids.shape[0] == logits.shape[0]
        return SimpleNamespace(logits=logits)

    inputs = {
        "input_ids": torch.zeros(logits.shape[0], 4, dtype=torch.long),
        "attention_mask": torch.ones(logits.shape[0], 4, dtype=torch.long),
    }
    if margin is not None:
        inputs["margin"] = margin
    loss = trainer.compute_loss(model, inputs)
    return loss, {key: values[-1] for key, values in trainer._metrics["train"].items()}


def _random_rewards(seed, n=8):
    g = torch.Generator().manual_seed(seed)
    chosen = torch.randn(n, generator=g) * 2
    rejected = torch.randn(n, generator=g) * 2
    rejected[3] = chosen[3]  # a tie
    margin = torch.rand(n, generator=g) * 3
    return chosen, rejected, margin


@pytest.mark.parametrize(
    ("with_margin", "coefficient"), [(False, None), (True, None), (False, 0.01), (True, 0.25), (True, 0.0)]
)
def test_equals_trl_reward_trainer(with_margin, coefficient):
    chosen, rejected, margin = _random_rewards(seed=7)
    margin = margin if with_margin else None
    trl_loss, trl_metrics = _trl_reward(chosen, rejected, margin, coefficient)
    out = RewardLoss(center_rewards_coefficient=coefficient or 0.0)(chosen, rejected, margin)
    assert abs(out.loss.item() - trl_loss.item()) < TOL
    ours = reward_metrics(chosen, rejected)
    for key in ("accuracy", "margin", "min_reward", "mean_reward", "max_reward"):
        assert abs(ours[key] - trl_metrics[key]) < TOL, key
    assert ours["accuracy"] == trl_metrics["accuracy"]  # ties counted the same way: 3 of 8 strictly higher
    assert ours["accuracy"] == (chosen > rejected).float().mean().item()


def test_gradients_equal_trl():
    chosen, rejected, margin = _random_rewards(seed=3)
    grads = []
    for run in ("trl", "ours"):
        c, r = chosen.clone().requires_grad_(True), rejected.clone().requires_grad_(True)
        if run == "trl":
            loss, _ = _trl_reward(c, r, margin, 0.05)
        else:
            loss = RewardLoss(center_rewards_coefficient=0.05)(c, r, margin).loss
        loss.backward()
        grads.append(torch.cat([c.grad, r.grad]))
    assert torch.allclose(grads[0], grads[1], atol=TOL, rtol=0)
