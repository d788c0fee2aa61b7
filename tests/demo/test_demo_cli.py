"""``mmalign demo --quick`` end to end through the CLI, a resumed rerun, the export of the baseline, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mmalign.data.io import read_records
from mmalign.demo import checkpoint
from mmalign.demo.settings import METHODS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """A private MMALIGN_HOME: the tiny-llava preset (--from-scratch) is built here, not in the user's cache."""
    monkeypatch.setenv("MMALIGN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.slow
def test_quick_demo_runs_every_step_then_resumes_to_the_same_results(tmp_path, capsys, cli_run):
    out = tmp_path / "demo-out"
    code, stdout, stderr = cli_run(["demo", "--quick", "--out", str(out), "--no-progress"])
    assert code == 0, stderr
    for name in ("report.md", "report.html", "results.json", "timings.json", "pope.png", "chair.png", "curves.png"):
        assert (out / name).is_file(), name
    for name in ("pope.png", "chair.png", "curves.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] > 300
    results = json.loads((out / "results.json").read_text())
    names = [m.name for m in METHODS]
    assert list(results["methods"]) == names and list(results["models"]) == ["baseline", *names]
    assert results["budget"] == {"steps": 3, "pairs_per_step": 8} and results["pairs"]["pairs"] == 24
    for tasks in results["models"].values():
        assert set(tasks) == {"pope_random", "pope_popular", "pope_adversarial", "chair", "mme", "mc"}
        for metrics in tasks.values():
            assert all(iv["low"] <= iv["estimate"] <= iv["high"] for iv in metrics.values())
    assert set(results["vs_baseline"]) == set(names) and set(results["vs_control"]) == set(names) - {"control"}
    assert set(results["claims"]) == set(names) - {"control"}
    d = results["vs_baseline"]["dpo"]["pope_adversarial"]["f1"]
    assert d["delta"] == pytest.approx(d["after"] - d["before"]) and d["low"] <= d["delta"] <= d["high"]
    assert len(results["criteria"]["baseline"]) == 4 and all(
        len(c) == 4 for c in results["criteria"]["methods"].values()
    )
    assert str(tmp_path) not in (out / "results.json").read_text()  # paths are written relative to OUT
    # GRPO: the held-out reward from step 0 at every step (3 steps: eval_steps 1); on-policy DPO: 3 rounds of 1 step
    grpo_log = [json.loads(line) for line in (out / "train" / "grpo" / "metrics.jsonl").read_text().splitlines()]
    held_out = [(row["step"], row["eval_reward"]) for row in grpo_log if "eval_reward" in row]
    assert [step for step, _ in held_out] == [0, 1, 2, 3] and all(0 <= r <= 1 for _, r in held_out)
    online = json.loads((out / "train" / "online_dpo" / "online_result.json").read_text())
    assert [(r["round"], r["prompts"], r["steps"]) for r in online["rounds"]] == [(0, 8, 1), (1, 8, 1), (2, 8, 1)]
    # every method trained from the same baseline on the same pairs; mDPO's carry corrupted images
    pairs = list(read_records(out / "pairs" / "corrupt-image.jsonl", root=out / "pairs"))
    text_pairs = list(read_records(out / "pairs" / "hallucinate.jsonl", root=out / "world"))
    assert len(pairs) == len(text_pairs) == 24 and all(p.rejected_images for p in pairs)
    assert [p.meta["from_id"] for p in pairs] == [p.id for p in text_pairs]
    chosen = list(read_records(out / "pairs" / "chosen.jsonl", root=out / "world"))
    assert [c.completion_text for c in chosen] == [p.chosen_text for p in text_pairs]
    for label in (
        "Headline",
        "DPO + NLL",
        "mDPO",
        "SimPO",
        "SFT on chosen (control)",
        "against the SFT-on-chosen control",
    ):
        assert label.lower() in stdout.lower(), label
    assert f"plots embedded: {out / 'report.html'}" in stdout
    assert all(len(line) <= 100 for line in stdout.split("Headline:", 1)[1].split("\nsteps:", 1)[0].splitlines())
    report = (out / "report.md").read_text()
    assert "## Against the SFT-on-chosen control" in report and "![POPE by split](pope.png)" in report

    before = (out / "results.json").read_bytes()
    (out / ".steps" / "train dpo.json").unlink()  # DPO trains again; the same seed gives the same weights
    code, stdout, stderr = cli_run(["demo", "--quick", "--out", str(out), "--no-progress"])
    assert code == 0, stderr
    assert "train dpo: done" in stdout and "eval dpo: up to date, skipped" in stdout
    assert "world: up to date, skipped" in stdout and "train mdpo: up to date, skipped" in stdout
    assert (out / "results.json").read_bytes() == before


def test_export_baseline_runs_a_short_recipe_and_writes_a_verified_checkpoint(tmp_path, capsys, cli_run):
    dest = tmp_path / "asset"
    argv = ["demo", "--quick", "--out", str(tmp_path / "demo-out"), "--export-baseline", str(dest), "--no-progress"]
    code, stdout, stderr = cli_run(argv)
    assert code == 0, stderr
    manifest = checkpoint.verify(dest)
    assert manifest["recipe"]["as_run"]["train"]["max_steps"] == 12  # the quick profile's short recipe
    assert manifest["recipe"]["as_run"]["train"]["output_dir"] == "OUT/sft"
    assert manifest["training"]["global_step"] == 12 and manifest["world"]["seed"] == 0
    assert f"exported the baseline to {dest}" in stdout
    assert not (tmp_path / "demo-out" / "results.json").exists()  # exporting stops after the baseline


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "dpo,ppo"], "unknown method(s) ppo"),
        (["--configs", "/no/such/dir"], "the demo's configs are not at /no/such/dir"),
        (["--world-seed", "3"], "the shipped baseline was trained on another world (seed 0 → 3)"),
        (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
    ],
)
def test_bad_options_fail_in_one_line(tmp_path, capsys, args, message, cli_run):
    code, _, stderr = cli_run(["demo", "--quick", "--out", str(tmp_path / "o"), "--no-progress", *args])
    assert code == 2
    assert message in stderr and "Traceback" not in stderr
