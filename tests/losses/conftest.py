"""A two-pair batch whose arithmetic the loss tests work by hand.

policy     chosen = [-2.0, -5.0]   rejected = [-3.0, -4.0]   tokens: chosen [2, 4], rejected [1, 2]
reference  chosen = [-2.5, -4.0]   rejected = [-2.5, -4.0]
log-ratios chosen = [ 0.5, -1.0]   rejected = [-0.5,  0.0]   so Δ = chosen − rejected = [1.0, -1.0]
mean log-probs: chosen [-1.0, -1.25], rejected [-3.0, -2.0]
corrupted image (mDPO): policy [-4.0, -6.0], reference [-3.0, -6.5] → log-ratio [-1.0, 0.5]

softplus(x) = log(1 + e^x) = −log σ(−x): softplus(−0.5) = 0.4740770, softplus(0.5) = 0.9740770.
"""

from __future__ import annotations

import pytest
import torch

from mmalign.losses import PolicyLogps, ReferenceLogps


def make_pair(requires_grad: bool = True) -> tuple[PolicyLogps, ReferenceLogps]:
    def leaf(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad)

    policy = PolicyLogps(
        chosen=leaf([-2.0, -5.0]),
        rejected=leaf([-3.0, -4.0]),
        chosen_tokens=torch.tensor([2.0, 4.0], dtype=torch.float64),
        rejected_tokens=torch.tensor([1.0, 2.0], dtype=torch.float64),
        corrupted_chosen=leaf([-4.0, -6.0]),
    )
    reference = ReferenceLogps(
        chosen=torch.tensor([-2.5, -4.0], dtype=torch.float64),
        rejected=torch.tensor([-2.5, -4.0], dtype=torch.float64),
        corrupted_chosen=torch.tensor([-3.0, -6.5], dtype=torch.float64),
    )
    return policy, reference


@pytest.fixture
def pair() -> tuple[PolicyLogps, ReferenceLogps]:
    return make_pair()
