"""Shapes-world generation speed: scenes per second at 64 px and 336 px, rendering and writing included.

    python bench/world.py [--scenes 1000] [--workers 1] [--sizes 64 336]

Each run generates a full world (train scenes plus 10% val and 10% test, with every record file) into a
temporary directory and reports the wall time of ``generate_world``, and of rendering alone.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from mmalign.world.config import WorldConfig
from mmalign.world.draw import render, save_png
from mmalign.world.generate import generate_world
from mmalign.world.scene import sample_scene
from timing import print_header


def bench_render(size: int, n: int, out: Path) -> float:
    """Scenes rendered and saved as PNG per second (no records), one process."""
    cfg = WorldConfig(image_size=size)
    rng = random.Random(0)
    scenes = [sample_scene(rng, cfg) for _ in range(n)]
    start = time.perf_counter()
    for i, scene in enumerate(scenes):
        save_png(render(scene, size), out / f"{i}.png")
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=1000, help="Training scenes per run (val, test: 10%% each).")
    parser.add_argument("--workers", type=int, default=1, help="Rendering processes.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 336], help="Image sizes to measure.")
    args = parser.parse_args()
    print_header(f"shapes world generation, {args.workers} render worker(s)")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            cfg = WorldConfig(image_size=size, train_scenes=args.scenes)
            summary = generate_world(Path(tmp) / f"w{size}", cfg, num_workers=args.workers)
            total = sum(summary.scenes.values())
            render_dir = Path(tmp) / f"r{size}"
            render_dir.mkdir()
            render_rate = bench_render(size, min(total, 500), render_dir)
            print(
                f"{size:>4} px: {total} scenes in {summary.seconds:.2f} s = {summary.scenes_per_second:.0f} scenes/s "
                f"(full world: sampling, rendering, PNG, records); render+PNG alone: {render_rate:.0f} scenes/s"
            )


if __name__ == "__main__":
    main()
