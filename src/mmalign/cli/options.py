"""A command's options derived from a config dataclass: one typer option per field, declared once on the field.

:func:`config_options` adds to a command one option per field of a config dataclass (``EvalConfig``,
``DemoSettings``, ``WorldConfig``), with the flag, type, default and help the field declares
(:func:`mmalign.config.option`), and hands the command the values it was given as one mapping of field names:

    @config_options(EvalConfig)
    def run(values: dict[str, Any], judge_url: str | None = typer.Option(None, "--judge-url", ...)) -> None:
        cfg = EvalConfig(**values, judge=...)

A flag's value is checked where the config is built (ranges and types: :mod:`mmalign.config`), so an
out-of-range value is one line naming the flag, exit code 2, as for every config. ``unset=True`` is for options
given on top of a YAML file of the same keys (``mmalign world --config``): every option defaults to None (not
given) and its help states the field's default, and only the options given are in ``values``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer

from mmalign.config import flag_of, type_hints


def _help(f: dataclasses.Field, unset: bool) -> str:
    text = f.metadata.get("help", "")
    shown = unset and f.default is not None and f.default is not dataclasses.MISSING
    return f"{text} (default: {f.default})" if shown else text


def _parameter(f: dataclasses.Field, annotation: Any, unset: bool) -> inspect.Parameter:
    """The typer option of field ``f`` (its annotation: the field's type, or the type its flag reads)."""
    annotation = f.metadata.get("flag_type", annotation)
    if unset:
        default: Any = None
        annotation = annotation | None
    elif "flag_type" in f.metadata:  # what the flag reads when not given: parsed like a given value
        default = [] if getattr(annotation, "__origin__", None) is list else None
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        default = ... if f.default is dataclasses.MISSING else f.default
    option = typer.Option(default, flag_of(f), help=_help(f, unset), show_default=not unset)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def config_options(cls: type, *, unset: bool = False, own_first: bool = False) -> Callable[[Callable], Callable]:
    """Decorate a command taking ``values`` (and its own options) with an option per field of ``cls`` (fields
    declared ``cli=False`` left out); in ``--help`` they come before the command's own options, or after them
    with ``own_first``."""
    hints = type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]

    def decorate(command: Callable) -> Callable:
        own = [p for name, p in inspect.signature(command, eval_str=True).parameters.items() if name != "values"]
        clash = {p.name for p in own} & {f.name for f in fields}
        if clash:
            raise TypeError(f"{command.__name__}: own options named like {cls.__name__} fields: {sorted(clash)}")
        derived = [_parameter(f, hints[f.name], unset) for f in fields]

        @functools.wraps(command)
        def run(**given: Any) -> Any:
            values = {}
            for f in fields:
                value = given.pop(f.name)
                if unset and value is None:
                    continue
                parse = f.metadata.get("parse")
                values[f.name] = parse(value) if parse is not None else value
            return command(values=values, **given)

        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        params = [*own, *derived] if own_first else [*derived, *own]
        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return decorate
