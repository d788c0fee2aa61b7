"""Preference-pair building speed: pairs per second for each strategy at 1 and 2 processes.

    python bench/build.py [--scenes 10000] [--procs 1 2] [--strategies hallucinate corrupt-image]
                          [--sample-rank-batches 1 16] [--sample-rank-prompts 32]

Generates a shapes world with ``--scenes`` training scenes once (not timed), then for each strategy and
process count runs a full ``run_build`` (planning, shards, image files, assembly) into a fresh hard-linked
copy of the world and reports its wall time and pairs per second (planning and assembly included).
Outputs of one strategy must be byte-identical whatever the process count; the script checks it.

Other strategies join by name and, if they need them, options in :data:`OPTIONS`.

``sample-rank`` runs the tiny model (``tiny-llava``, built offline) instead: for each generation batch size
it builds pairs from the first ``--sample-rank-prompts`` scenes (``k`` samples each, the ``truth`` scorer) in
one process and reports generations per second (prompts x k / wall time of the whole build; the model is
loaded before timing). Outputs differ between batch sizes (the sampling stream is batched), so only speed is
compared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from mmalign.pairs.registry import BuildInputs, make_builder
from mmalign.pairs.shards import run_build
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world
from timing import print_header

OPTIONS: dict[str, dict[str, Any]] = {
    "hallucinate": {"kinds": ["add", "swap", "attribute", "existence"]},
    "corrupt-image": {"variants": 1},
}
"""Options per strategy (defaults otherwise)."""


def bench(world: Path, strategy: str, procs: int, shard_size: int, run_dir: Path) -> dict[str, Any]:
    """One timed build into ``run_dir``: a hard-linked copy of the world, so the output lies inside its data
    root (no input image is copied, as in normal use) and new image files start from nothing."""
    shutil.copytree(world, run_dir, copy_function=os.link)
    out = run_dir / "pairs" / f"{strategy}.jsonl"
    builder = make_builder(strategy, OPTIONS.get(strategy, {}))
    start = time.perf_counter()
    result = run_build(builder, BuildInputs(world=run_dir), out, num_proc=procs, shard_size=shard_size)
    wall = time.perf_counter() - start
    return {
        "strategy": strategy,
        "processes": procs,
        "units": result.units,
        "pairs": result.pairs,
        "seconds": round(wall, 3),
        "pairs_per_second": round(result.pairs / wall, 1) if wall > 0 else None,
        "shard_pairs_per_second": round(result.pairs_per_second, 1),
        "output": str(out),
    }


def bench_sample_rank(world: Path, model: Path, batch_size: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One timed ``sample-rank`` build generating in batches of ``batch_size``."""
    from mmalign.pairs.sample_rank import STATS, policy_model

    options = {
        "model": str(model),
        "scorer": "truth",
        "k": args.k,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": batch_size,
        "prompts_per_unit": args.prompts_per_unit,
        "limit": args.sample_rank_prompts,
        "min_gap": 0.0,
    }
    policy_model(str(model), "float32", None)  # loaded once per process: not part of the timing
    prompts_before, start = STATS["prompts"], time.perf_counter()
    result = run_build(make_builder("sample-rank", options), BuildInputs(world=world), out, out_root=world)
    wall = time.perf_counter() - start
    generations = (STATS["prompts"] - prompts_before) * args.k
    return {
        "strategy": "sample-rank",
        "batch_size": batch_size,
        "generations": generations,
        "max_new_tokens": args.max_new_tokens,
        "pairs": result.pairs,
        "seconds": round(wall, 3),
        "generations_per_second": round(generations / wall, 2) if wall > 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=10_000, help="Training scenes of the world built from.")
    parser.add_argument("--image-size", type=int, default=48, help="Image side of the world, in pixels.")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="Process counts to measure.")
    parser.add_argument("--strategies", nargs="+", default=list(OPTIONS), help="Strategies to measure.")
    parser.add_argument("--shard-size", type=int, default=1000, help="Units per shard.")
    parser.add_argument(
        "--sample-rank-batches",
        type=int,
        nargs="*",
        default=[1, 16],
        help="sample-rank: generation batch sizes to measure (none: skip sample-rank).",
    )
    parser.add_argument("--sample-rank-prompts", type=int, default=32, help="sample-rank: prompts (scenes) used.")
    parser.add_argument("--k", type=int, default=4, help="sample-rank: samples per prompt.")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="sample-rank: longest sample, in tokens.")
    parser.add_argument("--prompts-per-unit", type=int, default=8, help="sample-rank: prompts sampled together.")
    parser.add_argument("--repeats", type=int, default=1, help="sample-rank: interleaved runs; the best is kept.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results to this JSON file.")
    args = parser.parse_args()
    print_header(f"preference building, world of {args.scenes} train scenes at {args.image_size} px")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        start = time.perf_counter()
        cfg = WorldConfig(train_scenes=args.scenes, val_scenes=10, test_scenes=10, image_size=args.image_size)
        generate_world(world, cfg, num_workers=max(args.procs))
        print(f"world generated in {time.perf_counter() - start:.1f} s (not timed below)")
        for strategy in args.strategies:
            outputs = []
            for procs in args.procs:
                row = bench(world, strategy, procs, args.shard_size, Path(tmp) / f"run-{strategy}-{procs}")
                outputs.append(Path(row.pop("output")).read_bytes())
                results.append(row)
                print(
                    f"{strategy:>14} x{procs}: {row['pairs']} pairs from {row['units']} units in "
                    f"{row['seconds']:.2f} s = {row['pairs_per_second']:,.0f} pairs/s"
                )
            same = all(o == outputs[0] for o in outputs)
            print(f"{strategy:>14}: outputs identical across process counts: {'yes' if same else 'NO'}")
            if not same:
                raise SystemExit(f"{strategy}: outputs differ between process counts")
        if args.sample_rank_batches:
            from mmalign.models import ensure_preset

            model = ensure_preset("tiny-llava", Path(tmp) / "models")
            best: dict[int, dict[str, Any]] = {}
            for repeat in range(args.repeats):  # interleaved, so a busy moment does not favour one batch size
                for batch_size in args.sample_rank_batches:
                    out = Path(tmp) / f"sr-{repeat}-{batch_size}.jsonl"
                    row = bench_sample_rank(world, model, batch_size, args, out)
                    print(
                        f"{'sample-rank':>14} batch {batch_size}: {row['generations']} generations (<= "
                        f"{row['max_new_tokens']} tokens) in {row['seconds']:.2f} s = "
                        f"{row['generations_per_second']:.2f} generations/s ({row['pairs']} pairs)"
                    )
                    if batch_size not in best or row["seconds"] < best[batch_size]["seconds"]:
                        best[batch_size] = row
            for batch_size, row in best.items():
                results.append(row)
                print(
                    f"{'sample-rank':>14} batch {batch_size}, best of {args.repeats}: "
                    f"{row['generations_per_second']:.2f} generations/s"
                )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
