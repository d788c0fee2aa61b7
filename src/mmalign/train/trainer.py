"""The trainer core every mmalign trainer plugs into: SFT and preference training today, reward models and RL next.

The core is a ``transformers.Trainer`` (:class:`CoreTrainer`) and one function that runs it (:func:`run`). It owns
everything that is the same for every objective:

* the loop, accelerate (DDP / FSDP / DeepSpeed launches), mixed precision and gradient accumulation (``Trainer``);
* the non-finite guard (:mod:`mmalign.train.finite`): a NaN loss, gradient norm or weight stops the run (or skips
  the step), and no checkpoint or final model with a non-finite weight is ever written;
* checkpoints and resume (:mod:`mmalign.train.checkpoints`): the processor saved in every checkpoint, weights
  restored with ``from_pretrained``'s key conversion, ``train.resume`` policy, untrusted or damaged files refused;
* logging: the progress bar, log lines and ``metrics.jsonl`` (:class:`~mmalign.train.callbacks.TrainingLog`, main
  process only), and the trainer's own metrics logged as means weighted by examples over every process, with the
  ``eval_`` prefix after each held-out evaluation;
* callbacks: any ``TrainerCallback``; one that stops training says why in ``stopped_reason`` (the
  over-optimisation guard does), which is logged as ``{"guard": reason}`` and returned as ``stop_reason``;
* the final held-out evaluation, the weight check and the final save (the adapter and, with LoRA, the merged model;
  under FSDP / DeepSpeed the shards gathered by ``Trainer.save_model``), the config and ``train_result.json``.

**The plug-in contract.** A trainer supplies

1. its batch step: a subclass of :class:`CoreTrainer` whose :meth:`~CoreTrainer.batch_loss` maps one collated
   micro-batch to a :class:`StepOutput` (the loss to back-propagate, the metrics to log, and the number of
   examples they are means over). Set ``counts_tokens = True`` when the loss divides by the labelled tokens of the
   whole optimiser step (``num_items``, counted by ``Trainer`` from the inputs' ``labels``); otherwise ``Trainer``
   divides each micro-batch's loss by the accumulation steps. :meth:`~CoreTrainer.start_step` sees the
   micro-batches of each optimiser step before they run (for step-wide denominators);
2. its config: a dataclass with ``kind`` (names ``<kind>_config.yaml``) and the shared sections ``model``, ``data``
   and ``train`` (:mod:`mmalign.train.config`), plus its own;
3. to :func:`run`: ``build(loaded, say)`` making its trainer over the loaded model (datasets; a :class:`Collate`
   from records to the dict ``batch_loss`` receives; ``collators`` by split, whose ``n_skipped`` are reported;
   callbacks), ``describe(trainer, loaded, per_step)`` (the line printed at the start) and ``result(run)``
   turning the core's :class:`Run` into its result (a :class:`TrainResult`, extended with its own fields).

The model saved (checkpoints, final model) is the one handed to the trainer, so it must ``save_pretrained``: a
reward model brings its scalar head inside it, and its ``batch_loss`` is the Bradley-Terry loss on the head's
chosen and rejected scores; an RL trainer makes its rollouts in ``start_step`` or ``batch_loss``.

The core does the rest. A toy objective, trained, checkpointed and resumable like SFT (tests/train/test_trainer.py)::

    class LogitNorm(CoreTrainer):
        def batch_loss(self, model, inputs, num_items=None):
            logits = model(**inputs).logits.float()
            loss = logits.pow(2).mean()
            return StepOutput(loss, {"toy/logit_rms": loss.sqrt().item()}, len(logits))

    def build(loaded, say):
        args = config.train.training_arguments(**core_arguments())
        collator = loaded.collator(mode="train", image_root=records.root)
        return LogitNorm(model=loaded.model, args=args, train_dataset=records, processor=loaded.processor,
                         data_collator=Collate(collator, Batch.model_inputs), collators={"train": collator},
                         max_nonfinite_steps=config.train.max_nonfinite_steps)

    result = run(config, build=build, describe=lambda t, loaded, n: f"toy: {n} examples a step",
                 result=lambda done: TrainResult(**done.common()))
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from torch import Tensor
from transformers import Trainer

from mmalign.config import config_to_dict
from mmalign.models.loading import LoadedModel, load
from mmalign.models.processors import save_upstream_processor
from mmalign.train.callbacks import TrainingLog
from mmalign.train.checkpoints import (
    RESULT_FILE,
    checkpoint_step,
    is_peft,
    restore_weights,
    resume_point,
    save_final,
    train_resuming,
    write_text,
)
from mmalign.train.finite import FiniteSteps, check_weights
from mmalign.train.presets import resolve_model_path


def core_arguments(**overrides: Any) -> dict[str, Any]:
    """The ``TrainingArguments`` options every trainer passes (``config.train.training_arguments(**...)``),
    ``overrides`` winning."""
    return {
        "include_num_input_tokens_seen": "non_padding",
        "prediction_loss_only": True,
        "disable_tqdm": True,
        "dataloader_pin_memory": torch.cuda.is_available(),
        **overrides,
    }


@dataclass
class StepOutput:
    """What a trainer's batch step returns for one micro-batch."""

    loss: Tensor
    """The scalar to back-propagate."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Scalars to log (means over this micro-batch's examples); logged as means weighted by ``weight``."""
    weight: int = 0
    """How many examples the metrics are means over (pairs, sequences...)."""


class CoreTrainer(FiniteSteps, Trainer):
    """``Trainer`` with mmalign's checkpoints, metrics and non-finite guard; subclasses supply :meth:`batch_loss`.

    ``processor`` is saved in every checkpoint; ``eval_collator`` collates the held-out split when it differs
    from the training one (e.g. another image root); ``collators`` (split -> collator) count skipped records;
    ``max_nonfinite_steps`` as in :class:`FiniteSteps`."""

    counts_tokens = False
    """True: :meth:`batch_loss` divides by ``num_items`` (the step's labelled tokens), so gradient accumulation
    needs no further scaling."""

    def __init__(
        self,
        *args: Any,
        processor: Any = None,
        eval_collator: Any = None,
        collators: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        super().__init__(*args, **kwargs)
        self.processor = processor
        self.eval_collator = eval_collator
        self.collators: dict[str, Any] = collators or {}
        """The collators by split; their ``n_skipped`` (records too long for data.max_length) are summed."""
        self.stop_reason: str | None = None
        """Why a callback stopped the run (its ``stopped_reason``), or None."""
        self.loss_is_scaled_for_ga = self.counts_tokens
        if self.counts_tokens:
            self.model_accepts_loss_kwargs = True  # makes Trainer count num_items_in_batch
        self._metrics: dict[str, dict[str, list[float]]] = {"train": {}, "eval": {}}
        for default in (PrinterCallback, ProgressCallback):  # TrainingLog shows progress and log lines
            self.remove_callback(default)

    # ------------------------------------------------------------------------------------------- the plug-in

    def batch_loss(self, model: Any, inputs: dict[str, Any], num_items: Any = None) -> StepOutput:
        """The loss and metrics of one micro-batch (``model.training`` tells training from evaluation)."""
        raise NotImplementedError(f"{type(self).__name__} must define batch_loss")

    def start_step(self, samples: list[Any]) -> None:
        """Sees the collated micro-batches of an optimiser step before they run (default: nothing)."""

    # -------------------------------------------------------------------------------------- Trainer hooks

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        out = self.batch_loss(model, inputs, num_items_in_batch)
        self._store("train" if model.training else "eval", out.metrics, out.weight)
        return (out.loss, out) if return_outputs else out.loss

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> tuple[list, Any]:
        samples, items = super().get_batch_samples(epoch_iterator, num_batches, device)
        self.start_step(samples)
        return samples, items

    def prediction_step(self, model: Any, inputs: Any, prediction_loss_only: bool, ignore_keys: Any = None) -> Any:
        inputs = self._prepare_inputs(inputs)
        num_items = self._get_num_items_in_batch([inputs], self.args.device)  # None unless counts_tokens
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs, num_items_in_batch=num_items)
        return loss.detach().mean(), None, None

    def get_eval_dataloader(self, eval_dataset: Any = None) -> Any:
        if self.eval_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    # -------------------------------------------------------------------------------------------- metrics

    def _store(self, split: str, metrics: dict[str, float], weight: int) -> None:
        for key, value in metrics.items():
            total = self._metrics[split].setdefault(key, [0.0, 0.0])
            total[0] += value * weight
            total[1] += weight

    def _means(self, split: str) -> dict[str, float]:
        """Example-weighted means of the stored metrics over every process, and a fresh store."""
        stored, self._metrics[split] = self._metrics[split], {}
        keys = sorted(stored)
        if not keys:
            return {}
        sums = torch.tensor([stored[k] for k in keys], dtype=torch.float64, device=self.args.device)
        if self.accelerator.num_processes > 1:
            sums = self.accelerator.reduce(sums, reduction="sum")
        return {k: float(s / n) for k, (s, n) in zip(keys, sums.tolist(), strict=True) if n > 0}

    def log(self, logs: dict[str, Any], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add the metrics of the steps since the last one
            logs = {**logs, **self._means("train")}
        super().log(logs, start_time)

    def evaluation_loop(
        self,
        dataloader: Any,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> Any:
        self._metrics["eval"] = {}
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        means = self._means("eval")  # example-weighted over every process (a "loss" metric is the exact eval_loss)
        output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in means.items()})
        return output

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        metrics = super().evaluate(*args, **kwargs)
        for callback in self.callback_handler.callbacks:
            reason = getattr(callback, "stopped_reason", None)
            if reason and self.stop_reason is None:
                self.stop_reason = reason
                self.log({"guard": reason})  # type: ignore[dict-item]
        return metrics

    # -------------------------------------------------------------------------------------- checkpoints

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        target = self.model if model is None else model
        if is_peft(target) or not (Path(resume_from_checkpoint) / "config.json").is_file():
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # adapters load by their own keys
        else:  # Trainer's own loading skips transformers 5's key conversion and would leave every weight as it was
            restore_weights(target, resume_from_checkpoint)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        if self.processor is not None and self.args.should_save:
            save_upstream_processor(self.processor, Path(output_dir or self.args.output_dir))


class Collate:
    """Records -> the dict ``Trainer`` passes to :meth:`CoreTrainer.batch_loss`: ``inputs(collator(records))``.

    The dict should hold ``input_ids`` and ``attention_mask`` (``Trainer`` counts the tokens seen by them)."""

    def __init__(self, collator: Callable[[list[Any]], Any], inputs: Callable[[Any], dict[str, Any]]) -> None:
        self.collator = collator
        self.inputs = inputs

    def __call__(self, records: list[Any]) -> dict[str, Any]:
        return self.inputs(self.collator(records))


# ------------------------------------------------------------------------------------------------ running


@dataclass
class TrainResult:
    """What a training run did; each trainer's result extends it with its own fields."""

    output_dir: Path
    model_dir: Path | None
    """The final model, loadable by :func:`mmalign.models.load` (None: LoRA without merging)."""
    adapter_dir: Path | None
    """The LoRA adapter (None without LoRA)."""
    global_step: int
    train_loss: float
    """Mean training loss over this call's steps (as ``Trainer`` reports it)."""
    runtime_s: float
    resumed_from: Path | None
    skipped_records: int
    """Records left out because they did not fit data.max_length (data.on_overflow: skip)."""

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}


@dataclass
class Run:
    """What :func:`run` did, for a trainer to build its result from."""

    trainer: Any
    output_dir: Path
    output: Any
    """``Trainer.train``'s ``TrainOutput``."""
    resumed_from: Path | None
    evals: list[dict[str, Any]]
    """The held-out evaluations of the run (the last one at the final step); empty without data.eval."""
    model_dir: Path | None
    adapter_dir: Path | None
    per_step: int
    """Examples per optimiser step (batch size × accumulation × processes)."""

    @property
    def start_step(self) -> int:
        return checkpoint_step(self.resumed_from)

    def logged(self, key: str) -> list[dict[str, Any]]:
        """The rows of the log history holding ``key``."""
        return [row for row in self.trainer.state.log_history if key in row]

    def common(self) -> dict[str, Any]:
        """The fields of :class:`TrainResult`."""
        return {
            "output_dir": self.output_dir,
            "model_dir": self.model_dir,
            "adapter_dir": self.adapter_dir,
            "global_step": self.trainer.state.global_step,
            "train_loss": float(self.output.training_loss),
            "runtime_s": float(self.output.metrics.get("train_runtime", 0.0)),
            "resumed_from": self.resumed_from,
            "skipped_records": sum(c.n_skipped for c in self.trainer.collators.values()),
        }

    def latest(self) -> dict[str, Any]:
        """``last_logged`` (the last training log row with a loss) and ``eval_metrics`` (the last held-out
        evaluation), for results that report them."""
        logged = self.logged("loss")
        return {"last_logged": logged[-1] if logged else {}, "eval_metrics": self.evals[-1] if self.evals else {}}


R = TypeVar("R", bound=TrainResult)


def speaker(write: Callable[[str], None] | None) -> Callable[[str], None]:
    """``write``, or printing by the main process (the state is asked each time: it is set up late)."""
    from accelerate import PartialState

    def say(text: str) -> None:
        if write is not None:
            write(text)
        elif PartialState().is_main_process:
            print(text, flush=True)

    return say


def run(
    config: Any,
    *,
    build: Callable[[LoadedModel, Callable[[str], None]], CoreTrainer],
    describe: Callable[[Any, LoadedModel, int], str],
    result: Callable[[Run], R],
    merge_lora: bool = True,
    progress: bool = True,
    write: Callable[[str], None] | None = None,
) -> R:
    """Train ``config`` (a trainer config: ``kind``, ``model``, ``data``, ``train``) with the trainer ``build``
    makes; returns ``result(run)``, also written to ``train_result.json``.

    ``describe`` gives the first line printed; ``merge_lora``: with LoRA, also save the merged model; ``progress``
    shows a progress bar; ``write`` receives the log lines (default: printed, by the main process only)."""
    say = speaker(write)
    out = Path(config.train.output_dir)
    resume_from = resume_point(config, f"{config.kind}_config.yaml", say)
    from transformers import set_seed

    set_seed(config.train.seed)  # what loading draws (LoRA's A matrices) follows train.seed, not the state before
    loaded = load(resolve_model_path(config.model.path), **config.model.load_options())
    trainer = build(loaded, say)
    main = trainer.is_world_process_zero()
    if main:  # one progress bar and one metrics.jsonl, from the main process
        trainer.add_callback(TrainingLog(out, progress=progress, write=write))
    per_step = config.train.batch_size * config.train.grad_accum * trainer.args.world_size
    say(f"{describe(trainer, loaded, per_step)}; output in {out}")
    if resume_from is not None:
        say(f"resuming from {resume_from}")
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / f"{config.kind}_config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
    output = train_resuming(trainer, resume_from)
    evals = [row for row in trainer.state.log_history if "eval_loss" in row]
    if trainer.eval_dataset is not None and (not evals or evals[-1]["step"] != trainer.state.global_step):
        evals.append(trainer.evaluate())
    check_weights(trainer.model, trainer.state.global_step, "the final model", out)
    model_dir, adapter_dir = save_final(trainer, loaded.processor, out, config.model.lora.enabled, merge_lora)
    done = result(Run(trainer, out, output, resume_from, evals, model_dir, adapter_dir, per_step))
    if main:
        write_text(out / RESULT_FILE, json.dumps(done.to_dict(), indent=2) + "\n")
    say(f"saved the trained model to {model_dir or adapter_dir} (step {done.global_step})")
    return done
