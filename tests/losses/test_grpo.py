"""The GRPO-family loss: by hand, and equal to TRL 1.16's GRPOTrainer._compute_loss on the same log-probs.

The hand-worked batch: B = 2 completions, T = 3 tokens, the first completion's last token is padding.
policy  [[-1.0, -2.0, -9.0], [-0.5, -1.5, -1.0]]       old [[-1.0, -2.2, -9.0], [-0.2, -1.5, -1.4]]
log ρ   [[ 0,    0.2,  0  ], [-0.3,  0,    0.4]]       ρ   [[1, 1.2214028, 1], [0.7408182, 1, 1.4918247]]
advantages (1, −1), ε = 0.2: clip(ρ) = [[1, 1.2, 1], [0.8, 1, 1.2]]
per token −min(ρA, clip(ρ)A) = [[-1, -1.2, ·], [0.8, 1, 1.4918247]]
(token (0, 1): ρ > 1 + ε with A > 0, clipped high; token (1, 0): ρ < 1 − ε with A < 0, clipped low.)
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.rloo_trainer import RLOOTrainer

from mmalign.errors import ConfigError
from mmalign.losses.grpo import LOSS_TYPES, GRPOLoss, RolloutLogps, k3_kl, sequence_kl_penalty

TOL = 1e-6
R = math.exp(0.2)  # 1.2214028
R_LOW = math.exp(-0.3)  # 0.7408182
R_HIGH = math.exp(0.4)  # 1.4918247
TOKENS = [[-1.0, -1.2], [0.8, 1.0, R_HIGH]]  # the per-token losses of the active tokens


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def make_logps(old: bool = True, reference: bool = False, entropy: bool = False) -> RolloutLogps:
    return RolloutLogps(
        policy=t([[-1.0, -2.0, -9.0], [-0.5, -1.5, -1.0]]).requires_grad_(True),
        mask=torch.tensor([[1, 1, 0], [1, 1, 1]]),
        old=t([[-1.0, -2.2, -9.0], [-0.2, -1.5, -1.4]]) if old else None,
        reference=t([[-1.0 + math.log(2), -2.0, -9.0], [-0.5 - math.log(2), -1.5, -1.0]]) if reference else None,
        entropy=t([[0.5, 1.5, 9.0], [1.0, 2.0, 3.0]]) if entropy else None,
    )


ADV = t([1.0, -1.0])


def test_aggregations_by_hand():
    row0, row1 = sum(TOKENS[0]), sum(TOKENS[1])  # -2.2 and 3.2918247
    expected = {
        "grpo": (row0 / 2 + row1 / 3) / 2,  # each completion's token mean, then the mean: -0.0013626
        "bnpo": (row0 + row1) / 5,  # 5 active tokens: 0.2183649
        "dr_grpo": (row0 + row1) / (2 * 4),  # B · max_completion_length = 8
        "dapo": (row0 + row1) / 5,  # num_tokens defaults to this batch's: bnpo
    }
    for loss_type, value in expected.items():
        out = GRPOLoss(loss_type=loss_type, max_completion_length=4)(make_logps(), ADV)
        assert out.loss.item() == pytest.approx(value, abs=1e-12), loss_type
    # dapo over an accumulated batch of 10 tokens
    assert GRPOLoss()(make_logps(), ADV, num_tokens=10).loss.item() == pytest.approx((row0 + row1) / 10, abs=1e-12)


def test_gradient_by_hand_is_zero_on_clipped_tokens():
    logps = make_logps()
    GRPOLoss(loss_type="bnpo")(logps, ADV).loss.backward()
    # d(−ρA)/d log π = −Aρ on unclipped tokens, 0 on clipped ones (and padding); bnpo divides by 5 tokens
    expected = [[-1 / 5, 0.0, 0.0], [0.0, 1 / 5, R_HIGH / 5]]
    assert torch.allclose(logps.policy.grad, t(expected), atol=1e-12)


def test_clip_metrics_by_hand():
    out = GRPOLoss(loss_type="bnpo")(make_logps(entropy=True), ADV)
    assert out.metrics == pytest.approx(
        {
            "clip_ratio/low_mean": 1 / 5,
            "clip_ratio/high_mean": 1 / 5,
            "clip_ratio/region_mean": 2 / 5,
            "clip_ratio/low_min": 0.0,  # per completion: low (0, 1/3), high (1/2, 0)
            "clip_ratio/high_max": 0.5,
            "entropy": (0.5 + 1.5 + 1 + 2 + 3) / 5,  # the padded 9.0 is not counted
        },
        abs=1e-12,
    )


def test_epsilon_high_and_delta():
    # ε_high = 0.25: token (0, 1) (ρ = 1.2214) is no longer clipped → −1.2214028
    out = GRPOLoss(loss_type="bnpo", epsilon_high=0.25)(make_logps(), ADV)
    assert out.loss.item() == pytest.approx((-1 - R + sum(TOKENS[1])) / 5, abs=1e-12)
    # δ = 1.3 caps the unclipped ratio: token (1, 2) (ρ = 1.4918, A = −1) → −min(−1.3, −1.2) = 1.3
    out = GRPOLoss(loss_type="bnpo", delta=1.3)(make_logps(), ADV)
    assert out.loss.item() == pytest.approx((sum(TOKENS[0]) + 0.8 + 1 + 1.3) / 5, abs=1e-12)


def test_k3_by_hand():
    # q = log π_ref − log π: exp(q) − q − 1 = (2 − ln 2 − 1, 0, 0.5 + ln 2 − 1) for q = (ln 2, 0, −ln 2)
    policy = t([0.0, 0.0, 0.0]).requires_grad_(True)
    kl = k3_kl(policy, t([math.log(2), 0.0, -math.log(2)]))
    assert torch.allclose(kl, t([1 - math.log(2), 0.0, math.log(2) - 0.5]), atol=1e-12)
    kl.sum().backward()  # d/d log π = 1 − exp(q) = (−1, 0, 0.5)
    assert torch.allclose(policy.grad, t([-1.0, 0.0, 0.5]), atol=1e-12)


def test_beta_adds_the_k3_kl_per_token():
    # reference differs on token 0 of each completion: q = ln 2 (KL 0.3068528) and q = −ln 2 (KL 0.1931472)
    beta, kl0, kl1 = 0.1, 1 - math.log(2), math.log(2) - 0.5
    out = GRPOLoss(loss_type="bnpo", beta=beta)(make_logps(reference=True), ADV)
    base = sum(TOKENS[0]) + sum(TOKENS[1])
    assert out.loss.item() == pytest.approx((base + beta * (kl0 + kl1)) / 5, abs=1e-12)
    assert out.metrics["kl"] == pytest.approx((kl0 + kl1) / 5, abs=1e-12)
    with pytest.raises(ConfigError, match="reference model's log-probs"):
        GRPOLoss(beta=0.1)(make_logps(), ADV)


def test_on_policy_ratio_is_one_with_the_policy_gradient():
    logps = make_logps(old=False)
    out = GRPOLoss(loss_type="grpo")(logps, ADV)
    assert out.loss.item() == pytest.approx((-1 + 1) / 2, abs=1e-12)  # −A per token: means −1 and 1
    out.loss.backward()
    # ∇ = −A / (completion length) / B on active tokens
    assert torch.allclose(logps.policy.grad, t([[-1 / 4, -1 / 4, 0.0], [1 / 6, 1 / 6, 1 / 6]]), atol=1e-12)
    assert out.metrics["clip_ratio/region_mean"] == 0.0


def test_sequence_level_ratio_is_the_mean_token_log_ratio():
    # GSPO: completion 0 has log ρ = mean(0, 0.2) = 0.1, completion 1 mean(−0.3, 0, 0.4) = 0.0333
    out = GRPOLoss(loss_type="grpo", importance_sampling_level="sequence")(make_logps(), ADV)
    r0, r1 = math.exp(0.1), math.exp(0.1 / 3)
    assert out.loss.item() == pytest.approx((-r0 + r1) / 2, abs=1e-12)  # neither is clipped


def test_rloo_loss_by_hand():
    # summed log-ratios: completion 0: 0 + 0.2 = 0.2 (the padded token is not counted), completion 1: −0.3 + 0 + 0.4
    # = 0.1; ratios e^0.2 = 1.2214 (A = 1: clipped at 1.2) and e^0.1 = 1.1052 (A = −1: unclipped)
    logps = make_logps()
    out = GRPOLoss(loss_type="rloo")(logps, ADV)
    assert out.loss.item() == pytest.approx((-1.2 + math.exp(0.1)) / 2, abs=1e-12)
    out.loss.backward()  # completion 0 clipped: 0; completion 1: d(ρ)/d log π = ρ on each active token, / B
    expected = [[0.0, 0.0, 0.0], [math.exp(0.1) / 2] * 3]
    assert torch.allclose(logps.policy.grad, t(expected), atol=1e-12)
    assert out.metrics["clip_ratio/high_mean"] == 0.5  # one of two completions


def test_sequence_kl_penalty_by_hand():
    # Σ m·(old − ref): completion 0: (−1 − (−1 + ln 2)) + (−2.2 − (−2)) = −ln 2 − 0.2; completion 1:
    # (−0.2 − (−0.5 − ln 2)) + (−1.5 + 1.5) + (−1.4 + 1) = 0.3 + ln 2 − 0.4
    logps = make_logps(reference=True)
    kl = sequence_kl_penalty(logps.old, logps.reference, logps.mask)
    assert torch.allclose(kl, t([-math.log(2) - 0.2, math.log(2) - 0.1]), atol=1e-12)


def test_bad_options_fail_at_start():
    with pytest.raises(ConfigError, match="loss_type must be one of"):
        GRPOLoss(loss_type="ppo")
    with pytest.raises(ConfigError, match="needs max_completion_length"):
        GRPOLoss(loss_type="dr_grpo")
    with pytest.raises(ConfigError, match="use importance_sampling_level token"):
        GRPOLoss(loss_type="dapo", importance_sampling_level="sequence")
    with pytest.raises(ConfigError, match="'rloo' takes its KL as a reward penalty"):
        GRPOLoss(loss_type="rloo", beta=0.1)
    with pytest.raises(ConfigError, match="epsilon must be a finite number >= 0"):
        GRPOLoss(epsilon=-0.1)
    with pytest.raises(ConfigError, match=r"advantages must be \(B,\) or \(B, T\)"):
        GRPOLoss()(make_logps(), t([1.0, 2.0, 3.0]))


# ------------------------------------------------------------------------------------ TRL 1.16's own code


class _OneProcess:
    num_processes = 1

    def reduce(self, tensor, reduction="sum"):
        return tensor

    def gather(self, tensor):
        return tensor


def trl_compute_loss(loss: GRPOLoss, logps: RolloutLogps, advantages: torch.Tensor, num_items: float | None = None):
    """TRL's ``GRPOTrainer._compute_loss`` on ``logps``: a stand-in ``self`` carrying the config, whose model
    forward returns ``logps.policy`` (a fresh leaf) and ``logps.entropy``. Returns (loss, policy leaf, metrics)."""
    policy = logps.policy.detach().clone().requires_grad_(True)
    entropy = logps.entropy if logps.entropy is not None else torch.zeros_like(policy)
    b, n = policy.shape
    trainer = SimpleNamespace(
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level=loss.importance_sampling_level,
        beta=loss.beta,
        loss_type=loss.loss_type,
        epsilon_low=loss.epsilon_low,
        epsilon_high=loss.upper,
        max_completion_length=loss.max_completion_length,
        args=SimpleNamespace(
            use_bias_correction_kl=loss.kl_bias_correction,
            delta=loss.delta,
            sapo_temperature_pos=loss.sapo_temperature_pos,
            sapo_temperature_neg=loss.sapo_temperature_neg,
            steps_per_generation=1,
        ),
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        accelerator=_OneProcess(),
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        _metrics={"train": defaultdict(list)},
        _get_per_token_logps_and_entropies=lambda *args, **kwargs: (policy, entropy, None),
    )
    mask = logps.mask.long()
    inputs = {
        "prompt_ids": torch.zeros((b, 2), dtype=torch.long),
        "prompt_mask": torch.ones((b, 2), dtype=torch.long),
        "completion_ids": torch.zeros((b, n), dtype=torch.long),
        "completion_mask": mask,
        "advantages": advantages,
        "num_items_in_batch": torch.tensor(float(mask.sum() if num_items is None else num_items)),
    }
    if logps.old is not None:
        inputs["old_per_token_logps"] = logps.old
    if logps.reference is not None:
        inputs["ref_per_token_logps"] = logps.reference
    out = GRPOTrainer._compute_loss(trainer, None, inputs)
    metrics = {name: values[0] for name, values in trainer._metrics["train"].items()}
    return out, policy, metrics


def random_logps(seed: int, b: int = 4, n: int = 6) -> tuple[RolloutLogps, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    policy = -torch.rand(b, n, generator=g, dtype=torch.float64) * 3
    mask = torch.ones(b, n, dtype=torch.long)
    for i in range(b):
        mask[i, n - i :] = 0  # lengths n, n − 1, …
    logps = RolloutLogps(
        policy=policy.requires_grad_(True),
        mask=mask,
        old=policy.detach() + (torch.rand(b, n, generator=g, dtype=torch.float64) - 0.5) * 0.8,  # ρ in ~(0.67, 1.5)
        reference=policy.detach() + (torch.rand(b, n, generator=g, dtype=torch.float64) - 0.5),
        entropy=torch.rand(b, n, generator=g, dtype=torch.float64) * 2,
    )
    advantages = torch.randn(b, generator=g, dtype=torch.float64)
    return logps, advantages


CASES = [
    *({"loss_type": name} for name in LOSS_TYPES if name not in ("luspo", "rloo")),
    {"loss_type": "luspo", "importance_sampling_level": "sequence"},
    {"loss_type": "grpo", "importance_sampling_level": "sequence", "beta": 0.05},
    {"loss_type": "sapo", "importance_sampling_level": "sequence"},
    {"loss_type": "dapo", "epsilon_high": 0.28, "beta": 0.04},
    {"loss_type": "bnpo", "delta": 1.25, "beta": 0.1, "kl_bias_correction": True},
    {"loss_type": "grpo", "epsilon": 0.1, "epsilon_high": 0.3, "beta": 0.02},
    {"loss_type": "cispo", "epsilon_high": 1.2, "beta": 0.04},
    {"loss_type": "dr_grpo", "beta": 0.04},
]


@pytest.mark.parametrize("options", CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("on_policy", [False, True], ids=["off-policy", "on-policy"])
def test_equals_trl_loss_gradient_and_metrics(options, on_policy):
    loss = GRPOLoss(max_completion_length=8, **options)
    for seed in range(3):
        logps, advantages = random_logps(seed)
        if on_policy:
            logps.old = None
        num_items = None if loss.loss_type not in ("dapo", "cispo") else 31.0  # a bigger accumulated batch
        theirs, their_policy, their_metrics = trl_compute_loss(loss, logps, advantages, num_items)
        ours = loss(logps, advantages, num_tokens=num_items)
        assert abs(ours.loss.item() - theirs.item()) < TOL
        ours.loss.backward()
        theirs.backward()
        assert torch.allclose(logps.policy.grad, their_policy.grad, atol=TOL, rtol=0)
        assert logps.policy.grad.abs().sum() > 0
        assert set(ours.metrics) == set(their_metrics)
        assert ours.metrics == pytest.approx(their_metrics, abs=TOL)


def test_trl_comparison_sees_clipping_on_both_sides():
    # the random cases above exercise both clip bounds, so equality there covers the clipped branches
    low = high = 0
    for seed in range(3):
        logps, advantages = random_logps(seed)
        metrics = GRPOLoss(loss_type="bnpo")(logps, advantages).metrics
        low += metrics["clip_ratio/low_mean"] > 0
        high += metrics["clip_ratio/high_mean"] > 0
    assert low > 0 and high > 0


def trl_rloo_loss(loss: GRPOLoss, logps: RolloutLogps, advantages: torch.Tensor):
    """TRL's ``RLOOTrainer._compute_loss`` on ``logps`` (its ``old_logps`` are the summed old log-probs)."""
    policy = logps.policy.detach().clone().requires_grad_(True)
    b, n = policy.shape
    trainer = SimpleNamespace(
        epsilon_low=loss.epsilon_low,
        epsilon_high=loss.upper,
        model=SimpleNamespace(training=True),
        aux_loss_enabled=False,
        accelerator=_OneProcess(),
        _metrics={"train": defaultdict(list)},
        _get_per_token_logps_and_entropies=lambda *args, **kwargs: (policy, logps.entropy, None),
    )
    mask = logps.mask.long()
    old = policy.detach() if logps.old is None else logps.old
    inputs = {
        "prompt_ids": torch.zeros((b, 2), dtype=torch.long),
        "prompt_mask": torch.ones((b, 2), dtype=torch.long),
        "completion_ids": torch.zeros((b, n), dtype=torch.long),
        "completion_mask": mask,
        "advantages": advantages,
        "old_logps": (old * mask).sum(1),
    }
    out = RLOOTrainer._compute_loss(trainer, None, inputs)
    return out, policy, {name: values[0] for name, values in trainer._metrics["train"].items()}


@pytest.mark.parametrize("options", [{}, {"epsilon": 0.1, "epsilon_high": 0.3}], ids=["default", "asymmetric"])
@pytest.mark.parametrize("on_policy", [False, True], ids=["off-policy", "on-policy"])
def test_rloo_equals_trl_loss_gradient_and_metrics(options, on_policy):
    loss = GRPOLoss(loss_type="rloo", **options)
    clipped = 0.0
    for seed in range(3):
        logps, advantages = random_logps(seed)
        if on_policy:
            logps.old = None
        theirs, their_policy, their_metrics = trl_rloo_loss(loss, logps, advantages)
        ours = loss(logps, advantages)
        assert abs(ours.loss.item() - theirs.item()) < TOL
        ours.loss.backward()
        theirs.backward()
        assert torch.allclose(logps.policy.grad, their_policy.grad, atol=TOL, rtol=0)
        assert ours.metrics == pytest.approx(their_metrics, abs=TOL)
        clipped += ours.metrics["clip_ratio/region_mean"]
    assert (clipped > 0) == (not on_policy)  # off-policy cases do reach the clip
