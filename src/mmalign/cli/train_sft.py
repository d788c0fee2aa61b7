"""``mmalign train sft --config FILE [key.sub=value ...]``: supervised fine-tuning (:mod:`mmalign.train.sft`)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from mmalign.cli.help import print_options


def sft(
    overrides: list[str] | None = typer.Argument(
        None, help="Config overrides such as train.learning_rate=1e-4 model.path=tiny-llava (applied after --config)."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (see --show-options for the keys)."),
    show_options: bool = typer.Option(
        False, "--show-options", help="List every config key with its type, default and meaning, then exit."
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Show a progress bar (default: when stderr is a terminal)."
    ),
) -> None:
    """Fine-tune a model on SFT records (a transformers Trainer); the final model goes to train.output_dir."""
    from mmalign.config import describe, load_config
    from mmalign.train.sft import SFTConfig

    if show_options:
        print_options("mmalign train sft: config keys", describe(SFTConfig))
        return
    if config is None and not overrides:
        raise typer.BadParameter("give --config FILE and/or key=value overrides (see --show-options)")
    cfg = load_config(SFTConfig, config, list(overrides or []))

    from transformers.utils import logging

    from mmalign.files import OutputLock
    from mmalign.train.sft import train_sft

    logging.disable_progress_bar()  # no per-shard bars when loading and saving weights
    with OutputLock(cfg.train.output_dir, "mmalign train sft"):
        result = train_sft(cfg, progress=sys.stderr.isatty() if progress is None else progress)
    typer.echo(
        f"trained {result.global_step} steps (mean loss {result.train_loss:.4f}) in {result.runtime_s:.0f} s; "
        f"metrics in {result.output_dir / 'metrics.jsonl'}"
    )
