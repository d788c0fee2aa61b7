"""A command's options are derived from the fields of its config (:mod:`mmalign.cli.options`): each field is a
flag with its declared name, type, default and help, and what the flag reads becomes the field's value."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mmalign.cli.main import app
from mmalign.cli.options import config_options
from mmalign.config import check_ranges, flag_of, option
from mmalign.demo.settings import DemoSettings
from mmalign.eval.config import EvalConfig
from mmalign.world.config import WorldConfig


@dataclass
class Toy:
    path: Path = option(help="A required path.")
    count: int = option(3, "How many.", ge=1, flag="--n")
    verbose: bool = option(False, "Say more.")
    colour: bool = option(True, "Use colour.")
    names: tuple[str, ...] = option(
        ("a", "b"),
        "Names, comma-separated.",
        flag_type=str | None,
        parse=lambda t: tuple(t.split(",")) if t else ("a", "b"),
    )
    hidden: list[str] = option([], "Not a flag.", cli=False)

    def __post_init__(self) -> None:
        check_ranges(self, flags=True)


def invoke(command: Any, *args: str) -> tuple[int, str, Any]:
    seen: dict[str, Any] = {}
    toy = typer.Typer()
    toy.command()(command(seen))
    result = CliRunner().invoke(toy, list(args))
    return result.exit_code, result.output, seen.get("values")


def toy_command(**options: Any) -> Any:
    def make(seen: dict[str, Any]) -> Any:
        @config_options(Toy, **options)
        def command(values: dict[str, Any], extra: int = typer.Option(0, "--extra")) -> None:
            seen["values"] = values
            seen["extra"] = extra
            if not options.get("unset"):
                Toy(**values)  # the values build the config

        return command

    return make


def test_each_field_is_a_flag_and_its_value_is_the_fields():
    code, out, values = invoke(toy_command(), "--path", "p", "--n", "5", "--verbose", "--no-colour", "--names", "x,y")
    assert code == 0, out
    assert values == {"path": Path("p"), "count": 5, "verbose": True, "colour": False, "names": ("x", "y")}
    code, out, values = invoke(toy_command(), "--path", "p")
    assert values == {"path": Path("p"), "count": 3, "verbose": False, "colour": True, "names": ("a", "b")}


def test_help_shows_each_declared_help_and_default():
    code, out, _ = invoke(toy_command(), "--help")
    text = " ".join(out.split())
    assert code == 0
    for piece in ("--path", "A required path.", "--n", "How many.", "--no-colour", "--names", "--extra"):
        assert piece in text, piece
    assert "--hidden" not in text and "--count" not in text


def test_unset_options_are_left_out_and_state_their_default_in_help():
    code, out, values = invoke(toy_command(unset=True), "--n", "2")
    assert code == 0, out
    assert values == {"count": 2}
    code, out, _ = invoke(toy_command(unset=True), "--help")
    assert "(default: 3)" in " ".join(out.split())


def test_an_out_of_range_value_names_the_flag():
    with pytest.raises(Exception, match="--n must be an integer >= 1, got 0"):
        Toy(path=Path("p"), count=0)


def test_flag_of():
    fields = {f.name: f for f in dataclasses.fields(Toy)}
    assert flag_of(fields["count"]) == "--n"
    assert flag_of(fields["verbose"]) == "--verbose"
    assert flag_of(fields["colour"]) == "--colour/--no-colour"


@pytest.mark.parametrize(
    ("path", "cls"), [(("eval", "run"), EvalConfig), (("demo",), DemoSettings), (("world",), WorldConfig)]
)
def test_every_option_of_a_command_config_is_a_flag_of_the_command(path, cls):
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    declared = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli", True):
            assert set(flag_of(f).split("/")) <= declared, f.name
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"


def test_renamed_and_parsed_flags_of_eval_run_build_the_config(cli_run, tmp_path, monkeypatch):
    import mmalign.eval.run.evaluation as runner

    built: list[EvalConfig] = []

    def evaluate(cfg: EvalConfig, echo: Any) -> dict[str, Any]:
        built.append(cfg)
        return {"dimensions": {}, "tasks": {}}

    monkeypatch.setattr(runner, "evaluate", evaluate)
    args = ["eval", "run", "--model", "m", "--out", str(tmp_path / "o"), "--tasks", "pope", "--bootstrap", "7"]
    code, _, err = cli_run([*args, "--source", "pope=a.jsonl", "--opponent", "x", "--opponent", "y", "--generate"])
    assert code == 0, err
    (cfg,) = built
    assert cfg.n_resamples == 7 and cfg.sources == {"pope": Path("a.jsonl")} and cfg.fast is False
    assert cfg.opponents == [Path("x"), Path("y")] and cfg.judge is None and cfg.max_length == 4096
    code, _, err = cli_run([*args, "--source", "pope"])
    assert code == 2 and "--source takes TASK=PATH, got 'pope'" in err
