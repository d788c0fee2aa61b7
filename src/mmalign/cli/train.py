"""``mmalign train``: supervised fine-tuning (``sft``) and preference training (``pref``)."""

from __future__ import annotations

import typer

from mmalign.cli import train_pref, train_sft

app = typer.Typer(help="Train a model: supervised fine-tuning or preference optimisation.", no_args_is_help=True)
app.command("sft")(train_sft.sft)
app.command("pref")(train_pref.pref)
