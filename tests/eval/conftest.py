"""Fixtures for the evaluation tests that run models (run/, tasks/, test_compare.py): a tiny world, tiny models, the
fake judge server.

Built once per session: a shapes world of 12 test scenes, the untrained ``tiny-llava`` preset and a
*determined* copy of it whose LM head can only say "Yes" or "No" (every other output row is zero and the
two rows are opposite, so the first greedy token is always one of them: generate-and-parse must then agree
with the fast path on every yes/no item). The fake OpenAI-compatible judge is the judge tests' own server
(tests/judge/conftest.py), loaded from its file because test modules cannot import a conftest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mmalign_tests_judge_server
import pytest


def run_cli(args: list[str]) -> int:
    from mmalign.cli.main import main

    try:
        main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two threads per test
    process oversubscribe the cores (4x slower here). The setting is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def single_thread() -> Callable[[], Any]:
    """``with single_thread():`` for module- and session-scoped fixtures that run models."""
    return one_thread


@pytest.fixture(scope="session")
def cli() -> Callable[[list[str]], int]:
    """``cli(args)``: run ``mmalign`` in-process, return its exit code."""
    return run_cli


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmalign.world import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("eval-world") / "world"
    generate_world(out, WorldConfig(train_scenes=40, val_scenes=4, test_scenes=12))
    return out


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``base`` (untrained tiny-llava) and ``yesno`` (its determined copy, see the module docstring)."""
    import torch

    from mmalign.models import ensure_preset, load
    from mmalign.models.processors import save_upstream_processor

    root = tmp_path_factory.mktemp("eval-models")
    base = ensure_preset("tiny-llava", root)
    loaded = load(base)
    head = loaded.model.get_output_embeddings().weight
    yes, no = (loaded.tokenizer.convert_tokens_to_ids(t) for t in ("Yes", "No"))
    with torch.no_grad():
        direction = torch.randn(head.shape[1], generator=torch.Generator().manual_seed(0))
        head.zero_()
        head[yes], head[no] = direction, -direction
    determined = root / "yesno"
    loaded.model.save_pretrained(determined)
    save_upstream_processor(loaded.processor, determined)
    return {"base": base, "yesno": determined}


@pytest.fixture
def judge_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The judge tests' fake server, with its API key in the environment variable it expects."""
    module = mmalign_tests_judge_server
    server = module.FakeJudgeServer(api_key=module.SECRET)
    monkeypatch.setenv(module.KEY_ENV, module.SECRET)
    yield server
    server.close()
