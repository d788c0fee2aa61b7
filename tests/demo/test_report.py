"""The demo's report on a small hand-made results dict: the three plots, report.md and the self-contained
report.html."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmalign.demo.headline import PARTNER, baseline_checks, control_sentence, goal_checks, headline_lines
from mmalign.demo.plots import EVAL_REWARD, KL_K1, KL_K3, MARGIN, curve_panels, plot_chair, plot_curves, plot_pope
from mmalign.demo.report import PLOTS, write_markdown
from mmalign.demo.report_html import write_html

LABELS = {"baseline": "baseline", "dpo": "DPO", "simpo": "SimPO", "control": "SFT on chosen (control)"}


def iv(estimate: float, half: float = 0.02) -> dict[str, float]:
    return {"estimate": estimate, "low": estimate - half, "high": estimate + half}


def model(shift: float) -> dict[str, Any]:
    pope = {"accuracy": iv(0.90 + shift), "f1": iv(0.91 + shift)}
    chair = {
        "chair_i": iv(0.08 - shift),
        "chair_s": iv(0.19 - shift),
        "recall": iv(0.95 + shift / 2),
        PARTNER: iv(0.38 - 5 * shift, 0.08),
        "absent_partner_mention_rate": iv(0.29 - 4 * shift, 0.07),
        "other_absent_mention_rate": iv(0.008, 0.002),
    }
    return {
        "pope_random": pope,
        "pope_popular": pope,
        "pope_adversarial": pope,
        "chair": chair,
        "mme": {"total": iv(200.0 + 100 * shift, 20.0)},
        "mc": {"accuracy": iv(0.39)},
    }


def deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Paired deltas with a ±0.01 interval around each change (±5 for MME's total)."""
    out: dict[str, Any] = {}
    for task, metrics in after.items():
        for metric, a in metrics.items():
            b, half = before[task][metric]["estimate"], 5.0 if metric == "total" else 0.01
            change = a["estimate"] - b
            out.setdefault(task, {})[metric] = {
                "before": b,
                "after": a["estimate"],
                "delta": change,
                "low": change - half,
                "high": change + half,
                "share_above_zero": 0.5,
            }
    return out


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    models = {"baseline": model(0.0), "dpo": model(-0.03), "simpo": model(0.01), "control": model(0.05)}
    vs_baseline = {n: deltas(models["baseline"], models[n]) for n in ("dpo", "simpo", "control")}
    vs_control = {n: deltas(models["control"], models[n]) for n in ("dpo", "simpo")}
    return {
        "settings": {"seed": 0, "world_seed": 0, "bootstrap": 200},
        "world": {"test_scenes": 400},
        "pairs": {"pairs": 64, "scenes": 32, "kinds": {"add": 32, "swap": 32}},
        "budget": {"steps": 8, "pairs_per_step": 8},
        "baseline": {
            "source": "shipped",
            "recipe": {"config_file": "configs/demo/sft.yaml"},
            "weights_sha256": "ab" * 32,
        },
        "methods": {n: {"label": LABELS[n]} for n in ("dpo", "simpo", "control")},
        "models": models,
        "vs_baseline": vs_baseline,
        "vs_control": vs_control,
        "criteria": {
            "baseline": baseline_checks(models),
            "methods": {n: goal_checks(d) for n, d in vs_baseline.items()},
        },
        "claims": {n: control_sentence(LABELS[n], d) for n, d in vs_control.items()},
    }


def curves() -> dict[str, dict[str, list[tuple[int, float]]]]:
    steps = range(4, 33, 4)
    return {
        "dpo": {MARGIN: [(s, 0.02 * s) for s in steps], KL_K1: [(s, -0.01 * s) for s in steps], KL_K3: []},
        "simpo": {MARGIN: [(s, 2.0 + 0.01 * s) for s in steps], KL_K1: [], KL_K3: []},
        "control": {MARGIN: [], KL_K1: [], KL_K3: [], EVAL_REWARD: []},
        "grpo": {MARGIN: [], KL_K1: [], KL_K3: [], EVAL_REWARD: [(0, 0.93), (16, 0.95), (32, 0.96)]},
    }


@pytest.fixture(scope="module")
def out(tmp_path_factory, results) -> Path:
    """The plots, report.md and report.html written once for the module's tests."""
    out = tmp_path_factory.mktemp("demo-out")
    plot_pope(results["models"], LABELS, out / "pope.png")
    plot_chair(results["models"], LABELS, out / "chair.png")
    plot_curves(curves(), LABELS, out / "curves.png")
    headline = headline_lines(results)
    seconds = {"world": 19.0, "report": 3.0}
    write_markdown(results, headline, seconds, out / "report.md")
    write_html(results, headline, seconds, out, out / "report.html")
    return out


def test_the_three_plots_are_written_as_png_images(out):
    for name in ("pope.png", "chair.png", "curves.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] > 600 and image.size[1] > 300, name


def test_margins_in_other_units_get_their_own_axis_and_the_kl_panel_names_its_estimator():
    panels = curve_panels(curves())
    # DPO's margin (β · log-ratio) and SimPO's (β · mean log-prob) never share an axis; the control logs neither
    assert [(key, names) for key, names, _ in panels] == [
        (MARGIN, ["dpo"]),
        (MARGIN, ["simpo"]),
        (KL_K1, ["dpo"]),
        (EVAL_REWARD, ["grpo"]),  # GRPO's held-out reward: its own axis, from step 0
    ]
    assert "can be < 0" in panels[2][2]
    with_k3 = curves()
    with_k3["dpo"][KL_K3] = [(4, 0.01)]
    assert curve_panels(with_k3)[2][0] == KL_K3 and "≥ 0" in curve_panels(with_k3)[2][2]  # k3: never negative


def test_report_html_is_one_self_contained_file_with_the_plots_and_tables(out):
    text = (out / "report.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "http://" not in text and "https://" not in text and 'src="file' not in text
    assert "<script" not in text and "<link" not in text  # no external CSS or JS
    images = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', text)
    assert [alt for alt, _ in images] == [alt for _, alt in PLOTS]
    for (_, data), (name, _) in zip(images, PLOTS, strict=True):
        assert base64.b64decode(data) == (out / name).read_bytes()
    assert text.count("<table>") == 2 + 1 + 3 + 1  # metrics, deltas, baseline checks, 3 methods' goals, timings
    assert "<th>POPE adv F1 ↑</th>" in text and "<td>SFT on chosen (control)</td>" in text
    assert "Headline: change from the SFT baseline on 400 held-out scenes" in text
    assert not list(out.glob(".*.tmp"))  # written through a temporary file, renamed


def test_report_md_still_links_the_plots_and_names_the_html_copy(out):
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "![POPE by split](pope.png)" in text and "`report.html`" in text
    block = text.split("## Headline", 1)[1].split("```")[1]
    assert max(len(line) for line in block.splitlines()) <= 100
