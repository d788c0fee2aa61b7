"""Fixtures every test folder may use (the data and pair tests: ``data_dir``, ``helpers``).

``MMALIGN_THREADS`` defaults to 1 for the whole session: the CLI run in-process sets torch's thread count
(:mod:`mmalign.threads`), and tiny models gain nothing from threads while test workers share 2 cores.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from mmalign.cli.main import main

os.environ.setdefault("MMALIGN_THREADS", "1")

JUDGE_SERVER = "mmalign_tests_judge_server"
"""The judge tests' fake server (``tests/judge/conftest.py``) as an importable module: test modules cannot import a
conftest, so it is loaded here once, before any test module, and they ``import mmalign_tests_judge_server``."""
if JUDGE_SERVER not in sys.modules:
    _spec = importlib.util.spec_from_file_location(JUDGE_SERVER, Path(__file__).parent / "judge" / "conftest.py")
    sys.modules[JUDGE_SERVER] = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
    _spec.loader.exec_module(sys.modules[JUDGE_SERVER])  # type: ignore[union-attr]


@pytest.fixture
def cli_run(capsys) -> Callable[[list[str]], tuple[int, str, str]]:
    """``cli_run(argv)`` runs ``mmalign ARGV`` in this process: (exit code, stdout, stderr) of the command alone
    (what the test printed before, e.g. a fixture building a model, is dropped first)."""

    def run(argv: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(argv)
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny models gain
    nothing from threads, and lose a lot when test workers share 2 cores. Restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_dir(preset)``: the directory of a tiny model, built on first use and shared by the session (tests
    only read it)."""
    from mmalign.models.tiny import save_tiny, spec_for

    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(preset: str) -> Path:
        if preset not in built:
            built[preset] = save_tiny(spec_for(preset), root / preset, preset=preset)
        return built[preset]

    return get


# -------------------------------------------------------------------- data and pairs: records, images


def pref_dict(i: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid preference pair in TRL's conversational layout with one image ``images/red.png``."""
    row: dict[str, Any] = {
        "id": f"p-{i}",
        "images": ["images/red.png"],
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}],
        "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "A red square."}]}],
        "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "A red square and a star."}]}],
        "source": "test",
    }
    row.update(overrides)
    return row


def save_png(root: Path, rel: str, size: tuple[int, int] = (8, 8), colour: Any = "red") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="PNG")
    return path


def write_lines(path: Path, rows: list[Any]) -> Path:
    """Write rows as JSON lines; a ``str`` row is written as it is (for broken lines)."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(row if isinstance(row, str) else json.dumps(row))
            f.write("\n")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data root holding ``images/red.png`` (8x8) and ``images/blue.png`` (8x8)."""
    root = tmp_path / "data"
    save_png(root, "images/red.png", colour="red")
    save_png(root, "images/blue.png", colour="blue")
    return root


@pytest.fixture
def helpers() -> Any:
    """The helpers above, for test modules (a conftest cannot be imported under importlib mode)."""

    class Helpers:
        pref: Callable[..., dict[str, Any]] = staticmethod(pref_dict)
        png: Callable[..., Path] = staticmethod(save_png)
        lines: Callable[[Path, list[Any]], Path] = staticmethod(write_lines)

    return Helpers


# ----------------------------------------------------------------------------------------- reward models


@pytest.fixture(scope="session")
def reward_dir(tiny_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """``reward_dir(seed)``: a tiny-llava reward model (random head drawn with ``seed``) saved as
    ``mmalign train rm`` saves one, built on first use and shared by the session (tests only read it)."""
    import shutil

    from mmalign.models import load
    from mmalign.models.reward import RewardModel

    root = tmp_path_factory.mktemp("reward-models")
    built: dict[int, Path] = {}

    def get(seed: int) -> Path:
        if seed not in built:
            out = root / f"rm-{seed}"
            shutil.copytree(tiny_dir("tiny-llava"), out)  # the processor files, then the model and its head
            RewardModel(load(out).model, seed=seed).save_pretrained(out)
            built[seed] = out
        return built[seed]

    return get
