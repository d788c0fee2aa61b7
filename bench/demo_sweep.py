"""Pick each demo method's β and learning rate on the validation split, every method on the demo's budget.

    python bench/demo_sweep.py [--out bench-out/demo-sweep] [--methods dpo,grpo] [--val-scenes 200]
    python bench/demo_sweep.py --quick --out /tmp/sweep       # a smoke run (tiny world, 3 steps: numbers meaningless)

The demo's world, shipped baseline and pairs (``mmalign.demo.pipeline``, seed 0) are made in ``--out``; then every
method of ``mmalign demo`` (the SFT-on-chosen control included) is trained from the baseline at every point of a
small grid, with the demo's budget (optimiser steps × examples per step, the same for all) and its configs
otherwise unchanged:

- learning rate ∈ {3e-5, 1e-4, 3e-4} for every method;
- β ∈ {0.1, 0.5} for DPO, DPO + NLL, mDPO and on-policy DPO; {2, 10} for SimPO (γ = 1); the KL weight
  {0, 0.04} for GRPO; none for the control (it has no β).

Each trained model is evaluated on the world's VALIDATION scenes (never the test scenes the demo reports on):
POPE random / popular / adversarial and CHAIR. Its score is the mean of two numbers in [0, 1]: the mean POPE
accuracy of the three splits, and the captions' object F1 (precision 1 − CHAIR-i, recall). Per method the point
with the highest score is picked (a tie: the first in grid order). Printed: every point's score and parts, the
baseline's, and the picks; written: ``--out``/sweep.json (the picks and every point), which the demo ships as
``configs/demo/sweep.json``: the demo's configs hold the picked values, a test checks they agree, and the demo's
report says where each value came from (:mod:`mmalign.demo.tuning`).
Finished points are skipped on a rerun (the demo's step ledger).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from timing import print_header

LEARNING_RATES = (3e-5, 1e-4, 3e-4)
BETAS: dict[str, tuple[str | None, tuple[float | None, ...]]] = {
    "dpo": ("loss.options.beta", (0.1, 0.5)),
    "dpo_nll": ("loss.options.beta", (0.1, 0.5)),
    "mdpo": ("loss.options.beta", (0.1, 0.5)),
    "simpo": ("loss.options.beta", (2.0, 10.0)),
    "grpo": ("loss.beta", (0.0, 0.04)),
    "online_dpo": ("loss.options.beta", (0.1, 0.5)),
    "control": (None, (None,)),
}
"""Method → (the config key of its β, the values tried)."""
VAL_TASKS = ("pope_random", "pope_popular", "pope_adversarial", "chair")


def score(results: dict[str, Any]) -> dict[str, float]:
    """The selection score of an evaluation's results.json, with its parts."""
    tasks = results["tasks"]
    pope = sum(tasks[t]["metrics"]["accuracy"] for t in VAL_TASKS[:3]) / 3
    chair = tasks["chair"]["metrics"]
    precision, recall = 1.0 - chair["chair_i"], chair["recall"]
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "score": (pope + f1) / 2,
        "pope_accuracy": pope,
        "object_f1": f1,
        "chair_i": chair["chair_i"],
        "recall": recall,
    }


def evaluate_val(pipe: Any, name: str) -> dict[str, float]:
    """Evaluate ``models/<name>`` on the validation scenes (a step of the demo's ledger); returns its score."""
    out = pipe.evaluate(name, split="val", tasks=VAL_TASKS)
    return score(json.loads((out / "results.json").read_text(encoding="utf-8")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/demo-sweep"), help="Output directory.")
    parser.add_argument("--methods", default=None, help="Comma-separated subset of the demo's methods.")
    parser.add_argument("--val-scenes", type=int, default=200, help="Validation scenes the points are scored on.")
    parser.add_argument("--seed", type=int, default=0, help="The demo's seed (pairs, training order, sampling).")
    parser.add_argument("--quick", action="store_true", help="The demo's --quick profile (a smoke run).")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: as mmalign's commands).")
    args = parser.parse_args()
    from mmalign.threads import configure_threads

    configure_threads(args.threads)  # before torch is imported: its default spinning threads crawl beside others
    import transformers

    transformers.utils.logging.disable_progress_bar()
    print_header("demo sweep: each method's β and learning rate picked on the validation split")

    from rich.console import Console

    from mmalign.demo.pipeline import Pipeline
    from mmalign.demo.settings import BASELINE, DemoSettings, parse_methods
    from mmalign.demo.training import common_budget, method_config
    from mmalign.files import atomic_path

    settings = DemoSettings(
        out=args.out,
        quick=args.quick,
        seed=args.seed,
        val_scenes=args.val_scenes,
        methods=parse_methods(args.methods),
        progress=False,
    )
    pipe = Pipeline(settings, Console(stderr=True))
    s, layout = pipe.s, pipe.layout
    methods = s.selected()
    defaults = {m.name: method_config(m, pipe.configs, layout, s.seed, s.steps, s.batch_size) for m in methods}
    steps, per_step = common_budget(defaults)
    pipe.world()
    pipe.baseline()
    pipe.pairs(steps * per_step)
    baseline = evaluate_val(pipe, BASELINE)
    points: list[dict[str, Any]] = []
    for method in methods:
        key, betas = BETAS[method.name]
        for lr in LEARNING_RATES:
            for beta in betas:
                name = f"{method.name}_lr{lr:g}" + ("" if beta is None else f"_beta{beta:g}")
                extra = [f"train.learning_rate={lr}", *([] if key is None else [f"{key}={beta}"])]
                if method.trainer == "grpo":  # its held-out curve is the demo's, not needed to pick
                    extra += ["data.eval=null", "train.eval_steps=null", "train.eval_on_start=false"]
                point = dataclasses.replace(method, name=name)
                config = method_config(point, pipe.configs, layout, s.seed, s.steps, s.batch_size, extra)
                pipe.train(point, config)
                points.append(
                    {"method": method.name, "learning_rate": lr, "beta_key": key, "beta": beta}
                    | evaluate_val(pipe, name)
                )
    picks = {}
    for method in methods:
        mine = [p for p in points if p["method"] == method.name]
        best = max(mine, key=lambda p: p["score"])  # max keeps the first of equal scores
        picks[method.name] = {k: best[k] for k in ("learning_rate", "beta_key", "beta", "score")}
    summary = {
        "command": "python bench/demo_sweep.py" + (f" --threads {args.threads}" if args.threads else ""),
        "budget": {"steps": steps, "examples_per_step": per_step},
        "val_scenes": s.val_scenes,
        "seed": s.seed,
        "score": "mean of (mean POPE accuracy over random/popular/adversarial) and (caption object F1)",
        "picks": picks,
        "baseline": baseline,
        "points": points,
    }
    with atomic_path(layout.out / "sweep.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    print(f"  budget: {steps} steps × {per_step} examples; {s.val_scenes} validation scenes; seed {s.seed}")
    print(f"  score = ({summary['score']}); baseline {baseline['score']:.4f}")
    print(f"{'method':<12} {'lr':>7} {'β':>6} {'score':>7} {'POPE acc':>9} {'obj F1':>7} {'CHAIR-i':>8} {'recall':>7}")
    for p in points:
        beta = "–" if p["beta"] is None else f"{p['beta']:g}"
        mark = (
            " *"
            if picks[p["method"]]["learning_rate"] == p["learning_rate"] and picks[p["method"]]["beta"] == p["beta"]
            else ""
        )
        print(
            f"{p['method']:<12} {p['learning_rate']:>7g} {beta:>6} {p['score']:>7.4f} {p['pope_accuracy']:>9.4f} "
            f"{p['object_f1']:>7.4f} {p['chair_i']:>8.4f} {p['recall']:>7.4f}{mark}"
        )
    print(f"  * picked; everything in {layout.out / 'sweep.json'} (the demo ships it as configs/demo/sweep.json)")


if __name__ == "__main__":
    main()
