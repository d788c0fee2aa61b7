"""The three reward-model benchmarks as tasks of ``mmalign eval score``: each scored by name, and what is printed.

The readers and the official aggregation are in :mod:`.rewardbench_vl` (VL-RewardBench, ``cal.py``),
:mod:`.rewardbench_multimodal` (Multimodal RewardBench, ``2_get_accuracy.py``) and :mod:`.rewardbench_mmrlhf`
(MM-RLHF-RewardBench, ``cal_performance_mmreweard_bench.py``); every file holds its labels, so a task reads one
prediction file (judge rows, or reward rows ``"rewards": [chosen, rejected]``). They measure the survey's
reward-model dimension (:data:`mmalign.eval.tasks.specs.DIMENSIONS`).

VL-RewardBench's report also holds ``sweep``: what ``cal.py``'s main prints (one ``random.seed(1234)``, then
k = 1, 3, 5, 7, 9 in turn), whatever ``k`` the headline numbers use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmalign.errors import DataError
from mmalign.eval.scoring.rewardbench_mmrlhf import score_mm_rlhf_rewardbench
from mmalign.eval.scoring.rewardbench_multimodal import score_multimodal_rewardbench
from mmalign.eval.scoring.rewardbench_vl import (
    CATEGORIES,
    read_vl_rewardbench,
    vl_rewardbench_score,
    vl_rewardbench_sweep,
)
from mmalign.eval.scoring.task_score import TaskScore

SCORERS: dict[str, str] = {
    "vl_rewardbench": "VL-RewardBench judge samples or reward rows: accuracy and macro average (cal.py)",
    "multimodal_rewardbench": "Multimodal RewardBench judge or reward rows: per category and overall "
    "(2_get_accuracy.py)",
    "mm_rlhf_rewardbench": "MM-RLHF-RewardBench reward rows: accuracy and ACC+ (cal_performance_mmreweard_bench.py)",
}
"""``--task`` name → what it scores, for the three benchmarks."""


def load(task: str, path: Path, k: int | None) -> TaskScore:
    """Score ``path`` as ``task``'s official prediction file (``k``: VL-RewardBench's cap of samples an item)."""
    try:
        if task == "multimodal_rewardbench":
            return score_multimodal_rewardbench(path)
        if task == "mm_rlhf_rewardbench":
            return score_mm_rlhf_rewardbench(path)
        samples = read_vl_rewardbench(path)
        result = vl_rewardbench_score(samples, k)
    except DataError as err:
        if err.file is None:  # raised after reading, where only the rows were known
            raise DataError(err.message, file=path) from None
        raise
    result.metrics["sweep"] = {
        str(cap): {
            **{key: score.metrics[key] for key in ("accuracy", "macro_accuracy")},
            **{key: score.metrics[key] for key in ("agree", "reject", "unparsed", "split")},
            "categories": {c: score.metrics["categories"][c] for c in CATEGORIES},
        }
        for cap, score in vl_rewardbench_sweep(samples).items()
    }
    return result


def _category_lines(categories: dict[str, dict[str, Any]]) -> list[str]:
    width = max(28, *(len(name) for name in categories))
    return [
        f"  {name:<{width}} {row['accuracy']:.4f}  ({row['correct']}/{row['total']})"
        for name, row in categories.items()
    ]


def summary(task: str, metrics: dict[str, Any]) -> list[str]:
    """The lines printed after the headline intervals: categories, what was counted, ties and unparsed outputs."""
    if task == "vl_rewardbench":
        lines = _category_lines(metrics["categories"])
        if len(metrics["macro_categories"]) < len(CATEGORIES):
            lines.append(f"  {'macro over':<28} {', '.join(metrics['macro_categories'])} (the others have no items)")
        cap = "every sample" if metrics["k"] is None else f"k = {metrics['k']}, in cal.py's shuffle"
        lines += [
            f"  {'items counted':<28} {metrics['counted']} of {metrics['n_items']} "
            f"({metrics['n_samples']} samples, {cap}): agree {metrics['agree']}, reject {metrics['reject']}",
            f"  {'items left out':<28} unparsed {metrics['unparsed']}, split {metrics['split']} "
            "(no verdict held by more than half of the item's samples)",
            f"  {'ties':<28} {metrics['ties']} (a tied reward counts as a rejection)",
        ]
        sweep = metrics["sweep"]
        for key in ("accuracy", "macro_accuracy"):
            values = " ".join(f"{row[key]:.4f}" for row in sweep.values())
            lines.append(f"  {'cal.py main ' + key:<28} {values}  (k = {', '.join(sweep)})")
        return lines
    if task == "multimodal_rewardbench":
        overall = {key: metrics[key] for key in ("accuracy", "correct")}
        return [
            *_category_lines({**metrics["categories"], "all": {**overall, "total": metrics["n"]}}),
            f"  {'unparsed':<28} {metrics['unparsed']} (no [[A]] or [[B]]: decided by the script's coin, "
            "random.seed(123), in file order)",
            f"  {'ties':<28} {metrics['ties']} (a tied reward counts as wrong)",
        ]
    lines = [
        f"  {name:<28} accuracy {row['accuracy']:.4f} ({row['correct']}/{row['pairs']} pairs), "
        f"ACC+ {row['acc_plus']:.4f} ({row['ids_all_correct']}/{row['ids']} ids)"
        for name, row in metrics["categories"].items()
    ]
    return [
        *lines,
        f"  {'all':<28} accuracy {metrics['accuracy']:.4f} ({metrics['correct']}/{metrics['pairs']} pairs), "
        f"ACC+ {metrics['acc_plus']:.4f} ({metrics['ids_all_correct']}/{metrics['ids']} ids)",
        f"  {'uncategorised':<28} {metrics['uncategorised']} of {metrics['pairs']} pairs "
        "(no category word in the path: overall only)",
        f"  {'ties':<28} {metrics['ties']} (a tied reward counts as wrong)",
    ]
