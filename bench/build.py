"""Preference-pair building speed: pairs per second for each strategy at 1 and 2 processes.

    python bench/build.py [--scenes 10000] [--procs 1 2] [--strategies hallucinate corrupt-image]

Generates a shapes world with ``--scenes`` training scenes once (not timed), then for each strategy and
process count runs a full ``run_build`` (planning, shards, image files, assembly) into a fresh hard-linked
copy of the world and reports its wall time and pairs per second (planning and assembly included).
Outputs of one strategy must be byte-identical whatever the process count; the script checks it.

Other strategies (``sample-rank``, ``adversarial``) join by name and, if they need them, options in
:data:`OPTIONS`.
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

from mmalign.data.build.registry import BuildInputs, make_builder
from mmalign.data.build.shards import run_build
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=10_000, help="Training scenes of the world built from.")
    parser.add_argument("--image-size", type=int, default=48, help="Image side of the world, in pixels.")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="Process counts to measure.")
    parser.add_argument("--strategies", nargs="+", default=list(OPTIONS), help="Strategies to measure.")
    parser.add_argument("--shard-size", type=int, default=1000, help="Units per shard.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results to this JSON file.")
    args = parser.parse_args()
    print(f"preference building, {os.cpu_count()} CPUs, world of {args.scenes} train scenes at {args.image_size} px")
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
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
