"""Config sections every trainer shares: which model, which data, how to optimise.

A trainer's config is a dataclass made of these sections plus its own (e.g. the loss of preference training),
read from YAML with :func:`mmalign.config.load_config`. Every option's help text is beside its definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mmalign.config import check_ranges, option, section
from mmalign.data.limits import DEFAULT_MAX_PIXELS
from mmalign.errors import ConfigError
from mmalign.models.loading import LoraOptions


@dataclass
class ModelConfig:
    """The model to train: a local Hugging Face directory or a tiny preset name."""

    path: str = option(
        "tiny-llava", "Model directory, or a tiny preset (tiny-llava, tiny-qwen2-vl, ...) built on first use."
    )
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = option("float32", "Weights dtype.")
    attn_implementation: str | None = option(None, "Attention kernel (eager, sdpa, flash_attention_2); null = default.")
    freeze_vision: bool = option(False, "Freeze the vision tower.")
    freeze_projector: bool = option(False, "Freeze the projector between vision tower and language model.")
    gradient_checkpointing: bool = option(False, "Recompute activations in the backward pass (less memory).")
    trust_remote_code: bool = option(False, "Allow the model directory's own Python code to run.")
    lora: LoraOptions = section(LoraOptions, "LoRA adapters.")

    def load_options(self) -> dict[str, Any]:
        """Keyword options for :func:`mmalign.models.load`."""
        opts: dict[str, Any] = {
            "dtype": self.dtype,
            "attn_implementation": self.attn_implementation,
            "freeze_vision": self.freeze_vision,
            "freeze_projector": self.freeze_projector,
            "gradient_checkpointing": self.gradient_checkpointing,
            "trust_remote_code": self.trust_remote_code,
        }
        if self.lora.enabled:
            opts["lora"] = {
                "r": self.lora.r,
                "alpha": self.lora.alpha,
                "dropout": self.lora.dropout,
                "target_modules": self.lora.target_modules,
            }
        return opts


@dataclass
class DataConfig:
    """Training data: record files in any format mmalign reads (JSONL, Parquet, a datasets directory)."""

    train: str = option("", "Training records (required).")
    eval: str | None = option(None, "Held-out records evaluated every train.eval_steps (optional).")
    root: str | None = option(None, "Directory image paths are relative to (default: the data file's directory).")
    max_length: int | None = option(None, "Longest tokenized sequence; longer responses are truncated.", ge=1)
    on_overflow: Literal["error", "skip"] = option(
        "error", "A record whose prompt and images cannot fit max_length: fail, or skip and count it."
    )
    video_overflow: Literal["error", "thin"] = option(
        "error",
        "A record whose videos cannot fit max_length: fail (as on_overflow says), or thin them (fewer whole frames, "
        "spread uniformly; logged). A frame's tokens are never cut.",
    )
    limit: int | None = option(None, "Use only the first N training records (quick runs).", ge=1)
    max_image_pixels: int = option(
        DEFAULT_MAX_PIXELS, "Refuse images larger than this many pixels (decompression bombs).", ge=1
    )

    def __post_init__(self) -> None:
        check_ranges(self, prefix="data.")


@dataclass
class TrainingConfig:
    """Optimisation and bookkeeping; mapped onto ``transformers.TrainingArguments``."""

    output_dir: str = option("runs/out", "Where checkpoints, logs and the final model go.")
    seed: int = option(0, "Seed of initialisation-free randomness: data order, dropout, sampling.", ge=0)
    max_steps: int = option(-1, "Optimiser steps to run; -1 = use epochs.", ge=-1)
    epochs: float = option(1.0, "Passes over the training data (when max_steps is -1).", ge=0)
    batch_size: int = option(8, "Examples per device per forward pass.", ge=1)
    grad_accum: int = option(1, "Forward passes per optimiser step.", ge=1)
    learning_rate: float = option(1e-5, "Peak learning rate.", gt=0)
    weight_decay: float = option(0.0, "AdamW weight decay.", ge=0)
    adam_beta1: float = option(0.9, "AdamW beta1.", ge=0, lt=1)
    adam_beta2: float = option(0.999, "AdamW beta2.", ge=0, lt=1)
    max_grad_norm: float = option(1.0, "Clip gradients to this global norm (0 = no clipping).", ge=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = option(
        "linear", "Learning-rate schedule after warmup."
    )
    warmup_ratio: float | None = option(
        None, "Fraction of steps used for warmup (exclusive with warmup_steps).", ge=0, lt=1
    )
    warmup_steps: int | None = option(None, "Warmup steps (exclusive with warmup_ratio).", ge=0)
    logging_steps: int = option(10, "Log metrics every N optimiser steps.", ge=1)
    eval_steps: int | None = option(None, "Evaluate on data.eval every N steps (null = only at the end).", ge=1)
    eval_on_start: bool = option(False, "Also evaluate on data.eval before the first step (a curve's step 0).")
    save_steps: int | None = option(None, "Save a checkpoint every N steps (null = only the final model).", ge=1)
    save_total_limit: int | None = option(2, "Keep at most this many checkpoints (null = all).", ge=1)
    dataloader_workers: int = option(0, "Worker processes loading and collating data.", ge=0)
    max_nonfinite_steps: int = option(
        0,
        "Optimiser steps whose loss or gradient norm is NaN or infinite that are skipped (no update) before the "
        "run stops with an error naming the step; 0 = stop at the first.",
        ge=0,
    )
    bf16: bool = option(False, "Mixed precision with bfloat16 (GPU).")
    fp16: bool = option(False, "Mixed precision with float16 (GPU).")
    resume: bool = option(False, "Resume from the latest checkpoint in output_dir if there is one.")
    report_to: list[str] = option([], "Experiment trackers for transformers (e.g. [tensorboard]); [] = none.")

    def __post_init__(self) -> None:
        check_ranges(self, prefix="train.")
        if self.warmup_ratio is not None and self.warmup_steps is not None:
            raise ConfigError("can't set both train.warmup_ratio and train.warmup_steps")
        if self.bf16 and self.fp16:
            raise ConfigError("can't set both train.bf16 and train.fp16")
        if self.max_steps == 0 or (self.max_steps < 0 and self.epochs <= 0):
            raise ConfigError("set train.max_steps > 0 or train.epochs > 0")

    def training_arguments(self, **overrides: Any) -> Any:
        """The equivalent ``transformers.TrainingArguments`` (our options win over transformers' defaults)."""
        from transformers import TrainingArguments

        kwargs: dict[str, Any] = {
            "output_dir": self.output_dir,
            "seed": self.seed,
            "data_seed": self.seed,
            "max_steps": self.max_steps,
            "num_train_epochs": self.epochs,
            "per_device_train_batch_size": self.batch_size,
            "per_device_eval_batch_size": self.batch_size,
            "gradient_accumulation_steps": self.grad_accum,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "adam_beta1": self.adam_beta1,
            "adam_beta2": self.adam_beta2,
            "max_grad_norm": self.max_grad_norm,
            "lr_scheduler_type": self.lr_scheduler,
            # transformers 5 reads a float in [0, 1) as a ratio of the total steps.
            "warmup_steps": self.warmup_steps if self.warmup_steps is not None else float(self.warmup_ratio or 0.0),
            "logging_steps": self.logging_steps,
            "eval_strategy": "steps" if self.eval_steps else "no",
            "eval_steps": self.eval_steps,
            "eval_on_start": self.eval_on_start,
            "save_strategy": "steps" if self.save_steps else "no",
            "save_steps": self.save_steps or 500,
            "save_total_limit": self.save_total_limit,
            "dataloader_num_workers": self.dataloader_workers,
            "bf16": self.bf16,
            "fp16": self.fp16,
            "report_to": list(self.report_to) or "none",
            "remove_unused_columns": False,
            "disable_tqdm": False,
            "use_cpu": False,
        }
        kwargs.update(overrides)
        return TrainingArguments(**kwargs)


def check_held_out(train: TrainingConfig, data: DataConfig) -> None:
    """Refuse held-out evaluations (``train.eval_steps``, ``train.eval_on_start``) without ``data.eval``."""
    for name in ("eval_steps", "eval_on_start"):
        if getattr(train, name) not in (None, False) and data.eval is None:
            raise ConfigError(f"train.{name} is set but there is no data.eval to evaluate on")


def share_prefix_option(same: str = "results") -> Any:
    """The ``share_prefix`` option of the trainers that score a pair's two responses (preference, reward model)."""
    return option(
        "auto",
        f"Compute each pair's prompt + images once for both responses (mmalign.models.prefix); same {same} as the "
        "plain forward. auto: where the sizes make it faster (it leaves out at least 25% of the token positions; "
        "bench/prefix_breakeven.py), never with model.gradient_checkpointing; true: always (refused with "
        "model.gradient_checkpointing); false: never.",
    )


def check_share_prefix(share_prefix: bool | str, model: ModelConfig) -> None:
    """Refuse ``share_prefix: true`` with gradient checkpointing (the checkpointed layers drop the prompt's cache)."""
    if share_prefix is True and model.gradient_checkpointing:
        raise ConfigError(
            "share_prefix cannot run with model.gradient_checkpointing (checkpointed layers drop the prompt's "
            "KV cache); turn one of them off"
        )
