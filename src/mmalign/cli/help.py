"""How options are shown: ``--help`` prints a flag with no value type, and :func:`print_options` prints the
option tables (``--show-options`` of ``train sft``, ``train pref``, ``data build``, ``data import`` and ``world``).

A flag takes no value, so no value type should be printed beside it, but typer 0.29's rich help prints each
option's type beside it (``--threads <int>``), and does so for flags too (``--debug <bool>``, ``--help <bool>``,
``--progress --no-progress <bool>``), as if they took a value:
``TyperOption.display_type_rich`` has no case for flags, while typer's plain help leaves the type out for them
(``TyperOption.get_help_record`` skips ``is_flag`` and ``count`` options). An option's metavar, when set, is
printed instead of its type, so :func:`hide_flag_types` gives every flag an empty one; flags never print a metavar
anywhere else (their error messages name the option). :class:`FlagHelpGroup`, the root group of ``mmalign``, does
this for every command before it runs, so ``mmalign ... --help`` shows ``--debug`` with no ``<bool>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import typer
from typer.core import TyperGroup, TyperOption

OPTION_COLUMNS = ("key", "type", "default", "meaning")
"""The columns of an option table: the rows of :func:`mmalign.config.describe`."""


def print_options(title: str, rows: Iterable[tuple[str, ...]], columns: tuple[str, ...] = OPTION_COLUMNS) -> None:
    """Print a table of options (by default the rows of :func:`mmalign.config.describe`) under ``title``; long
    cells fold, the first column (the key) never wraps."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, overflow="fold", no_wrap=i == 0)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def hide_flag_types(command: Any, parent: typer.Context | None = None, name: str | None = None) -> None:
    """Give every flag of ``command`` and of its subcommands (``--help`` included) an empty metavar."""
    ctx = typer.Context(command, parent=parent, info_name=name or command.name)
    params = [*command.params, command.get_help_option(ctx)]
    for param in params:
        if isinstance(param, TyperOption) and (param.is_flag or param.count) and param.metavar is None:
            param.metavar = ""
    for sub_name, sub in (getattr(command, "commands", None) or {}).items():
        hide_flag_types(sub, ctx, sub_name)


class FlagHelpGroup(TyperGroup):
    """A typer group whose help, and its subcommands' help, shows flags without a value type."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        hide_flag_types(self, name=kwargs.get("prog_name"))
        return super().main(*args, **kwargs)
