"""``mmalign train pref``: a run through the CLI, bad configs failing at start in one line, the listings, and the
shipped configs (preference recipes, accelerate launch configs, their documentation)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw

from mmalign.cli.main import main
from mmalign.data.io import write_records
from mmalign.data.records import PreferenceRecord, assistant, user_prompt
from mmalign.losses import LOSSES
from mmalign.models import load
from mmalign.train.callbacks import read_metrics

ROOT = Path(__file__).resolve().parents[2]


def record(i: int) -> PreferenceRecord:
    img = Image.new("RGB", (48, 48), (64, 64, 64))
    ImageDraw.Draw(img).rectangle((4 + 4 * i, 8, 24 + 4 * i, 28), fill=(40, 80 + 40 * i, 220))
    return PreferenceRecord(
        f"c-{i}",
        user_prompt("Describe the image."),
        assistant("There is a blue square."),
        assistant(f"There is a blue square and {'a red star' if i % 2 else 'a green circle'}."),
        [img],
        rejected_spans=[[22, 35]],
    )


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pref-cli")
    model = tiny_dir("tiny-llava")
    write_records(root / "data" / "train.jsonl", [record(i) for i in range(4)])
    config = {
        "kind": "pref",
        "model": {"path": str(model)},
        "data": {"train": str(root / "data" / "train.jsonl")},
        "train": {"batch_size": 2, "max_steps": 2, "logging_steps": 1, "learning_rate": 1e-3},
        "loss": {"name": "sigmoid", "options": {"beta": 0.2}},
    }
    (root / "pref.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return {"root": root, "config": root / "pref.yaml", "model": model}


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "pref", *args])
    out = capsys.readouterr()
    return int(exit_info.value.code or 0), out.out, out.err


def test_a_run_through_the_cli(setup, capsys, tmp_path):
    out_dir = tmp_path / "run"
    code, out, err = run(
        capsys,
        "--config",
        str(setup["config"]),
        "--loss",
        "mdpo",
        f"train.output_dir={out_dir}",
        "loss.options.anchor=0.5",
        "--no-progress",
    )
    assert code == 0, err
    assert "dropping the options the config gives loss 'sigmoid'" in err  # beta=0.2 was sigmoid's, not mdpo's
    assert "pref: loss mdpo" in out and "trained 2 steps" in out
    rows = read_metrics(out_dir / "metrics.jsonl")
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2]
    for key in (
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "kl/chosen",
        "image_loss",
        "rewards/image_margins",
    ):
        assert key in train_rows[0], key
    # mDPO at step 1 (policy = reference): DPO ln 2 + image term ln 2 + anchor -log σ(0 - 0.5) = 0.974077
    assert train_rows[0]["loss"] == pytest.approx(2 * 0.693147 + 0.974077, abs=1e-5)
    saved = yaml.safe_load((out_dir / "pref_config.yaml").read_text(encoding="utf-8"))
    assert saved["loss"] == {"name": "mdpo", "options": {"anchor": 0.5}}
    assert load(out_dir).family.name == "llava"  # the final model loads like any other
    code, _, err = run(capsys, "--config", str(setup["config"]), f"train.output_dir={out_dir}")
    assert code == 2 and "already holds a run" in err  # a second run does not mix into the first


def test_simpo_logs_mean_logps_as_trl(setup, capsys, tmp_path):
    out_dir = tmp_path / "simpo"
    code, _, err = run(
        capsys,
        "--config",
        str(setup["config"]),
        "--loss",
        "simpo",
        f"train.output_dir={out_dir}",
        "train.max_steps=1",
        "--no-progress",
    )
    assert code == 0, err
    first = next(r for r in read_metrics(out_dir / "metrics.jsonl") if "loss" in r)
    # TRL's CPOTrainer (simpo) logs mean log-probs per token: the reward β·mean, β = 2 by default
    assert first["rewards/chosen"] == pytest.approx(2 * first["logps/chosen"], rel=1e-5)
    assert first["rewards/rejected"] == pytest.approx(2 * first["logps/rejected"], rel=1e-5)
    # every chosen text is the same, so sum / mean is its token count: a whole number above 1
    tokens = first["logps/chosen_sum"] / first["logps/chosen"]
    assert tokens > 1 and tokens == pytest.approx(round(tokens), abs=1e-3)


BAD = [
    (["train.bogus=1"], "unknown key 'train.bogus'"),
    (["loss.name=dpo"], "unknown loss 'dpo'; choose one of: sigmoid"),
    (["loss.options.gamma=1"], "loss 'sigmoid': unknown key 'gamma' (allowed here: beta)"),
    (["loss.options.beta=-1"], "beta must be a positive number"),
    (["loss.name=simpo", "loss.options={}", "reference.mode=precomputed"], "reference-free, but reference.mode"),
    (["loss.name=orpo", "loss.options={}", "reference.path=elsewhere"], "reference-free, but reference.path"),
    (["reference.mode=none"], "needs a reference; reference.mode 'none'"),
    (["reference.cache_dir=/tmp/x"], "reference.cache_dir is only used with reference.mode: precomputed"),
    (
        ["model.gradient_checkpointing=true", "share_prefix=true"],
        "share_prefix cannot run with model.gradient_checkpointing",
    ),
    (["guard.margin_drop=0.5"], "the guard watches held-out evaluations"),
    (["guard.patience=0"], "key 'guard.patience' must be an integer >= 1, got 0"),
    (["loss.name=simpo", "loss.options={}", "guard.max_kl=1"], "guard.max_kl watches the KL to a reference"),
    (["train.eval_steps=5"], "train.eval_steps is set but there is no data.eval"),
    (["train.warmup_ratio=0.1", "train.warmup_steps=5"], "can't set both train.warmup_ratio and train.warmup_steps"),
    (["data.train=missing.jsonl"], "missing.jsonl: no such file"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[b[1][:40] for b in BAD])
def test_bad_configs_fail_at_start_in_one_line(setup, capsys, tmp_path, overrides, message):
    code, _, err = run(capsys, "--config", str(setup["config"]), f"train.output_dir={tmp_path / 'run'}", *overrides)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing was started


def test_listings(capsys):
    code, out, _ = run(capsys, "--list-losses")
    assert code == 0 and all(name in out for name in LOSSES)
    code, out, _ = run(capsys, "--show-options", "--loss", "mdpo")
    assert code == 0
    for key in ("reference.mode", "guard.margin_drop", "share_prefix", "loss.options", "keep_min", "image_weight"):
        assert key in out, key


def test_shipped_configs():
    pref = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in (ROOT / "configs" / "pref").glob("*.yaml")}
    # One recipe per method on the shapes world (dpo is the sigmoid loss; kto the unpaired one, on feedback records),
    # and one per real model family.
    methods = {"dpo" if name == "sigmoid" else name for name in LOSSES} | {"kto"}
    assert methods | {"llava-1.5-7b-lora", "qwen2-vl-7b", "smolvlm"} == set(pref)
    for name in methods:
        assert pref[name]["loss"]["name"] == ("sigmoid" if name == "dpo" else name)
        assert pref[name]["kind"] == "pref"
    # (configs/ as a whole is loaded and validated against PreferenceConfig by tests/train/test_configs.py.)
    from accelerate.commands.config.config_args import load_config_from_file

    docs = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    kinds = {}
    for path in sorted((ROOT / "configs" / "accelerate").glob("*.yaml")):
        kinds[path.stem] = load_config_from_file(str(path)).distributed_type.value
        assert f"configs/accelerate/{path.name}" in docs
    assert kinds == {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero2": "DEEPSPEED", "deepspeed_zero3": "DEEPSPEED"}
    for name in pref:
        assert f"{name}.yaml" in docs
