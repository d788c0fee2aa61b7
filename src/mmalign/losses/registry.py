"""Losses by name, and building one from a name and a mapping of options (from YAML or the command line)."""

from __future__ import annotations

from typing import Any

from mmalign.config import config_from_dict, describe
from mmalign.errors import ConfigError
from mmalign.losses.base import PreferenceLoss
from mmalign.losses.ddpo import DenseDPOLoss
from mmalign.losses.dpo import ConservativeDPOLoss, HingeLoss, IPOLoss, RobustDPOLoss, SigmoidLoss
from mmalign.losses.kto import UNPAIRED_LOSSES, UnpairedLoss
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


def loss_class(name: str) -> type[PreferenceLoss] | type[UnpairedLoss]:
    """The loss class called ``name`` (a pairwise loss of :data:`LOSSES` or an unpaired one of
    :data:`~mmalign.losses.kto.UNPAIRED_LOSSES`); ConfigError naming the allowed names otherwise."""
    if name in LOSSES:
        return LOSSES[name]
    if name in UNPAIRED_LOSSES:
        return UNPAIRED_LOSSES[name]
    raise ConfigError(f"unknown loss {name!r}; choose one of: {', '.join([*LOSSES, *UNPAIRED_LOSSES])}")


def build_loss(name: str, **options: Any) -> Any:
    """Make the loss ``name`` with ``options``. Unknown options, wrong types and bad values raise ConfigError.

    >>> build_loss("ipo", beta=0.5, length_normalized=False)

    A :class:`~mmalign.losses.base.PreferenceLoss` for pairs, or an :class:`~mmalign.losses.kto.UnpairedLoss`
    (``kto``, ``apo_zero_unpaired``) for binary-feedback records.
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
