"""What the ``mmalign train`` commands share: the refusal of an empty command line, and the run itself (weight
loading bars off, the output folder locked, one summary under ``accelerate launch``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

R = TypeVar("R")

ConfigFile = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config (see --show-options for the keys).")
]
"""``--config`` of every ``train`` command."""
ShowOptions = Annotated[
    bool, typer.Option("--show-options", help="List every config key with its type, default and meaning, then exit.")
]
"""``--show-options`` of the ``train`` commands whose config has no further options to show."""
Progress = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress", help="Show a progress bar (default: when stderr is a terminal)."),
]
"""``--progress/--no-progress`` of every ``train`` command."""


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
