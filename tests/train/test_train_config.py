"""The config sections every trainer shares: contradictions fail at start, TrainingArguments get our values."""

from __future__ import annotations

import pytest

from mmalign.config import config_from_dict, load_config
from mmalign.errors import ConfigError
from mmalign.models.loading import LoraOptions
from mmalign.train.config import DataConfig, ModelConfig, TrainingConfig


@pytest.mark.parametrize(
    ("section", "data", "needle"),
    [
        (TrainingConfig, {"warmup_ratio": 0.1, "warmup_steps": 10}, "can't set both train.warmup_ratio"),
        (TrainingConfig, {"warmup_ratio": 1.0}, "'warmup_ratio' must be a finite number in [0, 1), got 1.0"),
        (TrainingConfig, {"bf16": True, "fp16": True}, "can't set both train.bf16 and train.fp16"),
        (TrainingConfig, {"batch_size": 0}, "'batch_size' must be an integer >= 1, got 0"),
        (TrainingConfig, {"grad_accum": 0}, "'grad_accum' must be an integer >= 1, got 0"),
        (TrainingConfig, {"learning_rate": -1e-5}, "'learning_rate' must be a finite number > 0, got -1e-05"),
        (TrainingConfig, {"max_steps": 0}, "max_steps > 0 or train.epochs > 0"),
        (TrainingConfig, {"max_steps": -1, "epochs": 0}, "max_steps > 0 or train.epochs > 0"),
        (TrainingConfig, {"lr_scheduler": "cosine_restarts"}, "lr_scheduler"),
        (TrainingConfig, {"batch_size": 8.5}, "batch_size"),
        (TrainingConfig, {"learnig_rate": 1e-4}, "unknown key 'learnig_rate'"),
        (LoraOptions, {"r": 0}, "'r' must be an integer >= 1, got 0"),
        (LoraOptions, {"dropout": 1.0}, "'dropout' must be a finite number in [0, 1), got 1.0"),
        (DataConfig, {"limit": 0}, "'limit' must be an integer >= 1, got 0"),
        (DataConfig, {"on_overflow": "truncate"}, "on_overflow"),
        (ModelConfig, {"dtype": "float64"}, "dtype"),
        (ModelConfig, {"lora": {"rank": 8}}, "unknown key 'lora.rank'"),
    ],
)
def test_contradictory_or_bad_options_fail_at_start(section, data, needle):
    with pytest.raises(ConfigError, match=None) as err:
        config_from_dict(section, data, "t.yaml")
    assert needle in str(err.value)
    assert str(err.value).startswith("t.yaml")


def test_training_arguments_carry_our_values(tmp_path):
    cfg = config_from_dict(
        TrainingConfig,
        {
            "output_dir": str(tmp_path / "run"),
            "seed": 7,
            "max_steps": 120,
            "batch_size": 4,
            "grad_accum": 3,
            "learning_rate": 2e-4,
            "weight_decay": 0.01,
            "adam_beta2": 0.98,
            "max_grad_norm": 0.5,
            "lr_scheduler": "cosine",
            "warmup_steps": 12,
            "logging_steps": 5,
            "eval_steps": 30,
            "save_steps": 40,
            "save_total_limit": 3,
        },
    )
    args = cfg.training_arguments()
    assert args.output_dir == str(tmp_path / "run")
    assert (args.seed, args.data_seed) == (7, 7)
    assert args.max_steps == 120
    assert (args.per_device_train_batch_size, args.per_device_eval_batch_size) == (4, 4)
    assert args.gradient_accumulation_steps == 3
    assert args.learning_rate == pytest.approx(2e-4)
    assert args.weight_decay == pytest.approx(0.01)
    assert args.adam_beta2 == pytest.approx(0.98)
    assert args.max_grad_norm == pytest.approx(0.5)
    assert str(args.lr_scheduler_type.value) == "cosine"
    assert args.warmup_steps == 12
    assert args.logging_steps == 5
    assert (str(args.eval_strategy.value), args.eval_steps) == ("steps", 30)
    assert (str(args.save_strategy.value), args.save_steps, args.save_total_limit) == ("steps", 40, 3)
    assert args.report_to == [] or args.report_to == "none" or args.report_to == ["none"]
    assert args.remove_unused_columns is False  # records are not columns: the collator needs every field


def test_training_arguments_defaults_and_ratio(tmp_path):
    args = TrainingConfig(output_dir=str(tmp_path), warmup_ratio=0.25).training_arguments()
    # transformers 5 reads a float below 1 as a fraction of the total steps
    assert args.warmup_steps == pytest.approx(0.25)
    assert str(args.eval_strategy.value) == "no"
    assert str(args.save_strategy.value) == "no"  # save_steps null: only the final model
    assert args.max_steps == -1 and args.num_train_epochs == pytest.approx(1.0)


def test_training_arguments_overrides_win(tmp_path):
    args = TrainingConfig(output_dir=str(tmp_path)).training_arguments(logging_steps=3, prediction_loss_only=True)
    assert args.logging_steps == 3
    assert args.prediction_loss_only is True


def test_model_load_options_with_and_without_lora():
    plain = ModelConfig(path="tiny-llava", freeze_vision=True)
    opts = plain.load_options()
    assert opts["freeze_vision"] is True and "lora" not in opts
    lora = config_from_dict(ModelConfig, {"lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}})
    assert lora.load_options()["lora"] == {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": None}


def test_yaml_and_overrides_reach_nested_sections(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("output_dir: a\nlearning_rate: 1.0e-3\n")
    cfg = load_config(TrainingConfig, path, ["learning_rate=5e-4", "report_to=[tensorboard]"])
    assert cfg.learning_rate == pytest.approx(5e-4)
    assert cfg.report_to == ["tensorboard"]
