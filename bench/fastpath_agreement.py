"""Fast path against generate-and-parse, task by task: the agreement figures ``mmalign eval run`` decides by.

    python bench/fastpath_agreement.py [--test-scenes 400] [--batch-size 8] [--model DIR] [--threads 1]

For every closed task (POPE's three splits, consistency, MME, multiple choice) the model (default: the shipped
SFT baseline) answers the shapes world's test items (the baseline's own world, as the demo generates it: its
40 000 training scenes rank POPE's popular and adversarial negatives and the multiple-choice distractors;
``--test-scenes`` held-out scenes) through the runner's own code (:class:`mmalign.eval.run.runner.Runner`, the
same batches and caches as ``mmalign eval run``) two ways: the fast path, and greedy generation. Both answers
are read by the task's official parser. Printed per task:

* ``options only``: agreement when the fast path always writes its best option (how it worked before it
  checked the greedy path; MME was 75.2 % on the shipped baseline, which answers colour and position
  questions with a colour, a letter or a caption, which MME's parser reads as neither yes nor no);
* ``generated``: items whose greedy first token(s) are not an option's, so the fast path generates them;
* ``agreement``: what ``mmalign eval run`` writes against generate-and-parse, the figure recorded in
  ``mmalign.eval.tasks.measured.MEASURED`` (the fast path is a task's default only at 99 % or more).

The last lines are the ``MEASURED`` entries to paste when the figures change.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from mmalign.demo import checkpoint
from mmalign.eval.run.agreement import agreement, parsed_answer
from mmalign.eval.run.cache import model_fingerprint
from mmalign.eval.run.runner import Runner
from mmalign.eval.tasks.measured import MIN_AGREEMENT
from mmalign.eval.tasks.specs import TASKS
from mmalign.eval.tasks.world import world_input
from mmalign.models import load
from mmalign.world import WorldConfig, generate_world
from timing import print_header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Model directory (default: the shipped SFT baseline).")
    parser.add_argument("--test-scenes", type=int, default=400, help="Held-out scenes (the demo's 400 by default).")
    parser.add_argument("--batch-size", type=int, default=8, help="Items per batch (mmalign eval run's default).")
    parser.add_argument("--max-new-tokens", type=int, default=8, help="Generation budget (the closed tasks' own).")
    parser.add_argument("--tasks", default=None, help="Comma-separated closed tasks (default: all of them).")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default).")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = checkpoint.shipped_dir() if args.model is None else Path(args.model)
    if args.model is None:
        checkpoint.verify()
    names = args.tasks.split(",") if args.tasks else [n for n, spec in TASKS.items() if spec.fast]
    world_options = dict(checkpoint.read_manifest(model_dir)["world"]) if args.model is None else {"seed": 0}
    world_options.update(val_scenes=0, test_scenes=args.test_scenes)
    started = time.perf_counter()
    print_header("fast path agreement")
    print(f"  torch threads: {torch.get_num_threads()}")
    fingerprint = model_fingerprint(model_dir)
    print(
        f"  model: {model_dir} (fingerprint {fingerprint[:16]}); world seed {world_options.get('seed')}, "
        f"{world_options.get('train_scenes', 'default')} training scenes, test split of {args.test_scenes} scenes; "
        f"batch {args.batch_size}, max_new_tokens {args.max_new_tokens}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        generate_world(world, WorldConfig(**world_options))
        loaded = load(model_dir)
        runner = Runner(loaded, fingerprint, Path(tmp) / "cache", args.batch_size, progress=False)
        reference_runner = Runner(loaded, fingerprint, Path(tmp) / "reference", args.batch_size, progress=False)
        print(f"  {'task':<18} {'items':>6} {'options only':>13} {'generated':>10} {'agreement':>10}  default")
        measured = {}
        for name in names:
            spec = TASKS[name]
            inp = world_input(name, spec.world_file, world, "test", Path(tmp) / "inputs")
            items = inp.items
            rows = runner.choose(name, items, inp.image_root)
            # as mmalign eval run: the items off the greedy path generated in batches of their own
            off = [k for k, r in enumerate(rows) if not r["greedy"]]
            texts = [r["text"] for r in rows]
            for k, text in zip(
                off, runner.generate(name, [items[k] for k in off], inp.image_root, args.max_new_tokens), strict=True
            ):
                texts[k] = text
            generated = reference_runner.generate(name, items, inp.image_root, args.max_new_tokens)
            ids = [i.id for i in items]
            reference = [parsed_answer(spec, i, t) for i, t in zip(items, generated, strict=True)]
            options_only = agreement(
                [parsed_answer(spec, i, r["text"]) for i, r in zip(items, rows, strict=True)], reference, ids
            )
            result = agreement([parsed_answer(spec, i, t) for i, t in zip(items, texts, strict=True)], reference, ids)
            default = "fast path" if result["agreement"] >= MIN_AGREEMENT else "generate"
            print(
                f"  {name:<18} {len(items):>6} {100 * options_only['agreement']:>12.1f}% {len(off):>10} "
                f"{100 * result['agreement']:>9.1f}%  {default}"
            )
            if result["disagreements"]:
                print(f"    disagreements (first {len(result['disagreements'])}): {', '.join(result['disagreements'])}")
            measured[name] = (result["agree"], result["n"])
    print(f"  {time.perf_counter() - started:.0f} s in all")
    for name, (agree, n) in measured.items():
        print(f'    "{name}": Agreement({agree}, {n}, MEASURED_BY),')


if __name__ == "__main__":
    main()
