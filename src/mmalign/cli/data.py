"""``mmalign data``: convert between formats, validate a file, describe it.

Thin: parses options, calls :mod:`mmalign.data.io` / :mod:`mmalign.data.validate`, prints. Heavy imports stay
inside the commands so ``mmalign --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Preference data: convert, validate, describe.", no_args_is_help=True)

DEFAULT_MAX_PIXELS = 89_478_485  # mmalign.data.images.DEFAULT_MAX_PIXELS (not imported: PIL is slow to load)

ROOT_HELP = "Data root that image paths are relative to (default: the data file's folder)."
KIND_HELP = "Record kind: preference, sft or eval (default: detected per record)."


@app.command()
def convert(
    src: Path = typer.Argument(..., help="Input: a .jsonl or .parquet file, or a datasets directory."),
    dst: Path = typer.Argument(..., help="Output: .jsonl, .parquet, or any other name for a datasets directory."),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    out_root: Path | None = typer.Option(
        None, "--out-root", help="Where a JSONL output's image files go (default: the output file's folder)."
    ),
    kind: str | None = typer.Option(None, "--kind", help=KIND_HELP),
    check_images: str = typer.Option(
        "exists", "--check-images", help="Check images on the way: none, exists (present, non-empty) or decode."
    ),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", help="Largest width*height accepted."),
) -> None:
    """Convert records between JSONL, Parquet and datasets, losslessly; stops at the first bad record."""
    from mmalign.data.io import convert as convert_records

    with _progress(f"converting {src.name}") as advance:
        n = convert_records(
            src,
            dst,
            root=root,
            out_root=out_root,
            kind=kind,
            check_images=check_images,
            max_pixels=max_pixels,
            on_progress=advance,
        )
    typer.echo(f"wrote {n} records to {dst}")


@app.command()
def validate(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A .jsonl or .parquet file, or a datasets directory."),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    kind: str | None = typer.Option(None, "--kind", help=KIND_HELP),
    max_errors: int = typer.Option(50, "--max-errors", min=1, help="Most bad records listed (all are counted)."),
    max_pixels: int = typer.Option(
        DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help="Largest width*height accepted (decompression-bomb guard)."
    ),
    check_images: str = typer.Option("decode", "--check-images", help="none, exists, or decode (every image)."),
    check_ids: bool = typer.Option(True, "--check-ids/--no-check-ids", help="Report duplicate record ids."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of lines."),
) -> None:
    """Check every record (schema, images, ids); print one line per bad record. Exit 1 if any is bad."""
    from mmalign.data.validate import validate as validate_file

    debug = bool(ctx.find_root().params.get("debug"))
    with _progress(f"validating {file.name}") as advance:
        report = validate_file(
            file,
            kind=kind,
            root=root,
            max_errors=max_errors,
            max_pixels=max_pixels,
            check_images=check_images,
            check_ids=check_ids,
            keep_tracebacks=debug,
            on_progress=advance,
        )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for i, error in enumerate(report.errors):
            if debug:
                typer.echo(report.tracebacks[i], err=True)
            typer.echo(error)
        if report.truncated:
            typer.echo(f"... and {report.n_bad - len(report.errors)} more bad records (raise --max-errors)")
        rate = report.n_records / report.seconds if report.seconds > 0 else 0.0
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.kinds.items()) if n)
        kinds = kinds or ("empty file" if report.n_records == 0 else "none valid")
        typer.echo(
            f"{file}: {report.n_records} records, {report.n_ok} ok, {report.n_bad} bad ({kinds}); "
            f"{report.images_checked} images checked; {report.seconds:.1f} s, {rate:,.0f} records/s"
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def stats(
    file: Path = typer.Argument(..., help="A .jsonl or .parquet file, or a datasets directory."),
    kind: str | None = typer.Option(None, "--kind", help=KIND_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON instead of tables."),
    plot: Path | None = typer.Option(None, "--plot", help="Also save a PNG of length and source distributions."),
) -> None:
    """Counts, text lengths (chars, words), images per record and sources of a data file."""
    from mmalign.data.validate import plot_stats
    from mmalign.data.validate import stats as file_stats

    with _progress(f"reading {file.name}") as advance:
        data = file_stats(file, kind=kind, on_progress=advance)
    summary = data.to_dict()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_tables(summary)
    if plot is not None:
        typer.echo(f"plot written to {plot_stats(data, plot)}", err=as_json)


def _print_tables(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    kinds = ", ".join(f"{n} {k}" for k, n in summary["kinds"].items()) or "none valid"
    console.print(f"{summary['path']}: {summary['records']} records ({kinds}), {summary['bad']} bad", highlight=False)
    for error in summary["errors"]:
        console.print(f"  bad: {error}", highlight=False, soft_wrap=True)
    lengths = Table(title="lengths (words / chars)")
    for column in ("field", "count", "mean", "median", "p95", "max"):
        lengths.add_column(column, justify="left" if column == "field" else "right")
    for name, unit in summary["lengths"].items():
        w, c = unit["words"], unit["chars"]
        lengths.add_row(
            name,
            str(w["count"]),
            f"{w['mean']:.1f} / {c['mean']:.1f}",
            f"{w['median']:g} / {c['median']:g}",
            f"{w['p95']:g} / {c['p95']:g}",
            f"{w['max']} / {c['max']}",
        )
    console.print(lengths)
    for title, counts in (("images per record", summary["images_per_record"]), ("sources", summary["sources"])):
        table = Table(title=title)
        table.add_column(title.split()[0])
        table.add_column("records", justify="right")
        for key, n in counts.items():
            table.add_row(str(key), str(n))
        console.print(table)
    if summary["image_side_pairs"] or summary["pairs_with_spans"]:
        console.print(
            f"image-side pairs: {summary['image_side_pairs']}; pairs with spans: {summary['pairs_with_spans']}"
        )


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[int], None]]:
    """A transient progress line on stderr (records done, rate); silent when stderr is not a terminal."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda n: None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}: {task.completed:,} records"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=None)
        yield lambda n: progress.update(task, completed=n)
