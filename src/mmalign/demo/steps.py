"""Resumable steps: a step whose outputs exist and were made from the same inputs is skipped on a rerun.

Each finished step leaves ``OUT/.steps/<name>.json`` holding its *key* (a SHA-256 of everything its outputs
depend on: settings, configs, and the keys of the steps it reads from, so a change upstream redoes everything
downstream) and how long it took. A step runs again when that file is missing, its key differs, or one of its
outputs is gone; its stale outputs are removed first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmalign.files import atomic_path

STEPS_DIR = ".steps"


def step_key(*parts: Any) -> str:
    """SHA-256 of the parts as canonical JSON (sorted keys; paths and other objects as strings)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Steps:
    """The steps of one demo directory: which are done, and how long each took in this run."""

    def __init__(self, out: Path, echo: Callable[[str], None]) -> None:
        self.out = out
        self.echo = echo
        self.seconds: dict[str, float] = {}
        """Step name → seconds it took in this run (0.0 when skipped as up to date)."""
        self.skipped: list[str] = []

    def _record(self, name: str) -> Path:
        return self.out / STEPS_DIR / f"{name}.json"

    def is_done(self, name: str, key: str, outputs: list[Path]) -> bool:
        path = self._record(name)
        if not path.is_file() or not all(p.exists() for p in outputs):
            return False
        try:
            return json.loads(path.read_text(encoding="utf-8")).get("key") == key
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return False

    def run(self, name: str, key: str, outputs: list[Path], work: Callable[[], Any]) -> bool:
        """Run ``work`` unless the step is done with this key; returns whether it ran."""
        if self.is_done(name, key, outputs):
            self.seconds[name] = 0.0
            self.skipped.append(name)
            self.echo(f"[dim]{name}: up to date, skipped[/dim]")
            return False
        self._record(name).unlink(missing_ok=True)
        for path in outputs:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        start = time.perf_counter()
        work()
        seconds = time.perf_counter() - start
        self.seconds[name] = seconds
        with atomic_path(self._record(name)) as tmp:
            tmp.write_text(json.dumps({"key": key, "seconds": round(seconds, 3)}) + "\n", encoding="utf-8")
        self.echo(f"[bold]{name}[/bold]: done in {seconds:.1f} s")
        return True


def evaluation_step(
    steps: Steps,
    model: Path,
    out: Path,
    world: Path,
    world_key: str,
    split: str,
    tasks: tuple[str, ...],
    settings: Any,
    echo: Callable[[str], None],
    label: str,
) -> Path:
    """Evaluate ``model`` on the world's ``split`` with ``tasks`` into ``out`` as the step ``label``, keyed on the
    model's weights (a retrained, identical model is not evaluated again), the world and the evaluation settings
    (``settings``: a demo's or study's, with ``bootstrap``, ``seed``, ``eval_batch_size`` and ``progress``)."""
    from mmalign.demo import checkpoint
    from mmalign.eval.config import EvalConfig
    from mmalign.eval.run.evaluation import evaluate

    s = settings
    options = {"tasks": tasks, "bootstrap": s.bootstrap, "seed": s.seed, "batch": s.eval_batch_size}
    weights = {p.name: checkpoint.sha256(p) for p in checkpoint.model_files(model)}
    key = (
        step_key("eval", weights, world_key, options)
        if split == "test"
        else step_key("eval", split, weights, world_key, options)
    )
    cfg = EvalConfig(
        model=model,
        out=out,
        tasks=",".join(tasks),
        data=world,
        split=split,
        batch_size=s.eval_batch_size,
        agreement_sample=0,
        n_resamples=s.bootstrap,
        seed=s.seed,
        progress=s.progress,
    )
    steps.run(label, key, [out], lambda: evaluate(cfg, echo=echo))
    return out
