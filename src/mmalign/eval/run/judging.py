"""The judged tasks: dialogue (rated against a reference answer) and battles between models.

* ``dialogue``, LLaVA-Bench style (Liu et al., 2023): the judge rates the reference answer and the model's
  answer in one reply (1–10 each); the score is 100 × mean answer score / mean reference score.
* ``preference``, Arena-Hard style (Li et al., 2024): the evaluated model, each ``--opponent`` model and the
  reference answers (the anchor, ``reference``) answer the same open questions; every pair of them is judged
  in both orders (a winner must win as A and as B), and Bradley–Terry ratings with bootstrap intervals are
  fitted to the battles. The reported win rate is against the reference answers.

The judge's replies are cached in ``OUT/judge.sqlite`` (unless the judge config names another cache), so
a resumed run pays only for judgments it does not have.

A judgment *fails* when its request fails (after the client's retries) or its reply cannot be read. Each
judged task counts its failures (:func:`tally`, the task's ``judge`` entry in results.json); when more than
``--judge-max-failed`` of them failed (or all did), the task is reported as failed with the reason,
and never with a score computed from the few that were left. Below that, the score is computed over the
judgments that succeeded, and the results say over how many.
"""

from __future__ import annotations

import dataclasses
from itertools import combinations
from pathlib import Path
from typing import Any

from mmalign.data.io import write_jsonl
from mmalign.data.records import EvalItem
from mmalign.eval.tasks.items import TaskInput

ANCHOR = "reference"
WINNER = {"A": "model_a", "B": "model_b", "tie": "tie"}


def _client(ev: Any) -> Any:
    from mmalign.judge import JudgeClient

    if ev.judge_client is None:
        config = ev.cfg.judge
        if config.cache_path is None:
            config = dataclasses.replace(config, cache_path=str(ev.cfg.out / "judge.sqlite"))
        ev.judge_client = JudgeClient(config)
    return ev.judge_client


def _images(inp: TaskInput, item: EvalItem) -> list[Any]:
    return [str(inp.image_root / ref) if isinstance(ref, str) else ref for ref in item.images]


def tally(errors: list[str | None], max_failed_fraction: float) -> dict[str, Any]:
    """What results.json says about a task's judgments: ``errors`` holds, per judgment, why it failed (None:
    it succeeded). ``reason`` is None unless the task must be reported as failed."""
    n = len(errors)
    failed = [" ".join(e.split()) for e in errors if e is not None]  # one line each: they end up in messages
    fraction = len(failed) / n if n else 0.0
    reason = None
    if failed and (len(failed) == n or fraction > max_failed_fraction):
        share = "every judgment" if len(failed) == n else f"{100 * fraction:.1f} % of the judgments"
        reason = (
            f"{share} failed ({len(failed)} of {n}; --judge-max-failed is {max_failed_fraction:g}); "
            f"first failure: {failed[0]}"
        )
    return {
        "n": n,
        "n_failed": len(failed),
        "failed_fraction": fraction,
        "max_failed_fraction": max_failed_fraction,
        "first_failure": failed[0] if failed else None,
        "reason": reason,
    }


def _unreadable(raw: str | None) -> str:
    reply = " ".join((raw or "").split())
    return f"unreadable reply: {reply[:120]!r}" + ("..." if len(reply) > 120 else "")


def judge_dialogue(ev: Any, inp: TaskInput, texts: list[str], path: Path) -> dict[str, Any]:
    """Rate each answer against its reference; one row per item in ``path``. Returns the :func:`tally`."""
    from mmalign.judge import JudgeError, ScoreItem, ScoreJudgment, score_answers

    items: list[EvalItem] = inp.items  # type: ignore[assignment]
    requests = [
        ScoreItem(
            item.question,
            text,
            _images(inp, item),
            reference=item.answer,
            context=item.meta.get("context") or None,
            id=item.id,
        )
        for item, text in zip(items, texts, strict=True)
    ]
    client = _client(ev)
    try:
        judged = score_answers(client, requests, return_errors=True, desc="judge dialogue")
    except JudgeError as err:  # an auth failure stops every request: each judgment failed with it
        judged = [ScoreJudgment(item.id, None, error=str(err)) for item in items]
    write_jsonl(
        path,
        (
            {
                "id": j.id,
                "category": item.meta.get("category", ""),
                "score": j.score,
                "reference_score": j.reference_score,
                "raw": j.raw,
                "error": j.error,
            }
            for j, item in zip(judged, items, strict=True)
        ),
    )
    errors = [j.error or (_unreadable(j.raw) if j.score is None or j.reference_score is None else None) for j in judged]
    return tally(errors, ev.cfg.judge_max_failed)


def _answers(ev: Any, inp: TaskInput, budget: int) -> dict[str, list[str]]:
    """Every contestant's answers: the model, each opponent (loaded one at a time), the reference answers."""
    from mmalign.eval.run.cache import model_fingerprint
    from mmalign.eval.run.runner import Runner
    from mmalign.models.loading import load

    items: list[EvalItem] = inp.items  # type: ignore[assignment]
    answers = {ev.model_name: ev.runner.generate("dialogue", items, inp.image_root, budget, label="preference")}
    for path in ev.cfg.opponents:
        name = path.name
        while name in answers or name == ANCHOR:
            name += "'"
        loaded = load(path, dtype=ev.cfg.dtype, device=ev.cfg.device)
        runner = Runner(
            loaded,
            model_fingerprint(path),
            ev.cache_root,
            ev.cfg.batch_size,
            ev.cfg.progress,
            max_length=ev.cfg.max_length,
        )
        answers[name] = runner.generate("dialogue", items, inp.image_root, budget, label=f"preference ({name})")
        ev.runner.stats[f"preference ({name})"] = runner.stats[f"preference ({name})"]
        del loaded, runner
    answers[ANCHOR] = [item.answer for item in items]
    return answers


def battles(ev: Any, inp: TaskInput, predictions: Path, battles_path: Path, budget: int) -> dict[str, Any]:
    """Answer, judge every pair of contestants on every question, and write the battles that have a verdict.
    Returns the :func:`tally` (a battle fails when either order's request fails or either reply is unreadable)."""
    from mmalign.judge import JudgeError, PairItem, PairJudgment, compare_pairs

    items: list[EvalItem] = inp.items  # type: ignore[assignment]
    answers = _answers(ev, inp, budget)
    write_jsonl(
        predictions,
        (
            {"question_id": item.id, "model_id": name, "prompt": item.question, "text": texts[k]}
            for name, texts in answers.items()
            if name != ANCHOR
            for k, item in enumerate(items)
        ),
    )
    names = list(answers)
    pairs, labels = [], []
    for k, item in enumerate(items):
        for a, b in combinations(names, 2):
            pairs.append(
                PairItem(
                    item.question,
                    answers[a][k],
                    answers[b][k],
                    _images(inp, item),
                    context=item.meta.get("context") or None,
                    id=f"{item.id}|{a}|{b}",
                )
            )
            labels.append((item.id, a, b))
    client = _client(ev)
    try:
        judged = compare_pairs(client, pairs, swap=True, return_errors=True, desc="judge battles")
    except JudgeError as err:  # an auth failure stops every request: each battle failed with it
        judged = [PairJudgment(pair.id, None, None, error=str(err)) for pair in pairs]
    rows = [
        {"question_id": qid, "model_a": a, "model_b": b, "winner": WINNER[j.verdict]}
        for (qid, a, b), j in zip(labels, judged, strict=True)
        if j.verdict is not None
    ]
    write_jsonl(battles_path, rows)
    errors = [
        None if j.verdict is not None else j.error or _unreadable(j.raw_second if j.first else j.raw_first)
        for j in judged
    ]
    return tally(errors, ev.cfg.judge_max_failed)
