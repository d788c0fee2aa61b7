"""The reward-model benchmarks in ``mmalign eval run``: a reward model or the judge decides each pair, and the
prediction file is written in the benchmark's official format, the one ``mmalign eval score`` reads.

**With ``--reward-model``** each answer of a pair gets a reward (:meth:`Runner.rewards
<mmalign.eval.run.runner.Runner.rewards>`, through the resume cache), and the rows carry ``"rewards": [reward of
the better answer, reward of the other]``: the pair is right when the better answer's reward is strictly higher,
so equal rewards count as wrong, as MM-RLHF's ``cal_performance_mmreweard_bench.py`` counts a tie.

**With the judge** (and no reward model) the judge is asked as each benchmark's inference script asks
(:mod:`.rewardbench_prompts`), its replies kept in the judge cache (a rerun pays only for what it lacks):

* VL-RewardBench: ``--judge-samples`` judge samples an item (default 1; ``inference.py`` takes 10 at temperature
  0.2: ``--judge-samples 10 --judge-temperature 0.2``), each with the two answers in the order its ``random_number``
  says (0: as in ``response``, 1: swapped), drawn from ``--seed``, the id and the sample's number; a row a sample, as
  ``inference.py`` writes them, with the judge's text in ``meta.filter_choice`` (``cal.py`` takes each item's
  majority);
* Multimodal RewardBench: ``Output1`` as assistant A, ``Output2`` as B, as the official script shows them; the row
  is ``{"ID", "Text": the prompt, "Image", "Label", "Meta": the example, "output": the judge's text}``;
* MM-RLHF-RewardBench: each answer rated 1–10 on its own; the ratings are the row's ``rewards`` and the judge's
  critiques its ``critic``.

A judgment that fails (the request, after retries; or, for MM-RLHF, a reply without a rating) leaves its item out of
the file and is counted (the task's ``judge`` entry, :func:`mmalign.eval.run.judging.tally`); past
``--judge-max-failed`` the task fails with no score. Replies without a verdict are written, and the official
aggregation decides them (VL-RewardBench leaves them out; Multimodal RewardBench's seeded coin).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmalign.data.io import write_jsonl
from mmalign.data.records import ImageBlob, PreferenceRecord
from mmalign.eval.run import rewardbench_prompts as prompts
from mmalign.eval.tasks.items import TaskInput
from mmalign.eval.tasks.rewardbench import without_image_tag
from mmalign.eval.tasks.specs import TaskSpec
from mmalign.seeding import derive_seed


def run_benchmark(ev: Any, spec: TaskSpec, inp: TaskInput, path: Path) -> tuple[str, dict[str, Any] | None]:
    """Decide every pair of ``inp`` and write ``path``; returns (mode, the judge's tally or None)."""
    pairs: list[PreferenceRecord] = inp.items  # type: ignore[assignment]
    if ev.cfg.reward_model is not None:
        rewards = reward_runner(ev).rewards(spec.name, pairs, inp.image_root)
        rows = [
            _reward_row(spec.name, pair, r["chosen_reward"], r["rejected_reward"])
            for pair, r in zip(pairs, rewards, strict=True)
        ]
        write_jsonl(path, rows)
        return "reward_model", None
    from mmalign.eval.run.judging import tally

    rows, errors = _judged(ev, spec.name, inp, pairs)
    write_jsonl(path, (row for row in rows if row is not None))
    return "judge", tally(errors, ev.cfg.judge_max_failed)


def reward_runner(ev: Any) -> Any:
    """The ``--reward-model``'s :class:`~mmalign.eval.run.runner.Runner`, loaded on first use (once a run)."""
    from mmalign.eval.run.cache import model_fingerprint
    from mmalign.eval.run.runner import Runner
    from mmalign.models.reward import load_reward_model

    if ev.reward_runner is None:
        cfg = ev.cfg
        loaded = load_reward_model(cfg.reward_model, dtype=cfg.dtype, device=cfg.device)
        if cfg.device is not None:  # load moves the base model only; the head (float32) goes beside it
            loaded.model.reward_head.to(cfg.device)
        fingerprint = model_fingerprint(cfg.reward_model)
        ev.reward_model = {
            "path": str(cfg.reward_model),
            "fingerprint": fingerprint,
            "family": loaded.family.name,
            "parameters": loaded.n_parameters(),
        }
        ev.reward_runner = Runner(
            loaded, fingerprint, ev.cache_root, cfg.batch_size, cfg.progress, stats=ev.stats, max_length=cfg.max_length
        )
    return ev.reward_runner


def _reward_row(task: str, pair: PreferenceRecord, chosen: float, rejected: float) -> dict[str, Any]:
    row = pair.meta["row"]
    if task == "multimodal_rewardbench":
        return {
            "ID": row["ID"],
            "Image": row["Image"],
            "Label": "A" if row["Better"] == "Output1" else "B",
            "Meta": row,
            "rewards": [chosen, rejected],
        }
    if task == "mm_rlhf_rewardbench":
        return {**row, "rewards": [chosen, rejected], "critic": []}
    return {**row, "rewards": [chosen, rejected]}


# ------------------------------------------------------------------------------------------------------- judge


def _image_url(inp: TaskInput, pair: PreferenceRecord) -> str | None:
    from mmalign.judge import image_data_url

    if not pair.images:
        return None
    ref = pair.images[0]
    if isinstance(ref, ImageBlob):
        return image_data_url(ref.open())
    return image_data_url(inp.image_root / ref if isinstance(ref, str) else ref)


def shown_order(seed: int, item_id: str, sample: int = 0) -> int:
    """VL-RewardBench's ``random_number`` for one sample of an item: 1 shows the two answers swapped (drawn from
    the seed, the id and the sample's number, as ``inference.py`` draws one for each of its samples)."""
    return derive_seed(seed, "vl_rewardbench", item_id, sample) % 2


def _requests(task: str, pair: PreferenceRecord, seed: int, sample: int) -> tuple[list[str], dict[str, Any]]:
    """The prompt texts to send for one sample of one pair, and what its row needs to know about them."""
    row = pair.meta["row"]
    if task == "vl_rewardbench":
        answers = row["response"]
        shown = shown_order(seed, pair.id, sample)
        first, second = (answers[0], answers[1]) if shown == 0 else (answers[1], answers[0])
        return [prompts.vl_rewardbench_prompt(without_image_tag(row["query"]), first, second)], {"shown": shown}
    if task == "multimodal_rewardbench":
        question = without_image_tag(row["Text"])
        return [prompts.multimodal_rewardbench_prompt(question, row["Output1"], row["Output2"])], {}
    question = without_image_tag(row["prompt"])
    return [prompts.mm_rlhf_rewardbench_prompt(question, row[key]) for key in ("chosen", "rejected")], {}


def _ask(ev: Any, task: str, conversations: list[Any], sample: int) -> list[Any]:
    """The judge's replies (a :class:`~mmalign.judge.JudgeError` where a request failed). Each sample number has its
    own cache entries, so a second sample is asked again even where its prompt repeats the first's."""
    from mmalign.eval.run.judging import _client
    from mmalign.judge import JudgeError

    rubric = prompts.VERSION if sample == 0 else f"{prompts.VERSION}/sample-{sample}"
    try:
        return _client(ev).complete_many(conversations, rubric_version=rubric, return_errors=True, desc=f"judge {task}")
    except JudgeError as err:  # an auth failure stops every request: each judgment failed with it
        return [err] * len(conversations)


CHUNK = 64
"""Pairs judged at a time: their images are held as data URLs only while they are being judged."""


def _judged(
    ev: Any, task: str, inp: TaskInput, pairs: list[PreferenceRecord]
) -> tuple[list[dict[str, Any] | None], list[str | None]]:
    """The prediction rows, one a judged sample (None where the judgment failed), and, per row, why it failed (None:
    it did not). VL-RewardBench takes ``--judge-samples`` samples an item; the others one."""
    rows: list[dict[str, Any] | None] = []
    errors: list[str | None] = []
    for start in range(0, len(pairs), CHUNK):
        got, why = _judged_chunk(ev, task, inp, pairs[start : start + CHUNK])
        rows += got
        errors += why
    return rows, errors


def _judged_chunk(
    ev: Any, task: str, inp: TaskInput, pairs: list[PreferenceRecord]
) -> tuple[list[dict[str, Any] | None], list[str | None]]:
    from mmalign.eval.run.judging import _unreadable
    from mmalign.judge import JudgeError, parse_score

    n_samples = ev.cfg.judge_samples if task == "vl_rewardbench" else 1
    urls = [_image_url(inp, pair) for pair in pairs]
    units = [(k, j, *_requests(task, pair, ev.cfg.seed, j)) for j in range(n_samples) for k, pair in enumerate(pairs)]
    replies: list[list[Any]] = [[] for _ in units]
    for j in range(n_samples):
        asked = [(u, text) for u, unit in enumerate(units) if unit[1] == j for text in unit[2]]
        conversations = [prompts.text_then_image(text, urls[units[u][0]]) for u, text in asked]
        for (u, _), reply in zip(asked, _ask(ev, task, conversations, j), strict=True):
            replies[u].append(reply)
    rows: list[dict[str, Any] | None] = []
    errors: list[str | None] = []
    for (k, _, texts, plan), got in sorted(zip(units, replies, strict=True), key=lambda x: (x[0][0], x[0][1])):
        failed = next((str(r) for r in got if isinstance(r, JudgeError)), None)
        row = None
        if failed is None and task == "mm_rlhf_rewardbench":
            scores = [parse_score(r) for r in got]
            if any(s is None for s in scores):
                failed = _unreadable(next(r for r, s in zip(got, scores, strict=True) if s is None))
            else:
                row = {**pairs[k].meta["row"], "rewards": scores, "critic": got}
        elif failed is None:
            row = _judge_row(task, pairs[k], texts[0], got[0], plan, ev.cfg.judge.model)
        rows.append(row)
        errors.append(failed)
    return rows, errors


def _judge_row(
    task: str, pair: PreferenceRecord, prompt: str, reply: str, plan: dict[str, Any], judge_model: str
) -> dict[str, Any]:
    row = pair.meta["row"]
    if task == "multimodal_rewardbench":
        label = "A" if row["Better"] == "Output1" else "B"
        return {"ID": row["ID"], "Text": prompt, "Image": row["Image"], "Label": label, "Meta": row, "output": reply}
    from mmalign.eval.scoring.rewardbench_vl import judge_verdict

    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    status = judge_verdict(reply, row["ranking"], plan["shown"])
    return {
        **row,
        "meta": {
            **meta,
            "filtering model": judge_model,
            "filter_choice": reply,
            "filter_prompt": prompt,
            "random_number": plan["shown"],
            "flag_status": "doesntMatch" if status == "unparsed" else status,
        },
    }
