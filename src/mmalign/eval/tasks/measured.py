"""The fast path's agreement with generate-and-parse, measured per closed task on the shipped model.

*Agreement* is the share of items on which the task's official parser reads the same answer from the scoring
fast path's option (:mod:`mmalign.eval.run.fastpath`) and from the generated answer. :data:`MEASURED` holds the
figures ``bench/fastpath_agreement.py`` measured; a task uses the fast path by default only where its figure is
at least :data:`MIN_AGREEMENT` (:attr:`mmalign.eval.tasks.specs.TaskSpec.fast_by_default`). A run's own check
on a sample of its items is :mod:`mmalign.eval.run.agreement`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MIN_AGREEMENT = 0.99
"""The fast path is a task's default only when its measured agreement is at least this."""


@dataclass(frozen=True)
class Agreement:
    """A measured agreement: ``agree`` of ``n`` items parsed the same both ways."""

    agree: int
    n: int
    measured_by: str
    """Where the figure comes from (command, model, data, date)."""

    @property
    def rate(self) -> float:
        return self.agree / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"agreement": self.rate, "agree": self.agree, "n": self.n, "measured_by": self.measured_by}


MEASURED_BY = (
    "python bench/fastpath_agreement.py (batch 8; batch 64 gives the same) on the shipped tiny-llava-sft "
    "(fingerprint 0517b09547bba0c6) and its shapes world (seed 0, 40 000 training scenes, the 400 test scenes), "
    "2026-12-04, 2-CPU Linux, torch 2.13.0, transformers 5.23.0"
)
"""How :data:`MEASURED` was measured (rerun the command to check it)."""
MEASURED: dict[str, Agreement] = {
    "pope_random": Agreement(1980, 1980, MEASURED_BY),
    "pope_popular": Agreement(1980, 1980, MEASURED_BY),
    "pope_adversarial": Agreement(1980, 1980, MEASURED_BY),
    "consistency": Agreement(1556, 1556, MEASURED_BY),
    "mme": Agreement(800, 800, MEASURED_BY),  # 198 of them off the options, generated (options only: 75.2 %)
    "mc": Agreement(400, 400, MEASURED_BY),
}
"""Task → agreement of the fast path with generate-and-parse (the task's official parser on both answers).
A closed task missing here is never measured, so it generates by default."""
