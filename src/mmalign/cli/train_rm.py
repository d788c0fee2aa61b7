"""``mmalign train rm --config FILE [key.sub=value ...]``: reward-model training (:mod:`mmalign.train.reward`)."""

from __future__ import annotations

import typer

from mmalign.cli.help import print_options
from mmalign.cli.training import ConfigFile, Progress, ShowOptions, require_config, train_locked


def rm(
    overrides: list[str] | None = typer.Argument(
        None, help="Config overrides such as train.max_steps=100 loss.center_rewards_coefficient=0.01."
    ),
    config: ConfigFile = None,
    show_options: ShowOptions = False,
    progress: Progress = None,
) -> None:
    """Train a reward model (the model + a scalar head on the last response token) on preference pairs with the
    Bradley-Terry loss; it goes to train.output_dir (load it with mmalign.models.reward.load_reward_model)."""
    from mmalign.config import describe, load_config
    from mmalign.train.reward import RewardConfig

    if show_options:
        print_options("mmalign train rm: config keys", describe(RewardConfig))
        return
    require_config(config is not None or bool(overrides))
    cfg = load_config(RewardConfig, config, list(overrides or []))
    from mmalign.train.reward import train_reward

    result = train_locked("mmalign train rm", cfg, train_reward, progress)
    if result is None:  # under accelerate launch / torchrun: one summary
        return
    summary = f"trained {result.global_step} steps (mean loss {result.train_loss:.4f})"
    held_out = result.eval_metrics
    if "eval_accuracy" in held_out:
        given = " (given the reference critiques)" if cfg.rm.critique else ""
        summary += f", held-out accuracy{given} {held_out['eval_accuracy']:.3f} margin {held_out['eval_margin']:.3f}"
    typer.echo(f"{summary} in {result.runtime_s:.0f} s; metrics in {result.output_dir / 'metrics.jsonl'}")
