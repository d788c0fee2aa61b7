"""The demo's settings, the methods' configs (one budget for all) and the resumable steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmalign.demo.settings import METHODS, DemoSettings
from mmalign.demo.steps import Steps, step_key
from mmalign.demo.training import (
    Layout,
    common_budget,
    config_record,
    method_config,
    repo_configs,
    rounds_for,
    training_log,
)
from mmalign.errors import ConfigError


def configs_for(directory: Path, layout: Layout, **kw) -> dict:
    return {m.name: method_config(m, directory, layout, 7, kw.get("steps"), kw.get("batch_size")) for m in METHODS}


def test_the_shipped_method_configs_share_one_budget_and_get_the_demo_s_paths(tmp_path):
    layout = Layout(tmp_path / "out")
    configs = configs_for(repo_configs(), layout)
    steps, per_step = common_budget(configs)
    assert steps * per_step >= 1024, "the methods should see at least a thousand pairs"
    dpo = configs["dpo"]
    assert (dpo.loss.name, dpo.train.seed, dpo.train.save_steps) == ("sigmoid", 7, None)
    assert dpo.model.path == str(layout.model("baseline"))
    assert dpo.data.train == str(layout.pair_file("hallucinate")) and dpo.data.root == str(layout.world)
    assert dpo.reference.cache_dir == str(layout.out / "cache" / "reference")
    assert configs["dpo_nll"].loss.name == "rpo" and configs["dpo_nll"].loss.options["alpha"] > 0
    assert configs["mdpo"].data.train == str(layout.pair_file("corrupt-image"))
    assert configs["mdpo"].data.root == str(layout.pairs)
    assert not configs["simpo"].build_loss().needs_reference  # the reference-free method
    assert configs["control"].kind == "sft" and configs["control"].data.train == str(layout.pair_file("chosen"))
    assert common_budget(configs_for(repo_configs(), layout, steps=3, batch_size=8)) == (3, 8)


def test_the_online_methods_sample_the_world_s_training_scenes_on_the_same_budget(tmp_path):
    layout = Layout(tmp_path / "out")
    configs = configs_for(repo_configs(), layout)
    steps, per_step = common_budget(configs)
    grpo, online = configs["grpo"], configs["online_dpo"]
    world = layout.world
    assert (grpo.data.train, grpo.data.eval) == (
        str(world / "train" / "scenes.jsonl"),
        str(world / "val" / "scenes.jsonl"),
    )
    assert grpo.data.limit == steps * per_step and grpo.train.max_steps == steps  # each scene once
    assert grpo.grpo.rewards == {"object_f1": 1.0} and grpo.train.eval_on_start
    assert online.online.world == str(world) and online.online.split == "train"
    assert online.online.rounds * online.train.max_steps == steps
    assert online.online.prompts_per_round == online.train.max_steps * per_step  # as many scenes as pairs taken
    assert online.online.sample["scorer"] == "truth" and online.model.path == str(layout.model("baseline"))
    small = configs_for(repo_configs(), layout, steps=6, batch_size=8)
    assert common_budget(small) == (6, 8)
    assert (small["online_dpo"].online.rounds, small["online_dpo"].train.max_steps) == (3, 2)
    assert small["online_dpo"].online.prompts_per_round == 16 and small["grpo"].data.limit == 48
    assert small["grpo"].train.eval_steps == 1


def test_rounds_split_the_steps_evenly_into_at_most_the_configured_rounds():
    assert [rounds_for(steps, 4) for steps in (128, 3, 6, 7, 1, 2)] == [4, 3, 3, 1, 1, 2]


def test_training_log_joins_the_rounds_of_on_policy_dpo_counting_steps_on(tmp_path):
    for r, steps in enumerate((2, 3)):
        folder = tmp_path / "online" / f"round-{r}" / "train"
        folder.mkdir(parents=True)
        rows = [{"step": s, "loss": 0.1 * (r + 1)} for s in range(1, steps + 1)] + [{"train_loss": 1.0}]
        (folder / "metrics.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    joined = [row for row in training_log(tmp_path / "online") if "step" in row]
    assert [(row["round"], row["step"]) for row in joined] == [(0, 1), (0, 2), (1, 3), (1, 4), (1, 5)]
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "metrics.jsonl").write_text('{"step": 4, "loss": 0.5}\n')
    assert training_log(tmp_path / "plain") == [{"step": 4, "loss": 0.5}]
    assert training_log(tmp_path / "nothing") == []


def test_methods_on_different_budgets_are_refused(tmp_path):
    directory = tmp_path / "configs"
    shutil.copytree(repo_configs(), directory)
    text = (directory / "simpo.yaml").read_text()
    (directory / "simpo.yaml").write_text(text.replace("batch_size: ", "grad_accum: 2\n  batch_size: ", 1))
    with pytest.raises(ConfigError, match=r"share one budget.*simpo \d+ steps × \d+"):
        common_budget(configs_for(directory, Layout(tmp_path)))


def test_a_config_of_the_wrong_kind_is_refused(tmp_path):
    directory = tmp_path / "configs"
    shutil.copytree(repo_configs(), directory)
    shutil.copyfile(directory / "dpo.yaml", directory / "control.yaml")
    with pytest.raises(ConfigError, match=r"control\.yaml: kind must be 'sft'"):
        configs_for(directory, Layout(tmp_path))


def test_config_record_writes_output_paths_relative_to_the_output_directory(tmp_path):
    layout = Layout(tmp_path / "out")
    record = config_record(method_config(METHODS[0], repo_configs(), layout, 0, None, None), layout.out)
    assert record["model"]["path"] == "OUT/models/baseline"
    assert record["data"]["train"] == "OUT/pairs/hallucinate.jsonl"
    assert str(tmp_path) not in str(record)


def test_settings_always_run_the_control_and_refuse_unknown_methods():
    assert DemoSettings(methods=("dpo",)).methods == ("dpo", "control")
    with pytest.raises(ConfigError, match="unknown method"):
        DemoSettings(methods=("ppo",))
    with pytest.raises(ConfigError, match="--test-scenes must be an integer >= 1, got 0"):
        DemoSettings(test_scenes=0)
    assert DemoSettings(export_baseline=Path("x")).from_scratch  # exporting means training the recipe


def test_the_quick_profile_shrinks_everything_but_keeps_smaller_choices():
    quick = DemoSettings(quick=True, test_scenes=10).with_quick_profile()
    assert (quick.test_scenes, quick.steps, quick.batch_size) == (10, 3, 8)
    assert quick.train_scenes < 1000 and quick.bootstrap < 1000
    assert any(o.startswith("train.max_steps=") for o in quick.sft_overrides)
    assert DemoSettings().with_quick_profile() == DemoSettings()


def test_steps_skip_what_is_done_and_redo_what_changed(tmp_path):
    said: list[str] = []
    runs: list[str] = []
    output = tmp_path / "out" / "thing"

    def work(tag: str):
        def make() -> None:
            runs.append(tag)
            output.mkdir(parents=True)
            (output / "file").write_text(tag)

        return make

    steps = Steps(tmp_path / "out", said.append)
    assert steps.run("thing", step_key("a", 1), [output], work("first"))
    assert not steps.run("thing", step_key("a", 1), [output], work("second"))  # same inputs: skipped
    assert steps.skipped == ["thing"] and steps.seconds["thing"] == 0.0
    assert steps.run("thing", step_key("a", 2), [output], work("third"))  # new inputs: stale output removed, redone
    shutil.rmtree(output)
    assert steps.run("thing", step_key("a", 2), [output], work("fourth"))  # output gone: redone
    assert runs == ["first", "third", "fourth"] and (output / "file").read_text() == "fourth"
    assert any("up to date" in line for line in said)


def test_step_keys_are_canonical():
    assert step_key({"b": 1, "a": 2}) == step_key({"a": 2, "b": 1})
    assert step_key(Path("/x")) == step_key("/x")
    assert step_key(1) != step_key(2)
