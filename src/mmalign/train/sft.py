"""Supervised fine-tuning: a ``transformers.Trainer`` on SFT records, with mmalign's collator and loss.

    config = load_config(SFTConfig, "configs/demo/sft.yaml", ["train.max_steps=200"])
    result = train_sft(config)          # result.model_dir loads with mmalign.models.load

The loss is the mean next-token cross-entropy over response tokens only (prompt, image and padding positions
carry no label; the usual instruction-tuning objective, e.g. LLaVA, Liu et al., 2023, Sec. 4.2). Under
gradient accumulation the mean is over every response token of the accumulated batch, so batch 8 ×
accumulation 1 and batch 2 × accumulation 4 take the same step.

``output_dir`` holds ``checkpoint-<step>/`` every ``train.save_steps`` (model, processor, optimiser,
scheduler, RNG states: ``train.resume=true`` continues from the latest complete one exactly as if never
stopped), ``metrics.jsonl``, ``sft_config.yaml`` and ``train_result.json``; the final model is saved in
``output_dir`` itself (safetensors + processor). With LoRA the adapter goes to ``output_dir/adapter`` and,
with ``sft.merge_lora``, the merged model to ``output_dir``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from torch import Tensor
from transformers import Trainer

from mmalign.config import config_to_dict, option, section
from mmalign.errors import ConfigError
from mmalign.files import atomic_path
from mmalign.models.collate import IGNORE, Collator
from mmalign.models.loading import LoadedModel, load
from mmalign.models.processors import save_upstream_processor
from mmalign.train.callbacks import METRICS_FILE, TrainingLog
from mmalign.train.config import DataConfig, ModelConfig, TrainingConfig
from mmalign.train.dataset import RecordDataset
from mmalign.train.finite import FiniteSteps, check_weights
from mmalign.train.presets import resolve_model_path
from mmalign.train.resume import train_resuming

CONFIG_FILE = "sft_config.yaml"
RESULT_FILE = "train_result.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


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
        if self.train.eval_steps is not None and self.data.eval is None:
            raise ConfigError("train.eval_steps is set but there is no data.eval to evaluate on")


@dataclass
class SFTResult:
    """What :func:`train_sft` did."""

    output_dir: Path
    model_dir: Path | None
    """The final model, loadable by :func:`mmalign.models.load` (None: LoRA without merging)."""
    adapter_dir: Path | None
    """The LoRA adapter (None without LoRA)."""
    global_step: int
    train_loss: float
    """Mean training loss over this call's steps (as ``Trainer`` reports it)."""
    last_loss: float | None
    """The last logged training loss."""
    runtime_s: float
    examples: int
    """Training examples the optimiser saw in this call."""
    tokens: int
    """Non-padding input tokens seen over the whole run (image tokens included)."""
    resumed_from: Path | None
    skipped_records: int
    """Records left out because they did not fit data.max_length (data.on_overflow: skip)."""
    eval_loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}


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


class TrainCollate:
    """Records -> the dict ``Trainer`` feeds the model: model inputs plus ``labels``."""

    def __init__(self, collator: Collator) -> None:
        self.collator = collator

    def __call__(self, records: list[Any]) -> dict[str, Tensor]:
        batch = self.collator(records)
        if len(batch) == 0:
            raise ConfigError(
                f"every record of a batch was longer than data.max_length ({self.collator.max_length}): "
                f"{', '.join(batch.skipped[:5])}; raise data.max_length"
            )
        return {**batch.model_inputs(), "labels": batch.labels}


class SFTTrainer(FiniteSteps, Trainer):
    """``Trainer`` with :func:`response_nll` as the loss and the processor saved in every checkpoint; a NaN or
    infinite loss, gradient norm or weight stops it (:mod:`mmalign.train.finite`)."""

    loss_is_scaled_for_ga = True  # response_nll divides by the accumulated batch's token count

    def __init__(self, *args: Any, processor: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.processor = processor
        self.model_accepts_loss_kwargs = True  # makes Trainer count num_items_in_batch for us

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        labels = inputs["labels"]
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
        loss = response_nll(outputs.logits, labels, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        target = self.model if model is None else model
        if is_peft(target) or not (Path(resume_from_checkpoint) / "config.json").is_file():
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # adapters load by their own keys
            return
        restore_weights(target, resume_from_checkpoint)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        if self.processor is not None and self.args.should_save:
            save_upstream_processor(self.processor, Path(output_dir or self.args.output_dir))


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def restore_weights(model: Any, checkpoint: str | Path) -> None:
    """Load a checkpoint's weights into ``model`` in place, through ``from_pretrained``.

    ``Trainer``'s own resume reads ``model.safetensors`` with ``load_state_dict(strict=False)``, which skips the
    key conversion ``from_pretrained`` applies: in transformers 5 a LLaVA checkpoint's keys
    (``language_model.model.layers...``) differ from its module names (``model.language_model.layers...``), so
    every weight was silently left as it was. Here all keys must match (``strict``)."""
    dtype = next(model.parameters()).dtype
    fresh = type(model).from_pretrained(checkpoint, dtype=dtype, use_safetensors=True)
    model.load_state_dict(fresh.state_dict(), strict=True)
    del fresh


# ------------------------------------------------------------------------------------------------ running


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The highest-step complete checkpoint (``trainer_state.json`` is written last) in ``output_dir``."""
    out = Path(output_dir)
    if not out.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := CHECKPOINT.match(p.name)) and p.is_dir()]
    complete = [(step, p) for step, p in found if (p / "trainer_state.json").is_file()]
    return max(complete)[1] if complete else None


def _checkpoint_step(path: Path) -> int:
    match = CHECKPOINT.match(path.name)
    return int(match.group(1)) if match else 0


def _check_output_dir(config: SFTConfig, say: Callable[[str], None]) -> Path | None:
    """The checkpoint to resume from; refuses to mix a new run into a directory holding another."""
    out = Path(config.train.output_dir)
    checkpoint = latest_checkpoint(out)
    if config.train.resume:
        if checkpoint is None:
            say(f"no checkpoint in {out}: starting from scratch")
            return None
        saved = out / CONFIG_FILE
        if saved.is_file():
            before = _flat(yaml.safe_load(saved.read_text(encoding="utf-8")) or {})
            now = _flat(config_to_dict(config))
            keys = (before.keys() | now.keys()) - {"train.resume"}
            changed = sorted(k for k in keys if before.get(k) != now.get(k))
            if changed:
                say(f"warning: resuming with options changed since the checkpoint: {', '.join(changed)}")
        return checkpoint
    if out.is_dir():
        taken = [p.name for p in out.iterdir() if CHECKPOINT.match(p.name) or p.name in (METRICS_FILE, "config.json")]
        if taken:
            raise ConfigError(
                f"{out} already holds a run ({', '.join(sorted(taken)[:3])}); continue it with train.resume=true, "
                "or choose another train.output_dir (or delete this one)"
            )
    return None


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_model_dir(model: Any, processor: Any, out: str | Path) -> Path:
    """Save ``model`` (safetensors) and ``processor`` into ``out``, which may already hold other files
    (checkpoints, logs). Files are written beside it first and moved in with ``config.json`` last, so a
    directory with a ``config.json`` always has its complete weights."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".save.", dir=out))
    try:
        model.save_pretrained(staging)
        save_upstream_processor(processor, staging)
        names = sorted((p.name for p in staging.iterdir()), key=lambda n: n == "config.json")
        for name in names:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _save_final(loaded: LoadedModel, config: SFTConfig) -> tuple[Path | None, Path | None]:
    """Save the trained model; returns (model_dir, adapter_dir)."""
    out = Path(config.train.output_dir)
    model = loaded.model.eval()
    if not config.model.lora.enabled:
        return save_model_dir(model, loaded.processor, out), None
    adapter = out / "adapter"
    with atomic_path(adapter) as tmp:
        model.save_pretrained(tmp)
        save_upstream_processor(loaded.processor, tmp)
    if not config.sft.merge_lora:
        return None, adapter
    return save_model_dir(model.merge_and_unload(), loaded.processor, out), adapter


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
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    data = config.data
    train_set, eval_set = read_datasets(config) if datasets is None else datasets
    collator = loaded.collator(
        mode="train",
        max_length=data.max_length,
        on_overflow=data.on_overflow,
        image_root=train_set.root,
        max_image_pixels=data.max_image_pixels,
    )
    args = config.train.training_arguments(
        include_num_input_tokens_seen="non_padding",
        prediction_loss_only=True,
        label_names=["labels"],
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        **arg_overrides,
    )
    trainer = SFTTrainer(
        model=loaded.model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=TrainCollate(collator),
        callbacks=callbacks,
        processor=loaded.processor,
        max_nonfinite_steps=config.train.max_nonfinite_steps,
    )
    for default in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(default)
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
    say = write or (lambda text: print(text, flush=True))
    out = Path(config.train.output_dir)
    resume_from = _check_output_dir(config, say)
    model_path = resolve_model_path(config.model.path)
    datasets = read_datasets(config)  # bad records fail here, before the model loads
    loaded = load(model_path, **config.model.load_options())
    log = TrainingLog(out, progress=progress, write=write)
    trainer, collator = build_trainer(config, loaded, [log, *(callbacks or [])], datasets)
    train_set = datasets[0]
    per_step = config.train.batch_size * config.train.grad_accum * trainer.args.world_size
    say(
        f"sft: {config.model.path} ({loaded.n_parameters() / 1e6:.2f} M parameters, "
        f"{loaded.n_parameters(trainable_only=True) / 1e6:.2f} M trainable) on {len(train_set)} records "
        f"from {config.data.train}; {per_step} examples a step; output in {out}"
    )
    if resume_from is not None:
        say(f"resuming from {resume_from}")
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / CONFIG_FILE, yaml.safe_dump(config_to_dict(config), sort_keys=False))
    output = train_resuming(trainer, resume_from)
    evals = [row for row in trainer.state.log_history if "eval_loss" in row]
    if trainer.eval_dataset is not None and (not evals or evals[-1]["step"] != trainer.state.global_step):
        evals.append(trainer.evaluate())
    eval_loss = float(evals[-1]["eval_loss"]) if evals else None
    check_weights(loaded.model, trainer.state.global_step, "the final model", out)
    model_dir, adapter_dir = _save_final(loaded, config)
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    start_step = _checkpoint_step(resume_from) if resume_from is not None else 0
    result = SFTResult(
        output_dir=out,
        model_dir=model_dir,
        adapter_dir=adapter_dir,
        global_step=trainer.state.global_step,
        train_loss=float(output.training_loss),
        last_loss=float(losses[-1]) if losses else None,
        runtime_s=float(output.metrics.get("train_runtime", 0.0)),
        examples=(trainer.state.global_step - start_step) * per_step,
        tokens=int(trainer.state.num_input_tokens_seen),
        resumed_from=resume_from,
        skipped_records=collator.n_skipped,
        eval_loss=eval_loss,
    )
    _write_text(out / RESULT_FILE, json.dumps(result.to_dict(), indent=2) + "\n")
    where = model_dir if model_dir is not None else adapter_dir
    say(f"saved the fine-tuned model to {where} (step {result.global_step}, last loss {result.last_loss})")
    return result
