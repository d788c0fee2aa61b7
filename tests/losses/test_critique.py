"""The critique-then-score loss by hand: the NLL of exactly the labelled (critique) tokens, shifted by one, and
L = mean(BT) + w · (summed NLL / critique tokens).

The hand-worked batch: 2 rows, 4 positions, a vocabulary of 2. Position t − 1 predicts the token at t.
Row 0 labels [-100, -100, 1, 0]: the critique is tokens 2 and 3, predicted at positions 1 and 2.
  position 1 logits [0, ln 3] → p(1) = 3/4 → NLL ln(4/3);  position 2 logits [0, 0] → p(0) = 1/2 → NLL ln 2.
Row 1 labels [-100, 1, -100, -100]: one critique token, predicted at position 0.
  position 0 logits [ln 3, 0] → p(1) = 1/4 → NLL ln 4.
Every other position has huge logits, which would dominate if they were read.
Sums [ln(8/3), ln 4], counts [2, 1]; mean per token (ln(8/3) + ln 4) / 3 = ln(32/3) / 3.
"""

from __future__ import annotations

import math

import pytest
import torch

from mmalign.losses.critique import critique_loss, critique_nll

LN3 = math.log(3.0)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor(
        [
            [[50.0, -50.0], [0.0, LN3], [0.0, 0.0], [90.0, -90.0]],
            [[LN3, 0.0], [-70.0, 70.0], [30.0, -30.0], [-40.0, 40.0]],
        ],
        dtype=torch.float64,
        requires_grad=True,
    )
    labels = torch.tensor([[-100, -100, 1, 0], [-100, 1, -100, -100]])
    return logits, labels


def test_critique_nll_reads_exactly_the_labelled_tokens():
    logits, labels = batch()
    nll_sum, n_tokens = critique_nll(logits, labels)
    assert n_tokens.tolist() == [2, 1]
    assert nll_sum.tolist() == pytest.approx([math.log(8 / 3), math.log(4.0)], abs=1e-6)
    # the mask: only the three predicting positions get a gradient
    nll_sum.sum().backward()
    touched = (logits.grad.abs().sum(-1) > 0).tolist()
    assert touched == [[False, True, True, False], [True, False, False, False]]


def test_critique_loss_is_mean_bt_plus_weighted_mean_token_nll():
    logits, labels = batch()
    nll_sum, n_tokens = critique_nll(logits, labels)
    pair_losses = torch.tensor([0.5, 1.5], dtype=torch.float64)
    total, mean_nll = critique_loss(pair_losses, nll_sum, n_tokens, weight=0.5)
    # mean BT = 1.0; mean NLL per critique token = ln(32/3) / 3 = 0.7890...
    assert mean_nll.item() == pytest.approx(math.log(32 / 3) / 3, abs=1e-6)
    assert total.item() == pytest.approx(1.0 + 0.5 * math.log(32 / 3) / 3, abs=1e-6)
    assert not mean_nll.requires_grad and total.requires_grad
    # weight 0: the plain Bradley-Terry loss; no critique token at all: the NLL term is 0, not NaN
    assert critique_loss(pair_losses, nll_sum, n_tokens, 0.0)[0].item() == pytest.approx(1.0)
    empty = critique_loss(pair_losses, torch.zeros(2), torch.zeros(2, dtype=torch.long), 1.0)
    assert empty[0].item() == pytest.approx(1.0) and empty[1].item() == 0.0


def test_misaligned_logits_and_labels_are_refused():
    logits, labels = batch()
    with pytest.raises(ValueError, match="do not line up"):
        critique_nll(logits[:, :3], labels)
