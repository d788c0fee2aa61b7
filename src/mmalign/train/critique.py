"""Critique-then-score reward-model training (``rm.critique: true``; MM-RLHF, Zhang et al., 2025, §4.1).

Each pair carries a critique of each side (``meta.chosen_critique``, ``meta.rejected_critique``; checked before the
model loads by :func:`~mmalign.models.critique.record_critiques`). :class:`CritiqueCollator` makes the 2n rows of n
pairs, chosen then rejected, each laid out as prompt + response + critique request + critique
(:mod:`mmalign.models.critique`), labels on the critique's tokens only. :func:`critique_step` scores them in ONE
forward of the reward model (``with_logits``: the head on the last hidden state at each row's last token, which is
the critique's end-of-turn token, and the LM head's logits of the same pass) and returns Bradley–Terry on the
rewards plus ``rm.critique_weight`` × the critiques' mean token NLL (:mod:`mmalign.losses.critique`).

The held-out evaluation during training scores the eval pairs with their *reference* critiques, which state the
verdict, so its accuracy is an upper bound; the honest held-out number scores critiques the model generates
itself (:func:`mmalign.models.critique.critique_rewards`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mmalign.data.records import PreferenceRecord
from mmalign.errors import DataError
from mmalign.losses.critique import critique_loss, critique_nll
from mmalign.losses.reward import RewardLoss, reward_metrics
from mmalign.models.collate import Collator
from mmalign.models.critique import critique_pair
from mmalign.models.logps import model_device_dtype
from mmalign.train.pref_batch import PreferenceBatch
from mmalign.train.trainer import StepOutput


@dataclass
class CritiqueCollator:
    """Records -> :class:`PreferenceBatch` whose rows are the critique sequences (what a ``PreferenceCollator``
    gives a plain reward model): chosen in rows [0, n), rejected in [n, 2n); a pair is kept or dropped as a unit
    (``data.on_overflow: skip``)."""

    collator: Collator
    """The model layer's collator in train mode (tokenization, images, truncation)."""
    request: str
    """The user turn asking for the critique (``rm.critique_request``)."""
    split: str = "train"

    def __call__(self, records: list[PreferenceRecord]) -> PreferenceBatch:
        for record in records:
            if not isinstance(record, PreferenceRecord):
                raise DataError("reward-model training needs preference records", record_id=getattr(record, "id", None))
        pairs = [critique_pair(r, self.request) for r in records]
        while True:
            rows = self.collator([p[0] for p in pairs] + [p[1] for p in pairs])
            if not rows.skipped:
                rows.n_pairs = len(records)
                return PreferenceBatch(rows=rows, ids=[r.id for r in records], split=self.split)
            skipped = set(rows.skipped)
            dropped = [i for i, r in enumerate(records) if r.id in skipped]
            self.collator.n_skipped -= len(rows.skipped) - len(dropped)  # one per pair, not per side
            records = [r for i, r in enumerate(records) if i not in dropped]
            pairs = [p for i, p in enumerate(pairs) if i not in dropped]

    @property
    def n_skipped(self) -> int:
        """Pairs left out so far because a side did not fit ``max_length``."""
        return self.collator.n_skipped


def critique_step(
    model: Any, batch: PreferenceBatch, margin: torch.Tensor | None, loss: RewardLoss, weight: float
) -> StepOutput:
    """One micro-batch: rewards and logits from ONE forward, ``L = BT + weight · critique NLL``; the metrics are
    the reward model's (:func:`~mmalign.losses.reward.reward_metrics`) and ``critique_nll`` (mean per critique
    token)."""
    n = len(batch)
    rows = batch.rows.to(*model_device_dtype(model))
    rewards, logits = model(**rows.model_inputs(), with_logits=True)
    nll_sum, n_tokens = critique_nll(logits, rows.labels)
    chosen, rejected = rewards[:n], rewards[n : 2 * n]
    output = loss(chosen, rejected, None if margin is None else margin.to(chosen.device))
    total, mean_nll = critique_loss(output.losses, nll_sum, n_tokens, weight)
    metrics = reward_metrics(chosen, rejected)
    metrics.update({k: float(v) for k, v in output.metrics.items()})
    metrics["critique_nll"] = mean_nll.item()
    if not model.training:
        metrics["loss"] = total.item()
    return StepOutput(total, metrics, n)
