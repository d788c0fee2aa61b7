"""VL-RewardBench (Li et al., 2024): judge outputs scored the way its ``cal.py`` scores them.

Official code (vl-rewardbench/VL_RewardBench): ``cal.py`` @ 6f64385 (dataset from ``image_path``) and @ eb00f28
(dataset from the id, for the Hugging Face parquet, which has no ``image_path``); the files it reads are written
by ``inference.py`` @ e492d65 / ``inference_hf.py`` @ eb00f28, with the answer order of ``prompt.py`` @ e492d65.
Reimplemented here, not copied.

**Input**: JSON lines, one per judge sample (the official inference asks each item K = 10 times):
``{"id", "query", "response": [two answers], "ranking": [two ranks, 0 = the better], "image_path"?:
"images/<dataset>/...", "meta": {"filter_choice": the judge's text, "random_number": 0 | 1}}``.
``random_number`` 1 means the two answers were shown swapped. A file whose first row has a key ``"0"`` holds every
row under ``"0"`` (how pandas wrote some result files), and ``null`` rows are skipped, both as in ``cal.py``.
``ranking`` may be given as ``human_ranking`` (the dataset's name for it); ``meta.flag_status`` is not read
(``cal.py``'s main re-parses the judge's text, which is what this does).

**Verdict of a sample** (``cal.py``, ``reparse=True``): newlines and ``*`` are removed from the judge's text, which
is searched, ignoring case, for "Overall Judgment" or "Therefore" followed later by "Answer N is (the) (slightly)
better"; the match is greedy, so the *last* such N after the first cue counts. N equal to the position shown for
the rejected answer is ``reject``; *any other* N (even 3) is ``agree``; no match is ``unparsed``.

**Items**: samples with the same id, query and pair of answers are one item; with ``k`` set, at most ``k`` of them
count, in the order of ``cal.py``'s seeded shuffle (:func:`vl_rewardbench_sweep` reproduces its main, which runs
k = 1, 3, 5, 7, 9 with one ``random.seed(1234)``). An item's verdict is the one held by more than half of its
samples; with none (1 agree, 1 reject) it is ``split``. Only ``agree`` and ``reject`` items count: ``unparsed``
and ``split`` items are left out of numerator *and* denominator (they are not random picks).

**Aggregation**: datasets map to categories (``general``: vlfeedback, wildvision-battle; ``hallucination``: povid,
rlaif-v, rlhf-v; ``reasoning``: reasoning_tasks). Overall accuracy = agree / (agree + reject) over all items;
``macro_accuracy`` = the mean of the category accuracies, summed in ``cal.py``'s order. ``cal.py`` stops with a
division by zero when a category, or one of the datasets present, has no counted item; here a dataset's accuracy
is then 0 and the macro the mean over the other categories (``macro_categories`` says which).

**Reward models** (no official script): a row with ``"rewards": [reward of the better answer, reward of the
other]`` in place of ``meta`` (``ranking`` is then not needed). The item is ``agree`` when the better answer scores
strictly higher, ``reject`` otherwise: a tie is wrong, as MM-RLHF's ``cal_performance_mmreweard_bench.py`` and
:func:`mmalign.eval.metrics.reward.reward_accuracy` count it (``ties`` counts the tied samples that counted).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.errors import DataError
from mmalign.eval.scoring.rewardbench_common import read_json_lines, reward_pair, text_field
from mmalign.eval.scoring.task_score import TaskScore, ratio

GROUPS = {
    "vlfeedback": "general",
    "wildvision-battle": "general",
    "povid": "hallucination",
    "rlaif-v": "hallucination",
    "rlhf-v": "hallucination",
    "reasoning_tasks": "reasoning",
}
CATEGORIES = ("reasoning", "hallucination", "general")
"""``cal.py``'s ``task_list``: the order its macro average sums in."""
KS = (1, 3, 5, 7, 9)
"""The sample caps ``cal.py``'s main reports, in its order."""
SEED = 1234

_CUE = re.compile(
    r"(?:overall judgment|therefore)\s*.*\s*-*\s*answer\s*(\d+)\s*is\s*(?:the\s*)?(?:slightly\s*)?better",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class VLSample:
    """One judge sample of one item."""

    item: str
    """What pools samples: id + query + the two answers, sorted and tab-joined (as ``cal.py`` keys them)."""
    id: str
    dataset: str
    verdict: str
    """``agree``, ``reject`` or ``unparsed``."""
    line: int
    tie: bool = False
    """A reward row whose two rewards are equal (its verdict is ``reject``)."""


def judge_verdict(text: str, ranking: Sequence[int], random_number: int) -> str:
    """``agree``, ``reject`` or ``unparsed`` for one judge output (see the module docstring)."""
    shown_rejected = ranking.index(1 if random_number == 0 else 0) + 1
    match = _CUE.search(text.replace("\n", "").replace("*", ""))
    if match is None:
        return "unparsed"
    return "reject" if int(match.group(1)) == shown_rejected else "agree"


def id_dataset(item_id: str) -> str:
    """The dataset of an id without ``image_path`` (``cal.py`` @ eb00f28): by the part before the first ``_`` or ``-``.

    ``cal.py`` @ eb00f28 sends every other id, POVID's among them, to vlfeedback; its later fix (@ 7918386) was
    meant to send a ``povid`` prefix to povid but misspells a name and fails. Here ``povid`` and ``hallucination``
    prefixes go to povid (the fix as meant); every other id is as at eb00f28.
    """
    cuts = [i for i in (item_id.find("_"), item_id.find("-")) if i != -1]
    prefix = item_id[: min(cuts)] if cuts else item_id
    if prefix == "RLAIF":
        return "rlaif-v"
    if prefix == "RLHF":
        return "rlhf-v"
    if prefix in ("mathverse", "mmmu"):
        return "reasoning_tasks"
    if prefix == "wildvision":
        return "wildvision-battle"
    if prefix.lower() in ("povid", "hallucination"):
        return "povid"
    return "vlfeedback"


def _dataset(row: dict[str, Any], item_id: str, where: dict[str, Any]) -> str:
    if "image_path" not in row:
        return id_dataset(item_id)
    parts = text_field(row, "image_path", where).split("/")
    name = parts[1] if len(parts) > 1 else ""
    if name not in GROUPS:
        raise DataError(
            f"expected images/<dataset>/..., with a dataset among {sorted(GROUPS)}; got {name!r}",
            field="image_path",
            **where,
        )
    return name


def _ranking(row: dict[str, Any], where: dict[str, Any]) -> list[int]:
    key = "ranking" if "ranking" in row else "human_ranking"
    value = row.get(key)
    ok = isinstance(value, list) and len(value) == 2 and not any(isinstance(v, bool) for v in value)
    if not (ok and sorted(value) == [0, 1]):  # type: ignore[arg-type]
        raise DataError(f"must be [0, 1] or [1, 0] (0 marks the better answer), got {value!r}", field=key, **where)
    return value  # type: ignore[return-value]


def _sample(row: dict[str, Any], line: int, where: dict[str, Any]) -> VLSample:
    item_id = text_field(row, "id", where)
    where = {**where, "record_id": item_id}
    query = text_field(row, "query", where)
    answers = row.get("response")
    if not (isinstance(answers, list) and len(answers) == 2 and all(isinstance(a, str) for a in answers)):
        raise DataError("must be a list of two answers (strings)", field="response", **where)
    tie = False
    if "rewards" in row:
        chosen, rejected = reward_pair(row, where)
        verdict, tie = ("agree" if chosen > rejected else "reject"), chosen == rejected
    else:
        ranking = _ranking(row, where)
        meta = row.get("meta")
        if not isinstance(meta, dict):
            raise DataError("missing or not an object (a judge row needs meta.filter_choice)", field="meta", **where)
        text = meta.get("filter_choice")
        if not isinstance(text, str):
            raise DataError("missing or not a string (the judge's text)", field="meta.filter_choice", **where)
        shown = meta.get("random_number")
        if isinstance(shown, bool) or shown not in (0, 1):
            raise DataError(f"must be 0 or 1, got {shown!r}", field="meta.random_number", **where)
        verdict = judge_verdict(text, ranking, shown)
    key = item_id + query + "\t".join(sorted(answers))
    return VLSample(key, item_id, _dataset(row, item_id, where), verdict, line, tie)


def read_vl_rewardbench(path: str | Path) -> list[VLSample | None]:
    """Every row of an official VL-RewardBench result file, in file order (``None`` for a ``null`` row)."""
    rows = read_json_lines(path, allow_null=True)
    wrapped = rows[0][1] is not None and "0" in rows[0][1]
    samples: list[VLSample | None] = []
    for line, obj in rows:
        where: dict[str, Any] = {"file": path, "line": line}
        if wrapped:
            if obj is None or "0" not in obj:
                raise DataError("the first row wraps its prediction in '0', this one does not", **where)
            obj = obj["0"]
            if obj is not None and not isinstance(obj, dict):
                raise DataError(f"expected an object, got {type(obj).__name__}", field="0", **where)
        if obj is None:
            samples.append(None)
            continue
        samples.append(_sample(obj, line, where))
    return samples


def _shuffled(samples: list[VLSample | None], rng: random.Random) -> list[VLSample | None]:
    # cal.py's shuffle_data: for each position, swap with a uniformly drawn one (not Fisher-Yates; same draws)
    out = list(samples)
    for i in range(len(out)):
        j = rng.randint(0, len(out) - 1)
        out[i], out[j] = out[j], out[i]
    return out


def vl_rewardbench_score(
    samples: Sequence[VLSample | None], k: int | None = None, rng: random.Random | None = None
) -> TaskScore:
    """Overall and macro accuracy, per category and dataset, from judge samples (see the module docstring).

    ``k``: at most this many samples an item, taken in the order of ``cal.py``'s shuffle drawn from ``rng``
    (default: a new ``random.Random(1234)``, as ``cal.py``'s first k); ``None`` counts every sample, which is
    what ``cal.py`` gives for any k at least the number of samples an item has.
    """
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = list(samples) if k is None else _shuffled(list(samples), rng or random.Random(SEED))
    counts: dict[str, Counter[str]] = {}
    first: dict[str, VLSample] = {}
    ties = 0
    for sample in order:
        if sample is None:
            continue
        if sample.item not in counts:
            counts[sample.item], first[sample.item] = Counter(), sample
        elif k is not None and sum(counts[sample.item].values()) >= k:
            continue
        counts[sample.item][sample.verdict] += 1
        ties += sample.tie
    if not counts:
        raise DataError("no predictions (every row is null)")
    items = []
    for key, c in counts.items():
        total = sum(c.values())
        verdict = next((v for v in ("agree", "reject", "unparsed") if c[v] > total / 2), "split")
        items.append((first[key], verdict, dict(c)))
    return _task_score(items, k, sum(s is not None for s in samples), ties)


def _task_score(
    items: list[tuple[VLSample, str, dict[str, int]]], k: int | None, n_samples: int, ties: int
) -> TaskScore:
    datasets: dict[str, Counter[str]] = {}
    for sample, verdict, _ in items:
        datasets.setdefault(sample.dataset, Counter())[verdict] += 1
    right = {c: 0 for c in CATEGORIES}
    total = {c: 0 for c in CATEGORIES}
    for name, c in datasets.items():
        right[GROUPS[name]] += c["agree"]
        total[GROUPS[name]] += c["agree"] + c["reject"]
    present = [c for c in CATEGORIES if total[c]]
    verdicts = Counter(v for _, v, _ in items)
    metrics: dict[str, Any] = {
        "accuracy": ratio(sum(right.values()), sum(total.values())),
        "macro_accuracy": sum(right[c] / total[c] for c in present) / len(present) if present else 0.0,
        "macro_categories": present,
        "n_samples": n_samples,
        "n_items": len(items),
        "counted": verdicts["agree"] + verdicts["reject"],
        **{name: verdicts[name] for name in ("agree", "reject", "unparsed", "split")},
        "ties": ties,
        "k": k,
        "categories": {
            c: {"correct": right[c], "total": total[c], "accuracy": ratio(right[c], total[c])} for c in CATEGORIES
        },
        "datasets": {
            name: {
                **{v: c[v] for v in ("agree", "reject", "unparsed", "split")},
                "accuracy": ratio(c["agree"], c["agree"] + c["reject"]),
            }
            for name, c in sorted(datasets.items())
        },
    }
    seen: Counter[str] = Counter()
    ids = []
    for sample, _, _ in items:
        seen[sample.id] += 1
        ids.append(sample.id if seen[sample.id] == 1 else f"{sample.id}#{seen[sample.id]}")
    columns = {
        "category": np.array([CATEGORIES.index(GROUPS[s.dataset]) for s, _, _ in items]),
        "agree": np.array([int(v == "agree") for _, v, _ in items]),
        "counted": np.array([int(v in ("agree", "reject")) for _, v, _ in items]),
    }

    def macro(c: Any) -> float:
        accs = []
        for i in range(len(CATEGORIES)):
            mask = c["category"] == i
            n = int(c["counted"][mask].sum())
            if n:
                accs.append(int(c["agree"][mask].sum()) / n)
        return sum(accs) / len(accs) if accs else 0.0

    headline = {"accuracy": lambda c: ratio(int(c["agree"].sum()), int(c["counted"].sum())), "macro_accuracy": macro}
    details = [
        {"id": s.id, "dataset": s.dataset, "category": GROUPS[s.dataset], "verdict": v, "samples": n}
        for s, v, n in items
    ]
    return TaskScore("vl_rewardbench", metrics, ids, columns, headline, details)


def score_vl_rewardbench(path: str | Path, k: int | None = None) -> TaskScore:
    """Score an official VL-RewardBench result file (judge samples, or reward rows)."""
    return vl_rewardbench_score(read_vl_rewardbench(path), k)


def vl_rewardbench_sweep(samples: Sequence[VLSample | None], ks: Sequence[int] = KS) -> dict[int, TaskScore]:
    """``cal.py``'s main: one ``random.seed(1234)``, then each k in turn, every one shuffling the file again."""
    rng = random.Random(SEED)
    return {k: vl_rewardbench_score(samples, k, rng) for k in ks}
