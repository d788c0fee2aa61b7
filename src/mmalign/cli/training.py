"""What the ``mmalign train`` commands share: the refusal of an empty command line, and the run itself (weight
loading bars off, the output folder locked, one summary under ``accelerate launch``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

R = TypeVar("R")


def require_config(given: bool) -> None:
    """Refuse a ``train`` command with neither ``--config`` nor an override."""
    if not given:
        raise typer.BadParameter("give --config FILE and/or key=value overrides (see --show-options)")


def train_locked(command: str, cfg: Any, train: Callable[..., R], progress: bool | None) -> R | None:
    """``train(cfg, progress=...)`` with ``cfg.train.output_dir`` locked (:class:`mmalign.files.OutputLock`) and
    transformers' per-shard bars off; the result on the main process, None on the others (they print nothing)."""
    from accelerate import PartialState
    from transformers.utils import logging

    from mmalign.files import OutputLock

    logging.disable_progress_bar()  # no per-shard bars when loading and saving weights
    with OutputLock(cfg.train.output_dir, command):
        result = train(cfg, progress=sys.stderr.isatty() if progress is None else progress)
    return result if PartialState().is_main_process else None
