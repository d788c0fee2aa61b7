"""``mmalign eval run``: evaluate one model on a list of tasks and write results.json, report.md and plots.

    results = evaluate(EvalConfig(model=Path("out/tiny-llava"), out=Path("runs/base"), suite="shapes"))

For each task: build its items (shapes world or ``--source`` benchmark files), check their images, write
them to ``questions/<task>.jsonl``, run the model (fast path or generation, batched, resumable through the
cache in ``cache/``), write ``predictions/<task>.jsonl`` in the benchmark's answer format, and score those
files with the metric core, with percentile-bootstrap 95 % intervals. Closed tasks use the fast path by default
only where its measured agreement with generate-and-parse is at least 99 % (:mod:`.agreement`); where it is
used, items whose greedy answer does not start with an option are generated, and a sample of the items is also
generated and parsed, the agreement between the two reported. Layout of results.json: :mod:`mmalign.eval.results`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmalign.data.io import write_jsonl
from mmalign.data.records import PreferenceRecord
from mmalign.errors import DataError
from mmalign.eval import results as res
from mmalign.eval.config import EvalConfig
from mmalign.eval.run.agreement import agreement, fast_path_plan, parsed_answer, sample_warning
from mmalign.eval.run.runner import Runner, RunStats
from mmalign.eval.scoring.answers import question_row, write_answers
from mmalign.eval.scoring.rescore import rescore, score_command
from mmalign.eval.tasks.items import TaskInput
from mmalign.eval.tasks.specs import TaskSpec, get_task
from mmalign.eval.tasks.world import world_input

Echo = Callable[[str], None]


def _limit(items: list[Any], n: int | None) -> list[Any]:
    """The first ``n`` items, extended to the end of the group in progress (a scene, an MME image, a question
    pair), so pair- and image-level metrics never see half a group."""
    if n is None or n >= len(items):
        return items

    def group(item: Any) -> Any:
        meta = item.meta
        return meta.get("group") or meta.get("scene_id") or meta.get("pair_id")

    end = n
    while end < len(items) and group(items[end]) is not None and group(items[end]) == group(items[end - 1]):
        end += 1
    return items[:end]


def _check_images(inp: TaskInput, task: str) -> None:
    from mmalign.data.images import ImageChecker

    checker = ImageChecker(inp.image_root, "exists")
    for item in inp.items:
        for i, ref in enumerate(item.images):
            try:
                checker.check(ref, f"images[{i}]")
            except DataError as err:
                message = f"{err.message} (task {task}, images under {inp.image_root})"
                raise DataError(message, file=inp.source, record_id=item.id, field=err.field) from None


class Evaluation:
    """One ``mmalign eval run``: the model, its runner, and the optional judge, reference and opponents.

    Every task's items are built and checked (files parse, images exist) before any model is loaded, so bad
    input fails at start, not after an hour of evaluation."""

    def __init__(self, cfg: EvalConfig, echo: Echo) -> None:
        from mmalign.models.loading import check_model_dir

        self.cfg, self.echo = cfg, echo
        self.names, self.limit = cfg.task_names()
        for path in (cfg.model, cfg.reference, cfg.reward_model, *cfg.opponents):
            if path is not None:
                check_model_dir(Path(path))
        self.cache_root = cfg.cache_dir or cfg.out / "cache"
        name = "" if cfg.model is None else cfg.model.name
        self.model_name = name if name not in ("reference", "") else "model"
        self.world: Path | None = None
        self.reference: dict[str, Any] | None = None
        self.reward_model: dict[str, Any] | None = None  # --reward-model's path, fingerprint, family, size
        self.reward_runner: Runner | None = None  # loaded on first use (mmalign.eval.run.rewardbench)
        self.judge_client: Any = None
        self.stats: dict[str, RunStats] = {}  # every runner's statistics, by label (results.json's timings)
        self.inputs: dict[str, TaskInput] = {}
        for name in self.names:
            spec = get_task(name)
            if self._skip_reason(spec) is None:
                self.inputs[name] = self._input(spec)
        self.load()

    def load(self) -> None:
        from mmalign.eval.run.cache import model_fingerprint
        from mmalign.models.loading import load

        if not self.cfg.progress:
            from transformers.utils import logging

            logging.disable_progress_bar()
        self.loaded: Any = None
        self.fingerprint: str | None = None
        self.runner: Any = None  # a Runner; None when only the reward-model benchmarks run, without --model
        if self.cfg.model is None:
            return
        self.loaded = load(self.cfg.model, dtype=self.cfg.dtype, device=self.cfg.device)
        self.fingerprint = model_fingerprint(self.cfg.model)
        self.runner = Runner(
            self.loaded,
            self.fingerprint,
            self.cache_root,
            self.cfg.batch_size,
            self.cfg.progress,
            stats=self.stats,
            max_length=self.cfg.max_length,
        )

    def _skip_reason(self, spec: TaskSpec) -> str | None:
        if spec.needs == "judge" and self.cfg.judge is None:
            return "needs --judge-url and --judge-model"
        if spec.needs == "reference" and self.cfg.reference is None:
            return "needs --reference DIR"
        if spec.needs == "reward_or_judge":
            if spec.name not in self.cfg.sources:
                return f"needs --source {spec.name}=PATH, the benchmark's own data (it has no shapes-world version)"
            if self.cfg.reward_model is None and self.cfg.judge is None:
                return "needs --reward-model DIR, or the judge (--judge-url and --judge-model)"
        return None

    def close(self) -> None:
        if self.judge_client is not None:
            self.judge_client.close()

    # ------------------------------------------------------------------------------------------ inputs

    def _world(self) -> Path:
        if self.world is None:
            from mmalign.world import WorldConfig, generate_world

            world = self.cfg.data or self.cfg.out / "world"
            if self.cfg.data is not None and not (world / "world.json").is_file():
                raise DataError("not a shapes world: world.json is missing", file=world / "world.json")
            if not (world / "world.json").is_file():
                self.echo(f"generating a shapes world ({self.cfg.world_scenes} training scenes) in {world}")
                generate_world(world, WorldConfig(train_scenes=self.cfg.world_scenes, seed=self.cfg.seed))
            self.world = world
        return self.world

    def _input(self, spec: TaskSpec) -> TaskInput:
        from mmalign.eval.tasks.benchmarks import benchmark_input

        if spec.kind == "rm_bench":
            from mmalign.eval.tasks.rewardbench import rewardbench_input

            inp = rewardbench_input(spec.name, self.cfg.sources[spec.name], self.cfg.image_root)
            for why, n in inp.skipped.items():
                self.echo(f"{spec.name}: {n} {why} pairs skipped (mmalign has no {why} input yet)")
        elif spec.name in self.cfg.sources:
            inp = benchmark_input(spec, self.cfg.sources[spec.name], self.cfg.image_root)
        else:
            inp = world_input(spec.name, spec.world_file, self._world(), self.cfg.split, self.cfg.out / "inputs")
        inp.items = _limit(inp.items, self.limit)
        if not inp.items:
            left_out = "".join(f"; {n} {why} pairs skipped" for why, n in inp.skipped.items())
            raise DataError(f"no items for task {spec.name}{left_out}", file=inp.source)
        _check_images(inp, spec.name)
        return inp

    # ------------------------------------------------------------------------------------------- tasks

    def run_task(self, spec: TaskSpec) -> dict[str, Any]:
        entry: dict[str, Any] = {"dimension": spec.dimension, "status": "done", "description": spec.description}
        reason = self._skip_reason(spec)
        if reason is not None:
            return {**entry, "status": "skipped", "reason": reason}
        inp = self.inputs[spec.name]
        out = self.cfg.out
        files = {"questions": f"questions/{spec.name}.jsonl", "predictions": f"predictions/{spec.name}.jsonl"}
        write_jsonl(out / files["questions"], (question_row(i) for i in inp.items))
        fast_path = fast_path_plan(spec, self.cfg.fast)
        mode = "fast" if fast_path["used"] else ("logps" if spec.kind == "reward" else "generate")
        budget = self.cfg.max_new_tokens or spec.max_new_tokens
        judged: dict[str, Any] | None = None  # the judge's tally on judged tasks (mmalign.eval.run.judging.tally)
        if mode == "fast":
            rows = self.runner.choose(spec.name, inp.items, inp.image_root)
            texts = self._off_options(spec, inp, rows, budget)
            fast_path.update(self._agreement(spec, inp, texts, rows, budget))
        elif spec.kind == "reward":
            self._reward(spec, inp, out / files["predictions"])
        elif spec.kind == "rm_bench":
            from mmalign.eval.run.rewardbench import run_benchmark

            mode, judged = run_benchmark(self, spec, inp, out / files["predictions"])
            if inp.skipped:
                entry["skipped_items"] = dict(inp.skipped)
        elif spec.kind == "battle":
            from mmalign.eval.run.judging import battles

            files["battles"] = f"battles/{spec.name}.jsonl"
            judged = battles(self, inp, out / files["predictions"], out / files["battles"], budget)
        else:
            texts = self.runner.generate(spec.name, inp.items, inp.image_root, budget)
        if spec.kind not in ("reward", "battle", "rm_bench"):
            write_answers(spec, inp.items, texts, out / files["predictions"], coco=inp.annotations is not None)
        if spec.kind == "dialogue":
            from mmalign.eval.run.judging import judge_dialogue

            files["judgments"] = f"judgments/{spec.name}.jsonl"
            judged = judge_dialogue(self, inp, texts, out / files["judgments"])
        if inp.annotations is not None:
            files["annotations"] = str(inp.annotations)
        if judged is not None:
            reason = judged.pop("reason")
            if reason is not None:  # too many judgments failed: no score, whatever the others said
                return {
                    **entry,
                    "status": "failed",
                    "reason": reason,
                    "source": inp.source,
                    "n_items": len(inp.items),
                    "mode": mode,
                    "files": files,
                    "judge": judged,
                }
            entry["judge"] = judged
        return {**entry, **self._scored(spec, inp, mode, files), "fast_path": fast_path}

    def _scored(self, spec: TaskSpec, inp: TaskInput, mode: str, files: dict[str, str]) -> dict[str, Any]:
        from mmalign.eval.scoring.score import ScoreOptions, intervals

        result = rescore(spec.name, files, self.cfg.out, n_rounds=self.cfg.n_resamples, seed=self.cfg.seed)
        options = ScoreOptions(n_resamples=self.cfg.n_resamples, seed=self.cfg.seed)
        metrics = _plain(result.metrics)
        return {
            "source": inp.source,
            "n_items": len(inp.items),
            "mode": mode,
            "files": files,
            "score_command": score_command(spec, files, self.cfg.out),
            "metrics": metrics,
            "intervals": intervals(result, options),
            "summary": res.summary(spec.name, metrics, self.model_name),
        }

    def _off_options(self, spec: TaskSpec, inp: TaskInput, rows: list[dict[str, Any]], budget: int) -> list[str]:
        """The answers to write: the fast path's option, or the generated answer where greedy decoding does not
        start with an option (``greedy`` false; see :mod:`.fastpath`)."""
        texts = [r["text"] for r in rows]
        off = [k for k, r in enumerate(rows) if not r.get("greedy", True)]
        if off:
            items = [inp.items[k] for k in off]
            generated = self.runner.generate(spec.name, items, inp.image_root, budget, label=f"{spec.name} (generated)")
            for k, text in zip(off, generated, strict=True):
                texts[k] = text
        return texts

    def _agreement(
        self, spec: TaskSpec, inp: TaskInput, texts: list[str], rows: list[dict[str, Any]], budget: int
    ) -> dict[str, Any]:
        """Generate-and-parse on a seeded sample of the items; how often its parsed answer is the written one's."""
        n = min(self.cfg.agreement_sample, len(inp.items))
        picked = sorted(random.Random(f"{self.cfg.seed}:{spec.name}:agreement").sample(range(len(inp.items)), n))
        items = [inp.items[k] for k in picked]
        label = f"{spec.name} (agreement)"
        generated = self.runner.generate(spec.name, items, inp.image_root, budget, label=label) if items else []
        fast = [parsed_answer(spec, item, texts[k]) for k, item in zip(picked, items, strict=True)]
        sample = agreement(
            fast, [parsed_answer(spec, i, t) for i, t in zip(items, generated, strict=True)], [i.id for i in items]
        )
        warning = sample_warning(spec.name, sample)
        if warning is not None:
            self.echo(f"warning: {warning}")
        return {
            **sample,
            "warning": warning,
            "generated": sum(1 for r in rows if not r.get("greedy", True)),
            "forwards_per_item": sum(r["forwards"] for r in rows) / len(rows),
            "near_ties": sum(1 for r in rows if r["margin"] < 1e-3),
        }

    def _reference_runner(self) -> Runner:
        from mmalign.eval.run.cache import model_fingerprint
        from mmalign.models.loading import load

        assert self.cfg.reference is not None
        loaded = load(self.cfg.reference, dtype=self.cfg.dtype, device=self.cfg.device)
        fingerprint = model_fingerprint(self.cfg.reference)
        self.reference = {
            "path": str(self.cfg.reference),
            "fingerprint": fingerprint,
            "family": loaded.family.name,
            "parameters": loaded.n_parameters(),
        }
        return Runner(
            loaded, fingerprint, self.cache_root, self.cfg.batch_size, self.cfg.progress, max_length=self.cfg.max_length
        )

    def _reward(self, spec: TaskSpec, inp: TaskInput, path: Path) -> None:
        """DPO implicit rewards r = β (log π(y|x) − log π_ref(y|x)) of both responses (Rafailov et al., 2023, Eq. 5)."""
        pairs: list[PreferenceRecord] = inp.items  # type: ignore[assignment]
        policy = self.runner.pair_logps(spec.name, pairs, inp.image_root)
        reference = self._reference_runner()
        ref = reference.pair_logps(spec.name, pairs, inp.image_root)
        self.stats[f"{spec.name} (reference)"] = reference.stats[spec.name]
        rows = []
        for pair, p, r in zip(pairs, policy, ref, strict=True):
            category = str(pair.meta.get("category") or pair.source or "")
            rows.append(
                {
                    "id": pair.id,
                    "category": category,
                    "group": pair.meta.get("scene_id"),
                    "beta": self.cfg.beta,
                    "policy_chosen_logp": p["chosen_logp"],
                    "policy_rejected_logp": p["rejected_logp"],
                    "ref_chosen_logp": r["chosen_logp"],
                    "ref_rejected_logp": r["rejected_logp"],
                }
            )
        write_jsonl(path, rows)


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        return value.item()
    return value


def evaluate(cfg: EvalConfig, echo: Echo = print) -> dict[str, Any]:
    """Run the evaluation and write OUT/results.json, OUT/report.md and OUT/*.png. Returns the results."""
    import mmalign
    from mmalign.eval.report import write_report

    started = time.perf_counter()
    ev = Evaluation(cfg, echo)
    tasks: dict[str, dict[str, Any]] = {}
    try:
        for name in ev.names:
            began = time.perf_counter()
            tasks[name] = ev.run_task(get_task(name))
            entry = tasks[name]
            status = f"{entry['status']}: {entry['reason']}" if "reason" in entry else f"{entry['n_items']} items"
            echo(f"{name}: {status} ({time.perf_counter() - began:.1f} s)")
    finally:
        ev.close()
    judge = None if cfg.judge is None else {"base_url": cfg.judge.base_url, "model": cfg.judge.model}
    model = None  # no --model: only the reward-model benchmarks ran
    if ev.loaded is not None:
        model = {
            "path": str(cfg.model),
            "fingerprint": ev.fingerprint,
            "family": ev.loaded.family.name,
            "parameters": ev.loaded.n_parameters(),
        }
    results = {
        "schema": res.SCHEMA,
        "mmalign_version": mmalign.__version__,
        "model": model,
        "reference": ev.reference,
        "reward_model": ev.reward_model,
        "settings": {
            "tasks": ev.names,
            "suite": cfg.suite,
            "data": None if ev.world is None else str(ev.world),
            "split": cfg.split,
            "sources": {k: str(v) for k, v in sorted(cfg.sources.items())},
            "limit": ev.limit,
            "batch_size": cfg.batch_size,
            "mode": {None: "auto", True: "fast", False: "generate"}[cfg.fast],
            "agreement_sample": cfg.agreement_sample,
            "max_new_tokens": cfg.max_new_tokens,
            "max_length": cfg.max_length,
            "seed": cfg.seed,
            "n_resamples": cfg.n_resamples,
            "beta": cfg.beta,
            "judge": judge,
            "judge_max_failed": cfg.judge_max_failed,
            "judge_samples": cfg.judge_samples,
            "opponents": [str(p) for p in cfg.opponents],
        },
        "tasks": tasks,
        "dimensions": res.dimension_scores(tasks),
        "timings": {
            "total_s": round(time.perf_counter() - started, 3),
            "tasks": {k: v.to_dict() for k, v in ev.stats.items()},
        },
    }
    res.write_results(cfg.out / "results.json", results)
    write_report(results, cfg.out)
    return results
