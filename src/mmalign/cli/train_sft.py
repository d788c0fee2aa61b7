"""``mmalign train sft --config FILE [key.sub=value ...]``: supervised fine-tuning (:mod:`mmalign.train.sft`)."""

from __future__ import annotations

import typer

from mmalign.cli.help import print_options
from mmalign.cli.training import ConfigFile, Progress, ShowOptions, require_config, train_locked


def sft(
    overrides: list[str] | None = typer.Argument(
        None, help="Config overrides such as train.learning_rate=1e-4 model.path=tiny-llava (applied after --config)."
    ),
    config: ConfigFile = None,
    show_options: ShowOptions = False,
    progress: Progress = None,
) -> None:
    """Fine-tune a model on SFT records (a transformers Trainer); the final model goes to train.output_dir."""
    from mmalign.config import describe, load_config
    from mmalign.train.sft import SFTConfig

    if show_options:
        print_options("mmalign train sft: config keys", describe(SFTConfig))
        return
    require_config(config is not None or bool(overrides))
    cfg = load_config(SFTConfig, config, list(overrides or []))
    from mmalign.train.sft import train_sft

    result = train_locked("mmalign train sft", cfg, train_sft, progress)
    if result is None:  # under accelerate launch / torchrun: one summary
        return
    typer.echo(
        f"trained {result.global_step} steps (mean loss {result.train_loss:.4f}) in {result.runtime_s:.0f} s; "
        f"metrics in {result.output_dir / 'metrics.jsonl'}"
    )
