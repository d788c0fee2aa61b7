"""``mmalign eval compare``: paired bootstrap deltas between runs, items matched by id."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def runs(tmp_path_factory, models, world_dir, single_thread):
    from mmalign.eval.config import EvalConfig
    from mmalign.eval.run.evaluation import evaluate

    root = tmp_path_factory.mktemp("compare-runs")
    out = {}
    for name, model, limit in (("before", "base", 12), ("after", "yesno", 12), ("short", "yesno", 6)):
        cfg = EvalConfig(
            model=models[model],
            out=root / name,
            tasks="pope_adversarial,mme",
            data=world_dir,
            limit=limit,
            agreement_sample=0,
            n_resamples=100,
            progress=False,
        )
        with single_thread():
            evaluate(cfg, echo=lambda _: None)
        out[name] = root / name
    return out


def test_compare_pairs_items_and_reports_deltas(cli, runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert (
        cli(["eval", "compare", str(runs["before"]), str(runs["after"]), "--out", str(out), "--bootstrap", "200"]) == 0
    )
    assert f"comparison written to {out / 'compare.md'}" in capsys.readouterr().out
    report = json.loads((out / "compare.json").read_text())
    before = json.loads((runs["before"] / "results.json").read_text())["tasks"]
    after = json.loads((runs["after"] / "results.json").read_text())["tasks"]
    assert report["baseline"] == "before"
    pope = report["tasks"]["pope_adversarial"]["runs"]["after"]
    assert pope["status"] == "paired"
    accuracy = pope["deltas"]["accuracy"]
    assert accuracy["before"] == before["pope_adversarial"]["metrics"]["accuracy"]
    assert accuracy["after"] == after["pope_adversarial"]["metrics"]["accuracy"]
    assert accuracy["delta"] == pytest.approx(accuracy["after"] - accuracy["before"])
    assert accuracy["low"] <= accuracy["delta"] <= accuracy["high"] and accuracy["n_resamples"] == 200
    mme = report["tasks"]["mme"]["runs"]["after"]["deltas"]["total"]
    assert mme["delta"] == pytest.approx(after["mme"]["metrics"]["total"] - before["mme"]["metrics"]["total"])
    text = (out / "compare.md").read_text()
    assert "## Hallucination" in text and "## General knowledge" in text and "| pope_adversarial | accuracy ↑ |" in text
    assert (out / "compare.png").stat().st_size > 1000 and (out / "compare_dimensions.png").stat().st_size > 1000


def test_runs_over_other_items_are_not_comparable(cli, runs, tmp_path):
    assert cli(["eval", "compare", str(runs["before"]), str(runs["short"]), "--out", str(tmp_path / "c")]) == 0
    row = json.loads((tmp_path / "c" / "compare.json").read_text())["tasks"]["pope_adversarial"]["runs"]["short"]
    assert row["status"] == "not comparable" and "exactly the same items" in row["reason"]


def test_compare_needs_runs(cli, runs, tmp_path, capsys):
    assert cli(["eval", "compare", str(runs["before"]), "--out", str(tmp_path / "c")]) == 2
    assert "at least two runs" in capsys.readouterr().err
    assert cli(["eval", "compare", str(runs["before"]), str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    assert "results.json is missing" in capsys.readouterr().err
