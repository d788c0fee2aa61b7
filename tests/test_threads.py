"""The thread count: CPUs from the affinity mask and cgroup quotas (fake cgroup files), the order of what the
user says (--threads, MMALIGN_THREADS, OMP_NUM_THREADS), and the count reaching torch."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mmalign import threads
from mmalign.errors import ConfigError

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    threads.ENV_VAR,
)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No thread variable set, and after each test the variables, the module's memory and torch's count as they
    were (each variable is set then deleted through monkeypatch, so that one absent before, which
    configure_threads then sets, is deleted again)."""
    for name in THREAD_VARS:
        monkeypatch.setenv(name, "-")
        monkeypatch.delenv(name)
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.setattr(threads, "_interop_done", True)  # torch's inter-op pool is the test session's
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def fake_cgroup(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    """(cgroup root, /proc/self/cgroup) under tmp_path: ``files`` maps paths under the root to their text."""
    root = tmp_path / "cgroup"
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    proc_file = tmp_path / "proc-self-cgroup"
    proc_file.write_text(proc)
    return root, proc_file


@pytest.mark.parametrize(
    ("proc", "files", "limit"),
    [
        # cgroup v2: 150 ms of CPU per 100 ms period = 1.5 CPUs
        ("0::/user.slice/job\n", {"user.slice/job/cpu.max": "150000 100000\n"}, 1.5),
        ("0::/user.slice/job\n", {"user.slice/job/cpu.max": "max 100000\n"}, None),
        # a parent's limit applies to its children: the tightest wins (1.0 over 3.0)
        ("0::/a/b\n", {"a/cpu.max": "100000 100000", "a/b/cpu.max": "300000 100000"}, 1.0),
        # inside a container the path reads "/": the container's limit sits at the root
        ("0::/\n", {"cpu.max": "250000 100000"}, 2.5),
        # cgroup v1, cpu and cpuacct mounted together; 250 ms / 100 ms = 2.5 CPUs
        (
            "4:cpu,cpuacct:/docker/abc\n1:memory:/docker/abc\n",
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            2.5,
        ),
        ("3:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # no quota
        ("3:cpu:/\n", {"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
        ("0::/x\n", {}, None),  # no files at all
        ("0::/x\n", {"x/cpu.max": "garbage"}, None),
    ],
)
def test_cgroup_cpu_limit(tmp_path, proc, files, limit):
    root, proc_file = fake_cgroup(tmp_path, proc, files)
    assert threads.cgroup_cpu_limit(root, proc_file) == limit


@pytest.mark.parametrize(
    ("affinity", "quota", "expected"),
    [
        (8, "150000 100000", 1),
        (8, "250000 100000", 2),
        (2, "400000 100000", 2),
        (4, "max 100000", 4),
        (4, "50000 100000", 1),
    ],  # half a CPU still gets one thread
)
def test_available_cpus_is_the_affinity_capped_by_the_quota_rounded_down(
    tmp_path, monkeypatch, affinity, quota, expected
):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    root, proc_file = fake_cgroup(tmp_path, "0::/job\n", {"job/cpu.max": quota})
    assert threads.available_cpus(root, proc_file) == expected


def test_the_affinity_mask_counts_not_the_machine(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert threads.affinity_cpus() == 2


def test_what_the_user_says_comes_first(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 6)
    assert threads.choose_threads() == (6, "available CPUs")
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert threads.choose_threads() == (4, "OMP_NUM_THREADS")
    monkeypatch.setenv(threads.ENV_VAR, "3")
    assert threads.choose_threads() == (3, threads.ENV_VAR)
    assert threads.choose_threads(2) == (2, "--threads")


@pytest.mark.parametrize(
    ("requested", "env", "message"),
    [
        (0, None, "--threads must be at least 1, got 0"),
        (None, "many", "MMALIGN_THREADS must be a whole number"),
        (None, "-2", "MMALIGN_THREADS must be at least 1"),
    ],
)
def test_bad_counts_are_config_errors(monkeypatch, requested, env, message):
    if env is not None:
        monkeypatch.setenv(threads.ENV_VAR, env)
    with pytest.raises(ConfigError, match=message):
        threads.choose_threads(requested)


def test_configure_sets_the_environment_and_a_sleeping_wait_policy(monkeypatch):
    assert threads.configure_threads(3) == 3
    assert [os.environ[n] for n in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")] == ["3"] * 3
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert torch.get_num_threads() == 3  # torch was already imported: set directly
    assert threads.configured_threads() == 3
    # a wait policy the user chose is kept
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.configure_threads(1)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "1000")
    threads.configure_threads(1)
    assert "OMP_WAIT_POLICY" not in os.environ


def test_threads_option_reaches_torch(cli_run):
    torch.set_num_threads(1)
    code, _, _ = cli_run(["--threads", "2", "world", "--help"])
    assert code == 0 and torch.get_num_threads() == 2
    code, _, err = cli_run(["--threads", "0", "world", "--help"])
    assert code == 2 and err.strip() == "error: --threads must be at least 1, got 0"


def test_a_model_load_applies_the_configured_count(tiny_dir):
    from mmalign.models import load

    threads.configure_threads(2)
    torch.set_num_threads(1)  # something changed it in between
    load(tiny_dir("tiny-llava"))
    assert torch.get_num_threads() == 2


def test_the_environment_is_set_before_torch_starts_its_threads():
    """In a fresh process, as the CLI does it: configure first, import torch after; torch starts with that count."""
    code = (
        "from mmalign.threads import configure_threads; configure_threads(1); import torch; "
        "print(torch.get_num_threads(), torch.__config__.parallel_info().count('OMP_NUM_THREADS : 1'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "1"]
