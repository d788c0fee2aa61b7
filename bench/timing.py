"""Helpers the bench scripts share (each script runs as ``python bench/NAME.py``, so this folder is on
``sys.path``): timing, and the header every bench prints with its figures (command, date, machine, versions)."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

BASE_LIBRARIES = ("torch", "transformers")


def best_rate(run: Callable[[], object], items: int, repeats: int) -> float:
    """Items per second of the fastest of ``repeats`` runs (after one warm-up run)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return items / best


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def gpu_names() -> str:
    """The GPUs torch sees (when this process has imported torch), else those ``nvidia-smi`` lists, else "none".

    torch is not imported here: a bench that does not use it keeps its own imports (and memory) as they were.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    if torch is None and shutil.which("nvidia-smi"):
        try:
            listed = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return "unknown (nvidia-smi failed)"
        names = [line.strip() for line in listed.splitlines() if line.strip()]
        return ", ".join(names) or "none"
    return "none"


def machine() -> str:
    """OS, CPU model, CPU count, the CPUs this process may use (affinity mask, cgroup quota) and the GPUs."""
    from mmalign.threads import affinity_cpus, available_cpus, cgroup_cpu_limit

    limit = cgroup_cpu_limit()
    quota = "none" if limit is None else f"{limit:g} CPUs"
    return (
        f"{platform.platform()}, {cpu_model()}, {os.cpu_count()} CPUs ({available_cpus()} usable: affinity "
        f"{affinity_cpus()}, cgroup quota {quota}), GPU: {gpu_names()}"
    )


def version(package: str) -> str:
    """The installed version of ``package`` (its distribution metadata; nothing is imported), or "not installed"."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions(libraries: Sequence[str] = ()) -> str:
    """Python, torch, transformers, then ``libraries`` (e.g. trl, accelerate), then mmalign."""
    import mmalign

    names = [*BASE_LIBRARIES, *(name for name in libraries if name not in BASE_LIBRARIES)]
    listed = ", ".join(f"{name} {version(name)}" for name in names)
    return f"Python {platform.python_version()}, {listed}, mmalign {mmalign.__version__}"


def run_info(libraries: Sequence[str] = ()) -> dict[str, str]:
    """What a measurement was made with: the command line as run, the UTC date, the machine and the versions."""
    return {
        "command": shlex.join(["python", *sys.argv]),
        "date": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "machine": machine(),
        "versions": versions(libraries),
    }


def header(title: str, libraries: Sequence[str] = ()) -> str:
    """``title`` then one indented line each for :func:`run_info`'s command, date, machine and versions."""
    return "\n".join([title, *(f"  {key}: {value}" for key, value in run_info(libraries).items())])


def print_header(title: str, libraries: Sequence[str] = ()) -> None:
    """Print :func:`header` (every bench does, before its figures, so that a pasted result says how it was made)."""
    print(header(title, libraries), flush=True)
