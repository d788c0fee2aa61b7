"""The DPO family on the hand-worked batch of conftest.py.

Log-ratios chosen [0.5, −1], rejected [−0.5, 0], so Δ = [1, −1].
"""

from __future__ import annotations

import re

import pytest
import torch

from mmalign.errors import ConfigError
from mmalign.losses import ConservativeDPOLoss, HingeLoss, IPOLoss, RobustDPOLoss, SigmoidLoss

SP_M05 = 0.4740769841801067  # softplus(-0.5) = log(1 + e^-0.5)
SP_05 = 0.9740769841801067  # softplus(0.5) = 0.5 + softplus(-0.5)


def close(tensor: torch.Tensor, expected: list[float], tol: float = 1e-9) -> bool:
    return torch.allclose(tensor.detach(), torch.tensor(expected, dtype=tensor.dtype), atol=tol, rtol=0)


def test_sigmoid(pair):
    out = SigmoidLoss(beta=0.5)(*pair)
    # −log σ(0.5·1) = softplus(−0.5) = 0.4740770 ; −log σ(0.5·−1) = softplus(0.5) = 0.9740770
    assert close(out.losses, [SP_M05, SP_05])
    assert abs(out.loss.item() - (SP_M05 + SP_05) / 2) < 1e-12
    # rewards β·log-ratio: chosen 0.5·[0.5, −1] = [0.25, −0.5], rejected 0.5·[−0.5, 0] = [−0.25, 0]
    assert close(out.chosen_rewards, [0.25, -0.5])
    assert close(out.rejected_rewards, [-0.25, 0.0])


def test_cdpo(pair):
    out = ConservativeDPOLoss(beta=0.5, label_smoothing=0.2)(*pair)
    # −0.8·log σ(z) − 0.2·log σ(−z) = softplus(−z) + 0.2·z  (since log σ(z) − log σ(−z) = z)
    # z = 0.5: 0.4740770 + 0.1 = 0.5740770 ; z = −0.5: 0.9740770 − 0.1 = 0.8740770
    assert close(out.losses, [SP_M05 + 0.1, SP_05 - 0.1])


def test_cdpo_without_smoothing_is_dpo(pair):
    assert close(ConservativeDPOLoss(beta=0.5, label_smoothing=0.0)(*pair).losses, [SP_M05, SP_05])


def test_robust(pair):
    out = RobustDPOLoss(beta=0.5, flip_rate=0.2)(*pair)
    # [(0.8·softplus(−z) − 0.2·softplus(z)] / 0.6
    # z = 0.5:  (0.8·0.4740770 − 0.2·0.9740770) / 0.6 = (0.3792616 − 0.1948154) / 0.6 = 0.3074103
    # z = −0.5: (0.8·0.9740770 − 0.2·0.4740770) / 0.6 = (0.7792616 − 0.0948154) / 0.6 = 1.1407437
    assert close(out.losses, [0.3074103175134401, 1.1407436508467734])


def test_robust_is_unbiased_under_label_noise(pair):
    # E over flips (prob ε) of the robust loss equals the clean DPO loss: (1−ε)·l(Δ) + ε·l(−Δ) = −log σ(βΔ)
    policy, reference = pair
    loss = RobustDPOLoss(beta=0.5, flip_rate=0.3)
    clean = loss(policy, reference).losses
    policy_f = type(policy)(policy.rejected, policy.chosen, policy.rejected_tokens, policy.chosen_tokens)
    reference_f = type(reference)(reference.rejected, reference.chosen)
    flipped = loss(policy_f, reference_f).losses
    assert close(0.7 * clean + 0.3 * flipped, [SP_M05, SP_05])


def test_hinge(pair):
    # max(0, 1 − 0.5·1) = 0.5 ; max(0, 1 + 0.5) = 1.5
    assert close(HingeLoss(beta=0.5)(*pair).losses, [0.5, 1.5])
    # β = 2: the first pair is past the margin 1/β = 0.5 (Δ = 1): loss 0 and no gradient
    policy, reference = pair
    out = HingeLoss(beta=2.0)(policy, reference)
    assert close(out.losses, [0.0, 3.0])
    out.losses[0].backward()
    assert policy.chosen.grad is not None and policy.chosen.grad[0] == 0


def test_ipo_length_normalised_by_default(pair):
    # τ = β = 0.25, so the target 1/(2τ) = 2. Log-ratios per token: chosen [0.5/2, −1/4] = [0.25, −0.25],
    # rejected [−0.5/1, 0/2] = [−0.5, 0]; h = [0.75, −0.25]; (0.75 − 2)² = 1.5625 ; (−0.25 − 2)² = 5.0625
    loss = IPOLoss(beta=0.25)
    assert loss.length_normalized
    assert close(loss(*pair).losses, [1.5625, 5.0625])


def test_ipo_paper_form_on_sums(pair):
    # h = Δ = [1, −1]: (1 − 2)² = 1 ; (−1 − 2)² = 9
    loss = IPOLoss(beta=0.25, length_normalized=False)
    assert not loss.length_normalized
    assert close(loss(*pair).losses, [1.0, 9.0])
    # rewards stay β·(summed log-ratio), as in TRL
    assert close(loss(*pair).chosen_rewards, [0.125, -0.25])


@pytest.mark.parametrize(
    "loss",
    [SigmoidLoss(), ConservativeDPOLoss(), RobustDPOLoss(), HingeLoss(), IPOLoss(), IPOLoss(length_normalized=False)],
    ids=lambda x: repr(x),
)
def test_gradient_direction_and_detached_rewards(pair, loss):
    policy, reference = pair
    out = loss(policy, reference)
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
    out.loss.backward()
    # raising the chosen log-prob lowers the loss, raising the rejected one raises it (second pair: margin < 0)
    assert policy.chosen.grad[1] < 0 < policy.rejected.grad[1]


def test_reference_is_not_differentiated(pair):
    policy, reference = pair
    reference.chosen.requires_grad_(True)
    SigmoidLoss()(policy, reference).loss.backward()
    assert reference.chosen.grad is None


@pytest.mark.parametrize(
    ("cls", "options", "message"),
    [
        (SigmoidLoss, {"beta": 0.0}, "beta must be a positive number"),
        (SigmoidLoss, {"beta": float("nan")}, "beta must be a positive number"),
        (SigmoidLoss, {"beta": True}, "beta must be a positive number"),
        (ConservativeDPOLoss, {"label_smoothing": 0.5}, "label_smoothing must lie in [0.0, 0.5)"),
        (ConservativeDPOLoss, {"label_smoothing": -0.1}, "label_smoothing must lie in [0.0, 0.5)"),
        (RobustDPOLoss, {"flip_rate": 0.5}, "flip_rate must lie in [0.0, 0.5)"),
        (IPOLoss, {"beta": -1.0}, "beta must be a positive number"),
    ],
)
def test_bad_options_fail_at_construction(cls, options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        cls(**options)


def test_reference_losses_need_a_reference(pair):
    policy, _ = pair
    with pytest.raises(ConfigError, match="'sigmoid' needs reference log-probs"):
        SigmoidLoss()(policy, None)
