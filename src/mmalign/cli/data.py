"""``mmalign data``: convert, validate and describe files; build, import, filter, mix and split preference data.

Thin: parses options, calls :mod:`mmalign.data.io`, :mod:`mmalign.data.validate`, :mod:`mmalign.pairs`
and :mod:`mmalign.data.importers`, prints. Heavy imports stay inside the commands so ``mmalign --help``
stays fast.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from mmalign.cli.help import OPTION_COLUMNS, print_options
from mmalign.data.limits import DEFAULT_MAX_PIXELS  # no PIL: --help stays fast

MaxPixels = Annotated[
    int, typer.Option("--max-pixels", min=1, help="Largest width*height accepted (decompression-bomb guard).")
]
"""``--max-pixels`` of every command that reads images (declared once)."""

app = typer.Typer(
    help="Preference data: build, import, clean, mix, split, convert, validate, describe.", no_args_is_help=True
)


ROOT_HELP = (
    "Data root that image paths are relative to (default: the shapes world holding the file, the nearest folder "
    "above it with a world.json; else the file's folder)."
)
KIND_HELP = "Record kind: preference, feedback, sft or eval (default: detected per record)."


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
        "decode",
        "--check-images",
        help="Check images on the way: decode (every image decodes, within --max-pixels), exists (present, "
        "non-empty) or none.",
    ),
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
) -> None:
    """Convert records between JSONL, Parquet and datasets, losslessly; stops at the first bad record."""
    from mmalign.data.io import convert as convert_records
    from mmalign.files import OutputLock

    with OutputLock.beside(dst, "mmalign data convert"), _progress(f"converting {src.name}") as advance:
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
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
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
    tables = [("images per record", summary["images_per_record"]), ("sources", summary["sources"])]
    if any(k != "0" for k in summary["videos_per_record"]):  # shown only for files with videos
        tables.insert(1, ("videos per record", summary["videos_per_record"]))
    for title, counts in tables:
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
    if feedback := summary["kinds"].get("feedback"):
        console.print(f"feedback: {summary['desirable']} desirable, {feedback - summary['desirable']} undesirable")


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


# ----------------------------------------------------------------------------------- building and importing

OPTION_TABLE = ("option", *OPTION_COLUMNS[1:])
"""A strategy's or format's option table names its first column "option" (they are given as ``-o KEY=VALUE``)."""
OPTION_HELP = (
    "Strategy or format option KEY=VALUE, the value read as YAML (cooccur_prob=0.9; a list in brackets); repeatable."
)
SEED_HELP = "Seed of every random choice (same seed, same inputs: byte-identical output)."


def _options(config: Path | None, pairs: list[str]) -> dict[str, Any]:
    from mmalign.config import apply_overrides, read_yaml

    return apply_overrides(read_yaml(config) if config is not None else {}, pairs)


@app.command()
def build(
    out: Path | None = typer.Argument(
        None, help="Output .jsonl of preference pairs (image files go under --out-root)."
    ),
    strategy: str = typer.Option(
        ...,
        "--strategy",
        "-s",
        help="hallucinate, corrupt-image, multi-image, sample-rank, adversarial, best-of-n (SFT records: see "
        "`mmalign rm best-of`), or, from a video world, video-hallucinate or video-corrupt; --show-options lists "
        "its options.",
    ),
    world: Path | None = typer.Option(
        None, "--world", help="A shapes world directory (from `mmalign world`; `--video` for the video strategies)."
    ),
    split: str = typer.Option("train", "--split", help="Split of the world: train, val or test."),
    input_path: Path | None = typer.Option(
        None, "--input", help="Input file: records (corrupt-image) or a COCO-style annotation directory (hallucinate)."
    ),
    root: Path | None = typer.Option(None, "--root", help="Data root of --input's image paths (default: its folder)."),
    out_root: Path | None = typer.Option(
        None,
        "--out-root",
        help="Where image paths of the output are relative to: default the input's data root when OUT is inside "
        "it (nothing copied), else OUT's folder.",
    ),
    option: list[str] = typer.Option([], "--option", "-o", help=OPTION_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML file of strategy options (--option wins)."),
    seed: int = typer.Option(0, "--seed", min=0, help=SEED_HELP),
    num_proc: int = typer.Option(1, "--num-proc", min=1, help="Worker processes (datasets.map) for each shard."),
    shard_size: int = typer.Option(1000, "--shard-size", min=1, help="Units per shard (the unit of resume)."),
    restart: bool = typer.Option(False, "--restart", help="Discard an unfinished build of OUT instead of resuming."),
    keep_shards: bool = typer.Option(False, "--keep-shards", help="Keep OUT.shards/ after assembling OUT."),
    show_options: bool = typer.Option(False, "--show-options", help="List the strategy's options and exit."),
) -> None:
    """Build preference pairs in resumable shards (rerun the same command to resume)."""
    from mmalign.errors import ConfigError
    from mmalign.files import OutputLock
    from mmalign.pairs.registry import BuildInputs, get_builder_class, make_builder, options_help
    from mmalign.pairs.shards import run_build

    if show_options:
        print_options(f"{strategy} options", options_help(strategy), OPTION_TABLE)
        return
    if out is None:
        raise ConfigError("missing OUT: the .jsonl file to write")
    builder = make_builder(strategy, _options(config, option))
    inputs = BuildInputs(world=world, split=split, input=input_path, root=root)
    lock = OutputLock.beside(out, "mmalign data build")
    with lock, _build_progress(f"{strategy}: {get_builder_class(strategy).unit_name}") as report:
        result = run_build(
            builder,
            inputs,
            out,
            seed=seed,
            out_root=out_root,
            num_proc=num_proc,
            shard_size=shard_size,
            restart=restart,
            keep_shards=keep_shards,
            progress=report,
        )
    resumed = f"; resumed {result.resumed_shards} of {result.shards} shards" if result.resumed_shards else ""
    typer.echo(
        f"wrote {result.pairs} pairs from {result.description} to {out} in {result.seconds:.1f} s "
        f"({result.pairs_per_second:,.0f} pairs/s, {num_proc} process(es)){resumed}; "
        f"image paths are relative to {result.out_root}"
    )


@contextlib.contextmanager
def _build_progress(label: str) -> Iterator[Callable[[Any], None]]:
    """A progress bar of units done, pairs and pairs/s on stderr (refreshed by hand: no thread runs while
    worker processes are forked); silent when stderr is not a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda p: None
        return
    pairs = TextColumn("{task.fields[pairs]:,} pairs, {task.fields[rate]:,.0f} pairs/s")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), pairs, TimeRemainingColumn())
    with Progress(*columns, console=console, auto_refresh=False, transient=True) as bar:
        task = bar.add_task(label, total=None, pairs=0, rate=0.0)

        def report(p: Any) -> None:
            rate = p.new_pairs / p.seconds if p.seconds > 0 else 0.0
            bar.update(task, total=p.units_total, completed=p.units_done, pairs=p.pairs, rate=rate)
            bar.refresh()

        yield report


@app.command("import")
def import_data(
    fmt: str = typer.Argument(
        ..., help="Source format: rlhf-v, rlaif-v, llava-rlhf, vlfeedback, povid, trl, trl-unpaired (binary feedback)."
    ),
    src: Path | None = typer.Argument(
        None, help="The source as published: .json, .jsonl, .parquet, a folder of .parquet, or a datasets directory."
    ),
    out: Path | None = typer.Argument(None, help="Output: .jsonl, .parquet, or another name for a datasets directory."),
    image_root: Path | None = typer.Option(
        None, "--image-root", help="Folder holding the images the source names by path (checked, and copied if needed)."
    ),
    image_prefix: str = typer.Option("", "--image-prefix", help="Prefix joined to image paths of the source."),
    out_root: Path | None = typer.Option(None, "--out-root", help="Data root of the output's image paths."),
    option: list[str] = typer.Option([], "--option", "-o", help=OPTION_HELP),
    ignore_field: list[str] = typer.Option(
        [], "--ignore-field", help="A source field to drop (not kept in meta, not checked); repeatable."
    ),
    split: str | None = typer.Option(None, "--split", help="The split to read when SRC is a DatasetDict directory."),
    seed: int = typer.Option(0, "--seed", min=0, help=SEED_HELP),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Read at most this many source rows."),
    show_options: bool = typer.Option(False, "--show-options", help="List the format's options and exit."),
) -> None:
    """Import a public preference dataset into mmalign records. Malformed fields are errors; fields the importer
    does not map are kept in meta['source_fields'] and listed once."""
    from mmalign.data.importers.registry import import_file, options_help
    from mmalign.errors import ConfigError
    from mmalign.files import OutputLock

    if show_options:
        print_options(f"{fmt} options", options_help(fmt), OPTION_TABLE)
        return
    if src is None or out is None:
        raise ConfigError("missing SRC and OUT: the source to read and the file to write")

    with OutputLock.beside(out, "mmalign data import"):
        report = import_file(
            fmt,
            src,
            out,
            image_root=image_root,
            out_root=out_root,
            image_prefix=image_prefix,
            ignore_fields=tuple(ignore_field),
            options=_options(None, option),
            seed=seed,
            limit=limit,
            split=split,
        )
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(report.skipped.items()))
    typer.echo(
        f"wrote {report.records} records from {report.rows} {fmt} rows to {out}"
        f"{f' (skipped: {skipped})' if skipped else ''}; image paths are relative to {report.out_root}"
    )
    for note in report.notes():
        typer.echo(note)


# ------------------------------------------------------------------------------------- cleaning, mixing


@app.command("filter")
def filter_data(
    src: Path = typer.Argument(..., help="Preference records: .jsonl, .parquet or a datasets directory."),
    dst: Path = typer.Argument(..., help="Where the kept records go (any format)."),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    out_root: Path | None = typer.Option(None, "--out-root", help="Data root of a JSONL output's image paths."),
    dedup: bool = typer.Option(True, "--dedup/--no-dedup", help="Drop repeats (same images, prompt and pair)."),
    dedup_images: str = typer.Option("path", "--dedup-images", help="Images are the same by 'path' or 'content'."),
    drop_identical: bool = typer.Option(
        True, "--drop-identical/--keep-identical", help="Drop pairs whose chosen and rejected say the same."
    ),
    drop_empty: bool = typer.Option(True, "--drop-empty/--keep-empty", help="Drop pairs with a wordless answer."),
    max_length_ratio: float | None = typer.Option(
        None, "--max-length-ratio", help="Drop pairs whose longer answer has more than this many times the words."
    ),
    dropped: Path | None = typer.Option(None, "--dropped", help="Also write each dropped id and reason (JSONL)."),
) -> None:
    """Deduplicate and filter preference pairs; print how many each rule dropped."""
    from mmalign.pairs.filters import FilterConfig, filter_file

    cfg = FilterConfig(dedup, dedup_images, drop_identical, drop_empty, max_length_ratio)
    with _locked("mmalign data filter", dst, dropped):
        _report_filter(filter_file(src, dst, cfg, root=root, out_root=out_root, dropped=dropped), dst)


@app.command()
def dedup(
    src: Path = typer.Argument(..., help="Preference records: .jsonl, .parquet or a datasets directory."),
    dst: Path = typer.Argument(..., help="Where the first of each group of duplicates goes."),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    out_root: Path | None = typer.Option(None, "--out-root", help="Data root of a JSONL output's image paths."),
    images: str = typer.Option("path", "--images", help="Images are the same by 'path' or 'content' (file bytes)."),
) -> None:
    """Drop records with the same images, prompt and pair as an earlier one."""
    from mmalign.pairs.filters import FilterConfig, filter_file

    cfg = FilterConfig(dedup=True, image_key=images, drop_identical=False, drop_empty=False)
    with _locked("mmalign data dedup", dst):
        _report_filter(filter_file(src, dst, cfg, root=root, out_root=out_root), dst)


@app.command()
def unpair(
    src: Path = typer.Argument(..., help="Preference records: .jsonl, .parquet or a datasets directory."),
    dst: Path = typer.Argument(..., help="Where the binary-feedback records go (any format)."),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    out_root: Path | None = typer.Option(None, "--out-root", help="Data root of a JSONL output's image paths."),
) -> None:
    """Binary feedback (KTO, label-trained reward models) from pairs: chosen -> desirable, rejected -> undesirable."""
    from mmalign.data.feedback import unpair_file

    with _locked("mmalign data unpair", dst):
        n = unpair_file(src, dst, root=root, out_root=out_root)
    typer.echo(f"wrote {n} feedback records ({n // 2} desirable, {n // 2} undesirable) to {dst}")


def _locked(command: str, *outputs: Path | None) -> contextlib.ExitStack:
    """The :class:`~mmalign.files.OutputLock` beside each output file given (``PARENT/.NAME.mmalign.lock``)."""
    from mmalign.files import OutputLock

    stack = contextlib.ExitStack()
    with stack:  # a lock refused releases those already taken
        for out in outputs:
            if out is not None:
                stack.enter_context(OutputLock.beside(out, command))
        return stack.pop_all()


def _report_filter(report: Any, dst: Path) -> None:
    reasons = ", ".join(f"{n} {reason}" for reason, n in report.dropped.items() if n) or "none"
    typer.echo(f"kept {report.kept} of {report.read} records in {dst}; dropped: {reasons}")


@app.command()
def mix(
    out: Path = typer.Argument(..., help="The mixed file (any format)."),
    inputs: list[str] = typer.Option(
        ..., "--input", "-i", help="PATH, PATH:n=COUNT or PATH:w=WEIGHT (add ,root=DIR for its data root); repeatable."
    ),
    total: int | None = typer.Option(None, "--total", min=0, help="Records in all, shared by the weighted inputs."),
    root: Path | None = typer.Option(None, "--root", help="Data root of inputs without root= (default: each file's)."),
    out_root: Path | None = typer.Option(None, "--out-root", help="Data root of a JSONL output's image paths."),
    seed: int = typer.Option(0, "--seed", min=0, help=SEED_HELP),
    shuffle: bool = typer.Option(True, "--shuffle/--no-shuffle", help="Shuffle the mix (else inputs in order)."),
    prefix_ids: bool = typer.Option(False, "--prefix-ids", help="Prefix ids with their file's stem (unique ids)."),
) -> None:
    """Mix record files by counts or weights into one file."""
    from mmalign.pairs.mix import mix as mix_files
    from mmalign.pairs.mix import parse_source

    with _locked("mmalign data mix", out):
        sources = [parse_source(spec, root) for spec in inputs]
        taken = mix_files(
            sources, out, total=total, seed=seed, shuffle=shuffle, prefix_ids=prefix_ids, out_root=out_root
        )
    typer.echo(f"wrote {sum(taken.values())} records to {out} ({', '.join(f'{n} from {p}' for p, n in taken.items())})")


@app.command("split")
def split_data(
    src: Path = typer.Argument(..., help="Records: .jsonl, .parquet or a datasets directory."),
    out_dir: Path = typer.Argument(..., help="Folder for NAME.jsonl (or .parquet, like SRC) per split."),
    ratio: list[str] = typer.Option(["train=0.9", "val=0.1"], "--ratio", help="NAME=FRACTION; repeatable, sum 1."),
    group_by: str = typer.Option(
        "image", "--group-by", help="Keep together records with the same image, prompt, id, or none."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help=SEED_HELP),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    out_root: Path | None = typer.Option(None, "--out-root", help="Data root of JSONL outputs' image paths."),
) -> None:
    """Split a file into train/val/test (by ratio, seeded), never splitting a group across two."""
    from mmalign.files import OutputLock
    from mmalign.pairs.mix import parse_ratios
    from mmalign.pairs.mix import split as split_file

    with OutputLock(out_dir, "mmalign data split"):
        counts = split_file(
            src, out_dir, parse_ratios(ratio), group_by=group_by, seed=seed, root=root, out_root=out_root
        )
    typer.echo(
        f"split {sum(counts.values())} records into {out_dir}: " + ", ".join(f"{k} {n}" for k, n in counts.items())
    )
