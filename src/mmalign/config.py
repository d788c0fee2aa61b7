"""Typed configs: nested dataclasses read from YAML, with ``key.sub=value`` overrides from the command line.

Every option is declared once, as a dataclass field made by :func:`option`: its help text, its range and, for
the options of a command (``mmalign eval run``, ``mmalign demo``, ``mmalign world``), its flag when the flag is not
the field's name. Everything else is derived from that declaration: the YAML keys, the checks, the command's flags
(:mod:`mmalign.cli.options`), the option tables of ``--show-options`` (:func:`describe`) and the reference in
docs/options.md (:mod:`mmalign.cli.reference`), so ``--help`` and the docs never drift from the code. Unknown
keys, wrong types and contradictory options fail at start with a message naming the file and the key:

    >>> load_config(SFTConfig, "configs/demo/sft.yaml", ["train.learning_rate=1e-4"])

A numeric option declares its range beside its definition (``option(1e-5, "...", gt=0)``). Every number a
config is built with (from YAML, overrides, defaults, or keywords in code) is checked by :func:`check_number`:
NaN is always refused, infinities unless the option says ``allow_inf=True``, and the bounds are enforced, so
``train.learning_rate=inf`` fails at start with ``key 'train.learning_rate' must be a finite number > 0, got
inf`` instead of training a model whose weights are NaN.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from mmalign.errors import ConfigError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The numbers an option accepts: lower and upper bounds (inclusive or strict), and whether ±inf may pass."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    allow_inf: bool = False

    def holds(self, value: float) -> bool:
        if math.isnan(value) or (math.isinf(value) and not self.allow_inf):
            return False
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )

    def describe(self) -> str:
        """``> 0``, ``>= 1``, ``in [0, 1)``..."""
        low = (_num(self.ge), "[") if self.ge is not None else (_num(self.gt), "(") if self.gt is not None else None
        high = (_num(self.le), "]") if self.le is not None else (_num(self.lt), ")") if self.lt is not None else None
        if low and high:
            return f"in {low[1]}{low[0]}, {high[0]}{high[1]}"
        if low:
            return f"{'>=' if low[1] == '[' else '>'} {low[0]}"
        if high:
            return f"{'<=' if high[1] == ']' else '<'} {high[0]}"
        return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


FINITE = Bounds()
"""What a float option without declared bounds accepts: any finite number."""


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    allow_inf: bool = False,
    flag: str | None = None,
    flag_type: Any = None,
    parse: Callable[[Any], Any] | None = None,
    cli: bool = True,
    **kwargs: Any,
) -> Any:
    """A dataclass field with its documentation (shown by ``describe`` and ``--help``) and, for a number, the
    range it accepts (``ge``/``gt``/``le``/``lt``; NaN never, ±inf only with ``allow_inf``).

    As a command's option (:func:`mmalign.cli.options.config_options`) the field is the flag ``--field-name``
    (a bool that defaults to true: ``--field-name/--no-field-name``) unless ``flag`` names it (``"--bootstrap"``,
    ``"--fast/--generate"``); a flag that reads another type than the field's declares it (``flag_type``) with
    the function turning what it read into the field's value (``parse``); ``cli=False``: no flag."""
    metadata: dict[str, Any] = {"help": help}
    if any(b is not None for b in (ge, gt, le, lt)) or allow_inf:
        metadata["bounds"] = Bounds(ge, gt, le, lt, allow_inf)
    cli_aspects = {"flag": flag, "flag_type": flag_type, "parse": parse, "cli": None if cli else False}
    metadata.update({key: value for key, value in cli_aspects.items() if value is not None})
    if isinstance(default, list | dict):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def check_number(value: Any, bounds: Bounds | None, integer: bool = False) -> str | None:
    """What is wrong with ``value`` for an option with ``bounds`` (None: nothing); ``integer``: the option is an
    int. Only numbers are looked at (bools, strings, None pass); a list is checked item by item. Floats must be
    finite unless the bounds allow inf, whether or not bounds are declared."""
    if isinstance(value, list):
        return next((f"[{i}] {p}" for i, v in enumerate(value) if (p := check_number(v, bounds, integer))), None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    rule = bounds or FINITE
    if rule.holds(value):
        return None
    kind = "an integer" if integer else "a number" if rule.allow_inf else "a finite number"
    return f"must be {kind} {rule.describe()}".rstrip() + f", got {value!r}"


def _holds_ints(f: dataclasses.Field) -> bool:
    """Whether the field's annotation holds ints (``int``, ``int | None``, ``list[int]``); read from its text, as
    annotations may name types imported only for type checking."""
    return re.search(r"\bint\b", str(f.type)) is not None


def flag_of(f: dataclasses.Field) -> str:
    """The command-line flag of an option: the one it declares, else ``--field-name`` (``--x/--no-x`` for a
    bool whose default is true)."""
    declared = f.metadata.get("flag")
    if declared is not None:
        return declared
    name = "--" + f.name.replace("_", "-")
    return f"{name}/--no-{name[2:]}" if f.default is True else name


def check_ranges(config: Any, prefix: str = "", name: Callable[[str], str] | None = None, flags: bool = False) -> None:
    """Check every numeric field of the dataclass instance ``config`` against its declared bounds (a config
    class's ``__post_init__`` calls this, so configs built in code or from CLI flags are checked too). The error
    names ``key 'PREFIX+FIELD'``, or ``name(field)`` when given, or with ``flags`` the field's flag
    (:func:`flag_of`: ``--bootstrap must be an integer >= 1, got 0``)."""
    for f in dataclasses.fields(config):
        problem = check_number(getattr(config, f.name), f.metadata.get("bounds"), _holds_ints(f))
        if problem is not None:
            if flags:
                subject = flag_of(f).split("/")[0]
            else:
                subject = name(f.name) if name is not None else f"key {prefix + f.name!r}"
            raise ConfigError(f"{subject} {problem}")


def section(cls: type, help: str = "") -> Any:
    """A nested config section with default values."""
    return dataclasses.field(default_factory=cls, metadata={"help": help})


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        return f"list[{_type_name(get_args(tp)[0])}]"
    if origin is tuple:
        return f"tuple[{_type_name(get_args(tp)[0])}, ...]"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    if isinstance(tp, str):  # an annotation naming a type imported only for type checking (:func:`type_hints`)
        return tp.replace("None", "null")
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats. Returns the value."""
    origin = get_origin(tp)

    def fail() -> typing.NoReturn:
        raise ConfigError(f"{where}: key {key!r} must be {_type_name(tp)}, got {value!r}")

    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            if arg is type(None) and value is None:
                return None
        for arg in get_args(tp):
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, where)
            except ConfigError:
                continue
        fail()
    if origin is Literal:
        if value in get_args(tp):
            return value
        fail()
    if origin is list:
        if not isinstance(value, list):
            fail()
        (item,) = get_args(tp)
        return [_coerce(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            fail()
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail()
        return _from_dict(tp, value, where, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        fail()
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        fail()
    if tp is str:
        if isinstance(value, str):
            return value
        fail()
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")  # a programming error, not user input


def _from_dict(cls: type[T], data: dict[str, Any], where: str, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            allowed = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: unknown key '{prefix}{key}' (allowed here: {allowed})")
    kwargs = {name: _coerce(data[name], hints[name], prefix + name, where) for name in data}
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key '{prefix}{name}'")
        value = kwargs.get(name, f.default)  # defaults are checked too (a default_factory gives lists and dicts)
        problem = check_number(value, f.metadata.get("bounds"), _holds_ints(f))
        if problem is not None:
            raise ConfigError(f"{where}: key {prefix + name!r} {problem}")
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def config_from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build ``cls`` from a plain mapping; unknown keys and wrong types raise :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a config must be a mapping of keys to values, got {type(data).__name__}")
    return _from_dict(cls, data, where)


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.learning_rate=1e-4`` → (["train", "learning_rate"], 0.0001); values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {text!r} has an empty key")
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, float | int) or value is None or isinstance(value, bool | list | dict):
        return key.strip().split("."), value
    # YAML reads 1e-4 as a string (no dot); accept it as a float.
    try:
        return key.strip().split("."), float(raw) if _looks_numeric(raw) else value
    except ValueError:
        return key.strip().split("."), value


def _looks_numeric(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return True


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {k!r} is not a section")
            node = child
        node[keys[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Read ``path`` (YAML, optional), apply ``key.sub=value`` overrides, and build a checked ``cls``."""
    data = read_yaml(path) if path is not None else {}
    where = str(path) if path is not None else "config"
    if overrides:
        data = apply_overrides(data, overrides)
        where += " (with overrides)"
    return config_from_dict(cls, data, where)


def type_hints(cls: type) -> dict[str, Any]:
    """The fields' annotations, resolved; one naming a type imported only for type checking stays its text."""
    try:
        return typing.get_type_hints(cls)
    except NameError:
        names = vars(sys.modules[cls.__module__])
        hints: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            holder = type(f.name, (), {"__annotations__": {f.name: f.type}})
            try:
                hints[f.name] = typing.get_type_hints(holder, names)[f.name]
            except NameError:
                hints[f.name] = f.type
        return hints


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) for every option, nested sections flattened as ``section.key``; a declared
    range is shown with the type (``float (> 0)``)."""
    rows: list[tuple[str, str, str, str]] = []
    hints = type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        helptext = f.metadata.get("help", "")
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, prefix=f"{prefix}{f.name}."))  # type: ignore[arg-type]
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(str(f.default) if isinstance(f.default, PurePath) else f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        bounds = f.metadata.get("bounds")
        kind = f"{_type_name(tp)} ({bounds.describe()})" if bounds is not None and bounds.describe() else _type_name(tp)
        rows.append((prefix + f.name, kind, default, helptext))
    return rows
