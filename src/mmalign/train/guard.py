"""The over-optimisation guard: stop preference training when the held-out preference signal turns.

Direct alignment algorithms over-optimise their implicit reward much like RLHF over-optimises a reward model
(Rafailov et al., 2024, "Scaling Laws for Reward Model Overoptimization in Direct Alignment Algorithms"): the
training margin keeps growing while the policy drifts from the reference and held-out quality peaks, then
falls. The guard watches two held-out signals at every evaluation (``train.eval_steps`` on ``data.eval``):

* ``margin_drop``: the held-out reward margin (``eval_rewards/margins``) has fallen this far below the best
  value it reached (reward units: β·log-ratio for the DPO family);
* ``max_kl``: the held-out KL estimate to the reference (``eval_kl/chosen``: per token, k1, on the chosen
  responses) is above this.

Online RL (``mmalign train grpo``) has the same two signals under other names: the held-out reward
(``eval_reward``, whose drop from its best is the reward over-optimisation of Gao et al., 2022, when the reward
is a proxy) and the held-out k3 KL to the reference (``eval_kl``); :data:`GRPO_SIGNALS`.

When either holds for ``patience`` evaluations in a row, the run stops; the reason is logged and printed (the
trainer core also logs it as ``{"guard": reason}``, so it is in the log history and ``metrics.jsonl``).
The model saved at the end is the one at the stop: keep checkpoints (``train.save_steps``) to return to an
earlier one. On resume the guard replays the evaluations in the restored log history and continues from there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback

from mmalign.config import check_ranges, option
from mmalign.errors import ConfigError

logger = logging.getLogger(__name__)

MARGIN = "eval_rewards/margins"
KL = "eval_kl/chosen"
PREFERENCE_SIGNALS = (MARGIN, KL, "held-out reward margin")
"""What the guard watches in preference training: (reward signal, KL, what the reward signal is called)."""
GRPO_SIGNALS = ("eval_reward", "eval_kl", "held-out reward")
"""... and in online RL: the held-out mean reward of sampled completions, and the k3 KL per token."""


@dataclass
class GuardConfig:
    """Early stopping on held-out over-optimisation signals (needs data.eval and train.eval_steps)."""

    margin_drop: float | None = option(
        None, "Stop when the held-out reward margin falls this far below the best it reached; null = off.", ge=0
    )
    max_kl: float | None = option(
        None,
        "Stop when the held-out KL estimate to the reference (per token, on chosen responses) exceeds this; "
        "null = off.",
        ge=0,
    )
    patience: int = option(1, "Evaluations in a row a condition must hold before the run stops.", ge=1)

    def __post_init__(self) -> None:
        check_ranges(self, prefix="guard.")

    @property
    def enabled(self) -> bool:
        return self.margin_drop is not None or self.max_kl is not None

    def check_evaluated(self, data_eval: str | None, eval_steps: int | None) -> None:
        """Refuse a guard that would see no held-out evaluation (``data.eval`` and ``train.eval_steps`` needed)."""
        if self.enabled and (data_eval is None or eval_steps is None):
            raise ConfigError("the guard watches held-out evaluations: set data.eval and train.eval_steps")


class OverOptimisationGuard(TrainerCallback):
    """Stops training when :class:`GuardConfig`'s conditions hold on ``patience`` evaluations in a row."""

    def __init__(
        self,
        config: GuardConfig,
        write: Callable[[str], None] | None = None,
        signals: tuple[str, str, str] = PREFERENCE_SIGNALS,
    ) -> None:
        self.config = config
        self.margin_key, self.kl_key, self.margin_name = signals
        self._write = write
        self.best_margin: float | None = None
        self.best_step: int | None = None
        self.strikes = 0
        self.stopped_reason: str | None = None
        """Why the guard stopped the run (None while it has not)."""

    def check(self, metrics: dict[str, Any], step: int) -> str | None:
        """Update with one evaluation's metrics; the reason to stop, once the conditions held ``patience`` times."""
        c = self.config
        problems = []
        margin = metrics.get(self.margin_key)
        if margin is not None and c.margin_drop is not None:
            margin = float(margin)
            if self.best_margin is None or margin > self.best_margin:
                self.best_margin, self.best_step = margin, step
            elif margin < self.best_margin - c.margin_drop:
                problems.append(
                    f"{self.margin_name} {margin:.4g} is {self.best_margin - margin:.4g} below its best "
                    f"{self.best_margin:.4g} (step {self.best_step}; guard.margin_drop={c.margin_drop:g})"
                )
        kl = metrics.get(self.kl_key)
        if kl is not None and c.max_kl is not None and float(kl) > c.max_kl:
            problems.append(f"held-out KL to the reference {float(kl):.4g} is above guard.max_kl={c.max_kl:g}")
        self.strikes = self.strikes + 1 if problems else 0
        if not problems or self.strikes < c.patience:
            return None
        evals = "evaluation" if c.patience == 1 else f"{c.patience} evaluations in a row"
        return f"over-optimisation guard stopped the run at step {step}: {'; '.join(problems)} ({evals})"

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.best_margin = self.best_step = None
        self.strikes = 0
        for row in state.log_history:  # a resumed run: pick up where the guard was
            if self.margin_key in row or self.kl_key in row:
                self.check(row, int(row.get("step", 0)))

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **kw: Any):
        reason = self.check(metrics or {}, state.global_step)
        if reason is None or self.stopped_reason is not None:
            return
        self.stopped_reason = reason
        control.should_training_stop = True
        logger.warning(reason)
        if self._write is not None and state.is_world_process_zero:
            self._write(reason)
