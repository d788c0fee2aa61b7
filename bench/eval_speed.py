"""Evaluation speed: the log-prob fast path against generate-and-parse on POPE items, in the same run.

    python bench/eval_speed.py [--items 192] [--batch-sizes 16 64] [--model DIR] [--threads 1]
    python bench/eval_speed.py --model tiny-llava --train-seconds 20     # a preset, fitted for 20 s first

The model (default: the demo's shipped SFT baseline, a tiny LLaVA that answers POPE questions with 0.9
accuracy, so agreement is measured on real answers; or a preset, optionally fitted for a few seconds on a small
shapes world's short-answer SFT records) answers the world's POPE questions four ways: the fast path (one
forward pass, option log-probs) and greedy generation parsed with POPE's official rule, each at batch 1
(lmms-eval's default for many models) and batched (left padding) at each of ``--batch-sizes``.
Item preparation (opening each image once, as ``mmalign eval run`` does, chat template, tokenization) is
inside the timed region for both, as in a real run. Each rate is the best of ``--repeats`` timed runs after
a warm-up. Also printed: how often the two ways give the same answer (the report's fast-path agreement).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mmalign.data.io import read_records
from mmalign.demo import checkpoint
from mmalign.eval.metrics.pope import official_yes_no
from mmalign.eval.run.fastpath import YES_NO, choose_options
from mmalign.eval.run.runner import OpenedImages
from mmalign.eval.tasks.items import read_eval_items
from mmalign.models import ensure_preset, generate, load, sequence_logps
from mmalign.world import WorldConfig, generate_world
from timing import best_rate, print_header


def fit(loaded, world: Path, seconds: float, seed: int = 0) -> int:
    """A few seconds of SFT (mean response log-likelihood, AdamW) on the world's short answers. Returns steps."""
    records = [r for r in read_records(world / "train" / "sft.jsonl", root=world) if r.meta.get("task") != "caption"]
    collator = loaded.collator(image_root=world)
    model = loaded.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(seed)
    model.train()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        out = sequence_logps(model, collator(rng.sample(records, min(16, len(records)))))
        loss = -(out.sum / out.n_tokens.clamp(min=1)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    model.eval()
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=192, help="POPE items answered per measurement.")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64], help="Batched measurements' sizes.")
    parser.add_argument(
        "--model", default=None, help="Model directory or preset name (default: the demo's shipped SFT baseline)."
    )
    parser.add_argument("--max-new-tokens", type=int, default=8, help="Generation budget (an answer is 'Yes.' + end).")
    parser.add_argument("--train-seconds", type=float, default=0.0, help="SFT seconds before measuring (0: as loaded).")
    parser.add_argument("--train-scenes", type=int, default=400, help="Training scenes of the world (test: 10%%).")
    parser.add_argument("--repeats", type=int, default=2, help="Timed runs per measurement; the best is kept.")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    args = parser.parse_args()
    print_header("eval speed: fast path (option log-probs) against generate-and-parse")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        generate_world(world, WorldConfig(train_scenes=args.train_scenes, seed=0))
        if args.model is None:
            checkpoint.verify()  # the shipped files match their manifest
            loaded, name = load(checkpoint.shipped_dir()), "the demo's SFT baseline"
        elif Path(args.model).is_dir():
            loaded, name = load(args.model), args.model
        else:
            loaded, name = load(ensure_preset(args.model, tmp)), args.model
        steps = fit(loaded, world, args.train_seconds) if args.train_seconds > 0 else 0
        items = [
            i for t in ("random", "popular", "adversarial") for i in read_eval_items(world / "test" / f"pope_{t}.jsonl")
        ][: args.items]
        n = len(items)

        def fast(batch: int) -> Callable[[], list[str]]:
            def run() -> list[str]:
                opened = OpenedImages().items(items, world)
                return [c.label for c in choose_options(loaded, opened, [YES_NO] * n, batch_size=batch)]

            return run

        def generated(batch: int) -> Callable[[], list[str]]:
            def run() -> list[str]:
                opened = OpenedImages().items(items, world)
                texts = generate(loaded, opened, max_new_tokens=args.max_new_tokens, batch_size=batch)
                return [official_yes_no(t) for t in texts]

            return run

        print(
            f"eval speed, {name} ({loaded.n_parameters() / 1e6:.2f}M params"
            + (f", {steps} SFT steps in {args.train_seconds:.0f} s" if steps else "")
            + f"), {n} POPE items, {torch.get_num_threads()} threads, "
            f"max_new_tokens {args.max_new_tokens}, best of {args.repeats}"
        )
        rates = {}
        for label, make in (("fast", fast), ("generate", generated)):
            for batch in (1, *args.batch_sizes):
                rates[(label, batch)] = best_rate(make(batch), n, args.repeats)
                print(f"  {label:<9} batch {batch:>3}: {rates[(label, batch)]:8.1f} items/s")
        one = rates[("generate", 1)]
        print(f"fast/generate at batch 1: {rates[('fast', 1)] / one:.1f}x")
        for b in args.batch_sizes:
            print(
                f"fast batch {b}/generate batch 1: {rates[('fast', b)] / one:.1f}x  "
                f"(lmms-eval's default: generating one item at a time)"
            )
            print(f"fast/generate at batch {b}: {rates[('fast', b)] / rates[('generate', b)]:.1f}x  (both batched)")
        b = args.batch_sizes[0]
        fast_answers, generated_answers = fast(b)(), generated(b)()
        agree = sum(x == y for x, y in zip(fast_answers, generated_answers, strict=True))
        ratios = f"{fast_answers.count('yes') / n:.2f} fast, {generated_answers.count('yes') / n:.2f} generated"
        print(f"agreement fast vs generate-and-parse: {100 * agree / n:.1f}% of {n} items; yes-ratio {ratios}")


if __name__ == "__main__":
    main()
