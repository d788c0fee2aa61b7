"""Preference training (``mmalign train pref``): the DPO family, mDPO, dense DPO, SimPO and ORPO on a ``Trainer``;
KTO and unpaired APO-zero on binary-feedback records (:mod:`mmalign.train.kto`, built from the same config).

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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from mmalign.config import option, section
from mmalign.errors import ConfigError
from mmalign.losses import PreferenceLoss, build_loss, preference_metrics
from mmalign.losses.kto import UnpairedLoss
from mmalign.models.loading import LoadedModel
from mmalign.train.config import (
    DataConfig,
    ModelConfig,
    TrainingConfig,
    check_held_out,
    check_share_prefix,
    share_prefix_option,
)
from mmalign.train.dataset import RecordDataset
from mmalign.train.guard import GuardConfig, OverOptimisationGuard
from mmalign.train.kto import build_feedback_trainer, check_unpaired_config
from mmalign.train.pref_batch import PreferenceCollator, policy_logps, preference_inputs, row_scorer, score
from mmalign.train.presets import mmalign_home, resolve_model_path
from mmalign.train.reference import ReferenceConfig, align_tokens, live_reference, load_separate
from mmalign.train.reference_cache import precompute_splits
from mmalign.train.trainer import Collate, CoreTrainer, Run, StepOutput, TrainResult, core_arguments, run


@dataclass
class LossConfig:
    """Which preference loss, with which options."""

    name: str = option(
        "sigmoid",
        "The loss (--list-losses): sigmoid (DPO), ipo, cdpo, robust, hinge, rpo, simpo, orpo, mdpo, ddpo on "
        "preference pairs; kto, apo_zero_unpaired on binary-feedback records.",
    )
    options: dict[str, Any] = option({}, "The loss's options, e.g. {beta: 0.1} (--show-options --loss NAME).")


@dataclass
class PreferenceConfig:
    """``mmalign train pref``: which model, which pairs, which loss and reference, how to optimise."""

    kind: Literal["pref"] = option("pref", "Config kind: 'pref' for this trainer (tells trainer configs apart).")
    model: ModelConfig = section(ModelConfig, "The policy to train.")
    data: DataConfig = section(
        DataConfig,
        "Preference records, or binary-feedback records for kto / apo_zero_unpaired (data.eval: a held-out split).",
    )
    train: TrainingConfig = section(TrainingConfig, "Optimisation and checkpoints.")
    loss: LossConfig = section(LossConfig, "The preference loss.")
    reference: ReferenceConfig = section(ReferenceConfig, "The reference model or its cached log-probs.")
    guard: GuardConfig = section(GuardConfig, "Early stopping on held-out over-optimisation.")
    share_prefix: bool | Literal["auto"] = share_prefix_option()

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
        check_held_out(self.train, self.data)
        self.guard.check_evaluated(self.data.eval, self.train.eval_steps)
        if row_scorer(True)[1]:  # the shared path is installed
            check_share_prefix(self.share_prefix, self.model)
        if isinstance(loss, UnpairedLoss):
            check_unpaired_config(self, loss)

    def build_loss(self) -> PreferenceLoss | UnpairedLoss:
        """The configured loss (unknown names and options raise ConfigError): pairwise, or unpaired (KTO)."""
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


class PreferenceTrainer(CoreTrainer):
    """The core trainer whose loss is a :class:`~mmalign.losses.PreferenceLoss` on the policy's and reference's
    log-probs.

    ``reference`` is None for reference-free losses, else an object with ``logps(model, batch) -> ReferenceLogps``
    (:mod:`mmalign.train.reference`)."""

    def __init__(
        self, *args: Any, loss: PreferenceLoss, reference: Any = None, share_prefix: bool | str = True, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.loss = loss
        self.reference = reference
        self.scorer, self.shares_prefix = row_scorer(share_prefix)
        self._step_tokens: tuple[int, int, int] | None = None

    def batch_loss(self, model: Any, inputs: dict[str, Any], num_items: Any = None) -> StepOutput:
        device = self.args.device
        batch = inputs["batch"].to(device)
        if not len(batch):  # every pair of this micro-batch was too long (data.on_overflow: skip)
            zero = sum((p.sum() * 0.0 for p in model.parameters() if p.requires_grad), torch.zeros((), device=device))
            return StepOutput(zero)
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
        return StepOutput(output.loss, metrics, len(batch))

    def _chosen_nll(self, chosen: torch.Tensor, pairs: int, training: bool) -> torch.Tensor | None:
        """Per-pair NLL terms whose micro-batch mean is its share of the step's token-averaged NLL, or None
        (the loss then averages over this micro-batch: right for evaluation and for nll_reduction 'sequence')."""
        if not training or self._step_tokens is None or not self._token_nll():
            return None
        total, micro_batches, world = self._step_tokens
        return -chosen * (pairs * micro_batches * world / max(total, 1))

    def _token_nll(self) -> bool:
        return self.loss.needs_chosen_nll and getattr(self.loss, "nll_reduction", None) == "tokens"

    def start_step(self, samples: list[Any]) -> None:
        if self._token_nll():
            tokens = torch.tensor(sum(s["batch"].chosen_tokens for s in samples), device=self.args.device)
            if self.accelerator.num_processes > 1:
                tokens = self.accelerator.reduce(tokens, reduction="sum")
            self._step_tokens = (int(tokens), len(samples), self.accelerator.num_processes)


# ------------------------------------------------------------------------------------------------ running


@dataclass
class PreferenceResult(TrainResult):
    """What :func:`train_preference` did (``model_dir``: with LoRA, the adapter merged in)."""

    last_logged: dict[str, Any]
    """The last training log row: loss, rewards/*, logps/*, kl/* ..."""
    eval_metrics: dict[str, Any]
    """The last held-out evaluation (eval_loss, eval_rewards/margins ...); empty without data.eval."""
    reference: str
    """Where the reference log-probs came from."""
    shared_prefix: bool
    """Whether the shared-prefix forward could run (share_prefix true or auto; auto picks it batch by batch)."""
    guard_stop: str | None = None
    """Why the over-optimisation guard stopped the run (None: it did not)."""


def _prefix_mode(setting: bool | str, installed: bool) -> str:
    """How the run shares prefixes, for its first line."""
    if not installed:
        return "off"
    return "auto (where it leaves out >= 25% of the token positions)" if setting == "auto" else "on"


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
    precomputed one computed or read from its cache now). ``arg_overrides`` go to ``TrainingArguments``. An unpaired
    loss gets the binary-feedback trainer (:func:`mmalign.train.kto.build_feedback_trainer`)."""
    loss, data = config.build_loss(), config.data
    if isinstance(loss, UnpairedLoss):
        return build_feedback_trainer(config, loaded, callbacks, write, **arg_overrides)  # type: ignore[return-value]
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
                video_overflow=data.video_overflow,
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
    args = config.train.training_arguments(**core_arguments(**arg_overrides))
    guard = [OverOptimisationGuard(config.guard, write=write)] if config.guard.enabled else []
    trainer = PreferenceTrainer(
        model=loaded.model,
        args=args,
        train_dataset=sets["train"],
        eval_dataset=sets.get("eval"),
        data_collator=Collate(collators["train"], preference_inputs),
        eval_collator=Collate(collators["eval"], preference_inputs) if "eval" in collators else None,
        collators=collators,
        loss=loss,
        reference=live_reference(source, loaded.model, separate, loss.needs_token_weights, scorer),
        share_prefix=config.share_prefix,
        processor=loaded.processor,
        callbacks=[*guard, *(callbacks or [])],
        max_nonfinite_steps=config.train.max_nonfinite_steps,
    )
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

    def described(trainer: PreferenceTrainer) -> str:
        return "none (reference-free loss)" if trainer.reference is None else trainer.reference.description

    def describe(trainer: PreferenceTrainer, loaded: LoadedModel, per_step: int) -> str:
        unit = "feedback records" if isinstance(trainer.loss, UnpairedLoss) else "pairs"
        return (
            f"pref: loss {trainer.loss.name} ({trainer.loss.paper}) on {len(trainer.train_dataset)} {unit} from "
            f"{config.data.train}; {per_step} {unit.split()[-1]} a step; reference: {described(trainer)}; "
            f"shared prefix: {_prefix_mode(config.share_prefix, trainer.shares_prefix)}"
        )

    def result(done: Run) -> PreferenceResult:
        return PreferenceResult(
            **done.common(),
            **done.latest(),
            reference=described(done.trainer),
            shared_prefix=done.trainer.shares_prefix,
            guard_stop=done.trainer.stop_reason,
        )

    return run(
        config,
        build=lambda loaded, say: build_trainer(config, loaded, callbacks, write=say),
        describe=describe,
        result=result,
        progress=progress,
        write=write,
    )
