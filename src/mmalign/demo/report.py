"""The demo's outputs: ``results.json`` (byte-identical for the same seed on the same machine), ``report.md``,
``report.html`` (the same report in one self-contained file, plots embedded), the plots, and the headline.

``results.json`` layout (keys in this order; no timings, no absolute paths: ``timings.json`` has the times)::

    schema, mmalign_version
    settings       the demo's options          world        its config and test-scene count
    pairs          what the builders made      budget       {steps, pairs_per_step}
    baseline       where it came from (shipped checkpoint or recipe) and its weights' SHA-256
    methods        name → {label, trainer, config (paths as OUT/...), weights_sha256, last_log}
    models         name → task → metric → {estimate, low, high}          (bootstrap 95 % intervals)
    vs_baseline    method → task → metric → {before, after, delta, low, high, share_above_zero}   (paired)
    vs_control     the same, each method against the SFT-on-chosen control
    criteria       {baseline: checks, methods: name → checks}; a check is {check, value, pass}
    claims         method → its sentence against the control
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import mmalign
from mmalign.demo.checkpoint import sha256
from mmalign.demo.headline import (
    PARTNER,
    baseline_checks,
    control_sentence,
    goal_checks,
    headline_lines,
    interval_text,
)
from mmalign.demo.pairs import read_summary
from mmalign.demo.plots import plot_chair, plot_curves, plot_pope, read_curves
from mmalign.demo.settings import BASELINE, CONTROL, Method
from mmalign.demo.training import config_record, training_log
from mmalign.demo.tuning import read_tuning, tuning_line
from mmalign.eval.compare import compare_runs
from mmalign.eval.report import arrow, fmt
from mmalign.eval.results import read_results
from mmalign.files import atomic_path

if TYPE_CHECKING:
    from mmalign.demo.settings import DemoSettings
    from mmalign.demo.steps import Steps
    from mmalign.demo.training import Layout
    from mmalign.world.config import WorldConfig


class Pipeline(Protocol):
    """What the report reads of a demo run (:class:`mmalign.demo.pipeline.Pipeline` is one)."""

    layout: Layout
    s: DemoSettings
    world_config: WorldConfig
    baseline_info: dict[str, Any]
    steps: Steps


SCHEMA = "mmalign.demo.results/1"
LOG_KEYS = ("loss", "grad_norm")
"""Besides every ``rewards/``, ``logps/``, ``kl/`` and loss-specific (``name/value``) entry, what ``last_log`` keeps."""


def model_metrics(results: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """task → metric → {estimate, low, high} from an evaluation run's results.json."""
    return {
        task: {m: {k: iv[k] for k in ("estimate", "low", "high")} for m, iv in entry["intervals"].items()}
        for task, entry in results["tasks"].items()
        if entry["status"] == "done"
    }


def paired(report: dict[str, Any], run: str) -> dict[str, dict[str, dict[str, float]]]:
    """task → metric → paired delta of ``run`` against the comparison's baseline, from compare.json."""
    keep = ("before", "after", "delta", "low", "high", "share_above_zero")
    return {
        task: {m: {k: d[k] for k in keep} for m, d in entry["runs"][run]["deltas"].items()}
        for task, entry in report["tasks"].items()
        if entry["runs"].get(run, {}).get("status") == "paired"
    }


def last_log(train_dir: Path) -> dict[str, Any]:
    """The last training log row, without its wall-clock fields (rates, elapsed time)."""
    rows = [row for row in training_log(train_dir) if "loss" in row]
    if not rows:
        return {}
    row = rows[-1]
    return {k: v for k, v in row.items() if k == "step" or k in LOG_KEYS or "/" in k}


def build_results(
    pipe: Pipeline,
    methods: list[Method],
    configs: dict[str, Any],
    budget: tuple[int, int],
    vs_baseline: dict[str, Any],
    vs_control: dict[str, Any] | None,
) -> dict[str, Any]:
    layout = pipe.layout
    names = [BASELINE, *(m.name for m in methods)]
    models = {name: model_metrics(read_results(layout.eval(name))) for name in names}
    weights = {name: sha256(layout.model(name) / "model.safetensors") for name in names}
    deltas = {m.name: paired(vs_baseline, m.name) for m in methods}
    against = {m.name: paired(vs_control, m.name) for m in methods if vs_control and m.name != CONTROL}
    return {
        "schema": SCHEMA,
        "mmalign_version": mmalign.__version__,
        "settings": pipe.s.to_dict(),
        "world": {"config": pipe.world_config.to_dict(), "test_scenes": pipe.s.test_scenes},
        "pairs": read_summary(layout),
        "budget": {"steps": budget[0], "pairs_per_step": budget[1]},
        "tuning": read_tuning(pipe.configs, configs),
        "baseline": {**pipe.baseline_info, "weights_sha256": weights[BASELINE]},
        "methods": {
            m.name: {
                "label": m.label,
                "trainer": m.trainer,
                "pairs": m.pairs,
                "config": config_record(configs[m.name], layout.out),
                "weights_sha256": weights[m.name],
                "last_log": last_log(layout.train(m.name)),
            }
            for m in methods
        },
        "models": models,
        "vs_baseline": deltas,
        "vs_control": against,
        "criteria": {"baseline": baseline_checks(models), "methods": {n: goal_checks(d) for n, d in deltas.items()}},
        "claims": {n: control_sentence(next(m.label for m in methods if m.name == n), d) for n, d in against.items()},
    }


def write_outputs(
    pipe: Pipeline, methods: list[Method], configs: dict[str, Any], budget: tuple[int, int]
) -> tuple[dict[str, Any], list[str]]:
    """Compare the runs, then write results.json, the plots and report.md; returns the results and headline (the
    pipeline writes report.html from them: :func:`mmalign.demo.report_html.write_html`)."""
    layout, s = pipe.layout, pipe.s
    compare = layout.out / "compare"
    runs = [layout.eval(BASELINE), *(layout.eval(m.name) for m in methods)]
    vs_baseline = compare_runs(runs, compare / "vs-baseline", n_resamples=s.bootstrap, seed=s.seed)
    others = [layout.eval(m.name) for m in methods if m.name != CONTROL]
    vs_control = None
    if others:
        vs_control = compare_runs(
            [layout.eval(CONTROL), *others], compare / "vs-control", n_resamples=s.bootstrap, seed=s.seed
        )
    results = build_results(pipe, methods, configs, budget, vs_baseline, vs_control)
    with atomic_path(layout.out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    labels = {BASELINE: "baseline", **{m.name: m.label for m in methods}}
    plot_pope(results["models"], labels, layout.out / "pope.png")
    plot_chair(results["models"], labels, layout.out / "chair.png")
    plot_curves(read_curves({m.name: layout.train(m.name) for m in methods}), labels, layout.out / "curves.png")
    headline = headline_lines(results)
    write_markdown(results, headline, pipe.steps.seconds, layout.out / "report.md")
    return results, headline


# ------------------------------------------------------------------------------------------------ markdown

MAIN_COLUMNS = (
    ("pope_random", "accuracy", "POPE rnd acc"),
    ("pope_popular", "accuracy", "POPE pop acc"),
    ("pope_adversarial", "accuracy", "POPE adv acc"),
    ("pope_adversarial", "f1", "POPE adv F1"),
    ("chair", "chair_i", "CHAIR-i"),
    ("chair", "chair_s", "CHAIR-s"),
    ("chair", "recall", "recall"),
    ("chair", PARTNER, "partner named"),
    ("chair", "other_absent_mention_rate", "other absent named"),
    ("mme", "total", "MME"),
    ("mc", "accuracy", "MC acc"),
)
"""The main table's columns: (task, metric, header)."""


PLOTS = (
    ("pope.png", "POPE by split"),
    ("chair.png", "CHAIR and partner naming"),
    ("curves.png", "Training curves: reward margin, KL to the baseline, held-out GRPO reward"),
)
"""The plots beside the report: (file name, alt text)."""

Table = tuple[list[str], list[list[str]]]
"""(header, rows) of plain-text cells: report.md and report.html each render it their own way."""


def _value(metric: str, iv: dict[str, float] | None) -> str:
    if iv is None:
        return "–"
    return f"{fmt(metric, iv['estimate'])} [{fmt(metric, iv['low'])}, {fmt(metric, iv['high'])}]"


def _delta(metric: str, d: dict[str, float] | None) -> str:
    return "–" if d is None else interval_text(metric, d)


def model_labels(results: dict[str, Any]) -> dict[str, str]:
    return {BASELINE: "SFT baseline", **{n: m["label"] for n, m in results["methods"].items()}}


def metric_table(results: dict[str, Any]) -> Table:
    """Every model, every main metric: estimate [95 % interval]."""
    labels = model_labels(results)
    header = ["Model", *(f"{h} {arrow(m)}" for _, m, h in MAIN_COLUMNS)]
    rows = [
        [labels[name], *(_value(m, tasks.get(t, {}).get(m)) for t, m, _ in MAIN_COLUMNS)]
        for name, tasks in results["models"].items()
    ]
    return header, rows


def delta_table(results: dict[str, Any]) -> Table:
    """Each method's paired change from the baseline, with its interval."""
    labels = model_labels(results)
    header = ["Method", *(f"Δ {h} {arrow(m)}" for _, m, h in MAIN_COLUMNS)]
    rows = [
        [labels[name], *(_delta(m, tasks.get(t, {}).get(m)) for t, m, _ in MAIN_COLUMNS)]
        for name, tasks in results["vs_baseline"].items()
    ]
    return header, rows


def check_table(checks: list[dict[str, Any]]) -> Table:
    """Check, value, passed (``yes``/``no``)."""
    rows = [
        [c["check"], "–" if c["value"] is None else f"{c['value']:.3f}", "yes" if c["pass"] else "no"] for c in checks
    ]
    return ["Check", "Value", "Passed"], rows


def timing_table(seconds: dict[str, float]) -> Table:
    return ["Step", "Seconds"], [[step, f"{value:.1f}"] for step, value in seconds.items()]


def summary_items(results: dict[str, Any], seconds: dict[str, float]) -> list[str]:
    """The run in five lines: seed and intervals, baseline, pairs and budget, tuning, machine and run time."""
    import platform

    settings, budget, pairs = results["settings"], results["budget"], results["pairs"]
    baseline = results["baseline"]
    where = "the shipped SFT checkpoint" if baseline["source"] == "shipped" else "SFT from scratch"
    kinds = ", ".join(f"{k} {v}" for k, v in pairs["kinds"].items())
    return [
        f"seed {settings['seed']} (world seed {settings['world_seed']}); {results['world']['test_scenes']} "
        f"held-out test scenes; intervals: percentile bootstrap 95 %, {settings['bootstrap']} resamples",
        f"baseline: {where} (recipe {baseline['recipe']['config_file']}); weights {baseline['weights_sha256'][:16]}",
        f"pairs: {pairs['pairs']} from the first {pairs['scenes']} training scenes ({kinds}); every method "
        f"{budget['steps']} steps × {budget['pairs_per_step']} examples (pairs; for GRPO, scenes with their samples) "
        "from the same baseline",
        tuning_line(results.get("tuning"), results["budget"]),
        f"machine: {platform.machine()} {platform.system()}, Python {platform.python_version()}; run time "
        f"{sum(seconds.values()) / 60:.1f} min (timings depend on what else runs: see below)",
    ]


def reproduce_commands(results: dict[str, Any]) -> list[str]:
    again = f"mmalign demo --seed {results['settings']['seed']} --test-scenes {results['world']['test_scenes']}"
    again += " --from-scratch" if results["baseline"]["source"] != "shipped" else ""
    return [
        f"{again}   # the same results.json on the same machine",
        "mmalign demo --from-scratch   # train the baseline with configs/demo/sft.yaml first",
    ]


CONTROL_NOTE = (
    "The control fine-tunes the baseline on the chosen responses of the same pairs, on the same budget. "
    "A method is said to beat it only where the paired 95 % interval of (method − control) excludes 0."
)
TIMING_NOTE = (
    "Seconds per step in this run (0: up to date from an earlier run, skipped). The machine may be "
    "shared: timings are noisy."
)


def _markdown(table: Table, bold_no: bool = False) -> list[str]:
    header, rows = table
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in rows:
        cells = ["**no**" if bold_no and cell == "no" else cell for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_markdown(results: dict[str, Any], headline: list[str], seconds: dict[str, float], path: Path) -> None:
    """report.md: the settings, the headline, every metric with its interval, the deltas, checks and plots."""
    labels = model_labels(results)
    lines = [
        "# mmalign demo: aligning a tiny LLaVA against co-occurrence hallucination",
        "",
        *(f"- {item}" for item in summary_items(results, seconds)),
        "",
        "## Headline",
        "",
        "```",
        *[line for line in headline if line],
        "```",
    ]
    lines += ["", "## Every model, every metric", "", "Estimate [95 % interval]; ↑ higher is better, ↓ lower.", ""]
    lines += _markdown(metric_table(results))
    lines += [
        "",
        "Every headline metric of every task, per model: `eval/<model>/report.md`; all paired deltas: "
        "`compare/vs-baseline/compare.md` and `compare/vs-control/compare.md`.",
        "",
    ]
    lines += ["## Change from the baseline (paired)", "", *_markdown(delta_table(results))]
    lines += ["", "## Against the SFT-on-chosen control", "", CONTROL_NOTE, ""]
    lines += [f"- {sentence}" for sentence in results["claims"].values()] or ["- (no method besides the control)"]
    lines += [
        "",
        "## Checks",
        "",
        "The baseline must be competent and still hallucinate:",
        "",
        *_markdown(check_table(results["criteria"]["baseline"]), bold_no=True),
    ]
    for name, checks in results["criteria"]["methods"].items():
        lines += ["", f"{labels[name]} against the goal:", "", *_markdown(check_table(checks), bold_no=True)]
    lines += ["", "## Plots", "", "The same page with the plots embedded: `report.html`.", ""]
    for file, alt in PLOTS:
        lines += [f"![{alt}]({file})", ""]
    lines += ["## Timings", "", TIMING_NOTE, "", *_markdown(timing_table(seconds))]
    lines += ["", "## Reproduce", "", "```bash", *reproduce_commands(results), "```"]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
