"""``mmalign demo``: the whole pipeline on the embedded shapes world, each step a function, resumable.

1. ``world``: the shapes world (the SFT recipe's training split, ``test_scenes`` held-out scenes);
2. ``baseline``: the shipped SFT checkpoint, checked against its manifest (or, with ``--from-scratch``, the
   recipe ``configs/demo/sft.yaml`` run on the world's SFT records);
3. ``eval baseline``: POPE (random, popular, adversarial), CHAIR with the absent-partner rates, MME-style pairs
   and multiple choice on the held-out scenes (:mod:`mmalign.eval.run.evaluation`, bootstrap 95 % intervals);
4. ``pairs``: preference pairs from the training split by two builders (:mod:`mmalign.demo.pairs`);
5. ``train <method>`` then ``eval <method>``: every method from the same baseline on the same budget;
6. the report (:mod:`mmalign.demo.report`): paired deltas against the baseline and against the control,
   ``report.md``, ``report.html``, ``results.json``, the plots, and the headline printed at the end.

Layout of the output directory (``--out``, default ``demo-out``)::

    world/                  the shapes world            models/<name>/    baseline and trained models
    pairs/                  training pairs (+ images)   train/<method>/   training logs, metrics.jsonl
    eval/<name>/            one evaluation run each     compare/          paired deltas (mmalign eval compare)
    report.md, report.html (self-contained), results.json, *.png, timings.json
    .steps/                 what is done, with its input key

A rerun skips every step whose outputs exist and were made from the same inputs (:mod:`mmalign.demo.steps`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from mmalign.config import load_config, read_yaml
from mmalign.demo import checkpoint
from mmalign.demo.settings import BASELINE, EVAL_TASKS, DemoSettings, Method
from mmalign.demo.steps import Steps, evaluation_step, step_key
from mmalign.demo.training import Layout, common_budget, config_record, configs_dir, method_config, train_method
from mmalign.files import atomic_path
from mmalign.threads import available_cpus
from mmalign.world.config import WorldConfig

TIMINGS = "timings.json"


@dataclass
class DemoRun:
    """What :func:`run_demo` did."""

    out: Path
    results: dict[str, Any] | None
    """results.json (None when the run only exported the baseline)."""
    headline: list[str]
    seconds: dict[str, float]
    """Step → seconds in this run (0.0: skipped as up to date)."""


class Pipeline:
    """One demo run: settings, where files go, the step ledger, and each step's input key."""

    def __init__(self, settings: DemoSettings, console: Console) -> None:
        self.s = settings.with_quick_profile()
        self.layout = Layout(self.s.out.resolve())
        self.configs = configs_dir(self.s.configs)
        self.console = console
        self.steps = Steps(self.layout.out, self.say)
        self.keys: dict[str, str] = {}
        self.world_config = WorldConfig(
            seed=self.s.world_seed,
            train_scenes=self.s.train_scenes,
            val_scenes=self.s.val_scenes,
            test_scenes=self.s.test_scenes,
        )
        self.baseline_info: dict[str, Any] = {}

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def header(self, text: str) -> None:
        self.console.rule(f"[bold]{text}[/bold]", align="left")

    # ------------------------------------------------------------------------------------------- steps

    def world(self) -> None:
        from mmalign.world.generate import generate_with_progress

        cfg = self.world_config
        self.keys["world"] = step_key("world", cfg.to_dict())
        self.steps.run(
            "world",
            self.keys["world"],
            [self.layout.world],
            lambda: generate_with_progress(self.layout.world, cfg, min(2, available_cpus()), True, self.console),
        )

    def baseline(self) -> None:
        if self.s.from_scratch:
            self._baseline_from_scratch()
            return
        manifest = checkpoint.verify()
        checkpoint.check_world(manifest, self.world_config.to_dict())
        self.baseline_info = {
            "source": "shipped",
            "asset": checkpoint.SHIPPED_NAME,
            "recipe": manifest["recipe"],
            "training": manifest["training"],
            "regenerate": manifest["command"],
        }
        self.keys[BASELINE] = step_key("baseline", "shipped", manifest["files"])
        self.steps.run(
            "baseline",
            self.keys[BASELINE],
            [self.layout.model(BASELINE)],
            lambda: checkpoint.copy_model(checkpoint.shipped_dir(), self.layout.model(BASELINE)),
        )

    def _recipe(self) -> tuple[Any, dict[str, Any]]:
        from mmalign.train.sft import SFTConfig

        path = self.configs / "sft.yaml"
        world = self.layout.world
        overrides = [
            f"data.train={world / 'train' / 'sft.jsonl'}",
            f"data.root={world}",
            "data.eval=null",
            f"train.output_dir={self.layout.sft}",
            f"train.seed={self.s.seed}",
            "train.resume=false",
            *self.s.sft_overrides,
        ]
        config = load_config(SFTConfig, path, overrides)
        record = {
            "config_file": "configs/demo/sft.yaml",
            "config": read_yaml(path),
            "as_run": config_record(config, self.layout.out),
        }
        return config, record

    def _baseline_from_scratch(self) -> None:
        from mmalign.train.sft import train_sft

        config, recipe = self._recipe()
        self.baseline_info = {"source": "from-scratch", "recipe": recipe}
        self.keys[BASELINE] = step_key("baseline", "recipe", recipe["as_run"], self.keys["world"])

        def work() -> None:
            from transformers.utils import logging

            logging.disable_progress_bar()
            result = train_sft(config, progress=self.s.progress)
            checkpoint.copy_model(self.layout.sft, self.layout.model(BASELINE))
            self.say(f"baseline: {result.global_step} SFT steps in {result.runtime_s:.0f} s")

        self.steps.run("baseline", self.keys[BASELINE], [self.layout.sft, self.layout.model(BASELINE)], work)

    def export_baseline(self, dest: Path) -> None:
        _, recipe = self._recipe()
        training = json.loads((self.layout.sft / "train_result.json").read_text(encoding="utf-8"))
        keep = ("global_step", "train_loss", "last_loss", "examples", "tokens", "runtime_s")
        manifest = checkpoint.export(
            self.layout.model(BASELINE),
            dest,
            recipe=recipe,
            world=self.world_config.to_dict(),
            training={k: training.get(k) for k in keep},
        )
        size = sum((dest / name).stat().st_size for name in manifest["files"]) / 1e6
        self.say(f"exported the baseline to {dest} ({len(manifest['files'])} files, {size:.1f} MB)")

    def evaluate(self, name: str, split: str = "test", tasks: tuple[str, ...] = EVAL_TASKS) -> Path:
        """Evaluate ``models/<name>`` on ``split`` (the demo: every task on the test scenes; bench/demo_sweep.py:
        POPE and CHAIR on the validation scenes), a step of the ledger; returns the run's folder."""
        out, label = (
            (self.layout.eval(name), f"eval {name}")
            if split == "test"
            else (
                self.layout.out / split / name,
                f"{split} {name}",
            )
        )
        world = self.layout.world
        model = self.layout.model(name)
        return evaluation_step(self.steps, model, out, world, self.keys["world"], split, tasks, self.s, self.say, label)

    def pairs(self, n_pairs: int) -> None:
        from mmalign.demo.pairs import build_pairs
        from mmalign.demo.settings import CORRUPT_IMAGE_OPTIONS, HALLUCINATE_OPTIONS

        self.keys["pairs"] = step_key(
            "pairs", self.keys["world"], HALLUCINATE_OPTIONS, CORRUPT_IMAGE_OPTIONS, self.s.seed, n_pairs
        )
        self.steps.run(
            "pairs",
            self.keys["pairs"],
            [self.layout.pairs],
            lambda: build_pairs(self.layout, n_pairs, self.s.seed, self.say),
        )

    def train(self, method: Method, config: Any) -> None:
        data = self.keys["world"] if method.online else self.keys["pairs"]  # online methods sample their own
        key = step_key("train", method.name, config_record(config, self.layout.out), self.keys[BASELINE], data)
        self.keys[method.name] = key

        def work() -> None:
            trained = train_method(method, config, self.s.progress)
            checkpoint.copy_model(trained, self.layout.model(method.name))

        outputs = [self.layout.train(method.name), self.layout.model(method.name)]
        self.steps.run(f"train {method.name}", key, outputs, work)

    # --------------------------------------------------------------------------------------------- run

    def run(self) -> DemoRun:
        from mmalign.demo.report import write_outputs
        from mmalign.demo.report_html import write_html

        start = time.perf_counter()
        s, layout = self.s, self.layout
        methods = s.selected()
        configs = {m.name: method_config(m, self.configs, layout, s.seed, s.steps, s.batch_size) for m in methods}
        steps, per_step = common_budget(configs)  # contradictory configs fail before any work
        mode = "quick (smoke test: numbers meaningless)" if s.quick else "full"
        self.say(
            f"[bold]mmalign demo[/bold] ({mode}): seed {s.seed}, {s.test_scenes} held-out scenes, "
            f"{len(methods)} methods × {steps} steps × {per_step} examples; output in {layout.out}"
        )
        self.header("1. world")
        self.world()
        self.header(f"2. baseline ({'SFT recipe, from scratch' if s.from_scratch else 'shipped checkpoint'})")
        self.baseline()
        if s.export_baseline is not None:
            self.export_baseline(Path(s.export_baseline))
            return DemoRun(layout.out, None, [], dict(self.steps.seconds))
        self.header("3. evaluate the baseline")
        self.evaluate(BASELINE)
        self.header("4. preference pairs")
        self.pairs(steps * per_step)
        for k, method in enumerate(methods, 5):
            self.header(f"{k}. {method.label}")
            self.train(method, configs[method.name])
            self.evaluate(method.name)
        self.header(f"{len(methods) + 5}. report")
        report_start = time.perf_counter()
        results, headline = write_outputs(self, methods, configs, (steps, per_step))
        write_html(results, headline, self.steps.seconds, layout.out, layout.out / "report.html")
        self.steps.seconds["report"] = time.perf_counter() - report_start
        seconds = dict(self.steps.seconds)
        total = time.perf_counter() - start
        timings = {
            "total_s": round(total, 1),
            "steps": {k: round(v, 1) for k, v in seconds.items()},
            "skipped": self.steps.skipped,
        }
        with atomic_path(layout.out / TIMINGS) as tmp:
            tmp.write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
        for line in headline:
            self.say(line)
        self.say("\nsteps: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + f"; total {total:.0f} s")
        self.say(f"report: {layout.out / 'report.md'} (in a browser, plots embedded: {layout.out / 'report.html'})")
        self.say(f"results: {layout.out / 'results.json'}")
        return DemoRun(layout.out, results, headline, seconds)


def run_demo(settings: DemoSettings, console: Console | None = None) -> DemoRun:
    """Run the demo (see the module docstring); returns the results and the headline printed at the end."""
    return Pipeline(settings, console or Console()).run()
