"""The demo's tuned values: the shipped configs hold bench/demo_sweep.py's picks, and a changed config is named."""

from __future__ import annotations

import json
import shutil

from mmalign.demo.settings import METHODS
from mmalign.demo.training import Layout, method_config, repo_configs
from mmalign.demo.tuning import SWEEP_FILE, read_tuning, tuning_line


def configs_in(directory, tmp_path) -> dict:
    return {m.name: method_config(m, directory, Layout(tmp_path / "out"), 0, None, None) for m in METHODS}


def test_the_shipped_configs_hold_the_sweep_s_pick_for_every_method(tmp_path):
    tuning = read_tuning(repo_configs(), configs_in(repo_configs(), tmp_path))
    assert tuning is not None and tuning["differs"] == [] and tuning["untuned"] == []
    assert set(tuning["picks"]) == {m.name for m in METHODS}
    sweep = json.loads((repo_configs() / SWEEP_FILE).read_text())
    configs = configs_in(repo_configs(), tmp_path)
    budget = {"steps": configs["dpo"].train.max_steps, "examples_per_step": configs["dpo"].train.batch_size}
    assert sweep["budget"] == budget  # the sweep ran on the demo's budget
    assert configs["grpo"].train.learning_rate == sweep["picks"]["grpo"]["learning_rate"]
    assert configs["grpo"].loss.beta == sweep["picks"]["grpo"]["beta"]
    assert configs["dpo"].loss.options["beta"] == sweep["picks"]["dpo"]["beta"]
    assert "best of a grid on 200 validation scenes" in tuning_line(tuning)
    assert "budget of 128 steps × 16 (" in tuning_line(tuning, {"steps": 128, "pairs_per_step": 16})
    assert "not this run's 3 × 8" in tuning_line(tuning, {"steps": 3, "pairs_per_step": 8})  # --quick


def test_a_config_changed_since_the_sweep_is_named_and_no_sweep_file_says_untuned(tmp_path):
    directory = tmp_path / "configs"
    shutil.copytree(repo_configs(), directory)
    text = (directory / "simpo.yaml").read_text()
    (directory / "simpo.yaml").write_text(text.replace("learning_rate:", "learning_rate: 0.123 #", 1))
    tuning = read_tuning(directory, configs_in(directory, tmp_path))
    assert tuning["differs"] == ["simpo"] and "CHANGED since the sweep: simpo" in tuning_line(tuning)
    (directory / SWEEP_FILE).unlink()
    assert read_tuning(directory, configs_in(directory, tmp_path)) is None
    assert "not tuned by the sweep" in tuning_line(None)
