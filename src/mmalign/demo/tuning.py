"""Where the demo's β and learning rates come from: ``bench/demo_sweep.py``'s picks, shipped as
``configs/demo/sweep.json``, and whether the configs the demo ran hold them.

The sweep trains every method at every point of a small grid (learning rate × β) on the demo's budget and scores
each on the validation scenes; the demo's configs carry each method's best point. :func:`read_tuning` reads the
picks beside the configs and checks each config against its pick, so the report says where every value came from,
and names a method whose config was changed since (its numbers are then not the tuned method's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmalign.config import config_to_dict

SWEEP_FILE = "sweep.json"


def _at(config: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(config, dict) or part not in config:
            return None
        config = config[part]
    return config


def read_tuning(configs_dir: Path, configs: dict[str, Any]) -> dict[str, Any] | None:
    """The sweep's record for the methods run (None without ``sweep.json``): its budget, validation scenes and
    score, each method's pick, and ``differs``: the methods whose config holds another learning rate or β."""
    path = configs_dir / SWEEP_FILE
    if not path.is_file():
        return None
    sweep = json.loads(path.read_text(encoding="utf-8"))
    picks = {name: pick for name, pick in sweep["picks"].items() if name in configs}
    differs = []
    for name, pick in picks.items():
        config = config_to_dict(configs[name])
        beta = None if pick["beta_key"] is None else _at(config, pick["beta_key"])
        if _at(config, "train.learning_rate") != pick["learning_rate"] or beta != pick["beta"]:
            differs.append(name)
    missing = sorted(set(configs) - set(picks))
    return {
        "source": "bench/demo_sweep.py",
        "budget": sweep["budget"],
        "val_scenes": sweep["val_scenes"],
        "score": sweep["score"],
        "picks": picks,
        "differs": differs,
        "untuned": missing,
    }


def tuning_line(tuning: dict[str, Any] | None, budget: dict[str, int] | None = None) -> str:
    """One sentence for the report's summary (``budget``: this run's steps and examples per step, said when the
    sweep tuned for another)."""
    if tuning is None:
        return "β and learning rates: as the configs give them (no sweep.json beside them: not tuned by the sweep)"
    swept = tuning["budget"]
    at = f"{swept['steps']} steps × {swept['examples_per_step']}"
    if budget is not None and (budget["steps"], budget["pairs_per_step"]) != (
        swept["steps"],
        swept["examples_per_step"],
    ):
        at += f", not this run's {budget['steps']} × {budget['pairs_per_step']}"
    line = (
        f"β and learning rates: each method's best of a grid on {tuning['val_scenes']} validation scenes (never the "
        f"test scenes) at a budget of {at} ({tuning['source']}; score: {tuning['score']})"
    )
    if tuning["differs"]:
        line += f"; CHANGED since the sweep: {', '.join(tuning['differs'])}"
    if tuning["untuned"]:
        line += f"; not in the sweep: {', '.join(tuning['untuned'])}"
    return line
