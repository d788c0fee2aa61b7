"""The registry, option handling, declared needs, and the metrics every trainer logs."""

from __future__ import annotations

import math

import pytest
import torch

from mmalign.errors import ConfigError
from mmalign.losses import (
    LOSSES,
    IPOLoss,
    PolicyLogps,
    ReferenceLogps,
    SigmoidLoss,
    build_loss,
    kl_estimate,
    loss_help,
    preference_metrics,
    sequence_kl,
)

# name → (needs_reference, length_normalized (default), needs_corrupted_image, needs_token_weights, needs_chosen_nll)
DECLARED = {
    "sigmoid": (True, False, False, False, False),
    "ipo": (True, True, False, False, False),
    "cdpo": (True, False, False, False, False),
    "robust": (True, False, False, False, False),
    "hinge": (True, False, False, False, False),
    "rpo": (True, False, False, False, True),
    "simpo": (False, True, False, False, False),
    "orpo": (False, True, False, False, True),
    "mdpo": (True, False, True, False, False),
    "ddpo": (True, True, False, True, False),
}


def test_every_loss_is_registered_under_its_name():
    assert set(LOSSES) == set(DECLARED)
    for name, cls in LOSSES.items():
        assert cls.name == name and cls.paper


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_declared_needs(name):
    loss = build_loss(name)
    flags = (
        loss.needs_reference,
        loss.length_normalized,
        loss.needs_corrupted_image,
        loss.needs_token_weights,
        loss.needs_chosen_nll,
    )
    assert flags == DECLARED[name]


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_every_option_is_documented(name):
    rows = loss_help(name)
    assert rows, f"{name} has no options"
    for key, _type, _default, helptext in rows:
        assert len(helptext) > 15, f"{name}.{key} lacks a help text"


def test_build_with_options_and_int_for_float():
    loss = build_loss("ipo", beta=1, length_normalized=False)
    assert loss == IPOLoss(beta=1.0, length_normalized=False)
    assert isinstance(loss.beta, float)
    assert not loss.length_normalized


def test_unknown_name_lists_the_allowed_ones():
    with pytest.raises(ConfigError) as err:
        build_loss("dpo_plus")
    assert "unknown loss 'dpo_plus'" in str(err.value)
    assert "sigmoid" in str(err.value) and "mdpo" in str(err.value)


def test_unknown_option_lists_the_allowed_ones():
    # label_smoothing belongs to cdpo only: robust has its own name for its ε
    with pytest.raises(ConfigError) as err:
        build_loss("robust", label_smoothing=0.1)
    assert str(err.value) == "loss 'robust': unknown key 'label_smoothing' (allowed here: beta, flip_rate)"


def test_wrong_type_and_bad_value():
    with pytest.raises(ConfigError, match="key 'beta' must be float"):
        build_loss("sigmoid", beta="0.1x")
    with pytest.raises(ConfigError) as err:
        build_loss("cdpo", label_smoothing=0.7)
    assert str(err.value) == "loss 'cdpo': label_smoothing must lie in [0.0, 0.5), got 0.7"


def test_losses_are_frozen():
    loss = SigmoidLoss()
    with pytest.raises(AttributeError):
        loss.beta = 0.5  # type: ignore[misc]


# ------------------------------------------------------------------------------------------- metrics


def test_preference_metrics(pair):
    policy, reference = pair
    out = SigmoidLoss(beta=0.5)(policy, reference)
    metrics = preference_metrics(out, policy, reference)
    # rewards chosen [0.25, −0.5], rejected [−0.25, 0]: means −0.125 and −0.125, margins [0.5, −0.5]
    assert metrics["rewards/chosen"] == pytest.approx(-0.125)
    assert metrics["rewards/rejected"] == pytest.approx(-0.125)
    assert metrics["rewards/margins"] == pytest.approx(0.0)
    assert metrics["rewards/accuracies"] == 0.5
    assert metrics["logps/chosen"] == pytest.approx(-3.5)
    assert metrics["logps/rejected"] == pytest.approx(-3.5)
    # k1 on chosen: Σ(π − ref) / Σ tokens = (0.5 − 1) / 6
    assert metrics["kl/chosen"] == pytest.approx(-0.5 / 6)
    assert "kl/chosen_k3" not in metrics  # no token-level log-probs here


def test_preference_metrics_with_mean_logps(pair):
    policy, _ = pair
    out = build_loss("simpo")(policy)
    metrics = preference_metrics(out, policy, mean_logps=True)
    # means per token: chosen [−2/2, −5/4] = [−1, −1.25] → −1.125 ; rejected [−3/1, −4/2] = [−3, −2] → −2.5
    assert metrics["logps/chosen"] == pytest.approx(-1.125)
    assert metrics["logps/rejected"] == pytest.approx(-2.5)
    # the sums stay, under their own names: chosen [−2, −5] → −3.5 ; rejected [−3, −4] → −3.5
    assert metrics["logps/chosen_sum"] == pytest.approx(-3.5)
    assert metrics["logps/rejected_sum"] == pytest.approx(-3.5)
    assert "logps/chosen_sum" not in preference_metrics(out, policy)  # summed losses: logps/chosen is the sum


def test_losses_log_the_logps_trl_logs_for_them():
    # TRL 1.16: CPOTrainer(loss_type="simpo") and ORPOTrainer log per-token means (average_log_prob=True),
    # DPOTrainer (sigmoid, ipo, robust, hinge...) logs sums.
    assert {name for name, cls in LOSSES.items() if cls.logs_mean_logps} == {"simpo", "orpo"}


def test_preference_metrics_without_reference_and_with_loss_metrics(pair):
    policy, _ = pair
    out = build_loss("orpo")(policy)
    metrics = preference_metrics(out, policy)
    assert "kl/chosen" not in metrics
    assert metrics["nll"] == pytest.approx(7 / 6)


def test_kl_estimators():
    policy = torch.tensor([[-1.0, -2.0, -9.0]])
    reference = torch.tensor([[-1.5, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    # r = ref − π on the two real tokens: [−0.5, 1]
    # k1 = mean(−r) = (0.5 − 1)/2 = −0.25
    # k3 = mean(e^r − 1 − r) = ((0.6065307 − 1 + 0.5) + (2.7182818 − 1 − 1))/2 = (0.1065307 + 0.7182818)/2
    assert kl_estimate(policy, reference, mask, "k1").item() == pytest.approx(-0.25)
    assert kl_estimate(policy, reference, mask, "k3").item() == pytest.approx(0.41240624408583926, abs=1e-6)
    assert kl_estimate(policy, policy, mask, "k3").item() == 0.0
    with pytest.raises(ConfigError, match="unknown KL estimator"):
        kl_estimate(policy, reference, mask, "k2")  # type: ignore[arg-type]


def test_sequence_kl_equals_token_k1():
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    pol = -torch.rand(2, 4, generator=g) * mask
    ref = -torch.rand(2, 4, generator=g) * mask
    policy = PolicyLogps.from_token_logps(pol, mask, pol, mask)
    reference = ReferenceLogps(ref.sum(-1), ref.sum(-1), ref, ref)
    assert sequence_kl(policy, reference).item() == pytest.approx(kl_estimate(pol, ref, mask, "k1").item())
    metrics = preference_metrics(SigmoidLoss()(policy, reference), policy, reference)
    assert metrics["kl/chosen_k3"] == pytest.approx(kl_estimate(pol, ref, mask, "k3").item())
    assert metrics["kl/chosen_k3"] >= 0


def test_from_token_logps_sums_counts_and_means():
    logps = torch.tensor([[-1.0, -2.0, -7.0], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    policy = PolicyLogps.from_token_logps(logps, mask, logps, mask)
    assert policy.chosen.tolist() == [-3.0, -1.5]  # −7 is padding
    assert policy.chosen_tokens.tolist() == [2.0, 3.0]
    assert policy.chosen_mean.tolist() == [-1.5, -0.5]
    assert not math.isnan(PolicyLogps.from_token_logps(logps, mask * 0, logps, mask).chosen_mean.sum().item())


def test_inconsistent_shapes_fail_instead_of_broadcasting(pair):
    policy, reference = pair
    # (2,) against (2, 1) would broadcast to a (2, 2) loss without this check
    column = ReferenceLogps(reference.chosen[:, None], reference.rejected[:, None])
    with pytest.raises(ValueError, match=r"ReferenceLogps\.chosen has shape \(2, 1\); expected \(2,\)"):
        SigmoidLoss()(policy, column)
    logps = torch.zeros(2, 3)
    mask = torch.ones(2, 3)
    tokens = PolicyLogps.from_token_logps(logps, mask, torch.zeros(2, 5), torch.ones(2, 5))  # T may differ by side
    SigmoidLoss()(tokens, ReferenceLogps(torch.zeros(2), torch.zeros(2), torch.zeros(2, 3), torch.zeros(2, 5)))
    with pytest.raises(ValueError, match=r"ReferenceLogps\.chosen_token_logps has shape \(2, 4\)"):
        SigmoidLoss()(tokens, ReferenceLogps(torch.zeros(2), torch.zeros(2), torch.zeros(2, 4)))
