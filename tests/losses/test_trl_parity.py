"""Our losses equal TRL 1.16's on the same inputs (to 1e-6), running TRL's own code paths.

No trainer is built: each TRL trainer is made with ``object.__new__`` and given only the attributes its
loss code reads, and a fake model returns fixed per-token log-probs (DPO) or logits (CPO, ORPO).
TRL 1.16 has no cDPO (its ``sigmoid`` ignores ``label_smoothing``): cdpo is checked against the formula only.
"""

from __future__ import annotations

import os
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from mmalign.losses import PolicyLogps, ReferenceLogps, build_loss

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
trl = pytest.importorskip("trl")
if not trl.__version__.startswith("1.16."):
    pytest.skip(f"parity is pinned to trl 1.16, found {trl.__version__}", allow_module_level=True)

from trl import DPOTrainer  # noqa: E402
from trl.experimental.cpo import CPOTrainer  # noqa: E402
from trl.experimental.orpo import ORPOTrainer  # noqa: E402

B, T, V = 4, 6, 11
TOL = 1e-6


class _Accelerator:
    device = torch.device("cpu")

    def gather_for_metrics(self, x):
        return x

    def gather(self, x):
        return x


def _token_batch(seed: int = 0, dtype=torch.float64):
    """Per-token log-probs and masks of varied lengths (chosen 6, 3, 5, 1 tokens; rejected 2, 6, 4, 5)."""
    g = torch.Generator().manual_seed(seed)
    lengths_c, lengths_r = [6, 3, 5, 1], [2, 6, 4, 5]
    mask_c = torch.tensor([[1.0] * n + [0.0] * (T - n) for n in lengths_c], dtype=dtype)
    mask_r = torch.tensor([[1.0] * n + [0.0] * (T - n) for n in lengths_r], dtype=dtype)
    logp_c = -torch.rand(B, T, generator=g, dtype=dtype) * 2 * mask_c
    logp_r = -torch.rand(B, T, generator=g, dtype=dtype) * 2 * mask_r
    ref_c = -torch.rand(B, T, generator=g, dtype=dtype) * 2 * mask_c
    ref_r = -torch.rand(B, T, generator=g, dtype=dtype) * 2 * mask_r
    return logp_c, mask_c, logp_r, mask_r, ref_c, ref_r


def _trl_dpo(loss_types, loss_weights, beta, label_smoothing=0.0, seed=0):
    """TRL's DPOTrainer._compute_loss on ``_token_batch(seed)``: (loss, logged metrics)."""
    logp_c, mask_c, logp_r, mask_r, ref_c, ref_r = _token_batch(seed)
    per_token = torch.cat([logp_c, logp_r])  # batch is [chosen, rejected]
    model = SimpleNamespace(training=True)
    model_out = SimpleNamespace(
        log_probs=per_token,
        entropy=torch.zeros(2 * B, T),
        mean_logits=torch.zeros(2 * B, T),
        is_top1=torch.zeros(2 * B, T, dtype=torch.bool),
    )

    def fake_model(**kwargs):  # TRL calls model(**inputs, labels=..., fused_lm_head=True)
        assert kwargs["fused_lm_head"]
        return model_out

    trainer = object.__new__(DPOTrainer)
    attrs = {
        "model": model,
        "accelerator": _Accelerator(),
        "aux_loss_enabled": False,
        "ld_alpha": None,
        "precompute_ref_logps": True,
        "f_divergence_type": "reverse_kl",
        "loss_types": loss_types,
        "loss_weights": loss_weights,
        "beta": beta,
        "label_smoothing": label_smoothing,
        "use_weighting": False,
        "_metrics": defaultdict(lambda: defaultdict(list)),
        "_total_train_tokens": 0,
        "_tp_size": 1,
    }
    for key, value in attrs.items():
        setattr(trainer, key, value)
    # completion_mask has one prompt token in front: the shifted mask is the response mask
    completion_mask = torch.cat([torch.zeros(2 * B, 1), torch.cat([mask_c, mask_r])], dim=1).long()
    inputs = {
        "input_ids": torch.zeros(2 * B, T + 1, dtype=torch.long),
        "attention_mask": torch.ones(2 * B, T + 1, dtype=torch.long),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_c.sum(-1),
        "ref_rejected_logps": ref_r.sum(-1),
    }
    loss = trainer._compute_loss(fake_model, inputs, return_outputs=False)
    return loss, {k: v[-1] for k, v in trainer._metrics["train"].items()}


def _ours(name, seed=0, **options):
    logp_c, mask_c, logp_r, mask_r, ref_c, ref_r = _token_batch(seed)
    policy = PolicyLogps.from_token_logps(logp_c, mask_c, logp_r, mask_r)
    reference = ReferenceLogps(ref_c.sum(-1), ref_r.sum(-1), ref_c, ref_r)
    loss = build_loss(name, **options)
    return loss(policy, reference if loss.needs_reference else None)


@pytest.mark.parametrize(
    ("name", "options", "trl_type", "trl_smoothing"),
    [
        ("sigmoid", {"beta": 0.1}, "sigmoid", 0.0),
        ("sigmoid", {"beta": 0.7}, "sigmoid", 0.0),
        ("hinge", {"beta": 0.3}, "hinge", 0.0),
        ("ipo", {"beta": 0.1}, "ipo", 0.0),
        ("ipo", {"beta": 0.4}, "ipo", 0.0),
        ("robust", {"beta": 0.2, "flip_rate": 0.2}, "robust", 0.2),
        ("robust", {"beta": 0.5, "flip_rate": 0.0}, "robust", 0.0),
    ],
)
def test_dpo_family_equals_trl(name, options, trl_type, trl_smoothing):
    trl_loss, trl_metrics = _trl_dpo([trl_type], [1.0], options["beta"], trl_smoothing)
    out = _ours(name, **options)
    assert abs(out.loss.item() - trl_loss.item()) < TOL
    assert abs(out.chosen_rewards.mean().item() - trl_metrics["rewards/chosen"]) < TOL
    assert abs(out.rejected_rewards.mean().item() - trl_metrics["rewards/rejected"]) < TOL
    margins = (out.chosen_rewards - out.rejected_rewards).mean().item()
    assert abs(margins - trl_metrics["rewards/margins"]) < TOL
    accuracy = (out.chosen_rewards > out.rejected_rewards).float().mean().item()
    assert accuracy == trl_metrics["rewards/accuracies"]


def test_unnormalised_ipo_differs_from_trl_on_purpose():
    # Responses have different lengths, so dividing by token counts changes the value.
    trl_loss, _ = _trl_dpo(["ipo"], [1.0], 0.1)
    ours = _ours("ipo", beta=0.1, length_normalized=False)
    assert abs(ours.loss.item() - trl_loss.item()) > 1e-2


@pytest.mark.parametrize("alpha", [1.0, 0.25])
def test_rpo_equals_trl_sigmoid_plus_sft(alpha):
    # TRL 1.16 has no rpo_alpha: RPO is loss_type=["sigmoid", "sft"] weighted [1, alpha].
    trl_loss, _ = _trl_dpo(["sigmoid", "sft"], [1.0, alpha], 0.1)
    out = _ours("rpo", beta=0.1, alpha=alpha)
    assert abs(out.loss.item() - trl_loss.item()) < TOL


def test_rpo_sequence_reduction_differs_from_trl_tokens():
    trl_loss, _ = _trl_dpo(["sigmoid", "sft"], [1.0, 1.0], 0.1)
    out = _ours("rpo", beta=0.1, alpha=1.0, nll_reduction="sequence")
    assert abs(out.loss.item() - trl_loss.item()) > 1e-3


# ------------------------------------------------------------------------------ CPO (simpo) and ORPO


def _logit_batch(seed: int = 1):
    """A batch through TRL's tokenised layout: prompt of one token, responses of varied lengths, random logits."""
    g = torch.Generator().manual_seed(seed)
    lengths_c, lengths_r = [5, 2, 4, 3], [3, 5, 1, 4]
    length = 1 + max(lengths_c + lengths_r)

    def side(lengths):
        ids = torch.randint(1, V, (B, length), generator=g)
        attention = torch.tensor([[1] * (1 + n) + [0] * (length - 1 - n) for n in lengths])
        labels = torch.where(attention.bool(), ids, -100)
        labels[:, 0] = -100  # the prompt token is not a target
        return ids * attention, attention, labels

    ids_c, att_c, lab_c = side(lengths_c)
    ids_r, att_r, lab_r = side(lengths_r)
    batch = {
        "chosen_input_ids": ids_c,
        "chosen_attention_mask": att_c,
        "chosen_labels": lab_c,
        "rejected_input_ids": ids_r,
        "rejected_attention_mask": att_r,
        "rejected_labels": lab_r,
    }
    logits = torch.randn(2 * B, length, V, generator=g, dtype=torch.float64) * 2
    return batch, logits


def _policy_from_logits(batch, logits):
    """Our PolicyLogps from the same logits: token t is predicted by position t − 1."""
    logps = logits.log_softmax(-1)[:, :-1]
    labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]])[:, 1:]
    mask = labels != -100
    token_logps = logps.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return PolicyLogps.from_token_logps(token_logps[:B], mask[:B], token_logps[B:], mask[B:])


def _minimal(cls, **attrs):
    trainer = object.__new__(cls)
    common = {
        "accelerator": _Accelerator(),
        "is_encoder_decoder": False,
        "aux_loss_enabled": False,
        "pad_token_id": 0,
        "padding_value": 0,
        "label_pad_token_id": -100,
    }
    for key, value in {**common, **attrs}.items():
        setattr(trainer, key, value)
    return trainer


def _model_returning(logits):
    def model(input_ids, attention_mask=None, use_cache=False, **kwargs):
        assert input_ids.shape == logits.shape[:2]
        return SimpleNamespace(logits=logits)

    return model


@pytest.mark.parametrize(("beta", "gamma"), [(2.0, 1.0), (0.1, 0.5), (2.5, 0.0)])
def test_simpo_equals_trl_cpo_simpo(beta, gamma):
    batch, logits = _logit_batch()
    trainer = _minimal(
        CPOTrainer, loss_type="simpo", beta=beta, simpo_gamma=gamma, cpo_alpha=0.0, alpha=0.0, label_smoothing=0.0
    )
    trl_loss, trl_metrics = trainer.get_batch_loss_metrics(_model_returning(logits), batch)
    out = build_loss("simpo", beta=beta, gamma=gamma)(_policy_from_logits(batch, logits))
    assert abs(out.loss.item() - trl_loss.item()) < TOL
    assert abs(out.chosen_rewards.mean().item() - trl_metrics["rewards/chosen"]) < TOL
    assert abs(out.rejected_rewards.mean().item() - trl_metrics["rewards/rejected"]) < TOL


@pytest.mark.parametrize("lam", [0.1, 0.5])
def test_orpo_equals_trl(lam):
    # With a one-token prompt TRL's NLL (prompt + response, over all batch tokens) is the response NLL over
    # all chosen tokens of the batch: our default nll_reduction="tokens", with no chosen_nll given.
    batch, logits = _logit_batch()
    trainer = _minimal(ORPOTrainer, beta=lam)
    trl_loss, trl_metrics = trainer.get_batch_loss_metrics(_model_returning(logits), batch)
    out = build_loss("orpo", odds_ratio_weight=lam)(_policy_from_logits(batch, logits))
    assert abs(out.loss.item() - trl_loss.item()) < TOL
    assert abs(out.metrics["nll"].item() - trl_metrics["nll_loss"]) < TOL
    assert abs(out.metrics["log_odds_ratio"].item() - trl_metrics["log_odds_ratio"]) < TOL
    assert abs(out.metrics["log_odds_chosen"].item() - trl_metrics["log_odds_chosen"]) < TOL
    assert abs(out.chosen_rewards.mean().item() - trl_metrics["rewards/chosen"]) < TOL
    assert abs(out.rejected_rewards.mean().item() - trl_metrics["rewards/rejected"]) < TOL


def test_orpo_odds_ratio_term_equals_trl_per_example():
    policy = _policy_from_logits(*_logit_batch(seed=3))
    trainer = _minimal(ORPOTrainer, beta=0.2)
    trl_losses, *_ = trainer.odds_ratio_loss(policy.chosen_mean, policy.rejected_mean)
    out = build_loss("orpo", odds_ratio_weight=0.2)(policy)
    nll = -policy.chosen * (B / policy.chosen_tokens.sum())
    # TRL's per-example losses are λ·log σ(log odds); ours are nll − that
    assert torch.allclose(out.losses, nll - trl_losses.double(), atol=TOL)
