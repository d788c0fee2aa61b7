"""Dense DPO (RLHF-V) and the character-span → token helpers."""

from __future__ import annotations

import math

import pytest
import torch

from mmalign.errors import ConfigError
from mmalign.losses import DenseDPOLoss, PolicyLogps, ReferenceLogps, SigmoidLoss, span_token_mask, span_token_weights

TEXT = "A red circle and a star."
# tokens with their leading space, as byte-level BPE tokenizers make them:
#   "A" (0,1)  " red" (1,5)  " circle" (5,12)  " and" (12,16)  " a" (16,18)  " star" (18,23)  "." (23,24)
OFFSETS = [(0, 1), (1, 5), (5, 12), (12, 16), (16, 18), (18, 23), (23, 24)]


# ------------------------------------------------------------------------------------------- spans


def test_span_covers_every_overlapping_token():
    assert TEXT[17:23] == "a star"
    assert span_token_mask(OFFSETS, [(17, 23)]) == [False, False, False, False, True, True, False]


def test_span_end_is_exclusive_and_partial_words_count():
    # [12, 13) is the space before "and": it lies in " and" (12,16), not in " circle" (5,12)
    assert span_token_mask(OFFSETS, [[12, 13]]) == [False, False, False, True, False, False, False]
    # "ta" inside "star" marks the whole token
    assert span_token_mask(OFFSETS, [(20, 22)]) == [False] * 5 + [True, False]


def test_no_spans_and_special_tokens():
    assert span_token_mask(OFFSETS, None) == [False] * 7
    assert span_token_mask(OFFSETS, []) == [False] * 7
    # a BOS token with offsets (0, 0) is never inside, even when a span starts at 0
    assert span_token_mask([(0, 0), *OFFSETS], [(0, 5)]) == [False, True, True, False, False, False, False, False]


def test_offset_of_the_response_in_the_tokenized_string():
    # the chat template put 10 characters before the response: token offsets are shifted, spans are not
    shifted = [(0, 0), (0, 10)] + [(s + 10, e + 10) for s, e in OFFSETS]
    assert span_token_mask(shifted, [(17, 23)], offset=10) == [False, False] + [False] * 4 + [True, True, False]


def test_weights():
    assert span_token_weights(OFFSETS, [(2, 5)], gamma=5.0) == [1.0, 5.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_offsets_from_a_real_fast_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["[UNK]", "A", "red", "circle", "and", "a", "star", "."])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    encoding = tokenizer.encode(TEXT)
    assert encoding.tokens == ["A", "red", "circle", "and", "a", "star", "."]
    # "red" is (2, 5) here (no leading space); the record span [2, 5) marks only it
    assert span_token_mask(encoding.offsets, [(2, 5)]) == [False, True, False, False, False, False, False]


# ------------------------------------------------------------------------------------------- loss


LEAVES: dict[str, torch.Tensor] = {}


def _batch(requires_grad: bool = True) -> tuple[PolicyLogps, ReferenceLogps]:
    """One pair; the policy's per-token leaves are kept in LEAVES for gradient checks."""

    def leaf(name, rows):
        LEAVES[name] = torch.tensor(rows, dtype=torch.float64, requires_grad=requires_grad)
        return LEAVES[name]

    policy = PolicyLogps.from_token_logps(
        leaf("chosen", [[-1.0, -2.0, -3.0]]),
        torch.tensor([[1, 1, 1]]),
        leaf("rejected", [[-2.0, -4.0, 0.0]]),
        torch.tensor([[1, 1, 0]]),
        chosen_span_mask=torch.tensor([[0, 1, 0]]),
        rejected_span_mask=torch.tensor([[0, 1, 0]]),
    )
    reference = ReferenceLogps(
        chosen=torch.tensor([-3.0]),
        rejected=torch.tensor([-3.0]),
        chosen_token_logps=torch.tensor([[-1.0, -1.0, -1.0]], dtype=torch.float64),
        rejected_token_logps=torch.tensor([[-1.0, -2.0, -math.inf]], dtype=torch.float64),  # padding may be -inf
    )
    return policy, reference


def test_defaults_are_the_papers():
    # RLHF-V, Sec. 3.2, Eq. 5: the weighted mean, γ = 5, β = 0.5 (the released recipe: sum, γ 1.1, β 0.1)
    loss = DenseDPOLoss()
    assert (loss.length_normalized, loss.gamma, loss.beta) == (True, 5.0, 0.5)


def test_weighted_mean_by_default():
    loss = DenseDPOLoss(beta=1.0, gamma=3.0)
    assert loss.length_normalized  # the paper's Eq. 5: Σ w·log p / Σ w
    # weights γ = 3 on the span token: chosen [1, 3, 1], rejected [1, 3, 0 (padding)]
    # chosen:   policy (−1 − 6 − 3)/5 = −2,    reference (−1 − 3 − 1)/5 = −1   → log-ratio −1
    # rejected: policy (−2 − 12)/4 = −3.5,     reference (−1 − 6)/4 = −1.75    → log-ratio −1.75
    # Δ = 0.75: −log σ(0.75) = 0.3868710
    out = loss(*_batch())
    assert abs(out.losses.item() - 0.38687100611489994) < 1e-9
    assert abs(out.chosen_rewards.item() - (-1.0)) < 1e-12
    assert abs(out.rejected_rewards.item() - (-1.75)) < 1e-12
    # 2 span tokens out of 5 response tokens
    assert abs(out.metrics["span_token_fraction"].item() - 0.4) < 1e-6


def test_weighted_sum_released_recipe_form():
    # The authors' released recipe (dpo_use_average False): Σ w·log p, no division.
    # chosen log-ratio −10 − (−5) = −5 ; rejected −14 − (−7) = −7 ; Δ = 2 ; β = 0.5: −log σ(1) = 0.3132617
    out = DenseDPOLoss(beta=0.5, gamma=3.0, length_normalized=False)(*_batch())
    assert abs(out.losses.item() - math.log1p(math.exp(-1.0))) < 1e-9


def test_span_tokens_get_gamma_times_the_gradient():
    policy, reference = _batch()
    DenseDPOLoss(beta=0.5, gamma=3.0, length_normalized=False)(policy, reference).loss.backward()
    grad = LEAVES["chosen"].grad[0]
    assert (grad < 0).all()
    assert abs(grad[1].item() - 3 * grad[0].item()) < 1e-12 and grad[0] == grad[2]
    rejected_grad = LEAVES["rejected"].grad[0]
    assert (rejected_grad[:2] > 0).all() and rejected_grad[2] == 0  # padding gets nothing


def test_gamma_one_on_sums_is_dpo():
    policy, reference = _batch(requires_grad=False)
    reference.rejected_token_logps = torch.tensor([[-1.0, -2.0, 0.0]], dtype=torch.float64)
    reference = ReferenceLogps(
        chosen=reference.chosen_token_logps.sum(-1),
        rejected=reference.rejected_token_logps.sum(-1),
        chosen_token_logps=reference.chosen_token_logps,
        rejected_token_logps=reference.rejected_token_logps,
    )
    dense = DenseDPOLoss(beta=0.5, gamma=1.0, length_normalized=False)(policy, reference)
    plain = SigmoidLoss(beta=0.5)(policy, reference)
    assert torch.allclose(dense.losses, plain.losses, atol=1e-12)
    assert not dense.chosen_rewards.requires_grad


def test_needs_token_level_inputs():
    policy, reference = _batch()
    assert DenseDPOLoss.needs_token_weights
    bare = PolicyLogps(policy.chosen, policy.rejected, policy.chosen_tokens, policy.rejected_tokens)
    with pytest.raises(ConfigError, match=r"PolicyLogps\.chosen_span_mask"):
        DenseDPOLoss()(bare, reference)
    with pytest.raises(ConfigError, match=r"ReferenceLogps\.chosen_token_logps"):
        DenseDPOLoss()(policy, ReferenceLogps(reference.chosen, reference.rejected))


@pytest.mark.parametrize("options", [{"gamma": 0.0}, {"beta": -0.5}])
def test_bad_options(options):
    with pytest.raises(ConfigError, match="must be a positive number"):
        DenseDPOLoss(**options)
