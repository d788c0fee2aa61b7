"""Whether a run uses the scoring fast path (:mod:`.fastpath`) on a task, and this run's check of it.

The fast path answers a closed question from one forward pass; generate-and-parse answers it the way the
benchmark's official protocol does. *Agreement* is the share of items on which the task's official parser reads
the same answer from both. Each closed task carries the agreement measured on the shipped model
(:attr:`mmalign.eval.tasks.specs.TaskSpec.fast_agreement`, :mod:`mmalign.eval.tasks.measured`, from
``bench/fastpath_agreement.py``); ``mmalign eval run`` uses the fast path by default only where that figure is at
least :data:`~mmalign.eval.tasks.measured.MIN_AGREEMENT`, and measures it again on a sample of its own items
whenever it does use it (``--agreement-sample``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mmalign.eval.tasks.measured import MIN_AGREEMENT

if TYPE_CHECKING:
    from mmalign.data.records import EvalItem
    from mmalign.eval.tasks.specs import TaskSpec


def parsed_answer(spec: TaskSpec, item: EvalItem, text: str) -> str | None:
    """What the task's official parser reads from an answer (MME's eval tool, MMMU's letter parser, POPE's
    ``evaluate.py`` rule for the other yes/no tasks)."""
    from mmalign.eval.metrics.mme import mme_parse
    from mmalign.eval.metrics.multiple_choice import parse_choice
    from mmalign.eval.metrics.pope import official_yes_no

    if spec.name == "mme":
        return mme_parse(text)
    if spec.kind == "choice":
        return parse_choice(text, list(item.choices or []))
    return official_yes_no(text)


def agreement(fast: Sequence[str | None], generated: Sequence[str | None], ids: Sequence[str]) -> dict[str, Any]:
    """Agreement of two parsed answer lists (None, unparsed, agrees only with None): ``n``, ``agree``,
    ``agreement`` (None when there are no items) and the first 20 ``disagreements`` (ids)."""
    if not len(fast) == len(generated) == len(ids):
        raise ValueError(f"{len(fast)} fast answers, {len(generated)} generated answers and {len(ids)} ids")
    same = [a == b for a, b in zip(fast, generated, strict=True)]
    n = len(same)
    return {
        "n": n,
        "agree": sum(same),
        "agreement": sum(same) / n if n else None,
        "disagreements": [i for i, ok in zip(ids, same, strict=True) if not ok][:20],
    }


def fast_path_plan(spec: TaskSpec, forced: bool | None) -> dict[str, Any]:
    """Whether a task's closed answers come from the fast path, and why: ``forced`` is ``--fast`` (True),
    ``--generate`` (False) or neither (None: the measured agreement decides)."""
    measured = spec.fast_agreement
    plan: dict[str, Any] = {
        "applies": spec.fast,
        "used": False,
        "min_agreement": MIN_AGREEMENT,
        "measured": None if measured is None else measured.to_dict(),
    }
    figure = "" if measured is None else f"measured agreement {100 * measured.rate:.1f}% of {measured.n} items"
    if not spec.fast:
        closed = spec.kind in ("yesno", "choice")
        video = "video: the fast path is not measured on video, always generated"
        plan["reason"] = video if closed else "open answers: always generated"
    elif forced is False:
        plan["reason"] = "--generate: every answer generated and parsed"
    elif forced:
        plan["used"] = True
        low = measured is None or measured.rate < MIN_AGREEMENT
        plan["reason"] = "--fast" + (f" although {figure or 'agreement was never measured'}" if low else "")
    elif measured is not None and measured.rate >= MIN_AGREEMENT:
        plan["used"] = True
        plan["reason"] = f"{figure} (at least {100 * MIN_AGREEMENT:.0f}%): fast path by default"
    else:
        below = f"{figure}, below {100 * MIN_AGREEMENT:.0f}%" if measured else "agreement never measured"
        plan["reason"] = f"{below}: generate-and-parse by default (--fast forces the fast path)"
    return plan


def sample_warning(name: str, sample: dict[str, Any]) -> str | None:
    """A warning when this run's own agreement sample falls below ``MIN_AGREEMENT`` (99 %), else None."""
    rate = sample.get("agreement")
    if rate is None or rate >= MIN_AGREEMENT:
        return None
    return (
        f"{name}: the fast path agreed with generate-and-parse on only {100 * rate:.1f}% of {sample['n']} sampled "
        f"items (below {100 * MIN_AGREEMENT:.0f}%); rerun with --generate for the official protocol's figures"
    )
