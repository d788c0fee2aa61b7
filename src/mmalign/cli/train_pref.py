"""``mmalign train pref --config FILE [--loss NAME] [key.sub=value ...]``: preference training
(:mod:`mmalign.train.preference`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mmalign.cli.help import print_options
from mmalign.cli.training import ConfigFile, Progress, require_config, train_locked


def pref(
    overrides: list[str] | None = typer.Argument(
        None, help="Config overrides such as train.max_steps=100 loss.options.beta=0.2 (applied after --config)."
    ),
    config: ConfigFile = None,
    loss: str | None = typer.Option(
        None, "--loss", help="The loss (see --list-losses); a loss other than the config's starts from its defaults."
    ),
    show_options: bool = typer.Option(
        False, "--show-options", help="List every config key, and the options of the loss, with defaults; then exit."
    ),
    list_losses: bool = typer.Option(False, "--list-losses", help="List the losses, their papers and needs; exit."),
    progress: Progress = None,
) -> None:
    """Train a model on preference pairs (DPO family, mDPO, dense DPO, SimPO, ORPO) or on binary feedback (KTO,
    unpaired APO-zero); the model goes to train.output_dir."""
    from mmalign.config import config_from_dict, describe

    if list_losses:
        _list_losses()
        return
    data = _config_data(config, loss, list(overrides or []))
    if show_options:
        from mmalign.train.preference import PreferenceConfig

        print_options("mmalign train pref: config keys", describe(PreferenceConfig))
        _show_loss(str(data.get("loss", {}).get("name", "sigmoid")))
        return
    require_config(config is not None or bool(overrides) or loss is not None)
    from mmalign.train.preference import PreferenceConfig

    where = (str(config) if config is not None else "config") + (" (with overrides)" if overrides or loss else "")
    cfg = config_from_dict(PreferenceConfig, data, where)

    from mmalign.train.preference import train_preference

    result = train_locked("mmalign train pref", cfg, train_preference, progress)
    if result is None:  # under accelerate launch / torchrun: one summary
        return
    last = result.last_logged
    summary = f"trained {result.global_step} steps (mean loss {result.train_loss:.4f})"
    if "rewards/accuracies" in last:
        summary += f", last margin {last['rewards/margins']:.4f} accuracy {last['rewards/accuracies']:.2f}"
    elif "kl" in last:  # an unpaired loss (KTO): z0, and the reward margin when both labels were seen
        summary += f", last kl {last['kl']:.4f}" + (
            f" margin {last['rewards/margins']:.4f}" if "rewards/margins" in last else ""
        )
    typer.echo(f"{summary} in {result.runtime_s:.0f} s; metrics in {result.output_dir / 'metrics.jsonl'}")
    if result.guard_stop:
        typer.echo(result.guard_stop)


def _config_data(config: Path | None, loss: str | None, overrides: list[str]) -> dict[str, Any]:
    """The YAML mapping with ``--loss`` applied (its options dropped when the loss changes), then the overrides."""
    from mmalign.config import apply_overrides, read_yaml

    data = read_yaml(config) if config is not None else {}
    if loss is not None:
        section = data.get("loss") if isinstance(data.get("loss"), dict) else {}
        if section.get("name") != loss and section.get("options"):
            typer.echo(f"--loss {loss}: dropping the options the config gives loss {section.get('name')!r}", err=True)
            section = {}
        data["loss"] = {**section, "name": loss}
    return apply_overrides(data, overrides) if overrides else data


def _list_losses() -> None:
    from mmalign.losses import LOSSES
    from mmalign.losses.kto import UNPAIRED_LOSSES

    flags = {
        "needs_reference": "reference",
        "needs_corrupted_image": "corrupted image",
        "needs_token_weights": "span masks",
        "needs_chosen_nll": "chosen NLL",
    }
    rows = []
    for name, cls in LOSSES.items():
        needs = [label for flag, label in flags.items() if getattr(cls, flag)]
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        rows.append((name, summary, ", ".join(needs) or "-"))
    for name, unpaired in UNPAIRED_LOSSES.items():
        summary = (unpaired.__doc__ or "").strip().splitlines()[0]
        needs = ["reference", *(["KL rows"] * unpaired.needs_kl), "binary-feedback records"]
        rows.append((name, summary, ", ".join(needs)))
    print_options("losses (mmalign train pref --loss NAME)", rows, ("loss", "what it is", "needs"))


def _show_loss(name: str) -> None:
    from mmalign.losses import loss_help

    print_options(f"options of loss {name!r} (loss.options.KEY=VALUE)", loss_help(name))
