"""Stage 4: evaluation.

    results = evaluate(EvalConfig(model=Path("out/tiny-llava"), out=Path("runs/base"), suite="shapes"))
    compare_runs([Path("runs/base"), Path("runs/dpo")], Path("runs/compare"))

* :mod:`.runner` (``mmalign eval run``): tasks → items → model (fast path or generation, resumable) →
  predictions in official formats → metrics with bootstrap intervals → results.json, report.md, PNGs;
* :mod:`.compare` (``mmalign eval compare``): paired before/after deltas between runs;
* :mod:`.score` (``mmalign eval score``): another system's predictions, scored from benchmark files;
* :mod:`.metrics`: the metric core (pure functions, the official scripts' definitions).

Names are imported lazily (PEP 562), so ``import mmalign.eval.tasks`` does not import torch.
"""

from __future__ import annotations

from mmalign.lazy import lazy_getattr

_EXPORTS = {
    "EvalConfig": "runner",
    "evaluate": "runner",
    "compare_runs": "compare",
    "TASKS": "tasks",
    "SUITES": "suites",
    "choose_options": "fastpath",
    "read_results": "results",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
