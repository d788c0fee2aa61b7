"""A plain reward model against a critique-then-score one (MM-RLHF) on the shapes world: held-out pair accuracy,
the critique model scored with critiques it writes itself.

    python bench/rm_critique.py [--scenes 1000] [--val-scenes 100] [--kinds add swap existence] [--steps 300]
                                [--batch-size 16] [--lr 1e-3] [--max-new-tokens 32] [--out DIR]

Generates a world (``--scenes`` train and ``--val-scenes`` val scenes) and ``hallucinate`` pairs with ground-truth
critiques (``critiques: true``) of ``--kinds``, then trains two reward models from the same random tiny-llava with
the same data, steps and optimiser (cosine, 10 warm-up steps, centring 0.01): ``rm.critique: false`` and
``rm.critique: true``. Each is scored on every val pair: the plain one with ``score_examples``; the critique one by
greedy critiques (``generate_critiques``, at most ``--max-new-tokens``) then ``score_critiqued``. Printed per model:
held-out accuracy (chosen strictly above rejected), the training run's ``eval_accuracy`` (for the critique model,
with the *reference* critiques, which state the verdict), training and scoring wall time; for the critique model
also the fraction of its critiques whose verdict ("... right." / "... wrong.") is correct and the fraction equal
to the reference critique. One seed; the shared 2-core CPU's wall times vary with its load.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from mmalign.config import config_from_dict
from mmalign.data.io import read_records
from mmalign.models.critique import generate_critiques, score_critiqued
from mmalign.models.examples import examples_from
from mmalign.models.reward import load_reward_model, score_examples
from mmalign.models.tiny import save_tiny, spec_for
from mmalign.pairs.registry import BuildInputs, make_builder
from mmalign.pairs.shards import run_build
from mmalign.train.reward import RewardConfig, train_reward
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world
from timing import print_header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--val-scenes", type=int, default=100)
    parser.add_argument("--kinds", nargs="+", default=["add", "swap", "existence"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    print_header("Plain vs critique-then-score reward model, shapes world")
    with tempfile.TemporaryDirectory() as tmp:
        run(args, args.out or Path(tmp))


def run(args: argparse.Namespace, root: Path) -> None:
    world = root / "world"
    generate_world(world, WorldConfig(train_scenes=args.scenes, val_scenes=args.val_scenes, test_scenes=4))
    options = {"kinds": args.kinds, "critiques": True}
    run_build(make_builder("hallucinate", options), BuildInputs(world=world), root / "train.jsonl", out_root=world)
    val_inputs = BuildInputs(world=world, split="val")
    run_build(make_builder("hallucinate", options), val_inputs, root / "val.jsonl", out_root=world)
    model = save_tiny(spec_for("tiny-llava"), root / "tiny-llava", preset="tiny-llava")
    val = list(read_records(root / "val.jsonl", root=world))
    n = len(val)
    examples = [examples_from(r)[0] for r in val] + [examples_from(r)[1] for r in val]
    print(f"{len(list(read_records(root / 'train.jsonl', root=world)))} train pairs, {n} val pairs ({args.kinds})")
    for critique in (False, True):
        config = {
            "model": {"path": str(model)},
            "data": {"train": str(root / "train.jsonl"), "eval": str(root / "val.jsonl"), "root": str(world)},
            "train": {
                "output_dir": str(root / f"rm-critique-{critique}"),
                "batch_size": args.batch_size,
                "max_steps": args.steps,
                "logging_steps": 1000,
                "learning_rate": args.lr,
                "lr_scheduler": "cosine",
                "warmup_steps": 10,
            },
            "loss": {"center_rewards_coefficient": 0.01},
            "rm": {"critique": critique},
        }
        start = time.perf_counter()
        result = train_reward(config_from_dict(RewardConfig, config, "bench"), progress=False, write=lambda s: None)
        trained = time.perf_counter() - start
        loaded = load_reward_model(result.model_dir)
        start = time.perf_counter()
        row: dict = {"critique": critique, "eval_accuracy": result.eval_metrics.get("eval_accuracy")}
        if critique:
            written = generate_critiques(loaded, examples, args.max_new_tokens, args.batch_size, world)
            rewards = score_critiqued(loaded, examples, written, args.batch_size, world)
            references = [r.meta["chosen_critique"] for r in val] + [r.meta["rejected_critique"] for r in val]
            row["verdicts_right"] = (
                sum(c.endswith("right.") for c in written[:n]) + sum(c.endswith("wrong.") for c in written[n:])
            ) / (2 * n)
            row["critiques_exact"] = sum(c == r for c, r in zip(written, references, strict=True)) / (2 * n)
            row["eval_critique_nll"] = result.eval_metrics.get("eval_critique_nll")
        else:
            rewards = score_examples(loaded, examples, args.batch_size, world)
        row["held_out_accuracy"] = sum(rewards[i] > rewards[n + i] for i in range(n)) / n
        row |= {"train_s": round(trained, 1), "score_s": round(time.perf_counter() - start, 1)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
