"""Every bench prints how its figures were made (issue 14): the command, the date, the machine and the versions,
through one helper, ``print_header`` in ``bench/timing.py``; ``bench/pref_vs_trl.py`` names both of its memory
figures. The bench files are loaded by path (``bench/`` is not a package: each script runs as ``python
bench/NAME.py``)."""

from __future__ import annotations

import argparse
import ast
import datetime
import importlib.util
import platform
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import transformers

import mmalign

BENCH = Path(__file__).resolve().parents[1] / "bench"
HELPER = "print_header"


def load_bench(name: str) -> ModuleType:
    """``bench/NAME.py`` as a module (with ``bench/`` on ``sys.path`` for its own ``from timing import ...``)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_the_header_names_the_command_date_machine_and_versions(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    timing = load_bench("timing")
    monkeypatch.setattr(sys, "argv", ["bench/pref_vs_trl.py", "--steps", "3", "--image-size", "112"])
    getattr(timing, HELPER)("DPO against TRL", libraries=("trl",))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "DPO against TRL"
    fields = dict(line.strip().split(": ", 1) for line in lines[1:])
    assert list(fields) == ["command", "date", "machine", "versions"]
    assert fields["command"] == "python bench/pref_vs_trl.py --steps 3 --image-size 112"
    today = datetime.datetime.now(datetime.UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", fields["date"])
    assert fields["date"].startswith(f"{today:%Y-%m-%d}")
    assert platform.platform() in fields["machine"] and "CPUs" in fields["machine"] and "GPU: " in fields["machine"]
    versions = fields["versions"]
    for name, version in (
        ("Python", platform.python_version()),
        ("torch", torch.__version__),
        ("transformers", transformers.__version__),
        ("mmalign", mmalign.__version__),
    ):
        assert f"{name} {version}" in versions
    assert re.search(r"\btrl \S", versions)


def bench_scripts() -> list[Path]:
    return sorted(path for path in BENCH.glob("*.py") if path.name != "timing.py")


def test_every_bench_prints_the_header_through_the_one_helper_and_the_readme_links_it() -> None:
    readme = (BENCH.parent / "README.md").read_text(encoding="utf-8")
    assert bench_scripts()
    for path in bench_scripts():
        assert f"](bench/{path.name})" in readme, f"README.md does not link bench/{path.name}"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == HELPER]
        imports = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module == "timing" and any(alias.name == HELPER for alias in n.names)
        ]
        assert calls and imports, f"{path.name} does not print the header through timing.{HELPER}"
        source = path.read_text(encoding="utf-8")
        assert "command: " not in source and "platform.python_version" not in source, (
            f"{path.name} prints its own copy of the header"
        )


def test_pref_vs_trl_names_both_memory_figures(capsys) -> None:
    bench = load_bench("pref_vs_trl")
    args = argparse.Namespace(image_size=112, patch_size=14, steps=3, batch_size=2, device="cpu")

    def run(pairs_per_s: float, peak: float, baseline: float) -> dict:
        return {
            "pairs_per_s": pairs_per_s,
            "peak_rss_mb": peak,
            "baseline_rss_mb": baseline,
            "peak_above_baseline_mb": peak - baseline,
            "losses": [0.69, 0.62],
            "threads": 1,
            "setup_s": 0.2,
            "same_tokens": True,
            "refusal": None,
            "tokens": {"prompt": 74, "response": 48},
        }

    # TRL: peak 1000 MB, 400 above its 600 MB baseline; mmalign: peak 700 MB, 100 above -> 0.70 and 0.25
    results = {"trl": run(10.0, 1000, 600), "mmalign": run(20.0, 700, 600), "mmalign-precomputed": run(30.0, 680, 600)}
    bench.report(args, results)
    out = capsys.readouterr().out
    like_for_like = out.split("reference model in memory on both sides")[1]
    assert "throughput ratio mmalign/TRL: 2.00" in like_for_like
    assert "absolute peak resident memory (the process's peak RSS, libraries included): 0.70" in like_for_like
    assert "above the process baseline (peak RSS - RSS after imports): 0.25" in like_for_like


@pytest.mark.parametrize("path", bench_scripts(), ids=lambda p: p.name)
def test_every_bench_imports_and_explains_itself(path: Path) -> None:
    """``--help`` imports everything a bench names at module level (a renamed module breaks it here, not in a
    measurement session) and prints its usage."""
    proc = subprocess.run(
        [sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120, cwd=BENCH.parent
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
