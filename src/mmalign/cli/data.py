"""``mmalign data``: command group (filled by its stage)."""

from __future__ import annotations

import typer

app = typer.Typer(help="data commands.", no_args_is_help=True)
