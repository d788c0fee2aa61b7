"""What a person watching a training run sees, and the metrics file it leaves behind.

:class:`TrainingLog` replaces ``transformers``' own progress bar and log printer: a ``tqdm`` progress bar
over optimiser steps, and at every logging step one plain line such as

    step 120/1200  loss 0.4321  lr 1.80e-03  grad_norm 0.61  9,870 tok/s  310.2 ex/s  0:00:38

with the same numbers (and any others the trainer logs: evaluation losses, preference rewards...)
appended as one JSON object per line to ``output_dir/metrics.jsonl``. Rates are measured over the steps
since the previous log line, on this process's wall clock. When a run resumes from a checkpoint, rows the
file holds from beyond that checkpoint are dropped first (rewritten atomically), so the file always
describes one consistent run.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from mmalign.data.io import write_jsonl

METRICS_FILE = "metrics.jsonl"
SHOWN = ("loss", "learning_rate", "grad_norm")


class TrainingLog(TrainerCallback):
    """Progress bar, plain log lines and ``metrics.jsonl`` for any ``transformers.Trainer``."""

    def __init__(self, output_dir: str | Path, progress: bool = True, write: Callable[[str], None] | None = None):
        """``progress``: show a progress bar (on stderr). ``write``: where log lines go (default: stdout,
        above the bar)."""
        self.path = Path(output_dir) / METRICS_FILE
        self.progress = progress
        self._write = write
        self._bar: Any = None
        self._last_time = 0.0
        self._last_step = 0
        self._last_tokens = 0
        self._start = 0.0
        self._paused = 0.0
        """Seconds spent evaluating since the last training log line (not counted in the rates)."""

    # ------------------------------------------------------------------------------------------ events

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_after(state.global_step)
        self._start = self._last_time = time.perf_counter()
        self._last_step = state.global_step
        self._last_tokens = state.num_input_tokens_seen
        if self.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=state.max_steps, initial=state.global_step, desc="train", unit="step", dynamic_ncols=True
            )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._bar is not None:
            self._bar.update(state.global_step - self._bar.n)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = dict(logs or {})
        row: dict[str, Any] = {"step": state.global_step, "epoch": _round(state.epoch)}
        now = time.perf_counter()
        if "loss" in logs:
            steps = state.global_step - self._last_step
            seconds = max(now - self._last_time - self._paused, 1e-9)
            examples = steps * args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
            row["examples_per_s"] = examples / seconds if steps else None
            tokens = state.num_input_tokens_seen - self._last_tokens
            row["tokens_per_s"] = tokens / seconds if tokens else None
            self._last_time, self._last_step, self._last_tokens = now, state.global_step, state.num_input_tokens_seen
            self._paused = 0.0
        elif "eval_runtime" in logs:
            self._paused += float(logs["eval_runtime"])
        row["elapsed_s"] = now - self._start
        row.update({k: _plain(v) for k, v in logs.items() if k not in ("epoch",)})
        self._append(row)
        self._say(self._line(row, state))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # --------------------------------------------------------------------------------------------- text

    def _line(self, row: dict[str, Any], state: Any) -> str:
        elapsed = str(timedelta(seconds=round(row["elapsed_s"])))
        if "train_loss" in row:  # the end-of-training summary
            parts = [f"done: {state.global_step} steps in {elapsed}"]
            if row.get("train_loss") is not None:
                parts.append(f"mean loss {row['train_loss']:.4f}")
            if row.get("train_samples_per_second"):
                parts.append(f"{row['train_samples_per_second']:.1f} ex/s")
            return "  ".join(parts)
        head = f"step {state.global_step}/{state.max_steps}"
        if "loss" not in row:  # an evaluation (or other) log
            rest = [
                f"{k} {_fmt(v)}"
                for k, v in row.items()
                if k.startswith("eval_") and not k.endswith("_per_second") and isinstance(v, float)
            ]
            return "  ".join([head, *rest])
        parts = [head]
        parts += [f"{k.replace('learning_rate', 'lr')} {_fmt(row[k])}" for k in SHOWN if row.get(k) is not None]
        if row.get("tokens_per_s"):
            parts.append(f"{row['tokens_per_s']:,.0f} tok/s")
        if row.get("examples_per_s"):
            parts.append(f"{row['examples_per_s']:.1f} ex/s")
        parts.append(elapsed)
        return "  ".join(parts)

    def _say(self, text: str) -> None:
        if self._write is not None:
            self._write(text)
        elif self._bar is not None:
            self._bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    # ------------------------------------------------------------------------------------------- file

    def _append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:  # one write per line: a crash loses at most this row
            f.write(json.dumps(row) + "\n")

    def _truncate_after(self, step: int) -> None:
        """Keep only rows up to ``step`` (0: a fresh run starts an empty file)."""
        if not self.path.exists():
            return
        rows = read_metrics(self.path)
        write_jsonl(self.path, [r for r in rows if step and r.get("step", 0) <= step and "train_loss" not in r])


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` (a truncated last line, from a crash, is skipped)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2e}" if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4) else f"{value:.4f}"
    return str(value)
