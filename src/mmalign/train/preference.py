"""Preference training (``mmalign train pref``): the DPO family, mDPO, dense DPO, SimPO and ORPO on a ``Trainer``.

    config = load_config(PreferenceConfig, "configs/pref/dpo.yaml", ["train.max_steps=100"])
    result = train_preference(config)       # result.model_dir loads with mmalign.models.load

Each micro-batch: (1) the reference log-probs come from a frozen copy of the starting policy, the same LoRA
model with its adapter disabled, a separate model (``reference.path``), a cache computed once before training
(``reference.mode: precomputed``), or nowhere for reference-free losses; (2) the policy scores every row
(chosen, rejected, and mDPO's corrupted-image rows) in one call, each pair's prompt + images computed once
when ``share_prefix`` is on; (3) the loss (:mod:`mmalign.losses`, which declares what it needs) gives per-pair
losses; (4) rewards, margins, accuracies, log-probs and the KL estimate are logged as means at each logging
step, and with the ``eval_`` prefix after each held-out evaluation (which the over-optimisation guard reads).

Gradient accumulation is exact: the preference terms are means over pairs (``Trainer`` divides each of the k
equal micro-batches by k), and the NLL terms of RPO and ORPO with ``nll_reduction: tokens`` average over every
chosen token of the whole optimiser step (all micro-batches, all processes), as one big batch would. So batch
8 × accumulation 1 and batch 2 × accumulation 4 take the same step (``nll_reduction: sequence`` is exact too).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from transformers import Trainer

from mmalign.config import config_to_dict, option, section
from mmalign.errors import ConfigError
from mmalign.files import atomic_path
from mmalign.losses import PreferenceLoss, build_loss, preference_metrics
from mmalign.models.loading import LoadedModel, load
from mmalign.models.processors import save_upstream_processor
from mmalign.train.callbacks import METRICS_FILE, TrainingLog
from mmalign.train.config import DataConfig, ModelConfig, TrainingConfig
from mmalign.train.dataset import RecordDataset
from mmalign.train.finite import FiniteSteps, check_weights
from mmalign.train.guard import GuardConfig, OverOptimisationGuard
from mmalign.train.pref_batch import PreferenceCollator, TrainerCollate, policy_logps, row_scorer, score
from mmalign.train.presets import mmalign_home, resolve_model_path
from mmalign.train.reference import ReferenceConfig, align_tokens, live_reference, load_separate, precompute_splits
from mmalign.train.resume import train_resuming
from mmalign.train.sft import is_peft, latest_checkpoint, restore_weights, save_model_dir

CONFIG_FILE = "pref_config.yaml"
RESULT_FILE = "train_result.json"


@dataclass
class LossConfig:
    """Which preference loss, with which options."""

    name: str = option(
        "sigmoid", "The loss (--list-losses): sigmoid (DPO), ipo, cdpo, robust, hinge, rpo, simpo, orpo, mdpo, ddpo."
    )
    options: dict[str, Any] = option({}, "The loss's options, e.g. {beta: 0.1} (--show-options --loss NAME).")


@dataclass
class PreferenceConfig:
    """``mmalign train pref``: which model, which pairs, which loss and reference, how to optimise."""

    kind: Literal["pref"] = option("pref", "Config kind: 'pref' for this trainer (tells trainer configs apart).")
    model: ModelConfig = section(ModelConfig, "The policy to train.")
    data: DataConfig = section(DataConfig, "Preference records (data.eval: a held-out preference split).")
    train: TrainingConfig = section(TrainingConfig, "Optimisation and checkpoints.")
    loss: LossConfig = section(LossConfig, "The preference loss.")
    reference: ReferenceConfig = section(ReferenceConfig, "The reference model or its cached log-probs.")
    guard: GuardConfig = section(GuardConfig, "Early stopping on held-out over-optimisation.")
    share_prefix: bool | Literal["auto"] = option(
        "auto",
        "Compute each pair's prompt + images once for both responses (mmalign.models.prefix); same results as the "
        "plain forward. auto: where the sizes make it faster (it leaves out at least 30% of the token positions; "
        "bench/prefix_breakeven.py), never with model.gradient_checkpointing; true: always (refused with "
        "model.gradient_checkpointing); false: never.",
    )

    def __post_init__(self) -> None:
        if not self.data.train:
            raise ConfigError("data.train is required: a file of preference records")
        loss, ref = self.build_loss(), self.reference
        name = f"loss {loss.name!r}"
        if not loss.needs_reference:
            if ref.mode in ("model", "precomputed"):
                raise ConfigError(f"{name} is reference-free, but reference.mode is {ref.mode!r} (use auto or none)")
            if ref.path is not None:
                raise ConfigError(f"{name} is reference-free, but reference.path is set")
            if self.guard.max_kl is not None:
                raise ConfigError(f"guard.max_kl watches the KL to a reference, but {name} is reference-free")
        elif ref.mode == "none":
            raise ConfigError(f"{name} needs a reference; reference.mode 'none' is for reference-free losses")
        for key in ("cache_dir", "batch_size"):
            if getattr(ref, key) is not None and ref.mode != "precomputed":
                raise ConfigError(f"reference.{key} is only used with reference.mode: precomputed")
        if self.train.eval_steps is not None and self.data.eval is None:
            raise ConfigError("train.eval_steps is set but there is no data.eval to evaluate on")
        if self.guard.enabled and (self.data.eval is None or self.train.eval_steps is None):
            raise ConfigError("the guard watches held-out evaluations: set data.eval and train.eval_steps")
        if self.share_prefix is True and self.model.gradient_checkpointing and row_scorer(True)[1]:
            raise ConfigError(
                "share_prefix cannot run with model.gradient_checkpointing (checkpointed layers drop the prompt's "
                "KV cache); turn one of them off"
            )

    def build_loss(self) -> PreferenceLoss:
        """The configured loss (unknown names and options raise ConfigError)."""
        return build_loss(self.loss.name, **self.loss.options)

    def reference_source(self) -> Literal["none", "copy", "adapter", "separate", "precomputed"]:
        """What the reference resolves to: nothing, a frozen copy, the LoRA base, a separate model, or a cache."""
        if not self.build_loss().needs_reference:
            return "none"
        if self.reference.mode == "precomputed":
            return "precomputed"
        if self.reference.path is not None:
            return "separate"
        return "adapter" if self.model.lora.enabled else "copy"


class PreferenceTrainer(FiniteSteps, Trainer):
    """``Trainer`` whose loss is a :class:`~mmalign.losses.PreferenceLoss` on the policy's and reference's log-probs.

    ``reference`` is None for reference-free losses, else an object with ``logps(model, batch) -> ReferenceLogps``
    (:mod:`mmalign.train.reference`). ``eval_collator`` collates the held-out split (its image root may differ).
    """

    loss_is_scaled_for_ga = False  # the Trainer divides each micro-batch's mean loss by the accumulation steps

    def __init__(
        self,
        *args: Any,
        loss: PreferenceLoss,
        reference: Any = None,
        share_prefix: bool | str = True,
        eval_collator: Any = None,
        processor: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.loss = loss
        self.reference = reference
        self.scorer, self.shares_prefix = row_scorer(share_prefix)
        self.eval_collator = eval_collator
        self.processor = processor
        self.guard_reason: str | None = None
        self.collators: dict[str, PreferenceCollator] = {}
        self._metrics: dict[str, dict[str, list[float]]] = {"train": {}, "eval": {}}
        self._step_tokens: tuple[int, int, int] | None = None

    # ------------------------------------------------------------------------------------------- the loss

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        device = self.args.device
        batch = inputs["batch"].to(device)
        if not len(batch):  # every pair of this micro-batch was too long (data.on_overflow: skip)
            zero = sum((p.sum() * 0.0 for p in model.parameters() if p.requires_grad), torch.zeros((), device=device))
            return (zero, None) if return_outputs else zero
        reference = None if self.reference is None else self.reference.logps(model, batch)
        scores = score(model, batch, self.loss.needs_token_weights, self.scorer)
        policy = policy_logps(scores, batch, self._chosen_nll(scores.chosen.sum, len(batch), model.training))
        if reference is not None:
            tokens = (policy.chosen_token_logps, policy.rejected_token_logps)
            align_tokens(reference, *[None if t is None else t.shape[1] for t in tokens])
        output = self.loss(policy, reference)
        metrics = preference_metrics(output, policy, reference, mean_logps=self.loss.logs_mean_logps)
        if not model.training:
            metrics["loss"] = output.loss.item()
        self._store("train" if model.training else "eval", metrics, len(batch))
        return (output.loss, output) if return_outputs else output.loss

    def _chosen_nll(self, chosen: torch.Tensor, pairs: int, training: bool) -> torch.Tensor | None:
        """Per-pair NLL terms whose micro-batch mean is its share of the step's token-averaged NLL, or None
        (the loss then averages over this micro-batch: right for evaluation and for nll_reduction 'sequence')."""
        if not training or self._step_tokens is None or not self._token_nll():
            return None
        total, micro_batches, world = self._step_tokens
        return -chosen * (pairs * micro_batches * world / max(total, 1))

    def _token_nll(self) -> bool:
        return self.loss.needs_chosen_nll and getattr(self.loss, "nll_reduction", None) == "tokens"

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> tuple[list, Any]:
        samples, items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self._token_nll():
            tokens = torch.tensor(sum(s["batch"].chosen_tokens for s in samples), device=self.args.device)
            if self.accelerator.num_processes > 1:
                tokens = self.accelerator.reduce(tokens, reduction="sum")
            self._step_tokens = (int(tokens), len(samples), self.accelerator.num_processes)
        return samples, items

    # -------------------------------------------------------------------------------------------- metrics

    def _store(self, split: str, metrics: dict[str, float], pairs: int) -> None:
        for key, value in metrics.items():
            total = self._metrics[split].setdefault(key, [0.0, 0.0])
            total[0] += value * pairs
            total[1] += pairs

    def _means(self, split: str) -> dict[str, float]:
        """Pair-weighted means of the stored metrics over every process, and a fresh store."""
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
        means = self._means("eval")  # pair-weighted over every process; its "loss" is the exact eval_loss
        output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in means.items()})
        return output

    def prediction_step(self, model: Any, inputs: Any, prediction_loss_only: bool, ignore_keys: Any = None) -> Any:
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        metrics = super().evaluate(*args, **kwargs)
        for callback in self.callback_handler.callbacks:
            reason = getattr(callback, "stopped_reason", None)
            if isinstance(callback, OverOptimisationGuard) and reason and self.guard_reason is None:
                self.guard_reason = reason
                self.log({"guard": reason})  # type: ignore[dict-item]
        return metrics

    def get_eval_dataloader(self, eval_dataset: Any = None) -> Any:
        if self.eval_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        target = self.model if model is None else model  # (the reference was made from the starting weights)
        if is_peft(target) or not (Path(resume_from_checkpoint) / "config.json").is_file():
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # adapters load by their own keys
        else:  # Trainer's own loading skips transformers 5's key conversion and would leave every weight as it was
            restore_weights(target, resume_from_checkpoint)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        if self.processor is not None and self.args.should_save:
            save_upstream_processor(self.processor, Path(output_dir or self.args.output_dir))


# ------------------------------------------------------------------------------------------------ running


@dataclass
class PreferenceResult:
    """What :func:`train_preference` did."""

    output_dir: Path
    model_dir: Path | None
    """The final model, loadable by :func:`mmalign.models.load` (with LoRA: the adapter merged in)."""
    adapter_dir: Path | None
    """The LoRA adapter (None without LoRA)."""
    global_step: int
    train_loss: float
    """Mean training loss over this call's steps (as ``Trainer`` reports it)."""
    last_logged: dict[str, Any]
    """The last training log row: loss, rewards/*, logps/*, kl/* ..."""
    eval_metrics: dict[str, Any]
    """The last held-out evaluation (eval_loss, eval_rewards/margins ...); empty without data.eval."""
    runtime_s: float
    resumed_from: Path | None
    reference: str
    """Where the reference log-probs came from."""
    shared_prefix: bool
    """Whether the shared-prefix forward could run (share_prefix true or auto; auto picks it batch by batch)."""
    skipped_records: int
    """Pairs left out because they did not fit data.max_length (data.on_overflow: skip)."""
    guard_stop: str | None = None
    """Why the over-optimisation guard stopped the run (None: it did not)."""

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}


def _prefix_mode(setting: bool | str, installed: bool) -> str:
    """How the run shares prefixes, for its first line."""
    if not installed:
        return "off"
    return "auto (where it leaves out >= 30% of the token positions)" if setting == "auto" else "on"


def _resume_point(config: PreferenceConfig, say: Callable[[str], None]) -> Path | None:
    """The checkpoint to resume from; refuses to start a new run in a directory holding another."""
    out = Path(config.train.output_dir)
    checkpoint = latest_checkpoint(out)
    if config.train.resume:
        if checkpoint is None:
            say(f"no checkpoint in {out}: starting from scratch")
        return checkpoint
    if checkpoint is not None or (out / METRICS_FILE).exists() or (out / RESULT_FILE).exists():
        raise ConfigError(
            f"{out} already holds a run; continue it with train.resume=true or choose another train.output_dir"
        )
    return None


def _separate(config: PreferenceConfig, loaded: LoadedModel) -> Callable[[], Any] | None:
    """A loader of the separate reference model (``reference.path``), or None."""
    if config.reference.path is None:
        return None
    m, path = config.model, resolve_model_path(config.reference.path)
    options = {"dtype": m.dtype, "attn_implementation": m.attn_implementation, "trust_remote_code": m.trust_remote_code}
    return lambda: load_separate(path, loaded.model, **options)


def build_trainer(
    config: PreferenceConfig,
    loaded: LoadedModel,
    callbacks: list[Any] | None = None,
    write: Callable[[str], None] | None = None,
    **arg_overrides: Any,
) -> PreferenceTrainer:
    """The configured :class:`PreferenceTrainer` over ``loaded``: data read and checked, reference ready (a
    precomputed one computed or read from its cache now). ``arg_overrides`` go to ``TrainingArguments``."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    loss, data = config.build_loss(), config.data
    if config.share_prefix is True and row_scorer(True)[1] and loaded.family.name == "vlm":
        raise ConfigError(
            f"share_prefix: the image inputs of model type {loaded.model.config.model_type!r} cannot "
            "be split by row; set share_prefix=false"
        )
    sets = {
        "train": RecordDataset.from_file(
            data.train, kinds=("preference",), root=data.root, limit=data.limit, max_pixels=data.max_image_pixels
        )
    }
    if data.eval is not None:
        sets["eval"] = RecordDataset.from_file(
            data.eval, kinds=("preference",), root=data.root, max_pixels=data.max_image_pixels
        )
    collators = {
        name: PreferenceCollator(
            loaded.collator(
                mode="train",
                max_length=data.max_length,
                image_root=dataset.root,
                on_overflow=data.on_overflow,
                max_image_pixels=data.max_image_pixels,
            ),
            loss,
            seed=config.train.seed,
            split=name,
        )
        for name, dataset in sets.items()
    }
    scorer, _ = row_scorer(config.share_prefix)
    source, separate = config.reference_source(), _separate(config, loaded)
    args = config.train.training_arguments(
        include_num_input_tokens_seen="non_padding",
        prediction_loss_only=True,
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        **arg_overrides,
    )
    guard = [OverOptimisationGuard(config.guard, write=write)] if config.guard.enabled else []
    trainer = PreferenceTrainer(
        model=loaded.model,
        args=args,
        train_dataset=sets["train"],
        eval_dataset=sets.get("eval"),
        data_collator=TrainerCollate(collators["train"]),
        eval_collator=TrainerCollate(collators["eval"]) if "eval" in collators else None,
        loss=loss,
        reference=live_reference(source, loaded.model, separate, loss.needs_token_weights, scorer),
        share_prefix=config.share_prefix,
        processor=loaded.processor,
        callbacks=[*guard, *(callbacks or [])],
        max_nonfinite_steps=config.train.max_nonfinite_steps,
    )
    for default in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(default)
    trainer.collators = collators
    if source == "precomputed":
        trainer.reference = precompute_splits(
            trainer.model if separate is None else separate().to(args.device),
            [(name, sets[name].records, c) for name, c in collators.items()],
            loaded.processor,
            Path(config.reference.cache_dir or mmalign_home() / "reference-cache"),
            batch_size=config.reference.batch_size or config.train.batch_size,
            scorer=scorer,
            adapter_off=config.model.lora.enabled and separate is None,
        )
    return trainer


def train_preference(
    config: PreferenceConfig,
    *,
    callbacks: list[Any] | None = None,
    progress: bool = True,
    write: Callable[[str], None] | None = None,
) -> PreferenceResult:
    """Train ``config.model`` on ``config.data.train`` with ``config.loss``; returns where everything went.

    ``callbacks`` are extra ``TrainerCallback`` objects; ``progress`` shows a progress bar; ``write`` receives
    the log lines (default: printed, by the main process only)."""
    from accelerate import PartialState

    def say(text: str) -> None:  # the main process speaks (the state is asked each time: it is set up late)
        if write is not None:
            write(text)
        elif PartialState().is_main_process:
            print(text, flush=True)

    out, data = Path(config.train.output_dir), config.data
    resume_from = _resume_point(config, say)
    loaded = load(resolve_model_path(config.model.path), **config.model.load_options())
    trainer = build_trainer(config, loaded, callbacks, write=say)
    main = trainer.is_world_process_zero()
    if main:  # one progress bar and one metrics.jsonl, from the main process
        trainer.add_callback(TrainingLog(out, progress=progress, write=write))
    described = "none (reference-free loss)" if trainer.reference is None else trainer.reference.description
    per_step = config.train.batch_size * config.train.grad_accum * trainer.args.world_size
    say(
        f"pref: loss {trainer.loss.name} ({trainer.loss.paper}) on {len(trainer.train_dataset)} pairs from "
        f"{data.train}; {per_step} pairs a step; reference: {described}; shared prefix: "
        f"{_prefix_mode(config.share_prefix, trainer.shares_prefix)}; output in {out}"
    )
    if resume_from is not None:
        say(f"resuming from {resume_from}")
    if main:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / CONFIG_FILE) as tmp:
            tmp.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False), encoding="utf-8")
    output = train_resuming(trainer, resume_from)
    evals = [row for row in trainer.state.log_history if "eval_loss" in row]
    if data.eval is not None and (not evals or evals[-1]["step"] != trainer.state.global_step):
        evals.append(trainer.evaluate())
    check_weights(trainer.model, trainer.state.global_step, "the final model", out)
    model_dir, adapter_dir = _save_final(loaded, config, trainer)
    logged = [row for row in trainer.state.log_history if "loss" in row]
    result = PreferenceResult(
        output_dir=out,
        model_dir=model_dir,
        adapter_dir=adapter_dir,
        global_step=trainer.state.global_step,
        train_loss=float(output.training_loss),
        last_logged=logged[-1] if logged else {},
        eval_metrics=evals[-1] if evals else {},
        runtime_s=float(output.metrics.get("train_runtime", 0.0)),
        resumed_from=resume_from,
        reference=described,
        shared_prefix=trainer.shares_prefix,
        skipped_records=sum(c.collator.n_skipped for c in trainer.collators.values()),
        guard_stop=trainer.guard_reason,
    )
    if main:
        with atomic_path(out / RESULT_FILE) as tmp:
            tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    say(f"saved the trained model to {model_dir or adapter_dir} (step {result.global_step})")
    return result


def _save_final(loaded: LoadedModel, config: PreferenceConfig, trainer: Trainer) -> tuple[Path | None, Path | None]:
    """Save the trained model; with LoRA the adapter to output_dir/adapter and the merged model to output_dir.
    Under FSDP / DeepSpeed, ``Trainer.save_model`` gathers the shards (with LoRA: the adapter, in output_dir)."""
    out = Path(config.train.output_dir)
    trainer.accelerator.wait_for_everyone()
    if not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled or trainer.args.should_save):
        return None, None
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:  # sharded weights: Trainer gathers them
        trainer.save_model(str(out))
        return (None, out) if config.model.lora.enabled else (out, None)
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    if not config.model.lora.enabled:
        return save_model_dir(model, loaded.processor, out), None
    adapter = out / "adapter"
    with atomic_path(adapter) as tmp:
        model.save_pretrained(tmp)
        save_upstream_processor(loaded.processor, tmp)
    return save_model_dir(model.merge_and_unload(), loaded.processor, out), adapter
