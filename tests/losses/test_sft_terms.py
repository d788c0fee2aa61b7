"""RPO, SimPO and ORPO on the hand-worked batch of conftest.py.

Chosen sums [−2, −5] over [2, 4] tokens (means [−1, −1.25]); rejected sums [−3, −4] over [1, 2] (means [−3, −2]).
"""

from __future__ import annotations

import math

import pytest
import torch

from mmalign.errors import ConfigError
from mmalign.losses import ORPOLoss, PolicyLogps, RPOLoss, SimPOLoss, chosen_nll

SP_M05 = 0.4740769841801067  # softplus(-0.5)
SP_05 = 0.9740769841801067  # softplus(0.5)


def close(tensor: torch.Tensor, expected: list[float], tol: float = 1e-9) -> bool:
    return torch.allclose(tensor.detach(), torch.tensor(expected, dtype=tensor.dtype), atol=tol, rtol=0)


# ----------------------------------------------------------------------------------------------- NLL


def test_chosen_nll_reductions(pair):
    policy, _ = pair
    # tokens: total NLL 2 + 5 = 7 over 2 + 4 = 6 tokens → 7/6; shares −chosen·B/6 = [4/6, 10/6] (mean 7/6)
    tokens = chosen_nll(policy, "tokens")
    assert close(tokens, [4 / 6, 10 / 6])
    assert abs(tokens.mean().item() - 7 / 6) < 1e-12
    # sequence: per-response mean NLL [2/2, 5/4] = [1, 1.25]
    assert close(chosen_nll(policy, "sequence"), [1.0, 1.25])


def test_chosen_nll_given_by_the_forward_pass_wins(pair):
    policy, _ = pair
    policy.chosen_nll = torch.tensor([0.3, 0.7], dtype=torch.float64)
    assert close(chosen_nll(policy, "tokens"), [0.3, 0.7])


# ----------------------------------------------------------------------------------------------- RPO


def test_rpo_tokens(pair):
    out = RPOLoss(beta=0.5, alpha=0.5)(*pair)
    # DPO part [0.4740770, 0.9740770] + 0.5·[4/6, 10/6] = [0.8074103, 1.8074103]
    assert close(out.losses, [SP_M05 + 2 / 6, SP_05 + 5 / 6])
    assert abs(out.metrics["nll"].item() - 7 / 6) < 1e-12
    assert close(out.chosen_rewards, [0.25, -0.5])


def test_rpo_sequence(pair):
    out = RPOLoss(beta=0.5, alpha=0.5, nll_reduction="sequence")(*pair)
    # [0.4740770 + 0.5·1, 0.9740770 + 0.5·1.25] = [0.9740770, 1.5990770]
    assert close(out.losses, [SP_M05 + 0.5, SP_05 + 0.625])


def test_rpo_alpha_zero_is_dpo(pair):
    assert close(RPOLoss(beta=0.5, alpha=0.0)(*pair).losses, [SP_M05, SP_05])


# --------------------------------------------------------------------------------------------- SimPO


def test_simpo(pair):
    policy, _ = pair
    out = SimPOLoss(beta=2.0, gamma=1.0)(policy)  # no reference at all
    # rewards 2·means: chosen [−2, −2.5], rejected [−6, −4]; z = c − r − γ = [4 − 1, 1.5 − 1] = [3, 0.5]
    # −log σ(3) = log(1 + e^−3) = 0.0485874 ; −log σ(0.5) = 0.4740770
    assert close(out.losses, [math.log1p(math.exp(-3.0)), SP_M05])
    assert close(out.chosen_rewards, [-2.0, -2.5])
    assert close(out.rejected_rewards, [-6.0, -4.0])


def test_simpo_defaults_and_the_authors_ratio_form(pair):
    # Defaults: the authors' Llama-3-Base recipe, β 2, γ/β 0.5 (their code default is γ/β 0.25).
    assert (SimPOLoss().beta, SimPOLoss().gamma) == (2.0, 1.0)
    # princeton-nlp/SimPO writes −log σ(β·(Δ − gamma_beta_ratio)); its llama-3-8b-instruct-simpo-v2 recipe is
    # β 10, ratio 0.3, so γ = 3 here. Mean log-probs Δ = [−1 + 3, −1.25 + 2] = [2, 0.75]:
    # z = 10·[2, 0.75] − 3 = [17, 4.5]  (= 10·([2, 0.75] − 0.3))
    policy, _ = pair
    out = SimPOLoss(beta=10.0, gamma=10.0 * 0.3)(policy)
    assert close(out.losses, [math.log1p(math.exp(-17.0)), math.log1p(math.exp(-4.5))])


def test_simpo_ignores_a_reference_and_uses_means(pair):
    policy, reference = pair
    with_ref = SimPOLoss()(policy, reference).losses
    without = SimPOLoss()(policy).losses
    assert torch.equal(with_ref, without)
    # doubling every length with the same sums halves the means: the loss changes
    longer = PolicyLogps(policy.chosen, policy.rejected, policy.chosen_tokens * 2, policy.rejected_tokens * 2)
    assert not torch.allclose(SimPOLoss()(longer).losses, without)


# ---------------------------------------------------------------------------------------------- ORPO


def test_orpo(pair):
    policy, _ = pair
    out = ORPOLoss(odds_ratio_weight=0.5)(policy)
    # log odds(m) = m − log(1 − e^m):
    #   m = −1:    −1 − log(0.6321206)    = −0.5413249      m = −3: −3 − log(0.9502129) = −2.9489308
    #   m = −1.25: −1.25 − log(0.7134952) = −0.9124204      m = −2: −2 − log(0.8646647) = −1.8545865
    # log odds ratio: [2.4076060, 0.9421661]; −log σ: [0.0862057, 0.3291473]
    # losses = NLL shares [4/6, 10/6] + 0.5·[0.0862057, 0.3291473] = [0.7097695, 1.8312403]
    assert close(out.losses, [0.7097695389805957, 1.8312403360433098], tol=1e-7)
    assert abs(out.metrics["log_odds_chosen"].item() - (2.40760596444438 + 0.9421661072185521) / 2) < 1e-7
    # rewards λ·means (TRL): 0.5·[−1, −1.25], 0.5·[−3, −2]
    assert close(out.chosen_rewards, [-0.5, -0.625])
    assert close(out.rejected_rewards, [-1.5, -1.0])


def test_orpo_is_finite_when_a_response_has_probability_one():
    policy = PolicyLogps(
        chosen=torch.tensor([0.0, -1.0]),
        rejected=torch.tensor([-2.0, -1e-9]),
        chosen_tokens=torch.tensor([3.0, 2.0]),
        rejected_tokens=torch.tensor([1.0, 1.0]),
    )
    out = ORPOLoss()(policy)
    assert torch.isfinite(out.losses).all()


# ------------------------------------------------------------------------------------ shared properties


@pytest.mark.parametrize("loss", [RPOLoss(), SimPOLoss(), ORPOLoss(), ORPOLoss(nll_reduction="sequence")], ids=repr)
def test_gradient_direction_and_detached_rewards(pair, loss):
    policy, reference = pair
    out = loss(policy, reference if loss.needs_reference else None)
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
    out.loss.backward()
    assert (policy.chosen.grad < 0).all()
    assert (policy.rejected.grad > 0).all()


def test_declared_needs():
    assert RPOLoss.needs_reference and RPOLoss.needs_chosen_nll and not RPOLoss.length_normalized
    assert not SimPOLoss.needs_reference and SimPOLoss.length_normalized and not SimPOLoss.needs_chosen_nll
    assert not ORPOLoss.needs_reference and ORPOLoss.length_normalized and ORPOLoss.needs_chosen_nll


@pytest.mark.parametrize(
    ("cls", "options", "message"),
    [
        (RPOLoss, {"alpha": -1.0}, "alpha must be a number >= 0"),
        (RPOLoss, {"nll_reduction": "batch"}, "nll_reduction must be one of ['tokens', 'sequence']"),
        (SimPOLoss, {"gamma": -0.5}, "gamma must be a number >= 0"),
        (SimPOLoss, {"beta": 0}, "beta must be a positive number"),
        (ORPOLoss, {"odds_ratio_weight": -0.1}, "odds_ratio_weight must be a number >= 0"),
    ],
)
def test_bad_options(cls, options, message):
    with pytest.raises(ConfigError) as err:
        cls(**options)
    assert message in str(err.value)
