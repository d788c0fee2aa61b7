"""Training throughput alone and beside one competing CPU-bound process, with mmalign's thread settings and
with torch's defaults (what mmalign did before), to check the slowdown stays near the fair share (about 2×).

    python bench/contention.py [--seconds 4] [--repeats 2] [--batch-size 8]

Each measurement runs in a fresh process (the OpenMP runtime reads its settings once, at start): forward,
backward and an AdamW step of the untrained tiny-llava on batches of shapes-world captions (48 px images),
counted in examples per second over ``--seconds`` after two warm-up steps. The competitor is a Python process
spinning on one core (``while True: pass``), started before the measuring process and stopped after it.

Settings compared:

- *torch defaults (before)*: no thread variables set: torch starts one thread per core it sees and OpenMP
  threads spin while they wait (libgomp's default);
- *mmalign defaults*: :func:`mmalign.threads.configure_threads` as the CLI calls it, before torch is imported:
  threads = the CPUs this process may use (affinity mask, cgroup quota), OpenMP threads sleep when they wait;
- *mmalign --threads 1*: the same with one thread.

Every setting is measured alone and contended ``--repeats`` times, alternately; the best of each is kept
(the least disturbed by whatever else runs on the machine; the load average is printed before and after).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
               "KMP_BLOCKTIME", "MMALIGN_THREADS")  # fmt: skip
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
    print(json.dumps({"rate": rate, "threads": torch.get_num_threads(),
                      "wait_policy": os.environ.get("OMP_WAIT_POLICY")}))  # fmt: skip


def measure(model_dir: Path, setting: str | None, contended: bool, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    competitor = None
    if contended:
        competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.2)
    try:
        command = [sys.executable, __file__, "--worker", str(model_dir), "--setting", setting or "none",
                   "--seconds", str(args.seconds), "--batch-size", str(args.batch_size)]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> str:
    from mmalign.threads import affinity_cpus, cgroup_cpu_limit

    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    limit = cgroup_cpu_limit()
    return (f"{platform.platform()}, {model}, {os.cpu_count()} CPUs, affinity {affinity_cpus()}, cgroup quota "
            f"{'none' if limit is None else f'{limit:g} CPUs'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="Measured seconds per run (after warm-up).")
    parser.add_argument("--repeats", type=int, default=2, help="Runs per setting and condition; the best is kept.")
    parser.add_argument("--batch-size", type=int, default=8, help="Examples per training step.")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, None if args.setting == "none" else args.setting, args.seconds, args.batch_size)
        return

    import torch
    import transformers

    import mmalign
    from mmalign.models import save_tiny, spec_for

    print("CPU contention: tiny-llava training steps (forward, backward, AdamW), examples/s")
    print(f"  command: python {' '.join(sys.argv)}")
    print(f"  date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}")
    print(f"  machine: {machine()}")
    print(f"  versions: Python {platform.python_version()}, torch {torch.__version__}, transformers "
          f"{transformers.__version__}, mmalign {mmalign.__version__}")  # fmt: skip
    print(f"  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"  batch {args.batch_size}, {args.seconds:g} s a run, best of {args.repeats}; competitor: one process "
          "spinning on a core")  # fmt: skip
    results: dict[str, dict[str, list[dict]]] = {label: {"alone": [], "contended": []} for label in SETTINGS}
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_tiny(spec_for("tiny-llava"), Path(tmp) / "tiny-llava", preset="tiny-llava")
        for _ in range(args.repeats):
            for label, setting in SETTINGS.items():
                for condition in ("alone", "contended"):
                    results[label][condition].append(measure(model_dir, setting, condition == "contended", args))
    print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'setting':<26} {'threads':>7} {'wait':>8} {'alone':>9} {'contended':>10} {'slowdown':>9}  runs")
    for label, runs in results.items():
        alone = max(r["rate"] for r in runs["alone"])
        contended = max(r["rate"] for r in runs["contended"])
        first = runs["alone"][0]
        every = " / ".join(f"{r['rate']:.0f}" for c in ("alone", "contended") for r in runs[c])
        print(f"{label:<26} {first['threads']:>7} {first['wait_policy'] or 'spin':>8} {alone:>7.1f}/s "
              f"{contended:>8.1f}/s {alone / contended:>8.2f}x  {every}")  # fmt: skip
    print(
        "slowdown = alone / contended (fair share of 2 cores with one competitor: about 2x); runs: every alone "
        "rate, then every contended rate"
    )


if __name__ == "__main__":
    main()
