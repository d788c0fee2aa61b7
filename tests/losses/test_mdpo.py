"""mDPO on the hand-worked batch of conftest.py.

Log-ratios: chosen [0.5, −1], rejected [−0.5, 0], chosen given the corrupted image [−4 + 3, −6 + 6.5] = [−1, 0.5].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmalign.errors import ConfigError
from mmalign.losses import MDPOLoss, PolicyLogps, ReferenceLogps

SP_M05 = 0.4740769841801067  # softplus(-0.5)
SP_05 = 0.9740769841801067  # softplus(0.5)
SP_M075 = 0.38687100611489994  # softplus(-0.75)
SP_075 = 1.1368710061148999  # softplus(0.75)
SP_M025 = 0.5759394198788436  # softplus(-0.25)
SP_15 = 1.7014132779827524  # softplus(1.5)


def close(tensor: torch.Tensor, expected: list[float], tol: float = 1e-9) -> bool:
    return torch.allclose(tensor.detach(), torch.tensor(expected, dtype=tensor.dtype), atol=tol, rtol=0)


def test_three_terms(pair):
    out = MDPOLoss(beta=0.5)(*pair)
    # DPO:    −log σ(0.5·[1, −1])                        = [0.4740770, 0.9740770]
    # image:  −log σ(0.5·([0.5, −1] − [−1, 0.5])) = −log σ([0.75, −0.75]) = [0.3868710, 1.1368710]
    # anchor: −log σ(0.5·[0.5, −1] − 0) = −log σ([0.25, −0.5])           = [0.5759394, 0.9740770]
    # sum: [1.4368874, 3.0850250]
    assert close(out.losses, [SP_M05 + SP_M075 + SP_M025, SP_05 + SP_075 + SP_05])
    assert abs(out.metrics["image_loss"].item() - (SP_M075 + SP_075) / 2) < 1e-12
    assert abs(out.metrics["anchor_loss"].item() - (SP_M025 + SP_05) / 2) < 1e-12
    # corrupted rewards 0.5·[−1, 0.5] = [−0.5, 0.25]; chosen rewards [0.25, −0.5]: image accuracy 1/2
    assert abs(out.metrics["rewards/corrupted"].item() - (-0.125)) < 1e-12
    assert out.metrics["rewards/image_accuracies"].item() == 0.5


def test_anchor_and_weights(pair):
    out = MDPOLoss(beta=0.5, anchor=1.0, image_weight=0.0, anchor_weight=2.0)(*pair)
    # anchor δ = 1: −log σ([0.25 − 1, −0.5 − 1]) = softplus([0.75, 1.5]) = [1.1368710, 1.7014133]
    # losses = DPO + 2·anchor = [0.4740770 + 2.2737420, 0.9740770 + 3.4028266]
    assert close(out.losses, [SP_M05 + 2 * SP_075, SP_05 + 2 * SP_15])


def test_zero_extra_weights_give_dpo(pair):
    assert close(MDPOLoss(beta=0.5, image_weight=0.0, anchor_weight=0.0)(*pair).losses, [SP_M05, SP_05])


def test_an_image_only_pair_with_rejected_images_makes_the_dpo_term_the_image_term(pair):
    # A record with rejected_images and rejected text == chosen text: the trainer scores the rejected row as
    # (chosen text | rejected images), which with prefer_record_images is also the corrupted row. So
    # rejected = corrupted_chosen on both sides, and L_DPO = −log σ(β·[r(y_w|m) − r(y_w|m')]) = L_CoPO.
    policy, reference = pair
    policy.rejected, reference.rejected = policy.corrupted_chosen, reference.corrupted_chosen
    out = MDPOLoss(beta=0.5, image_weight=1.0)(policy, reference)
    # log-ratios chosen [0.5, −1], rejected = corrupted [−1, 0.5]: both terms −log σ(0.5·[1.5, −1.5])
    assert close(out.metrics["dpo_loss"].reshape(1), [(SP_M075 + SP_075) / 2])
    assert close(out.metrics["image_loss"].reshape(1), [(SP_M075 + SP_075) / 2])
    # the image preference counted twice (1 + image_weight), plus the anchor [0.5759394, 0.9740770]
    assert close(out.losses, [2 * SP_M075 + SP_M025, 2 * SP_075 + SP_05])


def test_gradients(pair):
    policy, reference = pair
    out = MDPOLoss()(policy, reference)
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
    out.loss.backward()
    # chosen-with-real-image up, rejected down, chosen-with-corrupted-image down
    assert (policy.chosen.grad < 0).all()
    assert (policy.rejected.grad > 0).all()
    assert (policy.corrupted_chosen.grad > 0).all()


def test_needs_the_corrupted_log_probs(pair):
    policy, reference = pair
    loss = MDPOLoss()
    assert loss.needs_corrupted_image and loss.needs_reference
    bare = PolicyLogps(policy.chosen, policy.rejected, policy.chosen_tokens, policy.rejected_tokens)
    with pytest.raises(ConfigError, match="corrupted image"):
        loss(bare, reference)
    with pytest.raises(ConfigError, match="corrupted image"):
        loss(policy, ReferenceLogps(reference.chosen, reference.rejected))


def test_corrupt_follows_the_options():
    image = Image.fromarray(np.full((40, 40, 3), 200, dtype=np.uint8))
    masked = np.asarray(MDPOLoss(corruption="mask", keep_min=0.25, keep_max=0.25).corrupt(image, 0))
    # a 8×8 grid of 5-px cells, 16 of 64 kept: a quarter of the pixels stay 200, the rest are 0
    assert (masked == 200).all(axis=-1).mean() == 0.25
    assert set(np.unique(masked)) == {0, 200}
    cropped = MDPOLoss().corrupt(torch.arange(1600.0).reshape(1, 40, 40), torch.Generator().manual_seed(0))
    assert cropped.shape == (1, 40, 40)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"keep_min": 0.3, "keep_max": 0.2}, "0 < min <= max <= 1"),
        ({"keep_min": 0.0}, "0 < min <= max <= 1"),
        ({"corruption": "blur"}, "corruption must be one of ['crop', 'mask']"),
        ({"image_weight": -1.0}, "image_weight must be a number >= 0"),
        ({"anchor": float("inf")}, "anchor must be a finite number"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ConfigError) as err:
        MDPOLoss(**options)
    assert message in str(err.value)
