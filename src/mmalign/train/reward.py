"""Reward-model training (``mmalign train rm``): a VLM with a scalar head, trained on preference pairs.

    config = load_config(RewardConfig, "configs/rm/shapes.yaml", ["train.max_steps=100"])
    result = train_reward(config)      # result.model_dir loads with mmalign.models.reward.load_reward_model

The model is :class:`~mmalign.models.reward.RewardModel`: the configured model (full or LoRA; with LoRA the head
trains too) and a ``Linear(hidden, 1)`` on each row's last response token; a ``model.path`` that is already a
reward model keeps its head. Each micro-batch of n pairs is collated by the preference collator
(:class:`~mmalign.train.pref_batch.PreferenceCollator`) into one batch of 2n rows, chosen then rejected, each side
with its own images (mDPO / Image-DPO pairs whose ``rejected_images`` differ work as they are), and scored by ONE
forward of the model, or, with ``share_prefix`` (auto by default), by one forward over each pair's prompt + images
and one over the responses on its KV cache (:mod:`mmalign.models.prefix`; equal rewards). The loss is
:class:`~mmalign.losses.reward.RewardLoss`: Bradley-Terry, with the pair's margin (Llama 2, Eq. 2) and optional
reward centring; the metrics are :func:`~mmalign.losses.reward.reward_metrics`
(accuracy, margin, reward min/mean/max, chosen and rejected reward mean and std), logged as means over pairs at each
logging step and with the ``eval_`` prefix after each held-out evaluation (``data.eval``); the std and min/max are
each micro-batch's, averaged.

**Binary labels.** A data file of binary-feedback records (prompt, completion, ``label``; ``mmalign data unpair``
makes them from pairs) trains the same model with :func:`~mmalign.losses.reward.label_loss`, the binary
cross-entropy of σ(r) against the label, each response scored alone (the model's collator, the plain forward); the
metrics are :func:`~mmalign.losses.reward.label_metrics` (accuracy: the sign of r agrees with the label; min/mean/max
reward; mean reward of the desirable and of the undesirable responses). Margins and centring apply to pairs only.

**Margins.** Preference records carry no strength field, so the margin of a pair is read from its
``meta[rm.margin_key]`` (default ``meta["margin"]``): a finite number (e.g. a rating difference, as Llama 2's
"significantly better" = 1 ... "negligibly better" = 0), 0 for a pair without one; anything else is refused before
training, naming the file, record and field. ``rm.margin_key: null`` ignores margins.

**Critique-then-score** (``rm.critique: true``, MM-RLHF): each row is prompt + response + a critique request +
the record's critique, the head reads the critique's last token and the loss adds ``rm.critique_weight`` × the
critique tokens' mean NLL, from the same forward (:mod:`mmalign.train.critique`, :class:`CritiqueRewardTrainer`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from mmalign.config import option, section
from mmalign.data.records import FeedbackRecord, PreferenceRecord
from mmalign.errors import ConfigError, DataError
from mmalign.losses.reward import RewardLoss, label_loss, label_metrics, reward_metrics
from mmalign.models.critique import CRITIQUE_REQUEST, record_critiques
from mmalign.models.loading import LoadedModel
from mmalign.models.processors import save_upstream_processor
from mmalign.models.reward import RewardModel, batch_rewards, reward_model_for
from mmalign.train.config import (
    DataConfig,
    ModelConfig,
    TrainingConfig,
    check_held_out,
    check_share_prefix,
    share_prefix_option,
)
from mmalign.train.critique import CritiqueCollator, critique_step
from mmalign.train.dataset import RecordDataset
from mmalign.train.feedback_batch import FeedbackCollator
from mmalign.train.pref_batch import PreferenceBatch, PreferenceCollator
from mmalign.train.trainer import CoreTrainer, Run, StepOutput, TrainResult, core_arguments, run


@dataclass
class RewardOptions:
    """What only reward-model training has."""

    margin_key: str | None = option(
        "margin",
        "Key of each record's meta holding the pair's margin m (L = -log σ(r_c - r_r - m), Llama 2 Eq. 2): a "
        "finite number, 0 where absent; null: no margins.",
    )
    merge_lora: bool = option(
        True,
        "With LoRA: also save the model with the adapter merged (and the head) to train.output_dir; the adapter "
        "and the head always go to train.output_dir/adapter.",
    )
    critique: bool = option(
        False,
        "Critique-then-score (MM-RLHF): each row is prompt + response + a user turn asking for a critique "
        "(rm.critique_request) + the pair's critique of that side (meta.chosen_critique / meta.rejected_critique) "
        "as the reply; the head reads the critique's last token and the loss adds rm.critique_weight x the "
        "critique tokens' mean NLL. The saved model critiques before it scores (mmalign.models.critique).",
    )
    critique_weight: float = option(
        1.0, "rm.critique: weight w of the critique tokens' mean NLL in L = Bradley-Terry + w * NLL (0: none).", ge=0
    )
    critique_request: str = option(
        CRITIQUE_REQUEST, "rm.critique: the user turn that asks for the critique (saved with the model)."
    )


@dataclass
class RewardConfig:
    """``mmalign train rm``: which model, which pairs, which loss options, how to optimise."""

    kind: Literal["rm"] = option("rm", "Config kind: 'rm' for this trainer (tells trainer configs apart).")
    model: ModelConfig = section(ModelConfig, "The base model (or a reward model to train further).")
    data: DataConfig = section(DataConfig, "Preference records (data.eval: held-out pairs for accuracy).")
    train: TrainingConfig = section(TrainingConfig, "Optimisation and checkpoints.")
    loss: RewardLoss = section(RewardLoss, "The Bradley-Terry loss's options.")
    rm: RewardOptions = section(RewardOptions, "Reward-model options.")
    share_prefix: bool | Literal["auto"] = share_prefix_option("rewards")

    def __post_init__(self) -> None:
        if not self.data.train:
            raise ConfigError("data.train is required: a file of preference records")
        check_share_prefix(self.share_prefix, self.model)
        if self.rm.critique and self.share_prefix is True:
            raise ConfigError(
                "share_prefix: true does not apply with rm.critique (one forward gives rewards and logits)"
            )
        if self.rm.critique and not self.rm.critique_request.strip():
            raise ConfigError("rm.critique_request must not be empty")
        check_held_out(self.train, self.data)

    def sharing(self) -> bool | str:
        """What the forward does: True, "auto" or False (auto is off under gradient checkpointing and rm.critique)."""
        if self.share_prefix == "auto" and (self.model.gradient_checkpointing or self.rm.critique):
            return False
        return self.share_prefix


KINDS = ("preference", "feedback")
"""Pairs (Bradley-Terry) or binary-feedback records (binary cross-entropy against the label)."""


class _PairRows:
    """What :class:`PreferenceCollator` asks of a loss: a reward model needs only the chosen and rejected rows."""

    needs_corrupted_image = False
    needs_token_weights = False


def record_margin(record: PreferenceRecord, key: str | None) -> float | None:
    """The margin ``record.meta[key]`` (None: absent); a non-number is a :class:`DataError` naming the record."""
    if key is None or record.meta.get(key) is None:
        return None
    value = record.meta[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        err = DataError(
            f"the pair's margin must be a finite number (rm.margin_key: {key}), got {value!r}",
            record_id=record.id,
            field=f"meta.{key}",
        )
        raise err.located(**record.origin.where()) if record.origin is not None else err
    return float(value)


@dataclass
class RewardCollator:
    """Records -> the dict :meth:`RewardTrainer.batch_loss` receives: the pairs' 2n rows and their margins."""

    pairs: PreferenceCollator
    margin_key: str | None = "margin"
    labels: FeedbackCollator | None = None
    """Collates binary-feedback records (their n rows and labels), when the data has them."""

    def __call__(self, records: list[Any]) -> dict[str, Any]:
        if records and isinstance(records[0], FeedbackRecord) and self.labels is not None:
            labelled = self.labels(records)
            rows = labelled.rows
            return {
                "batch": labelled,
                "label": labelled.label,
                "input_ids": rows.input_ids,
                "attention_mask": rows.attention_mask,
            }
        batch = self.pairs(records)
        by_id = {r.id: r for r in records}
        values = [record_margin(by_id[i], self.margin_key) for i in batch.ids]
        margin = None
        if any(v is not None for v in values):
            margin = torch.tensor([0.0 if v is None else v for v in values], dtype=torch.float32)
        rows = batch.rows
        return {"batch": batch, "margin": margin, "input_ids": rows.input_ids, "attention_mask": rows.attention_mask}


def pair_rewards(
    model: Any, batch: PreferenceBatch, share_prefix: bool | str = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n,) chosen and (n,) rejected rewards of a preference batch, from ONE forward over its 2n rows (with
    ``share_prefix``, one forward over the distinct prompts + images and one over the responses)."""
    rewards = batch_rewards(model, batch.rows, share_prefix)
    n = len(batch)
    return rewards[:n], rewards[n : 2 * n]


class RewardTrainer(CoreTrainer):
    """The core trainer whose model is a :class:`RewardModel` and whose loss is :class:`RewardLoss`."""

    def __init__(self, *args: Any, loss: RewardLoss, share_prefix: bool | str = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss = loss
        self.share_prefix = share_prefix
        """True, "auto" or False: how :func:`pair_rewards` runs (see ``RewardConfig.share_prefix``)."""

    def batch_loss(self, model: Any, inputs: dict[str, Any], num_items: Any = None) -> StepOutput:
        device = self.args.device
        batch = inputs["batch"].to(device)
        if not len(batch):  # every pair of this micro-batch was too long (data.on_overflow: skip)
            zero = sum((p.sum() * 0.0 for p in model.parameters() if p.requires_grad), torch.zeros((), device=device))
            return StepOutput(zero)
        if "label" in inputs:  # binary feedback: each response scored alone, BCE of σ(r) against its label
            rewards = batch_rewards(model, batch.rows)
            loss = label_loss(rewards, batch.label).mean()
            metrics = label_metrics(rewards, batch.label) | ({} if model.training else {"loss": loss.item()})
            return StepOutput(loss, metrics, len(batch))
        chosen, rejected = pair_rewards(model, batch, self.share_prefix)
        margin = inputs.get("margin")
        output = self.loss(chosen, rejected, None if margin is None else margin.to(chosen.device))
        metrics = reward_metrics(chosen, rejected)
        metrics.update({k: float(v) for k, v in output.metrics.items()})
        if not model.training:
            metrics["loss"] = output.loss.item()
        return StepOutput(output.loss, metrics, len(batch))

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Checkpoints through :meth:`RewardModel.save_pretrained` (``Trainer`` would write a bare state dict)."""
        if not self.args.should_save:
            return
        out = Path(output_dir or self.args.output_dir)
        self.accelerator.unwrap_model(self.model).save_pretrained(out, state_dict=state_dict)
        if self.processor is not None:
            save_upstream_processor(self.processor, out)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        target = self.accelerator.unwrap_model(self.model if model is None else model)
        target.restore(resume_from_checkpoint)


class CritiqueRewardTrainer(RewardTrainer):
    """``rm.critique``: the rows end with critiques; the step is :func:`~mmalign.train.critique.critique_step`."""

    def __init__(self, *args: Any, critique_weight: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.critique_weight = critique_weight

    def batch_loss(self, model: Any, inputs: dict[str, Any], num_items: Any = None) -> StepOutput:
        if not len(inputs["batch"]):
            return super().batch_loss(model, inputs, num_items)  # the zero step of an empty micro-batch
        return critique_step(model, inputs["batch"], inputs.get("margin"), self.loss, self.critique_weight)


# ------------------------------------------------------------------------------------------------ running


@dataclass
class RewardResult(TrainResult):
    """What :func:`train_reward` did (``model_dir`` loads with ``load_reward_model``)."""

    last_logged: dict[str, Any]
    """The last training log row: loss, accuracy, margin, chosen/rejected reward mean and std ..."""
    eval_metrics: dict[str, Any]
    """The last held-out evaluation (eval_loss, eval_accuracy, eval_margin ...); empty without data.eval."""


def read_pairs(config: RewardConfig) -> dict[str, RecordDataset]:
    """The training pairs and the held-out ones, margins checked (a bad one fails here, before the model loads)."""
    data = config.data
    sets = {
        "train": RecordDataset.from_file(
            data.train, kinds=KINDS, root=data.root, limit=data.limit, max_pixels=data.max_image_pixels
        )
    }
    if data.eval is not None:
        sets["eval"] = RecordDataset.from_file(data.eval, kinds=KINDS, root=data.root, max_pixels=data.max_image_pixels)
    for dataset in sets.values():
        if len({r.kind for r in dataset.records}) > 1:
            raise DataError(
                "the file mixes preference pairs and binary-feedback records: give one kind", file=dataset.source
            )
        for record in dataset.records:
            if isinstance(record, PreferenceRecord):
                record_margin(record, config.rm.margin_key)
            if config.rm.critique and not isinstance(record, PreferenceRecord):
                raise DataError("rm.critique needs preference pairs with critiques", file=dataset.source)
            if config.rm.critique:
                record_critiques(record)  # type: ignore[arg-type]
    return sets


def build_trainer(
    config: RewardConfig,
    loaded: LoadedModel,
    callbacks: list[Any] | None = None,
    sets: dict[str, RecordDataset] | None = None,
    **arg_overrides: Any,
) -> RewardTrainer:
    """The configured :class:`RewardTrainer` over ``loaded`` (its model wrapped in a :class:`RewardModel`, whose
    head is read from ``model.path`` when that is a reward model)."""
    data = config.data
    sets = read_pairs(config) if sets is None else sets
    critique = config.rm.critique
    collators: dict[str, Any] = {}
    for name, dataset in sets.items():
        rows = loaded.collator(
            mode="train",
            max_length=data.max_length,
            image_root=dataset.root,
            on_overflow=data.on_overflow,
            video_overflow=data.video_overflow,
            max_image_pixels=data.max_image_pixels,
        )
        if critique:
            collators[name] = CritiqueCollator(rows, config.rm.critique_request, split=name)
        else:
            collators[name] = PreferenceCollator(rows, _PairRows(), seed=config.train.seed, split=name)  # type: ignore[arg-type]
    labels = {name: FeedbackCollator(c.collator, needs_kl=False, split=name) for name, c in collators.items()}
    request = config.rm.critique_request if critique else None
    model = reward_model_for(loaded.model, loaded.path, seed=config.train.seed, critique_request=request)
    loaded.model = model
    trainer_class, extra = (
        (CritiqueRewardTrainer, {"critique_weight": config.rm.critique_weight}) if critique else (RewardTrainer, {})
    )
    return trainer_class(
        model=model,
        args=config.train.training_arguments(**core_arguments(**arg_overrides)),
        train_dataset=sets["train"],
        eval_dataset=sets.get("eval"),
        data_collator=RewardCollator(collators["train"], config.rm.margin_key, labels["train"]),
        eval_collator=RewardCollator(collators["eval"], config.rm.margin_key, labels["eval"])
        if "eval" in sets
        else None,
        collators=collators,
        loss=config.loss,
        share_prefix=config.sharing(),
        processor=loaded.processor,
        callbacks=list(callbacks or []),
        max_nonfinite_steps=config.train.max_nonfinite_steps,
        **extra,
    )


def train_reward(
    config: RewardConfig,
    *,
    callbacks: list[Any] | None = None,
    progress: bool = True,
    write: Callable[[str], None] | None = None,
) -> RewardResult:
    """Train a reward model on ``config.data.train``; returns where everything went and the last metrics.

    ``callbacks`` are extra ``TrainerCallback`` objects; ``progress`` shows a progress bar; ``write`` receives the
    log lines (default: printed, by the main process only)."""
    sets = read_pairs(config)

    def describe(trainer: RewardTrainer, loaded: LoadedModel, per_step: int) -> str:
        model: RewardModel = trainer.model
        token = "the critique's last token" if config.rm.critique else "the last response token"
        head = f"head Linear({model.reward_head.in_features}, 1) on {token}"
        centring = config.loss.center_rewards_coefficient
        nll = f" + {config.rm.critique_weight:g} x critique NLL" if config.rm.critique else ""
        objective = f"Bradley-Terry{f' + centring {centring:g}' if centring else ''}{nll}"
        unit = "pairs"
        if sets["train"].records and isinstance(sets["train"].records[0], FeedbackRecord):
            objective, unit = "binary cross-entropy of σ(r) against the label", "feedback records"
        return (
            f"rm: {config.model.path} ({loaded.n_parameters() / 1e6:.2f} M parameters, "
            f"{loaded.n_parameters(trainable_only=True) / 1e6:.2f} M trainable), {head}; {objective} on "
            f"{len(sets['train'])} {unit} from {config.data.train}; {per_step} {unit.split()[-1]} a step; "
            f"shared prefix: {config.sharing()}"
        )

    def result(done: Run) -> RewardResult:
        return RewardResult(**done.common(), **done.latest())

    return run(
        config,
        build=lambda loaded, say: build_trainer(config, loaded, callbacks, sets),
        describe=describe,
        result=result,
        merge_lora=config.rm.merge_lora,
        progress=progress,
        write=write,
    )
