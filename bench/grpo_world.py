"""Does GRPO raise the truth reward on held-out prompts? The shipped SFT baseline trained with ``train grpo``.

    python bench/grpo_world.py [--steps 250] [--every 50] [--lr 2e-5] [--train-scenes 2000] [--val-scenes 200]

A shapes world (the demo's world settings, world seed 0, so every run starts from the same baseline numbers) is
made; the shipped SFT baseline (the demo's tiny LLaVA) is trained with ``configs/grpo/shapes.yaml`` (4 prompts × G =
8 completions a step, object-F1 reward, DAPO loss, β = 0; ``--seed``: the training seed) on its training scenes,
saving a checkpoint every ``--every`` steps. The baseline and each checkpoint then describe every validation scene
GREEDILY (as the demo evaluates), and the description is scored against the scene's ground truth with the reward's
own object extraction (CHAIR's): object F1, precision (1 - CHAIR-i) and recall. Printed per step: each mean with a
95 % bootstrap interval over scenes (2000 resamples), and the paired difference from the baseline with its
interval.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import transformers

from timing import print_header

REPO = Path(__file__).resolve().parents[1]


def greedy_scores(model_dir: Path, prompts: list, root: Path) -> dict[str, list[float]]:
    from mmalign.models import load
    from mmalign.models.examples import Example
    from mmalign.models.rollout import SamplingOptions, sample_groups
    from mmalign.rewards import object_f1, object_precision, object_recall

    loaded = load(model_dir)
    texts: list[str] = []
    for start in range(0, len(prompts), 32):
        chunk = prompts[start : start + 32]
        items = [Example(p.id, p.prompt, p.images) for p in chunk]
        options = SamplingOptions(max_new_tokens=48, do_sample=False)
        texts += sample_groups(loaded, items, 1, options, image_root=root).texts
    objects = [p.columns["objects"] for p in prompts]
    return {
        name: reward(None, texts, objects=objects)
        for name, reward in (("f1", object_f1), ("precision", object_precision), ("recall", object_recall))
    }


def interval(values: list[float], rng: random.Random, n: int = 2000) -> tuple[float, float, float]:
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(n))
    return sum(values) / len(values), means[int(0.025 * n)], means[int(0.975 * n) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250, help="GRPO optimiser steps.")
    parser.add_argument("--every", type=int, default=50, help="Evaluate a checkpoint every N steps.")
    parser.add_argument("--lr", type=float, default=2e-5, help="Learning rate.")
    parser.add_argument("--train-scenes", type=int, default=2000, help="Training scenes (prompts).")
    parser.add_argument("--val-scenes", type=int, default=200, help="Held-out scenes evaluated.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of training (sampling, data order).")
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()
    print_header("GRPO on the shapes world: held-out truth reward by step")

    from mmalign.config import load_config
    from mmalign.demo.checkpoint import shipped_dir
    from mmalign.train.grpo import GRPOConfig, train_grpo
    from mmalign.train.prompts import read_prompts
    from mmalign.world.config import WorldConfig
    from mmalign.world.generate import generate_world

    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        generate_world(world, WorldConfig(train_scenes=args.train_scenes, val_scenes=args.val_scenes, test_scenes=4))
        out = Path(tmp) / "grpo"
        overrides = [
            f"model.path={shipped_dir()}",
            f"data.train={world / 'train' / 'scenes.jsonl'}",
            "data.eval=null",
            "train.eval_steps=null",
            f"train.output_dir={out}",
            f"train.max_steps={args.steps}",
            f"train.save_steps={args.every}",
            "train.save_total_limit=null",
            f"train.learning_rate={args.lr}",
            f"train.seed={args.seed}",
        ]
        config = load_config(GRPOConfig, REPO / "configs" / "grpo" / "shapes.yaml", overrides)
        train_grpo(config, progress=False, write=lambda _: None)
        prompts = list(read_prompts(world / "val" / "scenes.jsonl"))
        steps = [0, *range(args.every, args.steps + 1, args.every)]
        dirs = {0: shipped_dir(), **{s: out / f"checkpoint-{s}" for s in steps[1:]}}
        scores = {s: greedy_scores(dirs[s], prompts, world) for s in steps}
    print(
        f"  shipped SFT baseline, {args.train_scenes} training scenes, lr {args.lr:g}, 4 prompts x G=8 a step; "
        f"{len(prompts)} held-out scenes described greedily; means [95 % bootstrap interval]"
    )
    rng = random.Random(args.seed)
    print(f"{'step':>5}  {'object F1':>24}  {'precision':>24}  {'recall':>24}  {'F1 - baseline':>26}")
    for s in steps:
        cells = []
        for name in ("f1", "precision", "recall"):
            mean, lo, hi = interval(scores[s][name], rng)
            cells.append(f"{mean:.4f} [{lo:.4f}, {hi:.4f}]")
        diff = [a - b for a, b in zip(scores[s]["f1"], scores[0]["f1"], strict=True)]
        mean, lo, hi = interval(diff, rng)
        print(f"{s:>5}  {cells[0]:>24}  {cells[1]:>24}  {cells[2]:>24}  {mean:+.4f} [{lo:+.4f}, {hi:+.4f}]")


if __name__ == "__main__":
    main()
