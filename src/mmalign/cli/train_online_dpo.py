"""``mmalign train online-dpo --config FILE [key.sub=value ...]``: on-policy DPO (:mod:`mmalign.train.online_dpo`)."""

from __future__ import annotations

import typer

from mmalign.cli.help import print_options
from mmalign.cli.training import ConfigFile, Progress, ShowOptions, require_config


def online_dpo(
    overrides: list[str] | None = typer.Argument(
        None, help="Config overrides such as online.rounds=3 online.sample.k=8 train.max_steps=20."
    ),
    config: ConfigFile = None,
    show_options: ShowOptions = False,
    progress: Progress = None,
) -> None:
    """On-policy (iterative) DPO: each round samples k responses per new prompt from the current policy, ranks them
    with a scorer (truth, reward, clip, self, judge), and trains DPO on best vs worst from that policy."""
    import sys

    from mmalign.config import describe, load_config
    from mmalign.files import OutputLock
    from mmalign.train.online_dpo import OnlineDPOConfig

    if show_options:
        print_options("mmalign train online-dpo: config keys", describe(OnlineDPOConfig))
        return
    require_config(config is not None or bool(overrides))
    cfg = load_config(OnlineDPOConfig, config, list(overrides or []))
    from transformers.utils import logging

    from mmalign.train.online_dpo import train_online_dpo

    logging.disable_progress_bar()
    with OutputLock(cfg.train.output_dir, "mmalign train online-dpo"):
        result = train_online_dpo(cfg, progress=sys.stderr.isatty() if progress is None else progress)
    for r in result.rounds:
        scores = (
            f", chosen {r['chosen_score']:.3f} vs rejected {r['rejected_score']:.3f}" if "chosen_score" in r else ""
        )
        typer.echo(
            f"round {r['round'] + 1}: {r['pairs']} pairs from {r['prompts']} prompts{scores}, "
            f"loss {r['train_loss']:.4f}"
        )
    typer.echo(f"the last policy is {result.model_dir}; summary in {result.output_dir / 'online_result.json'}")
