"""``mmalign video-study``: does video DPO reduce temporal hallucination, beyond fine-tuning on the same captions?

1. ``world``: a video world (:func:`mmalign.world.video.generate_video_world`, seed 0; train/val/test clips);
2. ``baseline``: the shipped still-world SFT checkpoint (:mod:`mmalign.demo.checkpoint`) fine-tuned with ``train
   sft`` (``configs/video/baseline.yaml``) on the training clips' captions ("Describe the video." + the caption;
   the clip as its frames, one image each for the tiny LLaVA) for ``--baseline-steps`` steps;
3. ``eval baseline``: the video tasks (``video_hallucer``, ``video_pope``, ``video_chair``) on the test clips;
4. ``pairs``: ``video-hallucinate`` pairs (kinds order, invent, miss, count, static) from the training clips in
   order, cut to the budget (steps × pairs per step); ``chosen.jsonl`` holds their chosen captions;
5. ``train dpo`` / ``train control``: DPO on the pairs (``configs/video/dpo.yaml``) and the control, SFT on the
   chosen captions (``configs/video/control.yaml``), from the video baseline on one budget (checked as the main
   demo checks it: :func:`mmalign.demo.training.common_budget`), then each evaluated as the baseline;
6. the report (:mod:`mmalign.demo.video_report`): paired deltas (``eval compare``) of DPO against the baseline and
   against the control, ``report.md`` and ``results.json``.

Each step is resumable (:mod:`mmalign.demo.steps`). Layout of ``--out``: ``world/``, ``sft/`` (the baseline's
training records and run), ``models/{still,baseline,dpo,control}/``, ``pairs/``, ``train/<method>/``,
``eval/<model>/``, ``compare/``, ``report.md``, ``results.json``, ``.steps/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.config import check_ranges, load_config, option
from mmalign.demo import checkpoint
from mmalign.demo.settings import settings_record, shrunk
from mmalign.demo.steps import Steps, evaluation_step, step_key
from mmalign.demo.training import config_record
from mmalign.errors import ConfigError
from mmalign.files import atomic_path

KINDS = ["order", "invent", "miss", "count", "static"]
"""The video-hallucinate kinds the study trains on (captions only: ``before``'s yes/no pairs left out)."""
VIDEO_TASKS = ("video_hallucer", "video_pope", "video_chair")
METHODS = {"dpo": ("DPO", "dpo.yaml", "pref"), "control": ("SFT on chosen (control)", "control.yaml", "sft")}
"""name → (label, config file under configs/video, trainer)."""
MODELS = ("baseline", "dpo", "control")


def video_configs() -> Path:
    """``configs/video`` of the checkout this package runs from (an editable install)."""
    import mmalign

    found = Path(mmalign.__file__).resolve().parents[2] / "configs" / "video"
    if not found.is_dir():
        raise ConfigError(f"the video study's configs are not at {found}: run from a checkout of mmalign")
    return found


@dataclass
class VideoStudySettings:
    """What ``mmalign video-study`` runs (every field is a CLI option; ``--quick`` shrinks the sizes)."""

    out: Path = option(Path("video-study"), "Output directory (a rerun resumes: finished steps are skipped).")
    quick: bool = option(False, "The quick profile: a few clips, steps and eval items (a smoke test).")
    seed: int = option(0, "Seed of the pairs, the training runs and the bootstrap (the world's seed stays 0).", ge=0)
    train_clips: int = option(600, "Training clips (the baseline's captions and the pairs come from them).", ge=1)
    val_clips: int = option(10, "Validation clips (written, not used by the study).", ge=1)
    test_clips: int = option(60, "Test clips: every model is evaluated on their video tasks.", ge=1)
    clip_frames: int = option(8, "Frames per clip.", ge=2, le=64)
    baseline_steps: int = option(600, "SFT steps from the still checkpoint to the video baseline.", ge=1)
    baseline_batch_size: int = option(16, "Captions per baseline SFT step.", ge=1)
    baseline_questions: bool = option(
        True,
        "The baseline also learns to answer the training clips' yes/no questions (the video_hallucer and "
        "video_pope templates, asked of training clips only), as the still baseline learned the still world's.",
        flag="--baseline-questions/--captions-only",
    )
    steps: int = option(64, "Optimiser steps of DPO and of the control (the same for both).", ge=1)
    batch_size: int = option(8, "Pairs (DPO) or chosen captions (control) per step.", ge=1)
    learning_rate: float = option(1e-4, "Peak learning rate of DPO and of the control (the same for both).", gt=0)
    eval_batch_size: int = option(32, "Items per generation batch in the evaluation.", ge=1)
    bootstrap: int = option(1000, "Bootstrap resamples of every interval.", ge=1)
    progress: bool = option(False, "Progress bars while training.")

    def __post_init__(self) -> None:
        check_ranges(self)

    def with_quick_profile(self) -> VideoStudySettings:
        """The ``--quick`` sizes (explicitly smaller values are kept)."""
        if not self.quick:
            return self
        small = {
            "train_clips": 8,
            "val_clips": 1,
            "test_clips": 3,
            "baseline_steps": 2,
            "baseline_batch_size": 4,
            "steps": 2,
            "batch_size": 3,
            "bootstrap": 50,
        }
        return shrunk(self, small)

    def to_dict(self) -> dict[str, Any]:
        return settings_record(self)


def caption_records(world: Path, questions: bool) -> list[Any]:
    """The baseline's SFT records, per training clip in order: the ``<video>`` prompt "Describe the video." with
    the clip's caption, then (``questions``) the yes/no questions the ``video_hallucer`` and ``video_pope`` tasks
    would ask of that clip, answered "Yes." / "No."; the clip as its frame files (every frame, in order)."""
    from mmalign.data.records import SFTRecord, assistant
    from mmalign.eval.tasks.video import video_items
    from mmalign.pairs.video_clips import DESCRIBE_VIDEO, ClipOptions, clip_video, video_prompt
    from mmalign.world.video import read_clips

    rows = read_clips(world, "train")
    opts = ClipOptions()
    videos = {row["id"]: clip_video(row, opts, as_frames=True) for row in rows}
    asked: dict[str, list[Any]] = {row["id"]: [] for row in rows}
    for task in ("video_hallucer", "video_pope") if questions else ():
        for item in video_items(task, world, "train"):
            asked[item.meta["clip_id"]].append(item)
    out = []
    for row in rows:
        video = videos[row["id"]]
        out.append(
            SFTRecord(
                id=f"{row['id']}-caption",
                prompt=video_prompt(DESCRIBE_VIDEO),
                completion=assistant(row["caption"]),
                videos=[video],
                source="video-caption",
                meta={"clip_id": row["id"]},
            )
        )
        out += [
            SFTRecord(
                id=f"{item.id}-qa",
                prompt=video_prompt(item.question),
                completion=assistant(f"{item.answer.capitalize()}."),
                videos=[video],
                source="video-question",
                meta={"clip_id": row["id"], "task": item.task},
            )
            for item in asked[row["id"]]
        ]
    return out


def build_pairs(world: Path, out: Path, n_pairs: int, seed: int) -> dict[str, Any]:
    """The first ``n_pairs`` video-hallucinate pairs over the training clips in order (``pairs.jsonl``), their
    chosen captions as SFT records (``chosen.jsonl``, same ids and clips), and ``summary.json``."""
    from collections import Counter

    from mmalign.data.io import write_records
    from mmalign.demo.pairs import chosen_records, first_pairs

    options = {"kinds": KINDS, "video": "frames"}
    budget = "the budget (--steps × --batch-size)"
    pairs, clips = first_pairs(world, "video-hallucinate", options, n_pairs, seed, "clips", budget)
    chosen = chosen_records(pairs)
    out.mkdir(parents=True, exist_ok=True)
    write_records(out / "pairs.jsonl", pairs, root=world)
    write_records(out / "chosen.jsonl", chosen, root=world)
    summary = {
        "pairs": len(pairs),
        "clips": clips,
        "kinds": dict(sorted(Counter(str(p.meta.get("kind")) for p in pairs).items())),
        "seed": seed,
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


class VideoStudy:
    """One study run: settings, where files go, the step ledger and each step's input key."""

    def __init__(self, settings: VideoStudySettings, say: Any = print) -> None:
        self.s = settings.with_quick_profile()
        self.out = Path(self.s.out).resolve()
        self.say = say
        self.steps = Steps(self.out, say)
        self.keys: dict[str, str] = {}
        self.configs = video_configs()
        self.results: dict[str, Any] = {}

    def path(self, name: str) -> Path:
        return self.out / name

    def world_config(self) -> Any:
        from mmalign.world.config import WorldConfig

        s = self.s
        return WorldConfig(
            video=True,
            clip_frames=s.clip_frames,
            train_scenes=s.train_clips,
            val_scenes=s.val_clips,
            test_scenes=s.test_clips,
        )

    def world(self) -> None:
        from mmalign.world.video import generate_video_world

        cfg = self.world_config()
        self.results["world"] = cfg.to_dict()
        self.keys["world"] = step_key("world", cfg.to_dict())
        self.steps.run(
            "world", self.keys["world"], [self.path("world")], lambda: generate_video_world(self.path("world"), cfg)
        )

    def config(self, file: str, trainer: str, overrides: list[str]) -> Any:
        from mmalign.demo.training import config_class

        common = [f"data.root={self.path('world')}", f"train.seed={self.s.seed}", "train.resume=false"]
        return load_config(config_class(trainer), self.configs / file, [*common, *overrides])

    def baseline(self) -> None:
        from mmalign.data.io import write_records
        from mmalign.train.sft import train_sft

        s = self.s
        manifest = checkpoint.verify()
        self.keys["still"] = step_key("still", manifest["files"])
        self.steps.run(
            "still checkpoint",
            self.keys["still"],
            [self.path("models/still")],
            lambda: checkpoint.copy_model(checkpoint.shipped_dir(), self.path("models/still")),
        )
        config = self.config(
            "baseline.yaml",
            "sft",
            [
                f"model.path={self.path('models/still')}",
                f"data.train={self.path('sft/train.jsonl')}",
                f"train.output_dir={self.path('sft/run')}",
                f"train.max_steps={s.baseline_steps}",
                f"train.batch_size={s.baseline_batch_size}",
                "train.grad_accum=1",
            ],
        )
        record = config_record(config, self.out)
        self.results["baseline_config"] = record
        data = ["questions" if s.baseline_questions else "captions"]
        self.keys["baseline"] = step_key("baseline", record, data, self.keys["world"], self.keys["still"])

        def work() -> None:
            from transformers.utils import logging

            logging.disable_progress_bar()
            records = caption_records(self.path("world"), s.baseline_questions)
            write_records(self.path("sft/train.jsonl"), records, root=self.path("world"))
            result = train_sft(config, progress=s.progress)
            assert result.model_dir is not None, "the baseline trains the full model, saved whole"
            checkpoint.copy_model(result.model_dir, self.path("models/baseline"))
            self.say(f"video baseline: {result.global_step} SFT steps in {result.runtime_s:.0f} s")

        self.steps.run("baseline", self.keys["baseline"], [self.path("sft"), self.path("models/baseline")], work)

    def evaluate(self, name: str) -> None:
        model, out, world = self.path(f"models/{name}"), self.path(f"eval/{name}"), self.path("world")
        key = self.keys["world"]
        evaluation_step(self.steps, model, out, world, key, "test", VIDEO_TASKS, self.s, self.say, f"eval {name}")

    def method_configs(self) -> dict[str, Any]:
        s = self.s
        configs = {}
        for name, (_, file, trainer) in METHODS.items():
            train = "pairs/pairs.jsonl" if trainer == "pref" else "pairs/chosen.jsonl"
            configs[name] = self.config(
                file,
                trainer,
                [
                    f"model.path={self.path('models/baseline')}",
                    f"data.train={self.path(train)}",
                    f"train.output_dir={self.path(f'train/{name}')}",
                    f"train.max_steps={s.steps}",
                    f"train.batch_size={s.batch_size}",
                    f"train.learning_rate={s.learning_rate}",
                    "train.grad_accum=1",
                    "train.save_steps=null",
                ],
            )
        return configs

    def pairs(self, n_pairs: int) -> None:
        self.keys["pairs"] = step_key("pairs", self.keys["world"], KINDS, self.s.seed, n_pairs)
        self.steps.run(
            "pairs",
            self.keys["pairs"],
            [self.path("pairs")],
            lambda: build_pairs(self.path("world"), self.path("pairs"), n_pairs, self.s.seed),
        )
        self.results["pairs"] = json.loads(self.path("pairs/summary.json").read_text(encoding="utf-8"))

    def train(self, name: str, config: Any) -> None:
        from mmalign.demo.settings import Method
        from mmalign.demo.training import train_method

        label, file, trainer = METHODS[name]
        record = config_record(config, self.out)
        key = step_key("train", name, record, self.keys["baseline"], self.keys["pairs"])

        def work() -> None:
            trained = train_method(Method(name, label, file, trainer, "video"), config, self.s.progress)
            checkpoint.copy_model(trained, self.path(f"models/{name}"))

        self.steps.run(f"train {name}", key, [self.path(f"train/{name}"), self.path(f"models/{name}")], work)

    def run(self) -> dict[str, Any]:
        from mmalign.demo.training import common_budget
        from mmalign.demo.video_report import write_outputs

        start = time.perf_counter()
        s = self.s
        configs = self.method_configs()
        steps, per_step = common_budget(configs)  # contradictory configs fail before any work
        mode = "quick (smoke test: numbers meaningless)" if s.quick else "full"
        self.say(
            f"mmalign video-study ({mode}), seed {s.seed}: {s.train_clips} training clips, {s.test_clips} test clips; "
            f"DPO and control {steps} steps × {per_step} pairs; output in {self.out}"
        )
        self.world()
        self.baseline()
        self.evaluate("baseline")
        self.pairs(steps * per_step)
        for name, config in configs.items():
            self.train(name, config)
            self.evaluate(name)
        self.results["budget"] = {"steps": steps, "pairs_per_step": per_step}
        self.results["methods"] = {
            name: {"label": METHODS[name][0], "config": config_record(config, self.out)}
            for name, config in configs.items()
        }
        self.results["settings"] = s.to_dict()
        results = write_outputs(self.out, self.results, s.bootstrap, s.seed)
        total = time.perf_counter() - start
        for line in results["sentences"].values():
            self.say(line)
        seconds = ", ".join(f"{k} {v:.0f} s" for k, v in self.steps.seconds.items())
        self.say(f"steps: {seconds}; total {total:.0f} s")
        self.say(f"report: {self.out / 'report.md'}; results: {self.out / 'results.json'}")
        return results


def run_video_study(settings: VideoStudySettings, say: Any = print) -> dict[str, Any]:
    """Run the study (see the module docstring); returns results.json's content."""
    return VideoStudy(settings, say).run()
