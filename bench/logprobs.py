"""Response log-prob throughput of each tiny family: sequences per second, batched against one at a time.

    python bench/logprobs.py [--sequences 64] [--batch-size 16] [--families tiny-llava tiny-qwen2-vl ...]

Shapes-world captions of 48 px scenes (SFT records: "Describe the image." -> the reference caption) are
scored with :func:`sequence_logps` in batches (forward only, ``torch.no_grad``, and forward + backward),
and with batch size 1 as the peer in the same run. Preference pairs (caption vs. caption with one object
swapped) are scored with :func:`preference_logps`: chosen and rejected in one forward. Collation (image
processing, tokenization) is outside the timed region; each measurement is the best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from mmalign.data.records import PreferenceRecord, SFTRecord, assistant, user_prompt
from mmalign.models import load, preference_logps, save_tiny, sequence_logps, spec_for
from mmalign.world import WorldConfig, reference_caption, render, sample_scene
from timing import best_rate, print_header


def world_records(n: int, seed: int = 0) -> tuple[list[SFTRecord], list[PreferenceRecord]]:
    cfg = WorldConfig(image_size=48)
    rng = random.Random(seed)
    sft, pairs = [], []
    for i in range(n):
        scene = sample_scene(rng, cfg, f"b{i}")
        image, caption = render(scene, cfg.image_size), reference_caption(scene, cfg)
        prompt = user_prompt("Describe the image.", 1)
        sft.append(SFTRecord(f"s{i}", prompt, assistant(caption), [image]))
        words = caption.split()
        swapped = " ".join("star" if w == "circle" else ("circle" if w == "star" else w) for w in words)
        rejected = swapped if swapped != caption else caption.replace("There is", "There is a red heart and")
        pairs.append(PreferenceRecord(f"p{i}", prompt, assistant(caption), assistant(rejected), [image]))
    return sft, pairs


def bench_family(preset: str, root: Path, n: int, batch_size: int, repeats: int) -> dict[str, float]:
    loaded = load(save_tiny(spec_for(preset), root / preset, preset=preset))
    sft, pairs = world_records(n)
    collator = loaded.collator()
    batches = [collator(sft[i : i + batch_size]) for i in range(0, n, batch_size)]
    singles = [collator([r]) for r in sft]
    pair_batches = [collator(pairs[i : i + batch_size // 2]) for i in range(0, n, batch_size // 2)]
    model = loaded.model

    def forward(batch_list) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                for batch in batch_list:
                    sequence_logps(model, batch)

        return run

    def train_step() -> None:
        for batch in batches:
            sequence_logps(model, batch).sum.sum().backward()
        model.zero_grad(set_to_none=True)

    def pairs_run() -> None:
        with torch.no_grad():
            for batch in pair_batches:
                preference_logps(model, batch)

    tokens = sum(int(b.attention_mask.sum()) for b in batches) / n
    return {
        "params": sum(p.numel() for p in model.parameters()) / 1e6,
        "tokens": tokens,
        "batched": best_rate(forward(batches), n, repeats),
        "single": best_rate(forward(singles), n, repeats),
        "train": best_rate(train_step, n, repeats),
        "pairs": best_rate(pairs_run, 2 * len(pairs), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=64, help="Sequences scored per measurement.")
    parser.add_argument("--batch-size", type=int, default=16, help="Sequences per batch (pairs: half as many).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per measurement; the best is kept.")
    parser.add_argument(
        "--families",
        nargs="+",
        default=["tiny-llava", "tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-idefics3"],
        help="Tiny presets to measure.",
    )
    args = parser.parse_args()
    print_header("response log-probs")
    print(
        f"  {torch.get_num_threads()} threads, {args.sequences} world captions, batch {args.batch_size}, fp32, "
        f"best of {args.repeats}"
    )
    header = f"{'family':<16} {'params':>7} {'tok/seq':>7} {'batched':>9} {'one-by-one':>10} {'ratio':>6}"
    print(header + f" {'fwd+bwd':>9} {'pairs (1 fwd)':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.families:
            r = bench_family(preset, Path(tmp), args.sequences, args.batch_size, args.repeats)
            print(
                f"{preset:<16} {r['params']:>6.2f}M {r['tokens']:>7.1f} {r['batched']:>7.0f}/s {r['single']:>8.0f}/s "
                f"{r['batched'] / r['single']:>5.1f}x {r['train']:>7.0f}/s {r['pairs']:>11.0f}/s"
            )
    print("sequences per second; ratio = batched / one-by-one (same model, same run); pairs: sequences/s")


if __name__ == "__main__":
    main()
