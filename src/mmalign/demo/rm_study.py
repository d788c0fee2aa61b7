"""``mmalign rm study``: a reward model trained and measured on the shapes world, whose truth is exact.

1. ``world``: the shapes world (seed 0, the shipped baseline's), with ``val_scenes`` for the suite and
   ``test_scenes`` for the prompts;
2. ``baseline``: the shipped SFT checkpoint (:mod:`mmalign.demo.checkpoint`), the RM's start and the policy;
3. ``pairs``: a balanced training mix of seven kinds from the training split and the held-out suite from the val
   split (:mod:`mmalign.demo.rm_pairs`);
4. ``train rm``: :func:`mmalign.train.reward.train_reward` from the baseline on the mix (Bradley-Terry);
5. ``suite``: accuracy per kind on the held-out pairs (:mod:`mmalign.demo.rm_suite`);
6. ``samples``: N responses per test caption prompt, sampled once from the policy (seeded; independent of the RM,
   so a retrained RM reuses them);
7. ``over-optimisation``: proxy (the RM) and gold (truth F1) of best-of-n for n = 1 … N
   (:mod:`mmalign.demo.overopt`);
8. the report: ``report.md``, ``results.json``, ``overopt.png``.

Each step is resumable (:mod:`mmalign.demo.steps`): a rerun skips a step whose outputs exist and whose inputs
did not change. Layout of ``--out``: ``world/``, ``models/baseline/``, ``pairs/``, ``rm/``, ``suite.json``,
``samples.jsonl`` (with rewards once scored: ``scored.jsonl``), ``overopt.json``, the report files, ``.steps/``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.config import check_ranges, option
from mmalign.demo import checkpoint
from mmalign.demo.settings import settings_record, shrunk
from mmalign.demo.steps import Steps, step_key
from mmalign.files import atomic_path

RESULTS = "results.json"
REPORT = "report.md"
PLOT = "overopt.png"


def powers_of_two(n_samples: int) -> list[int]:
    """1, 2, 4, … up to ``n_samples`` (and ``n_samples`` itself when it is not a power of two)."""
    ns = [1]
    while ns[-1] * 2 <= n_samples:
        ns.append(ns[-1] * 2)
    return ns if ns[-1] == n_samples else [*ns, n_samples]


@dataclass
class StudySettings:
    """What ``mmalign rm study`` runs (the CLI sets ``out``, ``quick``, ``seed``; the rest are its profiles)."""

    out: Path = option(Path("rm-study"), "Output directory (a rerun resumes: finished steps are skipped).")
    quick: bool = option(
        False, "The quick profile: fewer scenes, RM steps and prompts (about 1.5 minutes on 2 CPU cores)."
    )
    seed: int = option(0, "Seed of the pairs, the RM's training order and head, the sampling and the bootstrap.", ge=0)
    train_scenes: int = option(5000, "Training scenes (the RM's training pairs come from them).", ge=1)
    val_scenes: int = option(300, "Validation scenes: the held-out suite's pairs.", ge=1)
    test_scenes: int = option(100, "Test scenes: the over-optimisation prompts (one caption prompt each).", ge=1)
    rm_steps: int = option(2000, "Optimiser steps of the RM.", ge=1)
    rm_batch_size: int = option(16, "Pairs per RM step (the mix holds steps × batch pairs).", ge=1)
    rm_learning_rate: float = option(1e-3, "Peak learning rate of the RM (cosine, 10 % warmup).", gt=0)
    suite_per_kind: int = option(200, "Held-out pairs per kind (fewer where the val split gives fewer).", ge=1)
    prompts: int = option(64, "Caption prompts of the over-optimisation curve (the first test scenes).", ge=1)
    samples: int = option(64, "Responses sampled per prompt (N; best-of-n for n = 1, 2, 4, … N).", ge=1)
    temperature: float = option(1.0, "Sampling temperature of the policy.", gt=0)
    max_new_tokens: int = option(64, "Longest sampled response, in tokens.", ge=1)
    batch_size: int = option(64, "Sequences per forward pass when sampling and scoring.", ge=1)
    bootstrap: int = option(1000, "Bootstrap resamples of every interval.", ge=1)
    progress: bool = option(False, "Progress bars while training.")

    def __post_init__(self) -> None:
        check_ranges(self)

    def with_quick_profile(self) -> StudySettings:
        """The ``--quick`` sizes (explicitly smaller values are kept)."""
        if not self.quick:
            return self
        small = {
            "train_scenes": 400,
            "val_scenes": 100,
            "test_scenes": 24,
            "rm_steps": 60,
            "suite_per_kind": 60,
            "prompts": 16,
            "bootstrap": 300,
        }
        return shrunk(self, small)

    def to_dict(self) -> dict[str, Any]:
        return settings_record(self)


class Study:
    """One study run: settings, where files go, the step ledger and each step's input key."""

    def __init__(self, settings: StudySettings, say: Any = print) -> None:
        self.s = settings.with_quick_profile()
        self.out = Path(self.s.out).resolve()
        self.say = say
        self.steps = Steps(self.out, say)
        self.keys: dict[str, str] = {}
        self.results: dict[str, Any] = {}

    def path(self, name: str) -> Path:
        return self.out / name

    def world(self) -> None:
        from mmalign.world.config import WorldConfig
        from mmalign.world.generate import generate_world

        s = self.s
        config = WorldConfig(train_scenes=s.train_scenes, val_scenes=s.val_scenes, test_scenes=s.test_scenes)
        manifest = checkpoint.verify()
        checkpoint.check_world(manifest, config.to_dict())
        self.keys["world"] = step_key("world", config.to_dict())
        self.keys["baseline"] = step_key("baseline", manifest["files"])
        self.steps.run(
            "world", self.keys["world"], [self.path("world")], lambda: generate_world(self.path("world"), config)
        )
        self.steps.run(
            "baseline",
            self.keys["baseline"],
            [self.path("models/baseline")],
            lambda: checkpoint.copy_model(checkpoint.shipped_dir(), self.path("models/baseline")),
        )

    def pairs(self) -> None:
        from mmalign.demo.rm_pairs import build_study_pairs

        s = self.s
        n_train = s.rm_steps * s.rm_batch_size
        self.keys["pairs"] = step_key("pairs", self.keys["world"], s.seed, n_train, s.suite_per_kind)

        def work() -> None:
            counts = build_study_pairs(
                self.path("world"),
                self.path("pairs"),
                n_train=n_train,
                per_kind=s.suite_per_kind,
                seed=s.seed,
                say=self.say,
            )
            with atomic_path(self.path("pairs") / "counts.json") as tmp:
                tmp.write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")

        self.steps.run("pairs", self.keys["pairs"], [self.path("pairs")], work)
        self.results["pairs"] = json.loads((self.path("pairs") / "counts.json").read_text(encoding="utf-8"))

    def rm_config(self) -> Any:
        from mmalign.config import config_from_dict
        from mmalign.train.reward import RewardConfig

        s = self.s
        data = {
            "model": {"path": str(self.path("models/baseline"))},
            "data": {"train": str(self.path("pairs/train.jsonl")), "root": str(self.path("world"))},
            "train": {
                "output_dir": str(self.path("rm")),
                "seed": s.seed,
                "max_steps": s.rm_steps,
                "batch_size": s.rm_batch_size,
                "learning_rate": s.rm_learning_rate,
                "lr_scheduler": "cosine",
                "warmup_steps": max(1, s.rm_steps // 10),
                "logging_steps": max(1, s.rm_steps // 10),
                "save_steps": None,
            },
            "loss": {"center_rewards_coefficient": 0.01},
        }
        return config_from_dict(RewardConfig, data, "rm study")

    def train_rm(self) -> None:
        from mmalign.train.reward import train_reward

        config = self.rm_config()
        record = dataclasses.asdict(config)
        self.keys["rm"] = step_key("rm", record, self.keys["baseline"], self.keys["pairs"])

        def work() -> None:
            from transformers.utils import logging

            logging.disable_progress_bar()
            result = train_reward(config, progress=self.s.progress, write=self.say)
            loss = result.last_logged.get("loss")
            self.say(f"rm: {result.global_step} steps in {result.runtime_s:.0f} s, last logged loss {loss}")

        self.steps.run("train rm", self.keys["rm"], [self.path("rm")], work)
        self.results["rm"] = {
            "steps": self.s.rm_steps,
            "batch_size": self.s.rm_batch_size,
            "learning_rate": self.s.rm_learning_rate,
            "result": json.loads(self.path("rm/train_result.json").read_text(encoding="utf-8")),
        }

    def suite(self) -> None:
        from mmalign.data.io import read_records
        from mmalign.demo.rm_suite import score_pairs, suite_accuracy
        from mmalign.models.reward import load_reward_model

        s = self.s
        self.keys["suite"] = step_key("suite", self.keys["rm"], s.bootstrap, s.seed)
        out = self.path("suite.json")

        def work() -> None:
            records = list(read_records(self.path("pairs/suite.jsonl"), root=self.path("world")))
            loaded = load_reward_model(self.path("rm"))
            pairs = score_pairs(loaded, records, self.path("world"), s.batch_size)
            rows = suite_accuracy(pairs, n_resamples=s.bootstrap, seed=s.seed)
            scores = [{"id": p.id, "kind": p.category, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
            with atomic_path(out) as tmp:
                tmp.write_text(json.dumps({"accuracy": rows, "pairs": scores}, indent=1) + "\n", encoding="utf-8")

        self.steps.run("suite", self.keys["suite"], [out], work)
        self.results["suite"] = json.loads(out.read_text(encoding="utf-8"))["accuracy"]

    def overoptimisation(self) -> None:
        from mmalign.demo.overopt import (
            bon_curves,
            read_samples,
            sample_responses,
            score_samples,
            within_prompt_correlation,
            write_samples,
        )

        s = self.s
        sampling = [s.prompts, s.samples, s.seed, s.temperature, s.max_new_tokens, s.batch_size]
        self.keys["samples"] = step_key("samples", self.keys["world"], self.keys["baseline"], sampling)
        samples, scored = self.path("samples.jsonl"), self.path("scored.jsonl")
        self.steps.run(
            "samples",
            self.keys["samples"],
            [samples],
            lambda: write_samples(
                samples,
                sample_responses(
                    self.path("models/baseline"),
                    self.path("world"),
                    n_prompts=s.prompts,
                    n_samples=s.samples,
                    seed=s.seed,
                    temperature=s.temperature,
                    max_new_tokens=s.max_new_tokens,
                    batch_size=s.batch_size,
                ),
            ),
        )

        def score() -> None:
            rows = read_samples(samples)
            score_samples(self.path("rm"), self.path("world"), rows, s.batch_size)
            write_samples(scored, rows)

        self.keys["scored"] = step_key("scored", self.keys["samples"], self.keys["rm"])
        self.steps.run("score samples", self.keys["scored"], [scored], score)
        rows = read_samples(scored)
        curves = bon_curves(rows, powers_of_two(s.samples), n_resamples=s.bootstrap, seed=s.seed)
        with atomic_path(self.path("overopt.json")) as tmp:
            tmp.write_text(json.dumps(curves, indent=1) + "\n", encoding="utf-8")
        distinct = sum(len(set(r["samples"])) for r in rows) / len(rows)
        self.results["overoptimisation"] = {
            "prompts": len(rows),
            "samples_per_prompt": s.samples,
            "distinct_samples_per_prompt": distinct,
            "proxy_gold_correlation": within_prompt_correlation(rows),
            "curves": curves,
        }

    def run(self) -> dict[str, Any]:
        from mmalign.demo.rm_report import write_report

        start = time.perf_counter()
        mode = "quick" if self.s.quick else "full"
        self.say(f"mmalign rm study ({mode}), seed {self.s.seed}; output in {self.out}")
        self.world()
        self.pairs()
        self.train_rm()
        self.suite()
        self.overoptimisation()
        self.results["settings"] = self.s.to_dict()
        self.results["seconds"] = {k: round(v, 1) for k, v in self.steps.seconds.items()}
        self.results["total_s"] = round(time.perf_counter() - start, 1)
        write_report(self.results, self.out, REPORT, RESULTS, PLOT)
        self.say(f"report: {self.out / REPORT}; results: {self.out / RESULTS}; plot: {self.out / PLOT}")
        return self.results


def run_study(settings: StudySettings, say: Any = print) -> dict[str, Any]:
    """Run the study (see the module docstring); returns results.json's content."""
    return Study(settings, say).run()
