"""Preference pairs, made from a source (the shapes world, COCO-style annotations, records): builders
(``hallucinate``, ``corrupt-image``, ``multi-image``; with a model, ``sample-rank`` and ``adversarial``; and
``best-of-n``, whose records are SFT records) run in shards with resume (:func:`run_build`), then deduplicated,
filtered, mixed and split. A reward model's rewards of a file's lines: :mod:`mmalign.pairs.reward_score`.

A new strategy is one module with a :class:`Builder` subclass and its line in
:data:`~mmalign.pairs.registry.STRATEGIES`.
"""

from mmalign.pairs.registry import (
    STRATEGIES,
    Builder,
    BuildInputs,
    Plan,
    make_builder,
    register_builder,
    strategy_names,
)
from mmalign.pairs.shards import BuildProgress, BuildResult, run_build

__all__ = [
    "STRATEGIES",
    "BuildInputs",
    "BuildProgress",
    "BuildResult",
    "Builder",
    "Plan",
    "make_builder",
    "register_builder",
    "run_build",
    "strategy_names",
]
