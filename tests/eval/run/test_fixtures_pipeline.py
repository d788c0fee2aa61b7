"""The metric tests' hand-made fixtures through the whole ``eval run`` pipeline, with a scripted model.

The model's answers are scripted (the runner's ``generate`` and ``choose`` replaced), so every number is
worked out by hand: what is tested is the pipeline around the model (items in, predictions written in the
official format, scored, intervals, agreement, results.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmalign.eval.config import EvalConfig
from mmalign.eval.run.evaluation import evaluate
from mmalign.eval.run.runner import Runner

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def scripted(monkeypatch):
    """``scripted(generated={id: text}, chosen={id: label})``: the answers the model gives."""

    def install(generated: dict[str, str], chosen: dict[str, str] | None = None) -> None:
        def generate(self, task, items, image_root, max_new_tokens, label=None):
            return [generated[item.id] for item in items]

        def choose(self, task, items, image_root):
            labels = [(chosen or {})[item.id] for item in items]
            return [{"text": lab.capitalize(), "label": lab, "margin": 1.0, "forwards": 1} for lab in labels]

        monkeypatch.setattr(Runner, "generate", generate)
        monkeypatch.setattr(Runner, "choose", choose)

    return install


def test_chair_fixture(models, tmp_path, scripted):
    captions = {row["id"]: row["text"] for row in map(json.loads, (FIXTURES / "shapes_captions.jsonl").open())}
    scripted(captions)
    cfg = EvalConfig(
        model=models["base"],
        out=tmp_path / "run",
        tasks="chair",
        n_resamples=50,
        progress=False,
        sources={"chair": FIXTURES / "shapes_items.jsonl"},
    )
    metrics = evaluate(cfg, echo=lambda _: None)["tasks"]["chair"]["metrics"]
    # s1 names red circle, blue star, green cross (hallucinated); s2 names green cross (a bare "circle" is no object)
    assert (metrics["n_mentions"], metrics["n_hallucinated_mentions"]) == (4, 1)
    assert metrics["chair_s"] == 0.5 and metrics["chair_i"] == 0.25 and metrics["recall"] == 1.0
    written = [json.loads(x) for x in (tmp_path / "run/predictions/chair.jsonl").read_text().splitlines()]
    assert [w["caption"] for w in written] == list(captions.values())


def test_pope_fixture_with_agreement(models, tmp_path, scripted):
    items = tmp_path / "items.jsonl"
    truth = {"p0": "yes", "p1": "no", "p2": "yes", "p3": "no"}
    items.write_text(
        "".join(
            json.dumps({"id": k, "task": "pope_random", "question": f"Is there a {k}?", "answer": v}) + "\n"
            for k, v in truth.items()
        )
    )
    # fast path: yes, yes, no, no → TP p0, FP p1, FN p2, TN p3; generation disagrees on p3 only
    scripted(
        {"p0": "Yes.", "p1": "Yes, there is.", "p2": "No.", "p3": "I think so."},
        {"p0": "yes", "p1": "yes", "p2": "no", "p3": "no"},
    )
    cfg = EvalConfig(
        model=models["base"],
        out=tmp_path / "run",
        tasks="pope_random",
        n_resamples=50,
        progress=False,
        sources={"pope_random": items},
    )
    entry = evaluate(cfg, echo=lambda _: None)["tasks"]["pope_random"]
    m = entry["metrics"]
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 1, 1, 1)
    assert m["accuracy"] == m["precision"] == m["recall"] == m["f1"] == m["yes_ratio"] == 0.5
    assert entry["fast_path"]["agreement"] == 0.75 and entry["fast_path"]["disagreements"] == ["p3"]
    assert entry["summary"] == 0.5 and entry["intervals"]["accuracy"]["n"] == 4
    # --generate: the generated answers themselves are written and parsed; "I think so." reads as yes
    cfg.fast, cfg.out = False, tmp_path / "generated"
    entry = evaluate(cfg, echo=lambda _: None)["tasks"]["pope_random"]
    assert entry["mode"] == "generate" and not entry["fast_path"]["used"]
    assert entry["fast_path"]["reason"].startswith("--generate") and entry["fast_path"]["measured"]["n"] > 0
    assert (entry["metrics"]["fp"], entry["metrics"]["accuracy"]) == (2, 0.25)


def test_task_below_99_percent_agreement_generates_by_default(models, tmp_path, scripted, monkeypatch):
    from mmalign.eval.tasks import measured
    from mmalign.eval.tasks.measured import Agreement

    items = tmp_path / "items.jsonl"
    truth = {"p0": "yes", "p1": "no"}
    items.write_text(
        "".join(
            json.dumps({"id": k, "task": "pope_random", "question": f"Is there a {k}?", "answer": v}) + "\n"
            for k, v in truth.items()
        )
    )
    scripted({"p0": "Yes.", "p1": "Triangle."}, {"p0": "yes", "p1": "no"})
    monkeypatch.setitem(measured.MEASURED, "pope_random", Agreement(97, 100, "a test's figure"))
    cfg = EvalConfig(
        model=models["base"],
        out=tmp_path / "run",
        tasks="pope_random",
        n_resamples=50,
        progress=False,
        sources={"pope_random": items},
    )
    results = evaluate(cfg, echo=lambda _: None)
    entry = results["tasks"]["pope_random"]
    # 97 % < 99 %: the generated answers are written ("Triangle." reads as yes), not the fast path's "No"
    assert results["settings"]["mode"] == "auto" and entry["mode"] == "generate"
    assert entry["metrics"]["fp"] == 1 and entry["metrics"]["accuracy"] == 0.5
    fp = entry["fast_path"]
    assert fp["applies"] and not fp["used"] and fp["measured"]["agreement"] == 0.97
    assert (
        fp["reason"] == "measured agreement 97.0% of 100 items, below 99%: generate-and-parse by default "
        "(--fast forces the fast path)"
    )
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| pope_random | generation | 97.0% of 100 | – |" in report and "a test's figure" in report
    # --fast forces it, and says the figure is low; this run's sample (1 of 2 agree) is below 99 % too
    cfg.fast, cfg.out = True, tmp_path / "forced"
    fp = evaluate(cfg, echo=lambda _: None)["tasks"]["pope_random"]["fast_path"]
    assert fp["used"] and fp["reason"] == "--fast although measured agreement 97.0% of 100 items"
    assert fp["agreement"] == 0.5 and "only 50.0% of 2 sampled items" in fp["warning"]
