"""Supervised fine-tuning: :class:`SFTTrainer` plugged into the trainer core (:mod:`mmalign.train.trainer`).

    config = load_config(SFTConfig, "configs/demo/sft.yaml", ["train.max_steps=200"])
    result = train_sft(config)          # result.model_dir loads with mmalign.models.load

The loss is the mean next-token cross-entropy over response tokens only (prompt, image and padding positions
carry no label; the usual instruction-tuning objective, e.g. LLaVA, Liu et al., 2023, Sec. 4.2). Under
gradient accumulation the mean is over every response token of the accumulated batch, so batch 8 ×
accumulation 1 and batch 2 × accumulation 4 take the same step.

The output folder (checkpoints, ``train.resume``, ``metrics.jsonl``, ``sft_config.yaml``, ``train_result.json``)
is the core's (:mod:`mmalign.train.checkpoints`); the final model is saved in ``output_dir`` itself. With LoRA
the adapter goes to ``output_dir/adapter`` and, with ``sft.merge_lora``, the merged model to ``output_dir``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from mmalign.config import option, section
from mmalign.errors import ConfigError
from mmalign.models.collate import IGNORE, Batch, Collator
from mmalign.models.loading import LoadedModel
from mmalign.train.config import DataConfig, ModelConfig, TrainingConfig, check_held_out
from mmalign.train.dataset import RecordDataset
from mmalign.train.trainer import Collate, CoreTrainer, Run, StepOutput, TrainResult, core_arguments, run


@dataclass
class SFTOptions:
    """What only supervised fine-tuning has."""

    merge_lora: bool = option(
        True,
        "With LoRA: also merge the adapters into the base weights and save that model to train.output_dir "
        "(loadable by mmalign.models.load); the adapter alone always goes to train.output_dir/adapter.",
    )


@dataclass
class SFTConfig:
    """``mmalign train sft``: which model, which records, how to optimise."""

    kind: Literal["sft"] = option("sft", "Config kind: 'sft' for this trainer (tells trainer configs apart).")
    model: ModelConfig = section(ModelConfig, "The model to fine-tune.")
    data: DataConfig = section(DataConfig, "SFT records (data.eval may also hold evaluation items with answers).")
    train: TrainingConfig = section(TrainingConfig, "Optimisation and checkpoints.")
    sft: SFTOptions = section(SFTOptions, "SFT-only options.")

    def __post_init__(self) -> None:
        if not self.data.train:
            raise ConfigError("data.train is required: a file of SFT records")
        check_held_out(self.train, self.data)


@dataclass
class SFTResult(TrainResult):
    """What :func:`train_sft` did."""

    last_loss: float | None
    """The last logged training loss."""
    examples: int
    """Training examples the optimiser saw in this call."""
    tokens: int
    """Non-padding input tokens seen over the whole run (image tokens included)."""
    eval_loss: float | None = None


def response_nll(logits: Tensor, labels: Tensor, num_items: Tensor | int | None = None) -> Tensor:
    """Summed next-token cross-entropy over labelled positions, divided by ``num_items`` (default: their count).

    ``logits`` (B, T, V) predict position t + 1 from position t; ``labels`` (B, T) hold -100 where nothing is
    scored. Dividing the sum by the labelled tokens of the whole accumulated batch keeps gradient accumulation
    exact."""
    predicted = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    targets = labels[:, 1:].reshape(-1).to(predicted.device)
    total = torch.nn.functional.cross_entropy(predicted, targets, ignore_index=IGNORE, reduction="sum")
    count = targets.ne(IGNORE).sum() if num_items is None else num_items
    return total / torch.as_tensor(count, device=total.device).clamp(min=1)


def sft_inputs(batch: Batch, max_length: int | None = None) -> dict[str, Tensor]:
    """A collated batch -> the dict ``Trainer`` feeds the model: model inputs plus ``labels``."""
    if len(batch) == 0:
        raise ConfigError(
            f"every record of a batch was longer than data.max_length ({max_length}): "
            f"{', '.join(batch.skipped[:5])}; raise data.max_length"
        )
    return {**batch.model_inputs(), "labels": batch.labels}


class SFTTrainer(CoreTrainer):
    """The core trainer with :func:`response_nll` as the loss."""

    counts_tokens = True  # response_nll divides by the accumulated batch's token count

    def batch_loss(self, model: Any, inputs: dict[str, Any], num_items: Any = None) -> StepOutput:
        labels = inputs["labels"]
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
        return StepOutput(response_nll(outputs.logits, labels, num_items))


def read_datasets(config: SFTConfig) -> tuple[RecordDataset, RecordDataset | None]:
    """The training records and the optional held-out ones (SFT records or evaluation items with answers)."""
    data = config.data
    train_set = RecordDataset.from_file(
        data.train, kinds=("sft",), root=data.root, limit=data.limit, max_pixels=data.max_image_pixels
    )
    eval_set = None
    if data.eval is not None:
        eval_set = RecordDataset.from_file(
            data.eval, kinds=("sft", "eval"), root=data.root, max_pixels=data.max_image_pixels
        )
    return train_set, eval_set


def build_trainer(
    config: SFTConfig,
    loaded: LoadedModel,
    callbacks: list[Any],
    datasets: tuple[RecordDataset, RecordDataset | None] | None = None,
    **arg_overrides: Any,
) -> tuple[SFTTrainer, Collator]:
    """The configured :class:`SFTTrainer` over ``loaded``; ``datasets`` default to :func:`read_datasets`."""
    data = config.data
    train_set, eval_set = read_datasets(config) if datasets is None else datasets
    collator = loaded.collator(
        mode="train",
        max_length=data.max_length,
        on_overflow=data.on_overflow,
        video_overflow=data.video_overflow,
        image_root=train_set.root,
        max_image_pixels=data.max_image_pixels,
    )
    args = config.train.training_arguments(**core_arguments(label_names=["labels"], **arg_overrides))
    trainer = SFTTrainer(
        model=loaded.model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=Collate(collator, functools.partial(sft_inputs, max_length=data.max_length)),
        collators={"train": collator},
        callbacks=callbacks,
        processor=loaded.processor,
        max_nonfinite_steps=config.train.max_nonfinite_steps,
    )
    return trainer, collator


def train_sft(
    config: SFTConfig,
    *,
    progress: bool = True,
    write: Callable[[str], None] | None = None,
    callbacks: list[Any] | None = None,
) -> SFTResult:
    """Fine-tune ``config.model`` on ``config.data.train``; returns where everything went and the losses.

    ``progress`` shows a progress bar; ``write`` receives the log lines (default: printed); ``callbacks`` are
    extra ``transformers.TrainerCallback`` objects."""
    datasets = read_datasets(config)  # bad records fail here, before the model loads

    def describe(trainer: SFTTrainer, loaded: LoadedModel, per_step: int) -> str:
        return (
            f"sft: {config.model.path} ({loaded.n_parameters() / 1e6:.2f} M parameters, "
            f"{loaded.n_parameters(trainable_only=True) / 1e6:.2f} M trainable) on {len(datasets[0])} records "
            f"from {config.data.train}; {per_step} examples a step"
        )

    def result(done: Run) -> SFTResult:
        state, losses = done.trainer.state, done.logged("loss")
        return SFTResult(
            **done.common(),
            last_loss=float(losses[-1]["loss"]) if losses else None,
            examples=(state.global_step - done.start_step) * done.per_step,
            tokens=int(state.num_input_tokens_seen),
            eval_loss=float(done.evals[-1]["eval_loss"]) if done.evals else None,
        )

    return run(
        config,
        build=lambda loaded, say: build_trainer(config, loaded, list(callbacks or []), datasets)[0],
        describe=describe,
        result=result,
        merge_lora=config.sft.merge_lora,
        progress=progress,
        write=write,
    )
