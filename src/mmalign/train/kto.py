"""Binary-feedback training on VLMs: KTO and unpaired APO-zero, a plug-in of the trainer core.

``mmalign train pref`` with ``loss.name: kto`` (or ``apo_zero_unpaired``) and a file of binary-feedback records
(:class:`~mmalign.data.records.FeedbackRecord`; ``mmalign data unpair`` makes them from pairs) builds this trainer
(:func:`build_feedback_trainer`) instead of the pairwise one; the config is the same
:class:`~mmalign.train.preference.PreferenceConfig` (``loss.options``: ``beta``, ``desirable_weight``,
``undesirable_weight``).

Each micro-batch of n records: (1) the collator (:mod:`mmalign.train.feedback_batch`, the model's collator, as DPO
uses) makes the n response rows and, for KTO, the n mismatched KL rows (prompt i and its images with the
completion of record i−1, rotated as TRL 1.16 does); (2) the reference log-probs of both come from the reference
in memory (a frozen copy, the LoRA base, or ``reference.path``) or from the precomputed cache
(:mod:`mmalign.train.feedback_reference`); (3) the policy scores the responses (with gradients) and the KL rows
(``torch.no_grad``); (4) z0 = the batch's :func:`~mmalign.losses.kto.mismatched_kl`, averaged over processes as TRL
averages it (the mean of per-process means) and clamped at 0 by the loss; (5) the loss
(:mod:`mmalign.losses.kto`) is the mean of the per-record losses.

Logged as TRL 1.16's ``KTOTrainer`` logs: ``kl`` (z0), ``rewards/chosen`` and ``logps/chosen`` (means over the
desirable records of the logging window), ``rewards/rejected`` and ``logps/rejected`` (over the undesirable ones),
``rewards/margins`` (their difference); with the ``eval_`` prefix after each held-out evaluation. The loss is a
mean over records, so gradient accumulation divides each of k equal micro-batches by k (z0 is each micro-batch's,
as TRL's is).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmalign.errors import ConfigError
from mmalign.losses.kto import UnpairedLogps, UnpairedLoss, mismatched_kl, unpaired_metrics
from mmalign.models.loading import LoadedModel
from mmalign.models.logps import sequence_logps
from mmalign.train.dataset import RecordDataset
from mmalign.train.feedback_batch import FeedbackCollator, feedback_inputs, feedback_logps
from mmalign.train.feedback_reference import BlockSampler, LiveFeedbackReference, precompute_feedback_splits
from mmalign.train.guard import OverOptimisationGuard
from mmalign.train.presets import mmalign_home, resolve_model_path
from mmalign.train.reference import live_reference, load_separate
from mmalign.train.trainer import Collate, CoreTrainer, StepOutput, core_arguments

SIDES = {"chosen": True, "rejected": False}
"""TRL's metric suffix of each label: desirable records are logged as ``chosen``, undesirable as ``rejected``."""


class UnpairedTrainer(CoreTrainer):
    """The core trainer whose loss is an :class:`~mmalign.losses.kto.UnpairedLoss` on feedback records.

    ``reference``: an object with ``logps(policy, FeedbackBatch) -> (responses (n,), kl rows (n,) or None)``;
    ``blocks``: draw training batches as the blocks of this many records the precomputed reference was made for."""

    shares_prefix = False

    def __init__(self, *args: Any, loss: UnpairedLoss, reference: Any, blocks: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.loss = loss
        self.reference = reference
        self.blocks = blocks

    def batch_loss(self, model: Any, inputs: dict[str, Any], num_items: Any = None) -> StepOutput:
        device = self.args.device
        batch = inputs["batch"].to(device)
        if not len(batch):  # every record of this micro-batch was too long (data.on_overflow: skip)
            zero = sum((p.sum() * 0.0 for p in model.parameters() if p.requires_grad), torch.zeros((), device=device))
            return StepOutput(zero)
        reference, reference_kl = self.reference.logps(model, batch)
        policy, policy_kl = feedback_logps(model, batch)
        batch_kl = None
        if self.loss.needs_kl:
            assert policy_kl is not None and reference_kl is not None
            batch_kl = mismatched_kl(policy_kl, reference_kl)
            if self.accelerator.num_processes > 1:  # TRL: gather_for_metrics(kl).mean(), clamped after averaging
                batch_kl = self.accelerator.gather(batch_kl.reshape(1)).mean()
        logps = UnpairedLogps(policy, reference.to(policy.dtype), batch.label)
        output = self.loss(logps, batch_kl)
        metrics = unpaired_metrics(output, logps)
        split = "train" if model.training else "eval"
        for side, label in SIDES.items():  # per-side means weighted by that side's records, as TRL's
            count = int((batch.label == label).sum())
            self._store(split, {k: v for k, v in metrics.items() if k.endswith(f"/{side}")}, count)
        logged = {"kl": metrics["kl"]}
        if not model.training:
            logged["loss"] = output.loss.item()
        return StepOutput(output.loss, logged, len(batch))

    def _means(self, split: str) -> dict[str, float]:
        means = super()._means(split)
        if "rewards/chosen" in means and "rewards/rejected" in means:
            means["rewards/margins"] = means["rewards/chosen"] - means["rewards/rejected"]
        return means

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if self.blocks is None:
            return super()._get_train_sampler(train_dataset)
        dataset = self.train_dataset if train_dataset is None else train_dataset
        return BlockSampler(len(dataset), self.blocks, seed=self.args.seed)


def check_unpaired_config(config: Any, loss: UnpairedLoss) -> None:
    """What an unpaired loss refuses in a :class:`~mmalign.train.preference.PreferenceConfig`, at start."""
    name = f"loss {loss.name!r}"
    if loss.needs_kl and config.train.batch_size < 2:
        raise ConfigError(
            f"{name} estimates its KL reference point from mismatched pairs within a batch: train.batch_size must be "
            f"at least 2, got {config.train.batch_size}"
        )
    if config.share_prefix is True:
        raise ConfigError(f"{name} scores each record's rows with the plain forward; set share_prefix to auto or false")
    if config.reference.batch_size is not None:
        raise ConfigError(
            f"{name} precomputes its reference in the blocks of train.batch_size records it trains on; "
            "leave reference.batch_size unset"
        )
    if config.guard.max_kl is not None:
        raise ConfigError(f"guard.max_kl watches eval_kl/chosen, which {name} does not log (it logs kl, its z0)")


def build_feedback_trainer(
    config: Any,
    loaded: LoadedModel,
    callbacks: list[Any] | None = None,
    write: Callable[[str], None] | None = None,
    **arg_overrides: Any,
) -> UnpairedTrainer:
    """The :class:`UnpairedTrainer` for ``config`` (a ``PreferenceConfig`` whose loss is unpaired) over ``loaded``:
    feedback records read and checked, the reference ready (a precomputed one computed or read now)."""
    loss, data = config.build_loss(), config.data
    read = {"root": data.root, "max_pixels": data.max_image_pixels}
    sets = {"train": RecordDataset.from_file(data.train, kinds=("feedback",), limit=data.limit, **read)}
    if data.eval is not None:
        sets["eval"] = RecordDataset.from_file(data.eval, kinds=("feedback",), **read)
    collators = {
        name: FeedbackCollator(
            loaded.collator(
                mode="train",
                max_length=data.max_length,
                image_root=dataset.root,
                on_overflow=data.on_overflow,
                video_overflow=data.video_overflow,
                max_image_pixels=data.max_image_pixels,
            ),
            needs_kl=loss.needs_kl,
            split=name,
        )
        for name, dataset in sets.items()
    }
    source, separate = config.reference_source(), None
    if config.reference.path is not None:
        m, path = config.model, resolve_model_path(config.reference.path)
        options = {
            "dtype": m.dtype,
            "attn_implementation": m.attn_implementation,
            "trust_remote_code": m.trust_remote_code,
        }

        def separate() -> Any:
            return load_separate(path, loaded.model, **options)

    args = config.train.training_arguments(**core_arguments(**arg_overrides))
    guard = [OverOptimisationGuard(config.guard, write=write)] if config.guard.enabled else []
    live = live_reference(source, loaded.model, separate, False, sequence_logps)
    trainer = UnpairedTrainer(
        model=loaded.model,
        args=args,
        train_dataset=sets["train"],
        eval_dataset=sets.get("eval"),
        data_collator=Collate(collators["train"], feedback_inputs),
        eval_collator=Collate(collators["eval"], feedback_inputs) if "eval" in collators else None,
        collators=collators,
        loss=loss,
        reference=None if live is None else LiveFeedbackReference(live),
        blocks=config.train.batch_size if source == "precomputed" else None,
        processor=loaded.processor,
        callbacks=[*guard, *(callbacks or [])],
        max_nonfinite_steps=config.train.max_nonfinite_steps,
    )
    if source == "precomputed":
        trainer.reference = precompute_feedback_splits(
            trainer.model if separate is None else separate().to(args.device),
            [(name, sets[name].records, c) for name, c in collators.items()],
            loaded.processor,
            Path(config.reference.cache_dir or mmalign_home() / "reference-cache"),
            block=config.train.batch_size,
            adapter_off=config.model.lora.enabled and separate is None,
        )
    return trainer
