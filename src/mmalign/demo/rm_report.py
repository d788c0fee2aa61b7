"""The reward-model study's report: ``report.md`` (suite table, over-optimisation table and plot, what the curve
shows, settings and timings), ``results.json`` and the plot (:func:`mmalign.demo.overopt.plot_curves`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmalign.demo.overopt import curve_table, describe_curve, plot_curves
from mmalign.demo.rm_suite import HALLUCINATION, suite_table
from mmalign.files import atomic_path

GOAL = 0.95
"""The issue's goal: held-out accuracy on the hallucination pairs."""


def report_lines(results: dict[str, Any], plot_name: str) -> list[str]:
    s = results["settings"]
    suite = results["suite"]
    over = results["overoptimisation"]
    curves = over["curves"]
    rm = results["rm"]
    hallucination = suite.get(HALLUCINATION, {}).get("accuracy")
    goal = (
        f"hallucination pairs: {hallucination:.3f} ({'meets' if hallucination >= GOAL else 'misses'} the ≥ {GOAL} goal)"
        if hallucination is not None
        else "no hallucination pairs in the suite"
    )
    corr = over.get("proxy_gold_correlation", {})
    correlation = (
        f"Among each prompt's own samples the proxy and gold F1 correlate at r = {corr['mean']:+.3f} (Pearson, mean "
        f"over the {corr['prompts']} prompts whose samples differ in both); best-of-n uses only that ranking."
        if corr.get("mean") is not None
        else ""
    )
    lines = [
        "# Reward model on the shapes world: suite and over-optimisation",
        "",
        f"Seed {s['seed']}{' (quick profile: small sizes)' if s['quick'] else ''}. The RM is the shipped SFT baseline "
        f"plus a scalar head, trained with Bradley-Terry for {rm['steps']} steps × {rm['batch_size']} pairs (lr "
        f"{rm['learning_rate']:g}, cosine) on a mix of the seven kinds below, equal counts, from "
        f"{s['train_scenes']} training scenes ({rm['result'].get('runtime_s', 0):.0f} s).",
        "",
        "## Held-out suite: accuracy per kind",
        "",
        f"Pairs from {s['val_scenes']} validation scenes the RM never saw, at most {s['suite_per_kind']} per kind; a "
        "pair is right when the chosen reward is strictly above the rejected one (ties wrong); 95 % percentile "
        f"bootstrap intervals over pairs ({s['bootstrap']} resamples). {goal}.",
        "",
        *suite_table(suite),
        "",
        "## Over-optimisation: best-of-n, proxy vs gold",
        "",
        f'{over["prompts"]} held-out caption prompts ("Describe the image.", the first test scenes); '
        f"{over['samples_per_prompt']} responses each sampled once from the policy (the SFT baseline, temperature "
        f"{s['temperature']:g}, seed {s['seed']}; {over['distinct_samples_per_prompt']:.1f} distinct responses per "
        "prompt on average). Proxy: the RM's reward. Gold: object F1 against the scene's ground-truth objects (the "
        "`truth` scorer, CHAIR's extraction). Each n's value is the exact expectation of best-of-n under the proxy "
        "over every n-subset of a prompt's samples (order statistics; Nakano et al., 2021; Gao et al., 2022), "
        "averaged over prompts; intervals: bootstrap over prompts; KL_bon = log n − (n − 1)/n.",
        "",
        *curve_table(curves),
        "",
        f"![gold and proxy reward of best-of-n]({plot_name})",
        "",
        f"**What the curve shows.** {describe_curve(curves)} {correlation}",
        "",
        "## Settings and time",
        "",
        "```json",
        json.dumps(s, indent=1),
        "```",
        "",
        "Seconds per step (0: up to date, skipped): "
        + ", ".join(f"{k} {v:.0f}" for k, v in results["seconds"].items())
        + f"; total {results['total_s']:.0f} s.",
    ]
    return lines


def write_report(results: dict[str, Any], out: Path, report: str, results_name: str, plot_name: str) -> None:
    """Write the plot, ``results.json`` and ``report.md`` into ``out``."""
    curves = results["overoptimisation"]["curves"]
    plot_curves(curves, out / plot_name, f"best-of-n on {results['overoptimisation']['prompts']} held-out prompts")
    with atomic_path(out / results_name) as tmp:
        tmp.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    with atomic_path(out / report) as tmp:
        tmp.write_text("\n".join(report_lines(results, plot_name)) + "\n", encoding="utf-8")
