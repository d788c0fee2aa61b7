"""Stage 4: evaluation.

    results = evaluate(EvalConfig(model=Path("out/tiny-llava"), out=Path("runs/base"), suite="shapes"))
    compare_runs([Path("runs/base"), Path("runs/dpo")], Path("runs/compare"))

A task's definition, its running and its scoring each have a subpackage:

* :mod:`.tasks`: what a task is: specs (``TASKS``), suites, the fast path's measured agreement, and the items
  (shapes world with exact ground truth, or the public benchmarks' own files);
* :mod:`.run` (``mmalign eval run``): a model over a task's items (fast path or generation, batched,
  resumable through the cache), the judged tasks, and the evaluation loop (:mod:`.run.evaluation`);
* :mod:`.scoring` (``mmalign eval score``): answer files → scores, the same code for another system's files
  and for a run's own, and the writers of the benchmarks' answer formats;
* :mod:`.metrics`: the metric core (pure functions, the official scripts' definitions, official file readers);

and around them:

* :mod:`.config`: :class:`~.config.EvalConfig`, what ``mmalign eval run`` takes;
* :mod:`.results`: the layout of results.json; :mod:`.report`: report.md and its plots;
* :mod:`.compare` (``mmalign eval compare``): paired before/after deltas between runs.

Names are imported lazily (PEP 562), so ``import mmalign.eval.tasks`` does not import torch.
"""

from __future__ import annotations

from mmalign.lazy import lazy_getattr

_EXPORTS = {
    "EvalConfig": "config",
    "evaluate": "run.evaluation",
    "compare_runs": "compare",
    "TASKS": "tasks.specs",
    "SUITES": "tasks.suites",
    "choose_options": "run.fastpath",
    "read_results": "results",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
