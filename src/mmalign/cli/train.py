"""``mmalign train``: supervised fine-tuning (``sft``), preference training (``pref``), reward models (``rm``) and
online RL (``grpo``, ``online-dpo``)."""

from __future__ import annotations

import typer

from mmalign.cli import train_grpo, train_online_dpo, train_pref, train_rm, train_sft

app = typer.Typer(
    help="Train a model: supervised fine-tuning, preference optimisation, a reward model or online RL.",
    no_args_is_help=True,
)
app.command("sft")(train_sft.sft)
app.command("pref")(train_pref.pref)
app.command("rm")(train_rm.rm)
app.command("grpo")(train_grpo.grpo)
app.command("online-dpo")(train_online_dpo.online_dpo)
