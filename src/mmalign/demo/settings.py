"""What ``mmalign demo`` runs: its settings, the methods it compares, and the ``--quick`` profile.

The world is the shapes world's default (:class:`mmalign.world.config.WorldConfig`: 48 px, 3×3 grid, 20
object types, 10 partner pairs added with probability 0.8, caption noise 0.6), with the SFT recipe's 40 000
training scenes and ``test_scenes`` held-out scenes every model is evaluated on. Each method's optimiser
settings are its YAML config under ``configs/demo/``; the demo fills in the paths and the seed, and checks
that every method (the control included) gets the same budget: optimiser steps × pairs per step.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mmalign.config import check_ranges, option
from mmalign.errors import ConfigError


@dataclass(frozen=True)
class Method:
    """One model trained from the baseline."""

    name: str
    """Short name: the run's directory and its key in results.json."""
    label: str
    """What the report calls it."""
    config: str
    """Its config file in the demo's config directory."""
    trainer: Literal["pref", "sft", "grpo", "online_dpo"]
    pairs: Literal["hallucinate", "corrupt-image", "chosen", "scenes"]
    """Which training file: the text pairs, the same pairs with corrupted rejected images, their chosen side, or
    (online methods) the world's training scenes, whose responses the method samples from its own policy."""

    @property
    def online(self) -> bool:
        return self.trainer in ("grpo", "online_dpo")


METHODS: tuple[Method, ...] = (
    Method("dpo", "DPO", "dpo.yaml", "pref", "hallucinate"),
    Method("dpo_nll", "DPO + NLL", "dpo_nll.yaml", "pref", "hallucinate"),
    Method("mdpo", "mDPO", "mdpo.yaml", "pref", "corrupt-image"),
    Method("simpo", "SimPO", "simpo.yaml", "pref", "hallucinate"),
    Method("grpo", "GRPO (truth reward)", "grpo.yaml", "grpo", "scenes"),
    Method("online_dpo", "On-policy DPO", "online_dpo.yaml", "online_dpo", "scenes"),
    Method("control", "SFT on chosen (control)", "control.yaml", "sft", "chosen"),
)
"""The compared methods, in report order; ``control`` is the SFT-on-chosen control every method is held against."""
CONTROL = "control"
BASELINE = "baseline"

EVAL_TASKS = ("pope_random", "pope_popular", "pope_adversarial", "chair", "mme", "mc")
"""What every model is evaluated on (the same held-out scenes for all)."""

HALLUCINATE_OPTIONS: dict[str, Any] = {"kinds": ["add", "swap", "existence"], "cooccur_prob": 0.5}
"""Options of the ``hallucinate`` builder: caption pairs whose rejected side names an absent object (the most
co-occurring one, usually the absent partner, with probability 0.5, else a random absent one) and existence
questions about it. At 0.8 the existence pairs' "No" answers were mostly about partners and every method learned
to say yes to other absent objects (POPE-random yes-ratio 0.53 → 0.61, accuracy −3 to −7 points; at 0.5 the
loss is −2 to −5 points, and DPO + NLL's CHAIR-i cut grows from 0.037 to 0.040, seed 0)."""
CORRUPT_IMAGE_OPTIONS: dict[str, Any] = {"modes": ["mask", "crop"], "severity_min": 0.6, "severity_max": 0.9}
"""Options of the ``corrupt-image`` builder: the rejected images mDPO's image-conditional term contrasts with."""


def shrunk(settings: Any, small: dict[str, Any]) -> Any:
    """``settings`` with each field of ``small`` at most that size (a value given smaller is kept; None takes the
    small one): the ``--quick`` profiles of the demo and its studies."""
    changes = {k: v if getattr(settings, k) is None else min(v, getattr(settings, k)) for k, v in small.items()}
    return dataclasses.replace(settings, **changes)


def settings_record(settings: Any) -> dict[str, Any]:
    """A study's settings as its results.json records them (the output directory and progress bars left out)."""
    data = dataclasses.asdict(settings)
    for key in ("out", "progress"):
        data.pop(key)
    return data


def parse_methods(text: str | None) -> tuple[str, ...]:
    """``--methods dpo,simpo`` → ("dpo", "simpo"); not given: every method."""
    return tuple(m.strip() for m in text.split(",") if m.strip()) if text else tuple(m.name for m in METHODS)


def interactive_default(progress: bool | None) -> bool:
    """``--progress/--no-progress``, or when not given: whether the terminal is interactive."""
    return sys.stderr.isatty() if progress is None else progress


@dataclass
class DemoSettings:
    """Everything ``mmalign demo`` takes; each field is one of its options (:func:`mmalign.config.option`)."""

    out: Path = option(
        Path("demo-out"),
        "Output directory: the world, the models, every evaluation, report.md, results.json, the plots (a rerun "
        "resumes: finished steps whose inputs did not change are skipped).",
    )
    quick: bool = option(
        False, "A one-minute smoke run: tiny world, a few training steps, few test scenes (the numbers mean nothing)."
    )
    from_scratch: bool = option(
        False,
        "Train the SFT baseline with configs/demo/sft.yaml (a few minutes) instead of using the shipped checkpoint.",
    )
    seed: int = option(
        0,
        "Seed of the pairs, the training order, the bootstrap (and the SFT with --from-scratch). Same seed, same "
        "machine: the same results.json.",
        ge=0,
    )
    world_seed: int = option(0, "Seed of the shapes world (the shipped baseline knows world seed 0 only).", ge=0)
    train_scenes: int = option(
        40_000, "Training scenes of the world (the SFT recipe's; pairs come from the first ones).", ge=1
    )
    test_scenes: int = option(400, "Held-out scenes every model is evaluated on.", ge=1)
    val_scenes: int = option(
        200,
        "Validation scenes: GRPO's held-out reward curve, and where bench/demo_sweep.py picks each method's β and "
        "learning rate (never the test scenes).",
        ge=1,
    )
    steps: int | None = option(None, "Optimiser steps of every method (default: the configs', which must agree).", ge=1)
    batch_size: int | None = option(
        None, "Pairs per step of every method (default: the configs', which must agree).", ge=1
    )
    methods: tuple[str, ...] = option(
        tuple(m.name for m in METHODS),
        "Comma-separated subset of: " + ", ".join(m.name for m in METHODS) + " (the control always runs: every "
        "claim is made against it).",
        flag_type=str | None,
        parse=parse_methods,
    )
    configs: Path | None = option(None, "Directory of the demo's configs (default: configs/demo of this checkout).")
    bootstrap: int = option(1000, "Bootstrap resamples of every interval.", ge=1)
    eval_batch_size: int = option(64, "Items per forward pass when evaluating.", ge=1)
    export_baseline: Path | None = option(
        None, "Train the baseline from scratch, write it to this directory as the shipped checkpoint, and stop."
    )
    progress: bool = option(
        True,
        "Progress bars (on the command line, default: when the terminal is interactive).",
        flag_type=bool | None,
        parse=interactive_default,
    )
    sft_overrides: list[str] = option(
        [], "Extra key=value overrides of the SFT recipe (the quick profile shortens it).", cli=False
    )

    def __post_init__(self) -> None:
        if self.export_baseline is not None:
            self.from_scratch = True
        known = {m.name for m in METHODS}
        unknown = [m for m in self.methods if m not in known]
        if unknown:
            raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
        self.methods = tuple(m.name for m in METHODS if m.name in self.methods or m.name == CONTROL)
        check_ranges(self, flags=True)

    def with_quick_profile(self) -> DemoSettings:
        """The ``--quick`` sizes (explicitly given options are kept only where they are smaller)."""
        if not self.quick:
            return self
        small = {
            "train_scenes": 300,
            "test_scenes": 24,
            "val_scenes": 16,
            "steps": 3,
            "batch_size": 8,
            "bootstrap": 200,
            "eval_batch_size": 32,
        }
        sft = [
            "train.max_steps=12",
            "train.batch_size=16",
            "train.warmup_steps=2",
            "train.logging_steps=4",
            "train.save_steps=null",
        ]
        return dataclasses.replace(shrunk(self, small), sft_overrides=[*sft, *self.sft_overrides])

    def selected(self) -> list[Method]:
        return [m for m in METHODS if m.name in self.methods]

    def to_dict(self) -> dict[str, Any]:
        """What results.json records (paths as strings; the output directory itself left out)."""
        data = dataclasses.asdict(self)
        data.pop("out")
        data.pop("progress")
        return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v for k, v in data.items()}
