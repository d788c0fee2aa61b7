"""``mmalign train grpo --config FILE [key.sub=value ...]``: online RL (:mod:`mmalign.train.grpo`)."""

from __future__ import annotations

import typer

from mmalign.cli.help import print_options
from mmalign.cli.training import ConfigFile, Progress, ShowOptions, require_config, train_locked


def grpo(
    overrides: list[str] | None = typer.Argument(
        None, help="Config overrides such as train.max_steps=100 grpo.group_size=8 loss.beta=0.04."
    ),
    config: ConfigFile = None,
    show_options: ShowOptions = False,
    progress: Progress = None,
) -> None:
    """Train a policy with online RL: G sampled completions per prompt (each prompt + image encoded once), scored
    by reward functions (grpo.rewards), GRPO or RLOO advantages and the clipped-ratio loss (loss.loss_type)."""
    from mmalign.config import describe, load_config
    from mmalign.train.grpo import GRPOConfig

    if show_options:
        print_options("mmalign train grpo: config keys", describe(GRPOConfig))
        return
    require_config(config is not None or bool(overrides))
    cfg = load_config(GRPOConfig, config, list(overrides or []))
    from mmalign.train.grpo import train_grpo

    result = train_locked("mmalign train grpo", cfg, train_grpo, progress)
    if result is None:  # under accelerate launch / torchrun: one summary
        return
    logged, held_out = result.last_logged, result.eval_metrics
    summary = f"trained {result.global_step} steps"
    if "reward" in logged:
        summary += f", last reward {logged['reward']:.3f}"
    if "eval_reward" in held_out:
        summary += f", held-out reward {held_out['eval_reward']:.3f}"
    typer.echo(f"{summary} in {result.runtime_s:.0f} s; metrics in {result.output_dir / 'metrics.jsonl'}")
