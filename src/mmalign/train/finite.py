"""Runs whose numbers stop being numbers end with an error, and never leave non-finite weights behind.

A NaN or infinite loss or gradient norm stops training before the optimiser applies that step, with an error
naming the step (:class:`NonFiniteError`, printed by the CLI in one line, exit code non-zero). With
``train.max_nonfinite_steps: N`` the first N such steps are skipped instead: their gradients are dropped, so
no parameter moves that step (the learning-rate schedule still advances), and the run stops at the next one.

A checkpoint, or the final model, is written only when every weight is finite. As a bad step is never applied,
the latest checkpoint in ``train.output_dir`` is always one of finite weights, and it is what
``train.resume=true`` picks up.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import torch

from mmalign.errors import MMAlignError
from mmalign.train.checkpoints import latest_checkpoint


class NonFiniteError(MMAlignError):
    """Training produced a NaN or infinite loss, gradient norm or weight; nothing non-finite was saved."""


def nonfinite_weights(model: Any) -> list[str]:
    """Names of the parameters holding a NaN or an infinity (one synchronisation per parameter: meant for saves)."""
    return [name for name, p in model.named_parameters() if not bool(torch.isfinite(p.detach()).all())]


def check_weights(model: Any, step: int, what: str, output_dir: str | Path) -> None:
    """Refuse to save ``what`` (a checkpoint, the final model) when a weight of ``model`` is not finite."""
    bad = nonfinite_weights(model)
    if bad:
        raise NonFiniteError(
            f"step {step}: {len(bad)} weight tensor(s) hold NaN or infinite values (first: {bad[0]}); {what} not "
            f"saved. {_advice(output_dir)}"
        )


def _advice(output_dir: str | Path) -> str:
    last = latest_checkpoint(output_dir)
    where = f"the latest checkpoint (every weight finite) is {last}" if last is not None else "no checkpoint was saved"
    return f"Lower train.learning_rate (or check the data); {where} (train.resume=true continues from it)"


class FiniteSteps:
    """``transformers.Trainer`` mixin (``class T(FiniteSteps, Trainer)``): the checks described in this module.

    The loss of every micro-batch is checked as it is computed, the gradient norm of every optimiser step
    (``Trainer`` computes it, clipped or not) before the optimiser runs, and the weights before every checkpoint.
    Under float16 mixed precision an infinite gradient norm is the loss scaler's business (it skips that step and
    lowers the scale), so there only the loss is checked.
    """

    def __init__(self, *args: Any, max_nonfinite_steps: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_nonfinite_steps = max_nonfinite_steps
        self.skipped_steps: list[int] = []
        """Optimiser steps skipped for a non-finite loss or gradient norm (within train.max_nonfinite_steps)."""
        self._bad_loss: float | None = None

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        if self._bad_loss is None and not bool(torch.isfinite(loss.detach()).all()):
            self._bad_loss = float(loss.detach().float().sum())
        return loss

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        norm = super()._get_grad_norm(model, grad_norm=grad_norm)  # type: ignore[misc]
        bad_loss, self._bad_loss = self._bad_loss, None
        problems = []
        if self._any_process(bad_loss is not None):
            problems.append(f"the loss is {bad_loss if bad_loss is not None else 'not finite on another process'}")
        scaled = getattr(self.accelerator, "scaler", None) is not None  # type: ignore[attr-defined]
        if norm is not None and not scaled and not math.isfinite(float(norm)):
            problems.append(f"the gradient norm is {float(norm)}")
        if problems:
            self._skip_or_stop(model, self.state.global_step + 1, " and ".join(problems))  # type: ignore[attr-defined]
        return norm

    def _any_process(self, flag: bool) -> bool:
        accelerator = self.accelerator  # type: ignore[attr-defined]
        if accelerator.num_processes == 1:
            return flag
        return bool(accelerator.reduce(torch.tensor(float(flag), device=accelerator.device), reduction="sum") > 0)

    def _skip_or_stop(self, model: Any, step: int, problem: str) -> None:
        if len(self.skipped_steps) >= self.max_nonfinite_steps:
            skipped = f" after skipping steps {', '.join(map(str, self.skipped_steps))}" if self.skipped_steps else ""
            raise NonFiniteError(
                f"training stopped at step {step}{skipped}: {problem}; the step was not applied. "
                f"{_advice(self.args.output_dir)}"  # type: ignore[attr-defined]
            )
        self.skipped_steps.append(step)
        model.zero_grad(set_to_none=True)  # the optimiser leaves parameters without a gradient as they are
        if self.is_world_process_zero():  # type: ignore[attr-defined]
            print(
                f"warning: skipped step {step}: {problem} ({len(self.skipped_steps)} of "
                f"train.max_nonfinite_steps={self.max_nonfinite_steps})",
                file=sys.stderr,
                flush=True,
            )

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        step = self.state.global_step  # type: ignore[attr-defined]
        check_weights(self.model, step, f"checkpoint-{step}", self.args.output_dir)  # type: ignore[attr-defined]
        super()._save_checkpoint(model, trial)  # type: ignore[misc]
