"""Where the shared-prefix forward starts to pay: step time of the shared and the concatenated forward by size.

    python bench/prefix_breakeven.py [--tokens 9 36 81 144 256 576] [--pairs 8] [--repeats 5] [--preset tiny-llava]

For each image-token count (the tiny LLaVA's images made larger, 16 px patches: 48 px = 9 tokens ... 384 px = 576),
one batch of ``--pairs`` shapes-world preference pairs (prompt "Describe the image." + image; chosen = the scene's
caption, rejected = the same with an absent object named) is scored both ways, policy-style (forward + backward of
the chosen and rejected log-probs) and reference-style (forward, no gradient):

* ``concat``: :func:`mmalign.models.preference_logps`, chosen and rejected rows in one forward (TRL's
  ``concatenated_forward``), every row computing its prompt and image;
* ``shared``: :func:`mmalign.models.prefix.shared_prefix_preference_logps`, each pair's prompt + image once.

Each figure is the median of ``--repeats`` timed runs after a warm-up, the two paths alternating run by run in the
same process. Beside the times it prints what the automatic choice (``share_prefix: auto``) reads: the share of token
positions the shared path leaves out (:func:`mmalign.models.prefix.prefix_saving`). The break-even it reports is the
smallest size from which ``shared / concat`` stays below 1 on the fwd+bwd step at every larger size measured; the
rule's threshold (:data:`mmalign.models.prefix.AUTO_MIN_SAVING`) is set from it and written in the README.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

from mmalign.data.records import PreferenceRecord, assistant, user_prompt
from mmalign.models import load, preference_logps, save_tiny, spec_for
from mmalign.models.prefix import plan_prefixes, prefix_saving, shared_prefix_preference_logps
from mmalign.objects import shapes
from mmalign.world import WorldConfig, object_types, render, sample_scene
from mmalign.world.text import phrase
from timing import print_header

PATCH = 16


def pairs(n: int, image_size: int, seed: int = 0) -> list[PreferenceRecord]:
    """``n`` preference pairs on ``image_size`` px scenes (deterministic given the seed)."""
    cfg = WorldConfig(image_size=image_size)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        scene = sample_scene(rng, cfg, f"b{i}")
        phrases = [phrase(o, cfg) for o in scene.objects]
        absent = rng.choice([t for t in object_types(cfg) if t not in scene.names]).split(" ", 1)
        wrong = [*phrases]
        wrong.insert(rng.randrange(len(wrong) + 1), shapes.object_phrase(absent[0], absent[1], "small"))
        prompt = user_prompt("Describe the image.", 1)
        image = render(scene, image_size)
        chosen, rejected = assistant(shapes.caption(phrases)), assistant(shapes.caption(wrong))
        out.append(PreferenceRecord(f"p{i}", prompt, chosen, rejected, [image]))
    return out


def paired_medians(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b`` over ``repeats`` timed runs each, alternating (after a warm-up of each),
    so that a busy machine's slow spells fall on both."""
    a(), b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((a, times[0]), (b, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def measure(preset: str, tokens: int, n_pairs: int, repeats: int, root: Path) -> dict[str, float]:
    side = round(tokens**0.5) * PATCH
    spec = spec_for(preset, image_size=side, patch_size=PATCH)
    loaded = load(save_tiny(spec, root / f"{preset}-{side}", preset=preset))
    model = loaded.model
    model.train()
    batch = loaded.collator()(pairs(n_pairs, side))

    def step(fn: Callable) -> Callable[[], None]:
        def run() -> None:
            out = fn(model, batch)
            (out.chosen.sum.sum() - out.rejected.sum.sum()).backward()
            model.zero_grad(set_to_none=True)

        return run

    def forward(fn: Callable) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                fn(model, batch)

        return run

    plan = plan_prefixes(model, batch)
    concat_step, shared_step = paired_medians(step(preference_logps), step(shared_prefix_preference_logps), repeats)
    concat_fwd, shared_fwd = paired_medians(forward(preference_logps), forward(shared_prefix_preference_logps), repeats)
    return {
        "prompt": batch.prompt_lengths.float().mean().item(),
        "width": batch.input_ids.shape[1],
        "saving": prefix_saving(batch, plan),
        "concat_step": concat_step,
        "shared_step": shared_step,
        "concat_fwd": concat_fwd,
        "shared_fwd": shared_fwd,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[9, 36, 81, 144, 256, 576], help="Image tokens.")
    parser.add_argument("--pairs", type=int, default=8, help="Preference pairs per batch.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs per figure; the median is kept.")
    parser.add_argument("--preset", default="tiny-llava", help="Tiny model preset (its widths; images resized).")
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()
    print_header("shared-prefix break-even")
    print(
        f"  {torch.get_num_threads()} threads, {args.preset}, {args.pairs} pairs a batch, fp32, median of "
        f"{args.repeats}"
    )
    print(
        f"{'image tok':>9} {'prompt':>6} {'width':>5} {'saving':>6} | {'concat step':>11} {'shared step':>11} "
        f"{'shared/concat':>13} | {'concat fwd':>10} {'shared fwd':>10} {'shared/concat':>13}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.tokens:
            r = measure(args.preset, n, args.pairs, args.repeats, Path(tmp))
            rows.append((n, r))
            print(
                f"{n:>9} {r['prompt']:>6.1f} {r['width']:>5} {r['saving']:>6.1%} | {r['concat_step'] * 1e3:>9.1f}ms "
                f"{r['shared_step'] * 1e3:>9.1f}ms {r['shared_step'] / r['concat_step']:>12.2f}x | "
                f"{r['concat_fwd'] * 1e3:>8.1f}ms {r['shared_fwd'] * 1e3:>8.1f}ms "
                f"{r['shared_fwd'] / r['concat_fwd']:>12.2f}x",
                flush=True,
            )
    stays = [i for i in range(len(rows)) if all(r["shared_step"] < r["concat_step"] for _, r in rows[i:])]
    if stays:
        n, r = rows[stays[0]]
        print(f"break-even (fwd+bwd): shared faster from {n} image tokens on, leaving out {r['saving']:.1%} of tokens")
    else:
        print("break-even (fwd+bwd): the shared path was not faster at the largest size measured")
    print("saving = 1 - (distinct prefixes x prefix width + rows x continuation width) / (rows x batch width)")


if __name__ == "__main__":
    main()
