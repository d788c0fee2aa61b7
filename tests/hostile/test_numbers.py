"""Numbers that can't be right are refused where they enter, and a run whose numbers stop being numbers stops.

Every case goes through the real CLI (in-process): a non-zero exit code, one line naming the key (or flag) and
the allowed range, no traceback, and nothing written or changed. Training faults are injected by making the
loss NaN at a chosen step (or by a learning rate so large that the weights overflow): the run stops naming the
step, no checkpoint or final model with non-finite weights exists, and ``train.resume=true`` continues from the
last good checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from mmalign.config import Bounds, check_number
from mmalign.data.io import write_records
from mmalign.data.records import PreferenceRecord, assistant, user_prompt
from mmalign.train.checkpoints import latest_checkpoint
from mmalign.train.finite import NonFiniteError
from mmalign.train.preference import PreferenceTrainer
from mmalign.train.sft import SFTTrainer
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("numbers") / "world"
    generate_world(out, WorldConfig(train_scenes=12, val_scenes=0, test_scenes=0))
    return out


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    records = [
        PreferenceRecord(
            f"p-{i}",
            user_prompt("What is in the image?"),
            assistant("A blue square."),
            assistant(f"A blue square and {i} red stars."),
            [Image.new("RGB", (48, 48), (40, 80, 220))],
        )
        for i in range(4)
    ]
    write_records(path, records)
    return path


def one_line_error(code: int, err: str) -> str:
    """The error line, after checking the exit code, the single line (progress bars aside) and the absence of a
    traceback."""
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "it/s]" not in line]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------------------ config numbers

SFT_CASES = [
    ("train.learning_rate=inf", "key 'train.learning_rate' must be a finite number > 0, got inf"),
    ("train.learning_rate=nan", "key 'train.learning_rate' must be a finite number > 0, got nan"),
    ("train.learning_rate=-1e-4", "key 'train.learning_rate' must be a finite number > 0, got -0.0001"),
    ("train.weight_decay=nan", "key 'train.weight_decay' must be a finite number >= 0, got nan"),
    ("train.epochs=nan", "key 'train.epochs' must be a finite number >= 0, got nan"),
    ("train.logging_steps=0", "key 'train.logging_steps' must be an integer >= 1, got 0"),
    ("train.adam_beta1=1.5", "key 'train.adam_beta1' must be a finite number in [0, 1), got 1.5"),
    ("train.adam_beta2=-0.1", "key 'train.adam_beta2' must be a finite number in [0, 1), got -0.1"),
    ("train.warmup_steps=-3", "key 'train.warmup_steps' must be an integer >= 0, got -3"),
    ("train.warmup_ratio=inf", "key 'train.warmup_ratio' must be a finite number in [0, 1), got inf"),
    ("train.max_steps=-5", "key 'train.max_steps' must be an integer >= -1, got -5"),
    ("train.max_grad_norm=-1", "key 'train.max_grad_norm' must be a finite number >= 0, got -1.0"),
    ("train.max_grad_norm=nan", "key 'train.max_grad_norm' must be a finite number >= 0, got nan"),
    ("train.batch_size=0", "key 'train.batch_size' must be an integer >= 1, got 0"),
    ("train.seed=-1", "key 'train.seed' must be an integer >= 0, got -1"),
    ("train.save_steps=0", "key 'train.save_steps' must be an integer >= 1, got 0"),
    ("train.max_nonfinite_steps=-1", "key 'train.max_nonfinite_steps' must be an integer >= 0, got -1"),
    ("model.lora.dropout=nan", "key 'model.lora.dropout' must be a finite number in [0, 1), got nan"),
    ("data.max_length=0", "key 'data.max_length' must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize(("override", "message"), SFT_CASES, ids=[c[0] for c in SFT_CASES])
def test_sft_numbers_are_refused_at_start(override, message, cli_run, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli_run(["train", "sft", "data.train=x.jsonl", f"train.output_dir={out}", override])
    assert one_line_error(code, err) == f"error: config (with overrides): {message}"
    assert not out.exists()


def test_a_config_file_is_named_with_the_key(cli_run, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("data: {train: x.jsonl}\ntrain: {output_dir: out, learning_rate: .inf}\n", encoding="utf-8")
    code, _, err = cli_run(["train", "sft", "--config", str(config)])
    line = one_line_error(code, err)
    assert line == f"error: {config}: key 'train.learning_rate' must be a finite number > 0, got inf"


PREF_CASES = [
    ("guard.margin_drop=nan", "key 'guard.margin_drop' must be a finite number >= 0, got nan"),
    ("guard.patience=0", "key 'guard.patience' must be an integer >= 1, got 0"),
    ("reference.batch_size=0", "key 'reference.batch_size' must be an integer >= 1, got 0"),
    ("train.learning_rate=inf", "key 'train.learning_rate' must be a finite number > 0, got inf"),
    ("loss.options.beta=nan", "key 'beta' must be a finite number"),
]


@pytest.mark.parametrize(("override", "message"), PREF_CASES, ids=[c[0] for c in PREF_CASES])
def test_pref_numbers_are_refused_at_start(override, message, cli_run, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli_run(["train", "pref", "data.train=x.jsonl", f"train.output_dir={out}", override])
    assert message in one_line_error(code, err)
    assert not out.exists()


OTHER_COMMANDS = [
    (["world", "--out", "{tmp}/w", "--caption-noise", "nan"], "key 'caption_noise' must be a finite number in [0, 1]"),
    (["world", "--out", "{tmp}/w", "--skew", "inf"], "key 'frequency_skew' must be a finite number >= 0, got inf"),
    (
        ["eval", "run", "--model", "{tmp}/m", "--out", "{tmp}/e", "--tasks", "pope", "--beta", "nan"],
        "--beta must be a finite number > 0, got nan",
    ),
    (
        ["eval", "run", "--model", "{tmp}/m", "--out", "{tmp}/e", "--tasks", "pope", "--bootstrap", "0"],
        "--bootstrap must be an integer >= 1, got 0",
    ),
    (
        [
            "eval",
            "run",
            "--model",
            "{tmp}/m",
            "--out",
            "{tmp}/e",
            "--tasks",
            "pope",
            "--judge-url",
            "http://127.0.0.1:1/v1",
            "--judge-model",
            "j",
            "--judge-concurrency",
            "0",
        ],
        "key 'judge.max_concurrency' must be an integer >= 1, got 0",
    ),
    (
        ["demo", "--quick", "--out", "{tmp}/d", "--no-progress", "--bootstrap", "0"],
        "--bootstrap must be an integer >= 1, got 0",
    ),
    (
        ["data", "filter", "{tmp}/a.jsonl", "{tmp}/b.jsonl", "--max-length-ratio", "nan"],
        "--max-length-ratio must be a finite number >= 1, got nan",
    ),
    (
        ["data", "mix", "{tmp}/b.jsonl", "-i", "{tmp}/a.jsonl:w=nan", "--total", "3"],
        "counts and weights must be finite numbers >= 0",
    ),
    (
        ["data", "split", "{tmp}/a.jsonl", "{tmp}/s", "--ratio", "train=nan", "--ratio", "val=0.1"],
        "split ratio 'train=nan' must look like NAME=FRACTION",
    ),
]


@pytest.mark.parametrize(
    ("argv", "message"), OTHER_COMMANDS, ids=[" ".join(c[0][:2] + c[0][-2:]) for c in OTHER_COMMANDS]
)
def test_numeric_flags_of_every_command(argv, message, cli_run, tmp_path):
    (tmp_path / "a.jsonl").write_text("", encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = cli_run([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert message in one_line_error(code, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


TYPER_FLAGS = [
    (["world", "--out", "{tmp}/w", "--workers", "0"], "'--workers'", "greater than or equal to 1"),
    (["eval", "compare", "{tmp}/r1", "{tmp}/r2", "--out", "{tmp}/c", "--seed", "-1"], "'--seed'", "or equal to 0"),
    (["eval", "score", "--task", "pope", "--answers", "{tmp}/a.jsonl", "--seed", "-2"], "'--seed'", "or equal to 0"),
    (["data", "split", "{tmp}/a.jsonl", "{tmp}/s", "--seed", "-1"], "'--seed'", "or equal to 0"),
]


@pytest.mark.parametrize(
    ("argv", "flag", "rule"), TYPER_FLAGS, ids=[" ".join(c[0][:2] + c[0][-2:]) for c in TYPER_FLAGS]
)
def test_flags_outside_configs_have_ranges(argv, flag, rule, cli_run, tmp_path):
    """Flags that feed no config are checked by typer (a usage error: exit 2, the flag and its range)."""
    (tmp_path / "a.jsonl").write_text("", encoding="utf-8")
    code, _, err = cli_run([a.replace("{tmp}", str(tmp_path)) for a in argv])
    text = " ".join(err.split())
    assert code == 2 and flag in text and rule in text and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl"]


@pytest.mark.parametrize(
    ("value", "bounds", "integer", "expected"),
    [
        (math.inf, Bounds(allow_inf=True, gt=0), False, None),
        (-math.inf, Bounds(allow_inf=True, gt=0), False, "must be a number > 0, got -inf"),
        (math.nan, Bounds(allow_inf=True), False, "must be a number, got nan"),
        (math.nan, None, False, "must be a finite number, got nan"),  # every float, with or without bounds
        ([1.0, math.inf], None, False, "[1] must be a finite number, got inf"),
        (True, Bounds(ge=2), False, None),  # bools are not numbers here
        (5, Bounds(ge=0, le=4), True, "must be an integer in [0, 4], got 5"),
    ],
)
def test_check_number(value, bounds, integer, expected):
    assert check_number(value, bounds, integer) == expected


# ------------------------------------------------------------------------------------------ training faults


@pytest.fixture
def nan_at_step(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``nan_at_step(cls, {3})``: the loss of ``cls`` (SFTTrainer or PreferenceTrainer) is NaN at those steps."""

    originals: dict[type, Any] = {}

    def patch(cls: type, steps: set[int]) -> None:
        original = originals.setdefault(cls, cls.compute_loss)  # a second call replaces the first

        def compute_loss(self: Any, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            loss = original(self, model, inputs, *args, **kwargs)
            if model.training and self.state.global_step + 1 in steps:
                loss = loss * torch.tensor(float("nan"))
            return loss

        monkeypatch.setattr(cls, "compute_loss", compute_loss)

    yield patch


def sft_args(world: Path, model: Path, out: Path, *overrides: str) -> list[str]:
    return [
        "train",
        "sft",
        f"model.path={model}",
        f"data.train={world / 'train' / 'sft.jsonl'}",
        f"data.root={world}",
        f"train.output_dir={out}",
        "train.batch_size=2",
        "train.max_steps=3",
        "train.save_steps=1",
        "train.save_total_limit=null",
        "train.logging_steps=1",
        "train.learning_rate=1e-3",
        "--no-progress",
        *overrides,
    ]


def finite_checkpoint(path: Path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in load_file(path / "model.safetensors").values())


def test_sft_nan_loss_stops_naming_the_step_and_resume_picks_the_last_good_checkpoint(
    world, tiny_dir, tmp_path, cli_run, nan_at_step
):
    out = tmp_path / "run"
    nan_at_step(SFTTrainer, {3})
    code, _, err = cli_run(sft_args(world, tiny_dir("tiny-llava"), out))
    line = one_line_error(code, err)
    assert "training stopped at step 3: the loss is nan" in line
    assert f"the latest checkpoint (every weight finite) is {out / 'checkpoint-2'}" in line
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert all(finite_checkpoint(p) for p in out.glob("checkpoint-*"))
    assert not (out / "config.json").exists() and not (out / "model.safetensors").exists()  # no final model
    assert latest_checkpoint(out) == out / "checkpoint-2"
    before = (out / "checkpoint-2" / "model.safetensors").read_bytes()
    listing = sorted(str(p.relative_to(out)) for p in out.rglob("*"))

    code, _, err = cli_run(sft_args(world, tiny_dir("tiny-llava"), out, "train.resume=true", "train.learning_rate=nan"))
    assert "key 'train.learning_rate' must be a finite number > 0, got nan" in one_line_error(code, err)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == listing  # a refused config touches nothing

    nan_at_step(SFTTrainer, set())  # the cause is fixed: resume continues after step 2
    code, stdout, err = cli_run(sft_args(world, tiny_dir("tiny-llava"), out, "train.resume=true"))
    assert code == 0, err
    assert f"resuming from {out / 'checkpoint-2'}" in stdout
    assert (out / "checkpoint-2" / "model.safetensors").read_bytes() == before
    assert finite_checkpoint(out) and (out / "checkpoint-3").is_dir()


def test_sft_bad_steps_may_be_skipped_up_to_a_limit(world, tiny_dir, tmp_path, cli_run, nan_at_step):
    out = tmp_path / "run"
    nan_at_step(SFTTrainer, {2})
    args = sft_args(world, tiny_dir("tiny-llava"), out, "train.max_steps=2", "train.max_nonfinite_steps=1")
    code, _, err = cli_run(args)
    assert code == 0, err
    assert "skipped step 2: the loss is nan" in err
    step1, step2 = (load_file(out / f"checkpoint-{s}" / "model.safetensors") for s in (1, 2))
    assert all(torch.equal(step1[k], step2[k]) for k in step1)  # the skipped step changed nothing
    assert finite_checkpoint(out)

    nan_at_step(SFTTrainer, {1, 2})  # one more bad step than allowed
    out = tmp_path / "run2"
    code, _, err = cli_run(sft_args(world, tiny_dir("tiny-llava"), out, "train.max_nonfinite_steps=1"))
    warning, error = err.strip().splitlines()
    assert warning.startswith("warning: skipped step 1: the loss is nan")
    assert code == 2 and error.startswith("error: training stopped at step 2 after skipping steps 1: the loss is nan")
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-1"]  # the starting weights: step 1 was skipped


def test_a_learning_rate_that_overflows_the_weights_stops_the_run(world, tiny_dir, tmp_path, cli_run):
    out = tmp_path / "run"
    code, _, err = cli_run(
        sft_args(world, tiny_dir("tiny-llava"), out, "train.learning_rate=1e30", "train.max_steps=2")
    )
    line = one_line_error(code, err)
    # Step 1 moves every weight by ~1e30 (Adam's first step is lr-sized); step 2's forward pass overflows.
    assert "training stopped at step 2: the loss is nan" in line
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-1"]
    assert all(finite_checkpoint(p) for p in out.glob("checkpoint-*"))
    assert not (out / "model.safetensors").exists()


def test_pref_nan_loss_stops_naming_the_step(pairs, tiny_dir, tmp_path, cli_run, nan_at_step):
    out = tmp_path / "run"
    nan_at_step(PreferenceTrainer, {2})
    code, _, err = cli_run(
        [
            "train",
            "pref",
            f"model.path={tiny_dir('tiny-llava')}",
            f"data.train={pairs}",
            f"train.output_dir={out}",
            "train.batch_size=2",
            "train.max_steps=3",
            "train.save_steps=1",
            "train.logging_steps=1",
            "--no-progress",
        ]
    )
    line = one_line_error(code, err)
    assert "training stopped at step 2: the loss is nan" in line
    assert f"the latest checkpoint (every weight finite) is {out / 'checkpoint-1'}" in line
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    assert finite_checkpoint(out / "checkpoint-1") and not (out / "model.safetensors").exists()


def test_non_finite_weights_are_never_saved(world, tiny_dir, tmp_path):
    from mmalign.config import config_from_dict
    from mmalign.models import load
    from mmalign.train.sft import SFTConfig, build_trainer

    out = tmp_path / "run"
    data = {
        "model": {"path": str(tiny_dir("tiny-llava"))},
        "data": {"train": str(world / "train" / "sft.jsonl"), "root": str(world)},
        "train": {"output_dir": str(out), "max_steps": 1},
    }
    config = config_from_dict(SFTConfig, data, "test")
    loaded = load(config.model.path)
    trainer, _ = build_trainer(config, loaded, [])
    trainer.state.global_step = 7
    with torch.no_grad():
        next(loaded.model.parameters())[0] = float("inf")
    with pytest.raises(NonFiniteError, match="step 7: 1 weight tensor"):
        trainer._save_checkpoint(trainer.model, None)
    assert not (out / "checkpoint-7").exists()


def test_shipped_configs_and_defaults_are_within_their_ranges():
    from mmalign.config import config_from_dict
    from mmalign.train.preference import PreferenceConfig
    from mmalign.train.sft import SFTConfig

    root = Path(__file__).resolve().parents[2] / "configs"
    for path in sorted(root.rglob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        kind = data.get("kind") if isinstance(data, dict) else None
        if kind in ("sft", "pref"):
            config_from_dict(SFTConfig if kind == "sft" else PreferenceConfig, data, str(path))
    WorldConfig()  # defaults are checked like any value
