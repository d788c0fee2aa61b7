"""Entry point of the ``mmalign`` command.

Each command group lives in its own module and keeps its heavy imports (torch, transformers) inside the
command functions, so ``mmalign --help`` stays fast. Errors raised on purpose (``MMAlignError``) and errors of the
operating system are printed as one line with no traceback (:mod:`mmalign.cli.failures`; exit codes in
:mod:`mmalign.errors`); ``--debug`` (or ``MMALIGN_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from mmalign.cli import data, demo, eval, model, rm, train, video_study, world
from mmalign.cli.failures import explain
from mmalign.cli.help import FlagHelpGroup

app = typer.Typer(
    name="mmalign",
    help="Align vision-language models with human preferences: data, training, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=FlagHelpGroup,  # flags show no value type in --help (typer 0.29 prints --debug <bool>)
)
app.add_typer(data.app, name="data")
app.add_typer(model.app, name="model")
app.add_typer(train.app, name="train")
app.add_typer(eval.app, name="eval")
app.add_typer(rm.app, name="rm")
app.command("world")(world.world)
app.command("demo")(demo.demo)
app.command("video-study")(video_study.video_study)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    threads: int | None = typer.Option(
        None,
        "--threads",
        help="CPU threads for model computation (torch, OpenMP, MKL), given before the command: mmalign --threads 2 "
        "train sft ... Default: $MMALIGN_THREADS, else the CPUs this process may use (affinity mask, cgroup quota).",
        show_default=False,
    ),
) -> None:
    """Global options (``--debug`` is read by :func:`main`; ``--threads``: :mod:`mmalign.threads`)."""
    from mmalign.threads import configure_threads

    configure_threads(threads)


def _eval_shorthand(args: list[str]) -> list[str]:
    """``mmalign eval --model DIR ...`` is ``mmalign eval run --model DIR ...`` (options straight after ``eval``)."""
    if len(args) >= 2 and args[0] == "eval" and args[1].startswith("-") and args[1] not in ("--help", "-h"):
        return ["eval", "run", *args[1:]]
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. An anticipated error (an :class:`MMAlignError`, an error of the operating system, an untrusted
    pickle) is printed as one line naming the path and what to do, with the exit code listed in
    :mod:`mmalign.errors`; ``--debug`` shows the traceback instead. Anything else is a bug: its traceback shows."""
    args = _eval_shorthand(list(sys.argv[1:] if argv is None else argv))
    try:
        app(args=args, prog_name="mmalign")
    except Exception as err:
        failure = explain(err)
        if failure is None or "--debug" in args or os.environ.get("MMALIGN_DEBUG") == "1":
            raise
        message, code = failure
        Console(stderr=True).print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
        sys.exit(code)


if __name__ == "__main__":
    main()
