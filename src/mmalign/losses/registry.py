"""Losses by name, and building one from a name and a mapping of options (from YAML or the command line)."""

from __future__ import annotations

from typing import Any

from mmalign.config import config_from_dict, describe
from mmalign.errors import ConfigError
from mmalign.losses.base import PreferenceLoss
from mmalign.losses.ddpo import DenseDPOLoss
from mmalign.losses.dpo import ConservativeDPOLoss, HingeLoss, IPOLoss, RobustDPOLoss, SigmoidLoss
from mmalign.losses.mdpo import MDPOLoss
from mmalign.losses.orpo import ORPOLoss
from mmalign.losses.rpo import RPOLoss
from mmalign.losses.simpo import SimPOLoss

LOSSES: dict[str, type[PreferenceLoss]] = {
    cls.name: cls
    for cls in (
        SigmoidLoss,
        IPOLoss,
        ConservativeDPOLoss,
        RobustDPOLoss,
        HingeLoss,
        RPOLoss,
        SimPOLoss,
        ORPOLoss,
        MDPOLoss,
        DenseDPOLoss,
    )
}
"""Every loss by its name (TRL's ``loss_type`` names where TRL has the loss)."""


def loss_class(name: str) -> type[PreferenceLoss]:
    """The loss class called ``name``; ConfigError naming the allowed names otherwise."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    return LOSSES[name]


def build_loss(name: str, **options: Any) -> PreferenceLoss:
    """Make the loss ``name`` with ``options``. Unknown options, wrong types and bad values raise ConfigError.

    >>> build_loss("ipo", beta=0.5, length_normalized=False)
    """
    where = f"loss {name!r}"
    try:
        return config_from_dict(loss_class(name), options, where=where)
    except ConfigError as err:
        # The loss's own checks already name it; don't say "loss 'x': loss 'x': ..."
        doubled = f"{where}: {where}: "
        if str(err).startswith(doubled):
            raise ConfigError(str(err)[len(where) + 2 :]) from None
        raise


def loss_help(name: str) -> list[tuple[str, str, str, str]]:
    """(option, type, default, help) for each option of the loss ``name``: what ``--help`` shows."""
    return describe(loss_class(name))
