"""``mmalign train rm --config FILE [key.sub=value ...]``: reward-model training (:mod:`mmalign.train.reward`)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from mmalign.cli.help import print_options


def rm(
    overrides: list[str] | None = typer.Argument(
        None, help="Config overrides such as train.max_steps=100 loss.center_rewards_coefficient=0.01."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (see --show-options for the keys)."),
    show_options: bool = typer.Option(
        False, "--show-options", help="List every config key with its type, default and meaning, then exit."
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Show a progress bar (default: when stderr is a terminal)."
    ),
) -> None:
    """Train a reward model (the model + a scalar head on the last response token) on preference pairs with the
    Bradley-Terry loss; it goes to train.output_dir (load it with mmalign.models.reward.load_reward_model)."""
    from mmalign.config import describe, load_config
    from mmalign.train.reward import RewardConfig

    if show_options:
        print_options("mmalign train rm: config keys", describe(RewardConfig))
        return
    if config is None and not overrides:
        raise typer.BadParameter("give --config FILE and/or key=value overrides (see --show-options)")
    cfg = load_config(RewardConfig, config, list(overrides or []))

    from transformers.utils import logging

    from mmalign.files import OutputLock
    from mmalign.train.reward import train_reward

    logging.disable_progress_bar()  # no per-shard bars when loading and saving weights
    with OutputLock(cfg.train.output_dir, "mmalign train rm"):
        result = train_reward(cfg, progress=sys.stderr.isatty() if progress is None else progress)
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under accelerate launch / torchrun: one summary
        return
    summary = f"trained {result.global_step} steps (mean loss {result.train_loss:.4f})"
    held_out = result.eval_metrics
    if "eval_accuracy" in held_out:
        summary += f", held-out accuracy {held_out['eval_accuracy']:.3f} margin {held_out['eval_margin']:.3f}"
    typer.echo(f"{summary} in {result.runtime_s:.0f} s; metrics in {result.output_dir / 'metrics.jsonl'}")
