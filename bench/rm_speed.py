"""Reward-model training step: the shared prefix against two independent forwards, at 9 and 576 image tokens.

    python bench/rm_speed.py [--tokens 9 576] [--pairs 8] [--repeats 5] [--preset tiny-llava]

For each image-token count (the tiny LLaVA's images made larger, 16 px patches: 48 px = 9 tokens, 384 px = 576),
one batch of ``--pairs`` shapes-world preference pairs (prompt "Describe the image." + image; chosen = the scene's
caption, rejected = the same with an absent object named, as ``bench/prefix_breakeven.py`` makes them) is trained
one step three ways, with the same :class:`~mmalign.models.reward.RewardModel` (random head, seed 0, scaled so
that rewards are of order 1) and
Bradley-Terry loss (:class:`~mmalign.losses.reward.RewardLoss`), forward + backward:

* ``two``: the way a naive reward trainer works (TRL's ``RewardTrainer`` before 1.0): the chosen rows in one forward,
  the rejected rows in another, each row computing its prompt and image;
* ``concat``: chosen and rejected rows in ONE forward (``share_prefix: false``), still every row its own prefix;
* ``shared``: ``share_prefix: true`` (:mod:`mmalign.models.prefix`): each pair's prompt + image once, then the two
  responses on its cache, which is what ``mmalign train rm`` runs where that leaves out at least 25 % of the
  token positions (``share_prefix: auto``).

Each time is the median of ``--repeats`` timed steps after a warm-up, the paths alternating step by step in the same
process (a busy machine's slow spells fall on all three). The printed ratios are ``two / shared`` and
``concat / shared`` (above 1: the shared prefix is faster), beside the largest loss difference between the paths
(the issue asks for 1e-5) and the share of token positions the shared path leaves out.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

from mmalign.losses.reward import RewardLoss
from mmalign.models import load, save_tiny, spec_for
from mmalign.models.examples import examples_from
from mmalign.models.prefix import plan_prefixes, prefix_saving
from mmalign.models.reward import RewardModel, batch_rewards
from prefix_breakeven import PATCH, pairs
from timing import print_header

PATHS = ("two", "concat", "shared")


def medians(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run over ``repeats`` timed calls, alternating (after one warm-up call of each)."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(preset: str, tokens: int, n_pairs: int, repeats: int, root: Path) -> dict[str, float]:
    side = round(tokens**0.5) * PATCH
    loaded = load(save_tiny(spec_for(preset, image_size=side, patch_size=PATCH), root / f"{preset}-{side}"))
    model = RewardModel(loaded.model, seed=0).train()
    with torch.no_grad():  # rewards of order 1 (the initial head gives ~1e-3), so the loss comparison means something
        model.reward_head.weight.mul_(model.reward_head.in_features)
    collator = loaded.collator(mode="train")
    records = pairs(n_pairs, side)
    both = collator(records)  # chosen rows, then rejected rows (2n)
    rows = [examples_from(r) for r in records]
    chosen_only, rejected_only = collator([c for c, _ in rows]), collator([r for _, r in rows])
    loss_fn = RewardLoss()
    losses: dict[str, float] = {}

    def rewards(path: str) -> tuple[torch.Tensor, torch.Tensor]:
        if path == "two":
            return batch_rewards(model, chosen_only), batch_rewards(model, rejected_only)
        out = batch_rewards(model, both, share_prefix=path == "shared")
        return out[:n_pairs], out[n_pairs:]

    def step(path: str) -> Callable[[], None]:
        def run() -> None:
            loss = loss_fn(*rewards(path)).loss
            loss.backward()
            model.zero_grad(set_to_none=True)
            losses[path] = loss.item()

        return run

    times = medians({path: step(path) for path in PATHS}, repeats)
    return {
        **times,
        "saving": prefix_saving(both, plan_prefixes(loaded.model, both)),
        "loss_diff": max(abs(losses[p] - losses["two"]) for p in PATHS),
        "loss": losses["two"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[9, 576], help="Image tokens per image.")
    parser.add_argument("--pairs", type=int, default=8, help="Preference pairs per step.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed steps per path; the median is kept.")
    parser.add_argument("--preset", default="tiny-llava", help="Tiny model preset (its widths; images resized).")
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()
    print_header("reward-model step: shared prefix vs two forwards")
    threads = torch.get_num_threads()
    print(f"  {threads} threads, {args.preset}, {args.pairs} pairs a step, fp32, median of {args.repeats}")
    print(
        f"{'image tok':>9} {'saving':>6} | {'two fwd':>9} {'concat':>9} {'shared':>9} | {'two/shared':>10} "
        f"{'concat/shared':>13} | {'loss':>7} {'max |Δloss|':>11}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.tokens:
            r = measure(args.preset, n, args.pairs, args.repeats, Path(tmp))
            print(
                f"{n:>9} {r['saving']:>6.1%} | {r['two'] * 1e3:>7.1f}ms {r['concat'] * 1e3:>7.1f}ms "
                f"{r['shared'] * 1e3:>7.1f}ms | {r['two'] / r['shared']:>9.2f}x {r['concat'] / r['shared']:>12.2f}x | "
                f"{r['loss']:>7.4f} {r['loss_diff']:>11.1e}",
                flush=True,
            )
    print("goal: two/shared >= 1.6x at 576 image tokens with |Δloss| <= 1e-5")


if __name__ == "__main__":
    main()
