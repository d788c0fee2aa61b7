"""Bench: ``validate`` speed (records/s) and peak memory on JSONL files of growing size.

Writes one JSONL file per size (small preference pairs sharing a few image files) in a temporary folder, runs
:func:`mmalign.data.validate.validate` on each in a fresh subprocess, and prints records per second and peak
resident memory (``getrusage`` max RSS). Memory must stay flat as the file grows: the last line is the ratio of
peak memory between the largest and the smallest file.

    python bench/validate.py                     # 100k and 1M records
    python bench/validate.py --sizes 2000 20000  # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def size_label(n: int) -> str:
    """100000 -> '100k', 1000000 -> '1M'."""
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def make_images(root: Path, n_images: int) -> list[str]:
    from PIL import Image

    paths = []
    for i in range(n_images):
        rel = f"images/{i:03d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (40 * i % 256, 90, 160)).save(root / rel)
        paths.append(rel)
    return paths


def make_jsonl(path: Path, n_records: int, images: list[str]) -> None:
    """Small pairs (about 400 bytes a line) in TRL's conversational layout, one shared image each."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_records):
            colour = ("red", "green", "blue", "yellow")[i % 4]
            row = {
                "id": f"pair-{i:07d}",
                "images": [images[i % len(images)]],
                "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}],
                "chosen": [{"role": "assistant", "content": [{"type": "text", "text": f"A {colour} square."}]}],
                "rejected": [
                    {"role": "assistant", "content": [{"type": "text", "text": f"A {colour} square and a star."}]}
                ],
                "rejected_spans": [[len(colour) + 10, len(colour) + 20]],  # "and a star"
                "source": ("hallucinate", "edit")[i % 2],
                "meta": {"seed": i},
            }
            f.write(json.dumps(row))
            f.write("\n")


def child(path: str) -> None:
    """Run in a fresh process: validate one file and print a JSON line of what was measured."""
    from mmalign.data.validate import validate

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    report = validate(path)
    seconds = time.perf_counter() - start
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "records": report.n_records,
                "bad": report.n_bad,
                "images_checked": report.images_checked,
                "seconds": seconds,
                "rss_after_import_mib": rss_before / 1024,
                "rss_peak_mib": rss_peak / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="Records per file.")
    parser.add_argument("--images", type=int, default=8, help="Distinct image files the records share.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    from timing import print_header  # here, not at the top: the child's memory stays as it was measured

    print_header("mmalign data validate: records/s and peak memory, one fresh process per file")

    results = {}
    with tempfile.TemporaryDirectory(prefix="mmalign-bench-validate-") as tmp:
        root = Path(tmp)
        images = make_images(root, args.images)
        for n in args.sizes:
            path = root / f"pairs-{size_label(n)}.jsonl"
            start = time.perf_counter()
            make_jsonl(path, n, images)
            made = time.perf_counter() - start
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path)], check=True, capture_output=True, text=True
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            if result["records"] != n or result["bad"]:
                raise SystemExit(f"unexpected report for {path.name}: {result}")
            results[n] = result
            size_mib = path.stat().st_size / 2**20
            print(
                f"{size_label(n):>6} records ({size_mib:,.1f} MiB, written in {made:.1f} s): "
                f"validate {result['seconds']:.2f} s = {n / result['seconds']:,.0f} records/s; "
                f"peak RSS {result['rss_peak_mib']:.1f} MiB (after imports {result['rss_after_import_mib']:.1f} MiB); "
                f"{result['images_checked']} image files decoded",
                flush=True,
            )
    small, large = min(results), max(results)
    ratio = results[large]["rss_peak_mib"] / results[small]["rss_peak_mib"]
    print(f"peak memory ratio {size_label(large)}/{size_label(small)}: {ratio:.2f}")


if __name__ == "__main__":
    main()
