"""The trainer core's plug-in contract is real: a toy objective (not SFT, not preference) plugged into
:class:`~mmalign.train.trainer.CoreTrainer` trains, logs its metrics, checkpoints, saves and resumes exactly."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from mmalign.config import config_from_dict, option, section
from mmalign.models.collate import Batch
from mmalign.train.callbacks import read_metrics
from mmalign.train.config import DataConfig, ModelConfig, TrainingConfig
from mmalign.train.dataset import RecordDataset
from mmalign.train.trainer import Collate, CoreTrainer, StepOutput, TrainResult, core_arguments, run
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world


@dataclass
class ToyConfig:
    """A toy trainer's config: the shared sections and a kind."""

    kind: Literal["toy"] = option("toy", "Config kind.")
    model: ModelConfig = section(ModelConfig, "The model.")
    data: DataConfig = section(DataConfig, "SFT records (only their inputs are used).")
    train: TrainingConfig = section(TrainingConfig, "Optimisation and checkpoints.")


@dataclass
class ToyResult(TrainResult):
    last_rms: float | None


class LogitNorm(CoreTrainer):
    """A toy objective: shrink the logits (their mean square), logging their root mean square."""

    def batch_loss(self, model: Any, inputs: dict[str, Any], num_items: Any = None) -> StepOutput:
        logits = model(**inputs).logits.float()
        loss = logits.pow(2).mean()
        return StepOutput(loss, {"toy/logit_rms": loss.sqrt().item()}, len(logits))


def model_inputs(batch: Batch) -> dict[str, Any]:
    return batch.model_inputs()


def train_toy(config: ToyConfig, callbacks: list[Any] = ()) -> ToyResult:
    def build(loaded: Any, say: Any) -> LogitNorm:
        records = RecordDataset.from_file(config.data.train, kinds=("sft",), root=config.data.root)
        collator = loaded.collator(mode="train", image_root=records.root)
        return LogitNorm(
            model=loaded.model,
            args=config.train.training_arguments(**core_arguments()),
            train_dataset=records,
            data_collator=Collate(collator, model_inputs),
            collators={"train": collator},
            callbacks=list(callbacks),
            processor=loaded.processor,
        )

    def result(done: Any) -> ToyResult:
        rows = done.logged("toy/logit_rms")
        return ToyResult(**done.common(), last_rms=rows[-1]["toy/logit_rms"] if rows else None)

    return run(
        config,
        build=build,
        describe=lambda trainer, loaded, per_step: f"toy: {per_step} examples a step",
        result=result,
        progress=False,
        write=lambda text: None,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "world"
    generate_world(out, WorldConfig(train_scenes=12, val_scenes=2, test_scenes=2))
    return out


def make_config(world: Path, model_dir: Path, out: Path, **train: Any) -> ToyConfig:
    data = {
        "model": {"path": str(model_dir)},
        "data": {"train": str(world / "train" / "sft.jsonl"), "root": str(world)},
        "train": {"output_dir": str(out), "batch_size": 2, "learning_rate": 1e-3, "logging_steps": 1, **train},
    }
    return config_from_dict(ToyConfig, data, "test")


class Crash(Exception):
    pass


class CrashAfterSave(TrainerCallback):
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 2:
            raise Crash("stopped after saving step 2")


def test_a_toy_objective_trains_saves_and_resumes_through_the_core(world, tiny_dir, tmp_path):
    options = {"max_steps": 3, "save_steps": 2, "seed": 1}
    straight = train_toy(make_config(world, tiny_dir("tiny-llava"), tmp_path / "a", **options))
    assert straight.global_step == 3 and straight.model_dir == tmp_path / "a"
    rows = [r for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["toy/logit_rms"] ** 2 == pytest.approx(r["loss"], rel=1e-4) for r in rows)  # metrics logged
    assert rows[-1]["loss"] < rows[0]["loss"]  # it trained
    assert (tmp_path / "a" / "toy_config.yaml").is_file()
    saved = json.loads((tmp_path / "a" / "train_result.json").read_text())
    assert saved["global_step"] == 3 and saved["last_rms"] == straight.last_rms
    assert (tmp_path / "a" / "checkpoint-2" / "tokenizer_config.json").is_file()  # the processor in checkpoints

    out = tmp_path / "b"
    with pytest.raises(Crash):
        train_toy(make_config(world, tiny_dir("tiny-llava"), out, **options), callbacks=[CrashAfterSave()])
    resumed = train_toy(make_config(world, tiny_dir("tiny-llava"), out, resume=True, **options))
    assert resumed.resumed_from == out / "checkpoint-2" and resumed.global_step == 3
    weights_a = load_file(tmp_path / "a" / "model.safetensors")
    weights_b = load_file(out / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    for name, value in weights_a.items():
        torch.testing.assert_close(weights_b[name], value, rtol=0, atol=1e-6, msg=name)
