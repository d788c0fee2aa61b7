"""SFT of the untrained tiny-llava on the shapes world: held-out yes/no accuracy and partner hallucination
against wall time on this machine.

    python bench/sft_world.py --world demo-out/world [--config configs/demo/sft.yaml] [--steps 1200]
                              [--eval-every 200] [--pope 2000] [--captions 1000] [key.sub=value ...]
    python bench/sft_world.py --scenes 2000 --steps 60 --eval-every 20       # a quick look (generates a world)

Trains with the recipe (``mmalign.train.sft.train_sft``; overrides as for ``mmalign train sft``), keeping a
checkpoint every ``--eval-every`` steps, then evaluates each checkpoint on the world's test split with greedy
decoding (``mmalign.models.generate``), and prints one row per checkpoint:

- the wall time training had taken when that checkpoint was saved (evaluation not included);
- POPE random and adversarial accuracy and yes-ratio (official parser; the first ``--pope`` items of each);
- CHAIR-i of the captions, and partner naming: of the (caption, absent partner) pairs — a partner of a present
  object that is not in the image, ``meta.absent_partners`` — the fraction whose caption names that partner,
  against the same fraction over every other absent object type (named by
  ``extract_mentions(caption, shapes_vocabulary())``).

Wall times depend on what else runs on the machine: the project's 2-core CPU is shared, so say so when quoting.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from mmalign.config import load_config
from mmalign.data.io import read_records
from mmalign.data.records import EvalItem
from mmalign.eval.metrics import chair_metrics, pope_metrics
from mmalign.models import generate, load
from mmalign.objects.mentions import extract_mentions
from mmalign.objects.vocabulary import shapes_vocabulary
from mmalign.train.callbacks import read_metrics
from mmalign.train.sft import SFTConfig, train_sft
from timing import print_header


def partner_naming(captions: list[str], items: list[EvalItem], types: list[str]) -> dict[str, float]:
    """How often captions name absent partners vs other absent objects, per (caption, absent object) pair."""
    vocab = shapes_vocabulary()
    named_partner = partner_pairs = named_other = other_pairs = captions_with_partner = naming_captions = 0
    for caption, item in zip(captions, items, strict=True):
        named = {m.object for m in extract_mentions(caption, vocab)}
        partners = set(item.meta.get("absent_partners", []))
        others = set(types) - set(item.objects) - partners
        named_partner += len(named & partners)
        partner_pairs += len(partners)
        named_other += len(named & others)
        other_pairs += len(others)
        if partners:
            captions_with_partner += 1
            naming_captions += bool(named & partners)
    partner_rate = named_partner / partner_pairs if partner_pairs else 0.0
    other_rate = named_other / other_pairs if other_pairs else 0.0
    return {
        "partner_rate": partner_rate,
        "other_rate": other_rate,
        "ratio": partner_rate / other_rate if other_rate else float("inf"),
        "captions_naming_partner": naming_captions / captions_with_partner if captions_with_partner else 0.0,
        "partner_pairs": partner_pairs,
    }


def evaluate(model_dir: Path, world: Path, n_pope: int, n_captions: int, batch_size: int = 64) -> dict[str, Any]:
    """POPE random / adversarial, CHAIR-i and partner naming of one model on the world's test split."""
    loaded = load(model_dir)
    out: dict[str, Any] = {}
    for task in ("pope_random", "pope_adversarial"):
        items = _items(world / "test" / f"{task}.jsonl", world, n_pope)
        answers = generate(loaded, items, max_new_tokens=4, batch_size=batch_size, image_root=world)
        result = pope_metrics(answers, [item.answer for item in items]).result
        out[task] = result.accuracy
        out[f"{task}_yes"] = result.yes_ratio
    items = _items(world / "test" / "caption.jsonl", world, n_captions)
    captions = generate(loaded, items, max_new_tokens=48, batch_size=batch_size, image_root=world)
    out["chair_i"] = chair_metrics(captions, [item.objects for item in items], shapes_vocabulary()).chair_i
    types = json.loads((world / "world.json").read_text(encoding="utf-8"))["objects"]
    out.update(partner_naming(captions, items, [t if isinstance(t, str) else t["name"] for t in types]))
    out["example_caption"] = captions[0]
    return out


def _items(path: Path, world: Path, limit: int) -> list[EvalItem]:
    items = []
    for record in read_records(path, kind="eval", root=world):
        assert isinstance(record, EvalItem)
        items.append(record)
        if len(items) >= limit:
            break
    return items


def _world(args: argparse.Namespace, scratch: Path) -> Path:
    if args.world is not None:
        return args.world
    from mmalign.world.config import WorldConfig
    from mmalign.world.generate import generate_world

    out = scratch / "world"
    start = time.perf_counter()
    generate_world(out, WorldConfig(train_scenes=args.scenes, seed=args.world_seed))
    print(f"generated a {args.scenes}-scene world in {time.perf_counter() - start:.1f} s: {out}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Recipe overrides, e.g. train.seed=1 train.learning_rate=1e-3.")
    parser.add_argument("--config", type=Path, default=Path("configs/demo/sft.yaml"), help="The SFT recipe.")
    parser.add_argument("--world", type=Path, default=None, help="An existing world (default: generate one).")
    parser.add_argument("--scenes", type=int, default=40_000, help="Training scenes of a generated world.")
    parser.add_argument("--world-seed", type=int, default=0, help="Seed of a generated world.")
    parser.add_argument("--steps", type=int, default=None, help="Optimiser steps (default: the recipe's).")
    parser.add_argument("--eval-every", type=int, default=200, help="Checkpoint and evaluate every N steps.")
    parser.add_argument("--pope", type=int, default=2000, help="POPE items evaluated per strategy.")
    parser.add_argument("--captions", type=int, default=1000, help="Test captions generated per checkpoint.")
    parser.add_argument("--out", type=Path, default=None, help="Run directory (default: a temporary one).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows to this JSON file.")
    args = parser.parse_args()
    print_header(f"SFT on the shapes world: held-out accuracy against wall time ({args.config})")

    with tempfile.TemporaryDirectory(prefix="sft-world-") as tmp:
        scratch = Path(tmp)
        world = _world(args, scratch)
        run = args.out or scratch / "run"
        overrides = [
            f"data.train={world / 'train' / 'sft.jsonl'}",
            f"data.root={world}",
            f"train.output_dir={run}",
            f"train.save_steps={args.eval_every}",
            f"train.logging_steps={args.eval_every}",
            "train.save_total_limit=null",
            *([f"train.max_steps={args.steps}"] if args.steps else []),
            *args.overrides,
        ]
        config = load_config(SFTConfig, args.config, overrides)
        result = train_sft(config, progress=False)
        print(
            f"trained {result.global_step} steps in {result.runtime_s:.0f} s "
            f"({result.global_step / result.runtime_s:.2f} steps/s, batch {config.train.batch_size}); "
            f"seed {config.train.seed}; world {world}"
        )
        elapsed = {row["step"]: row["elapsed_s"] for row in read_metrics(run / "metrics.jsonl") if "loss" in row}
        checkpoints = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        rows = []
        header = (
            f"{'step':>6} {'train s':>8} {'POPE rnd':>9} {'POPE adv':>9} {'yes adv':>8} {'CHAIR-i':>8} "
            f"{'partner':>8} {'other':>7} {'ratio':>6} {'eval s':>7}"
        )
        print(header)
        for checkpoint in checkpoints:
            step = int(checkpoint.name.split("-")[1])
            start = time.perf_counter()
            row = {"step": step, "train_s": elapsed.get(step), **evaluate(checkpoint, world, args.pope, args.captions)}
            row["eval_s"] = time.perf_counter() - start
            rows.append(row)
            print(
                f"{step:>6} {row['train_s'] or float('nan'):>8.0f} {row['pope_random']:>9.3f} "
                f"{row['pope_adversarial']:>9.3f} {row['pope_adversarial_yes']:>8.3f} {row['chair_i']:>8.3f} "
                f"{row['partner_rate']:>8.3f} {row['other_rate']:>7.3f} {row['ratio']:>6.1f} {row['eval_s']:>7.0f}",
                flush=True,
            )
        print(f"last checkpoint's first test caption: {rows[-1]['example_caption']!r}" if rows else "no checkpoints")
        if args.json is not None:
            args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
