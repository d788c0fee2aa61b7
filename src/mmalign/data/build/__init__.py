"""Preference data made without a model: builders (``hallucinate``, ``corrupt-image``, ``multi-image``) run in
shards with resume (:func:`run_build`), then deduplicated, filtered, mixed and split.

A new strategy is one module with a :class:`Builder` subclass and its line in
:data:`~mmalign.data.build.registry.STRATEGIES`.
"""

from mmalign.data.build.registry import (
    STRATEGIES,
    Builder,
    BuildInputs,
    Plan,
    make_builder,
    register_builder,
    strategy_names,
    unit_seed,
)
from mmalign.data.build.shards import BuildProgress, BuildResult, run_build

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
    "unit_seed",
]
