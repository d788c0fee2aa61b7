"""How many CPU threads a command uses: the CPUs this process may actually run on, or what the user asks.

    configure_threads(None)   # at CLI start: --threads N, else $MMALIGN_THREADS, else the available CPUs

``os.cpu_count()`` counts the machine's CPUs, not those this process may use: a container limited by a
cgroup CPU quota, or a process pinned to some cores (``taskset``), sees every core of the host. Running
more compute threads than usable CPUs makes every OpenMP parallel region wait for a descheduled thread;
spinning threads make it worse, since a waiting thread burns the core its peer needs (on a 2-core machine
with one other busy process, tiny-model training fell from ~160 to ~6 examples/s). So:

* the thread count is the smallest of the CPU affinity mask and the cgroup quota (v2 ``cpu.max``,
  v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``, rounded down, at least 1), unless ``--threads`` or
  ``MMALIGN_THREADS`` say otherwise;
* OpenMP threads sleep when they wait (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning, unless the user
  set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` themselves.

Measured by ``bench/contention.py`` (tiny-llava ``mmalign train sft`` on a 2-core VM, examples/s alone →
beside one busy process): torch's defaults 312 → 132, these settings 210 → 187, ``--threads 1`` 211 → 209
(a bare training-step loop: 333 → 98, and as low as 7; 152 → 213; 252 → 253). Sleeping waits cost speed on
a quiet machine (waking a thread is slow on a VM): on a machine of its own ``OMP_WAIT_POLICY=ACTIVE`` brings
spinning back; on 2 cores ``--threads 1`` suits the tiny models.

Both are set through the environment before torch is imported (the CLI imports torch lazily, inside
commands), which is the only time the OpenMP runtime reads its wait policy; where torch is already imported
(the CLI run in-process, as the tests do) the thread count is set on torch directly. Inter-op threads can
only be set on torch itself, before its first inter-op work: :func:`apply_to_torch` does it, once, when a
model is loaded. Nothing here runs on import.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path

from mmalign.errors import ConfigError

ENV_VAR = "MMALIGN_THREADS"
"""Environment variable with the thread count (``--threads`` wins over it)."""
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
_OPENMP_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

_chosen: int | None = None
"""The count :func:`configure_threads` chose in this process (None: never called, torch left alone)."""
_interop_done = False


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (``taskset``, cpusets); ``os.cpu_count()`` where there is none."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def _quota_v2(text: str) -> float | None:
    """CPUs a cgroup v2 ``cpu.max`` line allows ("150000 100000" -> 1.5; "max 100000" -> None)."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_v1(quota_text: str, period_text: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` (-1: no limit) over ``cpu.cfs_period_us``."""
    try:
        quota, period = float(quota_text.strip()), float(period_text.strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _ancestors(root: Path, relative: str) -> list[Path]:
    """``root/relative`` and each of its parents up to ``root`` (a limit set on a parent cgroup applies)."""
    parts = [p for p in relative.strip().split("/") if p]
    return [root.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPUs a cgroup quota lets this process use (the tightest along its cgroup path), or None if unlimited.

    cgroup v2: ``cpu.max`` in the process's cgroup (the ``0::/path`` line of /proc/self/cgroup) and its
    parents, under ``root``. cgroup v1: ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` in the ``cpu``
    hierarchy (``root/cpu`` or ``root/cpu,cpuacct``). Inside a container the path often reads ``/``: the
    container's own limit is then the file at the hierarchy's root, which is looked at too.
    """
    limits: list[float] = []
    lines = (_read(proc_cgroup) or "").splitlines()
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, relative = fields
        if controllers == "":  # cgroup v2 unified hierarchy
            for folder in _ancestors(root, relative):
                text = _read(folder / "cpu.max")
                value = _quota_v2(text) if text is not None else None
                if value is not None:
                    limits.append(value)
        elif "cpu" in controllers.split(","):
            for mount in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
                for folder in _ancestors(mount, relative):
                    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
                    value = _quota_v1(quota, period) if quota is not None and period is not None else None
                    if value is not None:
                        limits.append(value)
    if not lines:  # no /proc/self/cgroup: a cgroup v2 container may still show its limit at the root
        text = _read(root / "cpu.max")
        value = _quota_v2(text) if text is not None else None
        if value is not None:
            limits.append(value)
    return min(limits) if limits else None


def available_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """CPUs this process can use: the affinity mask, capped by a cgroup quota (rounded down), at least 1."""
    cpus = affinity_cpus()
    limit = cgroup_cpu_limit(root, proc_cgroup)
    if limit is not None:
        cpus = min(cpus, max(1, math.floor(limit)))
    return cpus


def _parse_count(value: str, source: str) -> int:
    try:
        count = int(value.strip())
    except ValueError:
        raise ConfigError(f"{source} must be a whole number of threads, got {value!r}") from None
    if count < 1:
        raise ConfigError(f"{source} must be at least 1, got {count}")
    return count


def choose_threads(requested: int | None = None) -> tuple[int, str]:
    """(thread count, where it came from): ``requested`` (--threads), else $MMALIGN_THREADS, else
    $OMP_NUM_THREADS when the user set it, else :func:`available_cpus`."""
    if requested is not None:
        return _parse_count(str(requested), "--threads"), "--threads"
    if os.environ.get(ENV_VAR, "").strip():
        return _parse_count(os.environ[ENV_VAR], ENV_VAR), ENV_VAR
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp:
        return _parse_count(omp.split(",")[0], "OMP_NUM_THREADS"), "OMP_NUM_THREADS"
    return available_cpus(), "available CPUs"


def configure_threads(requested: int | None = None) -> int:
    """Choose the thread count (:func:`choose_threads`) and make this process use it; returns it.

    Sets ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` (so numerical libraries
    imported later start with that many threads) and, unless the user chose a wait policy, sleeping OpenMP
    waits; sets torch's intra-op threads now if torch is already imported. Called once per CLI command.
    """
    global _chosen
    count, _ = choose_threads(requested)
    for name in _OPENMP_VARS:
        os.environ[name] = str(count)
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    _chosen = count
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
    return count


def configured_threads() -> int | None:
    """The count :func:`configure_threads` chose in this process, or None."""
    return _chosen


def apply_to_torch() -> None:
    """Give torch the configured thread count (intra-op and, once, inter-op); nothing if none was configured.

    Called when a model is loaded: by then torch is imported, and its inter-op pool (which only torch itself
    can size, before its first use) has usually not started yet. A pool that has started keeps its size.
    """
    global _interop_done
    if _chosen is None:
        return
    import torch

    if torch.get_num_threads() != _chosen:
        torch.set_num_threads(_chosen)
    if not _interop_done:
        _interop_done = True
        with contextlib.suppress(RuntimeError):  # already started or already set: it keeps its size
            torch.set_num_interop_threads(_chosen)
