"""Training throughput alone and beside one competing CPU-bound process, with mmalign's thread settings and
with torch's defaults (what mmalign did before), to check the slowdown stays near the fair share (about 2×).

    python bench/contention.py [--seconds 4] [--repeats 2] [--batch-size 8]      # a training-step loop
    python bench/contention.py --train [--steps 100] [--batch-size 16]            # `mmalign train sft` itself

Each measurement runs in a fresh process (the OpenMP runtime reads its settings once, at start). The loop:
forward, backward and an AdamW step of the untrained tiny-llava on batches of shapes-world captions (48 px
images), examples per second over ``--seconds`` after two warm-up steps. ``--train``: ``mmalign train sft``
with the demo's SFT config on a 300-scene world, the examples/s it reports at the end. The competitor is a
Python process spinning on one core (``while True: pass``), started before and stopped after.

Settings compared:

- *torch defaults (before)*: one thread per CPU torch sees, OpenMP threads spinning while they wait
  (libgomp's default); with ``--train`` the CLI sets threads itself, so this is emulated with
  ``MMALIGN_THREADS=<os.cpu_count()>`` and ``GOMP_SPINCOUNT=300000`` (libgomp's default spin);
- *mmalign defaults*: :func:`mmalign.threads.configure_threads` as the CLI calls it, before torch is imported:
  threads = the CPUs this process may use (affinity mask, cgroup quota), OpenMP threads sleep when they wait;
- *mmalign --threads 1*: the same with one thread.

Every setting is measured alone and contended ``--repeats`` times, alternately; the best of each is kept
(the least disturbed by whatever else runs on the machine; the load average is printed before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mmalign.threads import available_cpus

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "KMP_BLOCKTIME",
    "MMALIGN_THREADS",
)
SETTINGS = {
    "torch defaults (before)": None,
    "mmalign defaults": "auto",
    "mmalign --threads 1": "1",
}
"""Label -> what the worker passes to configure_threads (None: nothing is configured; "auto": no --threads)."""


def worker(model_dir: Path, setting: str | None, seconds: float, batch_size: int) -> None:
    """Measure examples/s in this process and print one JSON line."""
    if setting is not None:
        from mmalign.threads import configure_threads

        configure_threads(None if setting == "auto" else int(setting))  # before torch is imported, as the CLI
    import torch

    from logprobs import world_records
    from mmalign.models import load, sequence_logps

    loaded = load(model_dir)
    records, _ = world_records(4 * batch_size)
    collator = loaded.collator()
    batches = [collator(records[i : i + batch_size]) for i in range(0, len(records), batch_size)]
    model = loaded.model
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step(batch: object) -> None:
        sequence_logps(model, batch).sum.sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:2]:
        step(batch)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step(batches[steps % len(batches)])
        steps += 1
    rate = steps * batch_size / (time.perf_counter() - start)
    print(
        json.dumps({"rate": rate, "threads": torch.get_num_threads(), "wait_policy": os.environ.get("OMP_WAIT_POLICY")})
    )


def measure(work: Path, setting: str | None, contended: bool, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if args.train:
        command = train_command(work, setting, args, env)
    else:
        command = [
            sys.executable,
            __file__,
            "--worker",
            str(work),
            "--setting",
            setting or "none",
            "--seconds",
            str(args.seconds),
            "--batch-size",
            str(args.batch_size),
        ]
    competitor = None
    if contended:
        competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.2)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    if not args.train:
        return json.loads(done.stdout.strip().splitlines()[-1])
    rate = re.search(r"^done: .* ([0-9.]+) ex/s", done.stdout, re.M)
    if rate is None:
        raise SystemExit(f"no 'done: ... ex/s' line in the output of {' '.join(command)}:\n{done.stdout[-2000:]}")
    threads = {None: os.cpu_count(), "auto": available_cpus()}.get(setting, setting)
    return {
        "rate": float(rate.group(1)),
        "threads": threads,
        "wait_policy": env.get("OMP_WAIT_POLICY", "PASSIVE") if setting is not None else None,
    }


def train_command(work: Path, setting: str | None, args: argparse.Namespace, env: dict[str, str]) -> list[str]:
    """``mmalign train sft`` on the world in ``work`` (the demo's SFT config, ``--steps`` steps, no checkpoint)."""
    if setting is None:  # torch's defaults, as far as the CLI lets them be: a thread per CPU, spinning waits
        env.update({"MMALIGN_THREADS": str(os.cpu_count() or 1), "GOMP_SPINCOUNT": "300000"})
    elif setting != "auto":
        env["MMALIGN_THREADS"] = setting
    out = work / "sft"
    shutil.rmtree(out, ignore_errors=True)
    config = Path(__file__).resolve().parents[1] / "configs" / "demo" / "sft.yaml"
    return [
        sys.executable,
        "-m",
        "mmalign.cli.main",
        "train",
        "sft",
        "--config",
        str(config),
        "--no-progress",
        f"data.train={work / 'world' / 'train' / 'sft.jsonl'}",
        f"data.root={work / 'world'}",
        f"train.output_dir={out}",
        f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        "train.save_steps=100000",
        f"train.logging_steps={args.steps}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="Measured seconds per run (after warm-up).")
    parser.add_argument("--repeats", type=int, default=2, help="Runs per setting and condition; the best is kept.")
    parser.add_argument("--batch-size", type=int, default=None, help="Examples per step (8; --train: 16).")
    parser.add_argument("--train", action="store_true", help="Measure `mmalign train sft` instead of the loop.")
    parser.add_argument("--steps", type=int, default=100, help="--train: training steps per run.")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch_size is None:
        args.batch_size = 16 if args.train else 8
    if args.worker is not None:
        worker(args.worker, None if args.setting == "none" else args.setting, args.seconds, args.batch_size)
        return

    import transformers

    from mmalign.models import save_tiny, spec_for
    from timing import print_header

    what = "`mmalign train sft` (demo SFT config)" if args.train else "training steps (forward, backward, AdamW)"
    print_header(f"CPU contention: tiny-llava {what}, examples/s")
    print(f"  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    length = f"{args.steps} steps" if args.train else f"{args.seconds:g} s"
    print(
        f"  batch {args.batch_size}, {length} a run, best of {args.repeats}; competitor: one process spinning on a core"
    )
    results: dict[str, dict[str, list[dict]]] = {label: {"alone": [], "contended": []} for label in SETTINGS}
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        if args.train:
            from mmalign.world import WorldConfig, generate_world

            work = Path(tmp)
            generate_world(work / "world", WorldConfig(train_scenes=300, seed=0))
        else:
            work = save_tiny(spec_for("tiny-llava"), Path(tmp) / "tiny-llava", preset="tiny-llava")
        for _ in range(args.repeats):
            for label, setting in SETTINGS.items():
                for condition in ("alone", "contended"):
                    results[label][condition].append(measure(work, setting, condition == "contended", args))
    print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'setting':<26} {'threads':>7} {'wait':>8} {'alone':>9} {'contended':>10} {'slowdown':>9}  runs")
    for label, runs in results.items():
        alone = max(r["rate"] for r in runs["alone"])
        contended = max(r["rate"] for r in runs["contended"])
        first = runs["alone"][0]
        every = " / ".join(f"{r['rate']:.0f}" for c in ("alone", "contended") for r in runs[c])
        print(
            f"{label:<26} {first['threads']:>7} {first['wait_policy'] or 'spin':>8} {alone:>7.1f}/s "
            f"{contended:>8.1f}/s {alone / contended:>8.2f}x  {every}"
        )
    print(
        "slowdown = alone / contended (fair share of 2 cores with one competitor: about 2x); runs: every alone "
        "rate, then every contended rate"
    )


if __name__ == "__main__":
    main()
