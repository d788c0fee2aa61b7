"""KTO and unpaired APO-zero: by hand, and equal to TRL 1.16's KTOTrainer._compute_loss on the same log-probs.

The hand-worked batch (β = 0.5), two desirable records then two undesirable ones:
policy     [-2.0, -5.0, -3.0, -4.0]   reference [-2.5, -4.0, -2.5, -4.0]   → r = [0.5, -1.0, -0.5, 0.0]
KL pairs   policy [-3, -6, -4, -2], reference [-3.5, -5, -4.5, -3]          → diffs [0.5, -1, 0.5, 1], z0 = 0.25
1 − σ(x) = σ(−x): σ(0.125) = 0.5312094, σ(−0.625) = 0.3486451, σ(0.375) = 0.5926666, σ(0.25) = 0.5621765.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from mmalign.errors import ConfigError
from mmalign.losses.kto import (
    APOZeroUnpairedLoss,
    KTOLoss,
    UnpairedLogps,
    mismatched_kl,
    mismatched_pairs,
    unpaired_metrics,
)

TOL = 1e-6
S_0125 = 0.5312093733737563  # σ(0.125)
S_M0625 = 0.34864513533394575  # σ(−0.625)
S_0375 = 0.5926665999540697  # σ(0.375)
S_025 = 0.5621765008857981  # σ(0.25)
S_M05 = 0.3775406687981454  # σ(−0.5)


def make_batch(requires_grad: bool = True, **changes) -> UnpairedLogps:
    def t(values):
        return torch.tensor(values, dtype=torch.float64)

    fields = {
        "policy": t([-2.0, -5.0, -3.0, -4.0]).requires_grad_(requires_grad),
        "reference": t([-2.5, -4.0, -2.5, -4.0]),
        "label": torch.tensor([True, True, False, False]),
        "policy_kl": t([-3.0, -6.0, -4.0, -2.0]),
        "reference_kl": t([-3.5, -5.0, -4.5, -3.0]),
    }
    return UnpairedLogps(**{**fields, **changes})


def close(tensor: torch.Tensor, expected: list[float], tol: float = 1e-9) -> bool:
    return torch.allclose(tensor.detach(), torch.tensor(expected, dtype=tensor.dtype), atol=tol, rtol=0)


def test_kto_by_hand():
    out = KTOLoss(beta=0.5)(make_batch())
    # z0 = mean([0.5, −1, 0.5, 1]) = 0.25
    assert abs(out.kl.item() - 0.25) < 1e-12
    # desirable 1 − σ(β(r − z0)):   r = 0.5 → 1 − σ(0.125) ; r = −1 → 1 − σ(−0.625)
    # undesirable 1 − σ(β(z0 − r)): r = −0.5 → 1 − σ(0.375) ; r = 0 → 1 − σ(0.125)
    assert close(out.losses, [1 - S_0125, 1 - S_M0625, 1 - S_0375, 1 - S_0125])
    # rewards β·r = [0.25, −0.5, −0.25, 0]
    assert close(out.rewards, [0.25, -0.5, -0.25, 0.0])
    assert not out.rewards.requires_grad


def test_kto_weights():
    # λ_D = 2, λ_U = 0.5 scale the two sides: [2·0.4687906, 2·0.6513549, 0.5·0.4073334, 0.5·0.4687906]
    out = KTOLoss(beta=0.5, desirable_weight=2.0, undesirable_weight=0.5)(make_batch())
    assert close(out.losses, [2 * (1 - S_0125), 2 * (1 - S_M0625), 0.5 * (1 - S_0375), 0.5 * (1 - S_0125)])


def test_record_weight_multiplies_the_loss():
    weight = torch.tensor([1.0, 0.0, 2.0, 1.0], dtype=torch.float64)
    out = KTOLoss(beta=0.5)(make_batch(weight=weight))
    assert close(out.losses, [1 - S_0125, 0.0, 2 * (1 - S_0375), 1 - S_0125])


def test_z0_is_clamped_at_zero():
    # KL pairs now average −1 → z0 = max(−1, 0) = 0: desirable 1 − σ(0.5·r), undesirable 1 − σ(−0.5·r)
    batch = make_batch(policy_kl=torch.full((4,), -4.0, dtype=torch.float64), reference_kl=torch.full((4,), -3.0))
    out = KTOLoss(beta=0.5)(batch)
    assert out.kl.item() == 0.0
    assert close(out.losses, [1 - S_025, 1 - S_M05, 1 - S_025, 0.5])


def test_apo_zero_unpaired_by_hand():
    # desirable 1 − σ(β·r): 1 − σ(0.25), 1 − σ(−0.5) ; undesirable σ(β·r): σ(−0.25) = 1 − σ(0.25), σ(0) = 0.5
    batch = make_batch(policy_kl=None, reference_kl=None)  # needs no KL pairs
    out = APOZeroUnpairedLoss(beta=0.5)(batch)
    assert out.kl.item() == 0.0
    assert close(out.losses, [1 - S_025, 1 - S_M05, 1 - S_025, 0.5])


def test_apo_zero_unpaired_is_kto_at_z0_zero():
    # 1 − σ(β(0 − r)) = σ(βr): with z0 = 0 the two losses agree
    batch = make_batch()
    apo = APOZeroUnpairedLoss(beta=0.3, desirable_weight=1.5)(batch)
    kto = KTOLoss(beta=0.3, desirable_weight=1.5)(batch, batch_kl=torch.tensor(-2.0, dtype=torch.float64))
    assert kto.kl.item() == 0.0
    assert torch.allclose(apo.losses, kto.losses, atol=1e-12)


def test_no_gradient_through_z0_or_reference():
    batch = make_batch()
    for name in ("reference", "policy_kl", "reference_kl"):
        getattr(batch, name).requires_grad_(True)
    out = KTOLoss(beta=0.5)(batch)
    out.loss.backward()
    assert batch.reference.grad is None and batch.policy_kl.grad is None and batch.reference_kl.grad is None
    # raising a desirable response's log-prob lowers the loss; raising an undesirable one's raises it
    assert batch.policy.grad[0] < 0 < batch.policy.grad[2]


def test_mismatched_pairs_rotate_by_one():
    # TRL: [completions[-1]] + completions[:-1], so prompt i gets response i − 1 (prompt 0 gets the last)
    assert mismatched_pairs(4) == [3, 0, 1, 2]
    assert mismatched_pairs(2) == [1, 0]
    with pytest.raises(ConfigError, match="at least 2 records"):
        mismatched_pairs(1)


def test_kto_needs_kl_pairs_and_two_records():
    with pytest.raises(ConfigError, match="'kto' needs log-probs of mismatched pairs"):
        KTOLoss()(make_batch(policy_kl=None))
    one = make_batch(**{k: getattr(make_batch(), k)[:1].detach() for k in ("policy", "reference", "label")})
    one.policy_kl, one.reference_kl = one.policy.clone(), one.reference.clone()
    with pytest.raises(ConfigError, match="at least 2 records"):
        KTOLoss()(one)
    # with a precomputed batch KL (from other processes) one record is fine
    assert KTOLoss()(one, batch_kl=torch.tensor(0.1)).losses.shape == (1,)


def test_metrics_by_hand():
    batch = make_batch()
    metrics = unpaired_metrics(KTOLoss(beta=0.5)(batch), batch)
    # rewards chosen mean(0.25, −0.5) = −0.125, rejected mean(−0.25, 0) = −0.125; logps mean(−2, −5), (−3, −4)
    expected = {
        "kl": 0.25,
        "rewards/chosen": -0.125,
        "rewards/rejected": -0.125,
        "rewards/margins": 0.0,
        "logps/chosen": -3.5,
        "logps/rejected": -3.5,
    }
    assert metrics == pytest.approx(expected, abs=1e-12)
    only_desirable = make_batch(label=torch.ones(4, dtype=torch.bool))
    assert set(unpaired_metrics(KTOLoss()(only_desirable), only_desirable)) == {"kl", "rewards/chosen", "logps/chosen"}


def test_shapes_and_options_are_checked():
    with pytest.raises(ValueError, match=re.escape("UnpairedLogps.label has shape (3,); expected (4,)")):
        KTOLoss()(make_batch(label=torch.tensor([True, False, True])))
    with pytest.raises(ValueError, match="KL log-probs must both be"):
        mismatched_kl(torch.zeros(4), torch.zeros(4, 1))
    with pytest.raises(ConfigError, match="loss 'kto': beta must be a finite number > 0"):
        KTOLoss(beta=0.0)
    with pytest.raises(ConfigError, match="loss 'apo_zero_unpaired': undesirable_weight must be"):
        APOZeroUnpairedLoss(undesirable_weight=-1.0)


# ------------------------------------------------------------------------- against TRL 1.16's own code

N, T, T_KL = 6, 5, 4


def _trl():
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    trl = pytest.importorskip("trl")
    if not trl.__version__.startswith("1.16."):
        pytest.skip(f"parity is pinned to trl 1.16, found {trl.__version__}")
    return trl


class _Accelerator:
    """One process; or, with ``other_kl``, a second process whose batch KL mean was ``other_kl``."""

    device = torch.device("cpu")

    def __init__(self, other_kl=None):
        self.other_kl = other_kl
        self.calls = 0

    def gather_for_metrics(self, x):
        self.calls += 1
        if self.calls == 1 and self.other_kl is not None:  # the first gather in _compute_loss is the KL's
            return torch.stack([x, torch.as_tensor(self.other_kl, dtype=x.dtype)])
        return x


def _token_logps(g, width, lengths):
    mask = torch.tensor([[1.0] * n + [0.0] * (width - n) for n in lengths], dtype=torch.float64)
    return -torch.rand(len(lengths), width, generator=g, dtype=torch.float64) * 2 * mask, mask


def _batch(seed, labels):
    """Per-token log-probs (0 off the response, as a model with labels −100 there gives) of responses and KL pairs."""
    g = torch.Generator().manual_seed(seed)
    logp, mask = _token_logps(g, T, [5, 2, 4, 1, 3, 5])
    ref, _ = _token_logps(g, T, [5, 2, 4, 1, 3, 5])
    ref = ref * mask
    kl_lengths = [mask.sum(-1).long().tolist()[j] for j in mismatched_pairs(N)]  # the rotated responses
    kl_lengths = [min(n, T_KL) for n in kl_lengths]
    kl_logp, kl_mask = _token_logps(g, T_KL, kl_lengths)
    kl_ref, _ = _token_logps(g, T_KL, kl_lengths)
    return {
        "logp": logp,
        "mask": mask,
        "ref": ref.sum(-1),
        "kl_logp": kl_logp,
        "kl_mask": kl_mask,
        "kl_ref": (kl_ref * kl_mask).sum(-1),
        "label": torch.tensor(labels, dtype=torch.bool),
    }


def _trl_kto(data, loss_type, beta, desirable_weight, undesirable_weight, other_kl=None, policy_logp=None):
    """TRL's KTOTrainer._compute_loss on ``data`` with a fake model returning the fixed per-token log-probs."""
    policy_logp = data["logp"] if policy_logp is None else policy_logp
    calculate_kl = loss_type != "apo_zero_unpaired"  # as KTOTrainer.__init__

    def fake_model(input_ids, attention_mask, labels, fused_lm_head, use_cache=False, **kwargs):
        assert fused_lm_head
        per_token = policy_logp if input_ids.shape[1] == T + 1 else data["kl_logp"]  # KL rows are narrower
        return SimpleNamespace(
            log_probs=per_token, entropy=torch.zeros_like(per_token), mean_logits=torch.zeros_like(per_token)
        )

    trainer = object.__new__(_trl().KTOTrainer)
    attrs = {
        "model": SimpleNamespace(training=True),
        "accelerator": _Accelerator(other_kl),
        "aux_loss_enabled": False,
        "precompute_ref_logps": True,
        "calculate_KL": calculate_kl,
        "loss_type": loss_type,
        "beta": beta,
        "desirable_weight": desirable_weight,
        "undesirable_weight": undesirable_weight,
        "_metrics": defaultdict(lambda: defaultdict(list)),
        "_total_train_tokens": 0,
        "_tp_size": 1,
    }
    for key, value in attrs.items():
        setattr(trainer, key, value)
    prompt = torch.zeros(N, 1)  # one prompt token in front of each response
    inputs = {
        "input_ids": torch.ones(N, T + 1, dtype=torch.long),
        "attention_mask": torch.ones(N, T + 1, dtype=torch.long),
        "completion_mask": torch.cat([prompt, data["mask"]], 1).long(),
        "label": data["label"],
        "ref_logps": data["ref"],
    }
    if calculate_kl:
        inputs |= {
            "KL_input_ids": torch.ones(N, T_KL + 1, dtype=torch.long),
            "KL_attention_mask": torch.ones(N, T_KL + 1, dtype=torch.long),
            "KL_completion_mask": torch.cat([prompt, data["kl_mask"]], 1).long(),
            "ref_KL_logps": data["kl_ref"],
        }
    loss = trainer._compute_loss(fake_model, inputs, return_outputs=False)
    return loss, {key: values[-1] for key, values in trainer._metrics["train"].items()}


def _ours(data, policy_logp=None):
    policy_logp = data["logp"] if policy_logp is None else policy_logp
    return UnpairedLogps(
        policy=policy_logp.sum(-1),
        reference=data["ref"],
        label=data["label"],
        policy_kl=data["kl_logp"].sum(-1),
        reference_kl=data["kl_ref"],
    )


LABELS = [True, False, False, True, True, False]


@pytest.mark.parametrize(
    ("cls", "loss_type", "beta", "weights", "seed", "labels"),
    [
        # batch KL (z0 before the clamp) by seed: 0: 0.44, 1: 1.39, 2: −0.27 (z0 = 0), 3: 0.23, 4: 0.66
        (KTOLoss, "kto", 0.1, (1.0, 1.0), 0, LABELS),
        (KTOLoss, "kto", 0.5, (1.33, 0.7), 1, LABELS),
        (KTOLoss, "kto", 2.0, (1.0, 1.0), 2, [True] * 5 + [False]),
        (KTOLoss, "kto", 0.3, (1.0, 1.0), 3, [True] * N),  # no undesirable record
        (KTOLoss, "kto", 0.3, (1.0, 2.0), 4, [False] * N),  # no desirable record
        (APOZeroUnpairedLoss, "apo_zero_unpaired", 0.1, (1.0, 1.0), 0, LABELS),
        (APOZeroUnpairedLoss, "apo_zero_unpaired", 0.8, (0.5, 1.5), 5, LABELS),
    ],
)
def test_equals_trl_kto_trainer(cls, loss_type, beta, weights, seed, labels):
    data = _batch(seed, labels)
    trl_loss, trl_metrics = _trl_kto(data, loss_type, beta, *weights)
    batch = _ours(data)
    out = cls(beta=beta, desirable_weight=weights[0], undesirable_weight=weights[1])(batch)
    assert abs(out.loss.item() - trl_loss.item()) < TOL
    ours = unpaired_metrics(out, batch)
    keys = {"kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"}
    assert set(ours) == keys & set(trl_metrics)
    for key, value in ours.items():
        assert abs(value - trl_metrics[key]) < TOL, key


def test_z0_clamped_like_trl():
    # Make the policy's KL pairs far less likely than the reference's: the batch KL is negative, z0 = 0.
    data = _batch(6, LABELS)
    data["kl_ref"] = data["kl_ref"] + 5.0
    trl_loss, trl_metrics = _trl_kto(data, "kto", 0.4, 1.0, 1.0)
    out = KTOLoss(beta=0.4)(_ours(data))
    assert trl_metrics["kl"] == 0.0 == out.kl.item()
    assert abs(out.loss.item() - trl_loss.item()) < TOL


@pytest.mark.parametrize("case", ["other_higher", "clamp_after_mean"])
def test_two_processes_need_the_averaged_batch_kl(case):
    # TRL averages the per-process KL means, then clamps. With a second process whose batch KL was `other`,
    # ours equals TRL's when given batch_kl = mean(local, other) (equal batch sizes), not from this batch alone.
    data = _batch(7, LABELS)
    batch = _ours(data)
    local = mismatched_kl(batch.policy_kl, batch.reference_kl)
    assert local < 0  # this batch alone gives z0 = 0
    # other_higher: other = 3, z0 = (local + 3)/2 ; clamp_after_mean: other = 2 − local, so z0 = 1, whereas
    # averaging the clamped per-process values would give (0 + 2 − local)/2
    other = 3.0 if case == "other_higher" else 2.0 - local.item()
    trl_loss, trl_metrics = _trl_kto(data, "kto", 0.5, 1.0, 1.0, other_kl=other)
    assert trl_metrics["kl"] > 0
    out = KTOLoss(beta=0.5)(batch, batch_kl=(local + other) / 2)
    assert abs(out.loss.item() - trl_loss.item()) < TOL
    assert abs(out.kl.item() - trl_metrics["kl"]) < TOL
    assert abs(KTOLoss(beta=0.5)(batch).loss.item() - trl_loss.item()) > 1e-4


def test_gradients_equal_trl():
    data = _batch(8, LABELS)
    grads = []
    for run in ("trl", "ours"):
        logp = data["logp"].clone().requires_grad_(True)
        if run == "trl":
            loss, _ = _trl_kto(data, "kto", 0.5, 1.2, 0.8, policy_logp=logp)
        else:
            loss = KTOLoss(beta=0.5, desirable_weight=1.2, undesirable_weight=0.8)(_ours(data, logp)).loss
        loss.backward()
        grads.append(logp.grad)
    assert torch.allclose(grads[0], grads[1], atol=TOL, rtol=0)
