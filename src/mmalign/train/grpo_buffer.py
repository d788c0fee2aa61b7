"""Rollouts reused for several updates: TRL's ``num_iterations`` (μ) and ``steps_per_generation`` for ``train grpo``.

With ``grpo.num_iterations: 1`` and ``grpo.steps_per_generation`` = ``train.grad_accum`` (the defaults) every
micro-batch samples its own completions and the step is on-policy (:mod:`mmalign.train.grpo`). Otherwise a
**generation** is ``steps_per_generation`` (S) micro-batches of ``train.batch_size`` (B) prompts, sampled at once and
used for S·μ micro-batches, as TRL 1.16's ``GRPOTrainer`` does (``RepeatSampler``, ``_prepare_inputs``):

1. the data: :class:`RepeatSampler` cuts the sampler's order into generations of B·S prompts per process (a
   last, incomplete one is dropped, as ``RepeatSampler`` drops it) and hands each S·μ times in a row, every copy
   tagged with its use r = 0 … S·μ − 1. So one epoch uses every prompt μ times; optimiser steps per generation =
   S·μ / ``train.grad_accum`` (a generation may straddle optimiser steps when that is not whole, as in TRL);
2. at r = 0 (or when nothing is buffered, after a resume) :class:`GenerationBuffer` samples G completions for each
   of the B·S prompts, scores them and computes the advantages once over the generation (groups whole; ``batch``
   reward scaling over the generation, as TRL's), then the old per-token log-probs once, before any update on
   them: the policy's training forward (the same scorer as the update's, so at the same temperature, 1; not the
   sampler's log-probs, which are at ``grpo.temperature`` and come from the decode loop), in eval mode without
   gradients. Like TRL they are computed only when an update can fall between sampling and a use, i.e. when
   ``train.grad_accum`` is not a multiple of S·μ; otherwise π_old = π and the ratio is 1. The reference's
   log-probs (β > 0) are computed here too, once;
3. use r takes micro-batch r mod S of the buffer (prompts r mod S · B … + B, each with its G completions: groups
   are never split, so the shared-prefix forward still runs each prompt once; TRL shuffles single completions
   across its micro-batches instead) and runs the loss with ``old=`` the buffered log-probs, so the ratio and the
   clip act from the second use on (``clip_ratio/*`` above 0). ``dapo`` / ``cispo`` divide by the generation's
   completion tokens (mean over processes) × ``train.grad_accum`` / S, TRL's denominator.

The rollout metrics (``reward``, lengths ...) are the generation's, logged with each of its micro-batches.

**Seeds and resume.** A generation is sampled with ``derive_seed(train.seed, "grpo", global_step, process,
"generation", i)``, i the micro-batch's place in its optimiser step: a resumed run samples what the uninterrupted
run sampled from a checkpoint where a new generation starts (``train.save_steps`` × ``train.grad_accum`` a multiple
of S·μ). From a checkpoint inside a generation's uses the buffer is gone (it is not saved): the generation is
sampled again, from the restored, already updated policy and with the resumed step's seed, and serves the
remaining uses; a warning says so. That run differs from the uninterrupted one from there on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from mmalign.errors import ConfigError
from mmalign.losses.grpo import RolloutLogps
from mmalign.models.collate import PER_TOKEN
from mmalign.models.rollout import Rollouts
from mmalign.seeding import derive_seed
from mmalign.train.pref_batch import fit_width
from mmalign.train.reference import eval_mode, unwrap_module
from mmalign.train.trainer import StepOutput

logger = logging.getLogger(__name__)

TOKEN_DENOMINATOR = ("dapo", "cispo")
"""Loss types divided by the accumulated batch's tokens (``num_tokens``)."""


def reuses(num_iterations: int, steps_per_generation: int, grad_accum: int) -> bool:
    """Whether rollouts are buffered: μ > 1, or a generation spans other than the optimiser step's micro-batches."""
    return num_iterations > 1 or steps_per_generation != grad_accum


def check_generation(options: Any, train: Any, limit: int | None) -> None:
    """Fail at start when ``data.limit`` leaves fewer prompts than one generation (``options``: ``grpo``,
    ``train``: the training section)."""
    steps = options.generation_steps(train.grad_accum)
    per_generation = train.batch_size * steps
    if reuses(options.num_iterations, steps, train.grad_accum) and limit is not None and limit < per_generation:
        raise ConfigError(
            f"data.limit {limit} is fewer prompts than one generation: train.batch_size {train.batch_size} × "
            f"grpo.steps_per_generation {steps} = {per_generation}"
        )


def generation_buffer(options: Any, grad_accum: int, batch_size: int) -> GenerationBuffer | None:
    """The buffer of a trainer whose ``grpo`` options reuse rollouts (None: every micro-batch samples its own)."""
    steps = options.generation_steps(grad_accum)
    if not reuses(options.num_iterations, steps, grad_accum):
        return None
    return GenerationBuffer(options.num_iterations, steps, grad_accum, batch_size)


class RepeatSampler(Sampler):
    """``base``'s order cut into generations of ``per_process`` × ``processes`` indices, each yielded ``repeats``
    times in a row (whole, so every process gets its own slice of each copy), as ``use * n + index``."""

    def __init__(self, base: Sampler, n: int, per_process: int, processes: int, repeats: int) -> None:
        self.base, self.n, self.repeats = base, n, repeats
        self.size = per_process * processes

    def __iter__(self) -> Iterator[int]:
        order = list(self.base)
        for start in range(0, len(order) - self.size + 1, self.size):
            chunk = order[start : start + self.size]
            for use in range(self.repeats):
                yield from (use * self.n + int(i) for i in chunk)

    def __len__(self) -> int:
        return (self.n // self.size) * self.size * self.repeats


class GenerationItems(Dataset):
    """``dataset`` read through :class:`RepeatSampler`'s indices: item ``use * n + i`` is ``(use, dataset[i])``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset, self.n = dataset, len(dataset)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index // self.n, self.dataset[index % self.n]


@dataclass
class GenerationCollate:
    """``(use, prompt)`` items → the prompt collate's dict plus ``use`` (one value per micro-batch)."""

    collate: Any

    def __call__(self, items: list[tuple[int, Any]]) -> dict[str, Any]:
        uses = {use for use, _ in items}
        if len(uses) != 1:
            raise RuntimeError(f"a micro-batch mixes uses {sorted(uses)} of its generation")
        return {**self.collate([prompt for _, prompt in items]), "use": uses.pop()}


@dataclass
class Slice:
    """One micro-batch of a generation: B prompts with their G completions each, and what the loss needs."""

    rollouts: Rollouts
    advantages: Tensor
    """(B·G,) computed over the whole generation."""
    old: Tensor | None
    """(B·G, C) the policy's per-token log-probs at sampling time; None: no update can come between (ratio 1)."""
    reference: Tensor | None
    """(B·G, C) the reference's (β > 0)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The generation's rollout metrics (reward, lengths ...)."""


def take_prompts(rollouts: Rollouts, start: int, stop: int) -> Rollouts:
    """The rollouts of prompts ``start`` … ``stop`` − 1 (with their G completions each)."""
    prompts, g = rollouts.prompts, rollouts.group_size
    rows = slice(start * g, stop * g)
    kept = replace(
        prompts,
        input_ids=prompts.input_ids[start:stop],
        attention_mask=prompts.attention_mask[start:stop],
        labels=None if prompts.labels is None else prompts.labels[start:stop],
        prompt_lengths=prompts.prompt_lengths[start:stop],
        extras={k: v[start:stop] for k, v in prompts.extras.items() if k in PER_TOKEN},
        ids=prompts.ids[start:stop],
        response_offsets=[],
        response_text_start=[],
    )
    return replace(
        rollouts,
        prompts=kept,
        completion_ids=rollouts.completion_ids[rows],
        completion_mask=rollouts.completion_mask[rows],
        token_logps=rollouts.token_logps[rows],
        texts=rollouts.texts[rows],
        finished=rollouts.finished[rows],
        row_images=rollouts.row_images[start:stop],
    )


class GenerationBuffer:
    """The buffered step of :class:`~mmalign.train.grpo.GRPOTrainer` (module docstring)."""

    def __init__(self, num_iterations: int, steps_per_generation: int, grad_accum: int, batch_size: int) -> None:
        self.num_iterations, self.steps = num_iterations, steps_per_generation
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.needs_old = grad_accum % (steps_per_generation * num_iterations) != 0
        """TRL's rule: old log-probs only when an update may fall between sampling and a use."""
        self.slices: list[Slice] | None = None
        self.prompt_ids: list[str] = []
        self.num_tokens: float | None = None
        """The ``dapo`` / ``cispo`` denominator of each micro-batch of the buffered generation."""
        self.generations = 0
        """Generations sampled so far by this trainer (tests read it)."""
        self._place = (-1, 0)  # (global step, micro-batches seen in it)

    @property
    def uses(self) -> int:
        """Micro-batches each generation serves: S·μ."""
        return self.steps * self.num_iterations

    def describe(self) -> str:
        """The line's part saying how rollouts are reused."""
        old = "old log-probs kept" if self.needs_old else "no update between sampling and use"
        return (
            f"rollouts reused: generations of {self.steps} × {self.batch_size} prompts, each used "
            f"μ={self.num_iterations} times, {self.uses / self.grad_accum:g} optimiser steps a generation ({old})"
        )

    # -------------------------------------------------------------------------------------------- data

    def train_dataloader(self, trainer: Any) -> Any:
        """The training dataloader: each batch is a whole generation's prompts for this process, tagged with its use."""
        dataset, args = trainer.train_dataset, trainer.args
        per_process = self.batch_size * self.steps
        if len(dataset) < per_process * args.world_size:
            raise ConfigError(
                f"{getattr(dataset, 'source', 'data.train')}: {len(dataset)} prompts, fewer than one generation "
                f"(train.batch_size {self.batch_size} × grpo.steps_per_generation {self.steps} × {args.world_size} "
                "processes)"
            )
        base = trainer._get_train_sampler(dataset)
        sampler = RepeatSampler(base, len(dataset), per_process, args.world_size, self.uses)
        collate, trainer.data_collator = trainer.data_collator, GenerationCollate(trainer.data_collator)
        try:
            return trainer._get_dataloader(
                dataset=GenerationItems(dataset),
                description="Training",
                batch_size=per_process,
                sampler_fn=lambda _: sampler,
                is_training=True,
            )
        finally:
            trainer.data_collator = collate

    # -------------------------------------------------------------------------------------------- step

    def batch_loss(self, trainer: Any, model: Any, inputs: dict[str, Any]) -> StepOutput:
        """The loss of use ``inputs["use"]`` of the generation of ``inputs["prompts"]``, sampling it first at use 0."""
        use, prompts = int(inputs["use"]), inputs["prompts"]
        micro = self._micro_index(trainer.state.global_step)
        if use == 0 or self.slices is None or self.prompt_ids != [p.id for p in prompts]:
            if use != 0:
                logger.warning(
                    "grpo: resuming inside a generation (use %d of %d): sampling it again from the restored policy; "
                    "the run differs from an uninterrupted one from here",
                    use + 1,
                    self.uses,
                )
            seed = derive_seed(trainer.args.seed, "grpo", trainer.state.global_step, trainer.args.process_index)
            seed = derive_seed(seed, "generation", micro)
            self.generate(trainer, model, prompts, inputs["root"], seed)
        piece = self.slices[use % self.steps]
        batch = piece.rollouts.batch()
        width = piece.rollouts.completion_ids.shape[1]
        policy = fit_width(trainer.scorer(model, batch, token_level=True).token_logps, width)
        mask = piece.rollouts.completion_mask.to(device=policy.device, dtype=policy.dtype)
        old = None if piece.old is None else piece.old.to(policy.device)
        reference = None if piece.reference is None else piece.reference.to(policy.device)
        num_tokens = self.num_tokens if trainer.loss.loss_type in TOKEN_DENOMINATOR else None
        out = trainer.loss(RolloutLogps(policy, mask, old, reference), piece.advantages.to(policy.device), num_tokens)
        return StepOutput(out.loss, {**piece.metrics, **out.metrics}, len(piece.rollouts.prompts))

    def generate(self, trainer: Any, model: Any, prompts: list[Any], root: Any, seed: int) -> None:
        """Sample, score and cut one generation into its micro-batches, with old and reference log-probs."""
        rollouts = trainer.rollouts(model, prompts, root, seed=seed)
        per_function, total, advantages = trainer.score(prompts, rollouts)
        metrics = trainer.metrics(rollouts, per_function, total, advantages)
        tokens = rollouts.completion_mask.sum().to(device=trainer.args.device, dtype=torch.float32)
        if trainer.accelerator.num_processes > 1:
            tokens = trainer.accelerator.reduce(tokens, reduction="mean")
        self.num_tokens = float(tokens) / self.steps
        g, b = rollouts.group_size, self.batch_size
        self.slices = []
        for s in range(self.steps):
            piece = take_prompts(rollouts, s * b, (s + 1) * b)
            batch, width = piece.batch(), piece.completion_ids.shape[1]
            old = None
            if self.needs_old:
                policy = unwrap_module(model)
                with eval_mode(policy):
                    old = fit_width(trainer.scorer(policy, batch, token_level=True).token_logps, width).detach()
            reference = trainer.reference_logps(model, batch, width) if trainer.loss.needs_reference else None
            rows = advantages.advantages[s * b * g : (s + 1) * b * g]
            self.slices.append(Slice(piece, rows, old, reference, metrics))
        self.prompt_ids = [p.id for p in prompts]
        self.generations += 1

    def _micro_index(self, global_step: int) -> int:
        """This micro-batch's place in its optimiser step (counted here, so a resumed run counts alike)."""
        step, seen = self._place
        seen = seen + 1 if step == global_step else 0
        self._place = (global_step, seen)
        return seen
