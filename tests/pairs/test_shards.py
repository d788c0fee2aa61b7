"""Sharded builds: byte-identical for a seed with 1 or 2 processes, resumable after a crash or a kill."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mmalign.errors import ConfigError
from mmalign.pairs.corrupt_image import CorruptImageBuilder
from mmalign.pairs.registry import BuildInputs, make_builder
from mmalign.pairs.shards import BuildProgress, run_build, shards_dir

OPTIONS = {"modes": ["blur", "noise", "mask"], "variants": 2}


def _run(world: Path, out: Path, **kwargs):
    builder = make_builder("corrupt-image", OPTIONS)
    return run_build(builder, BuildInputs(world=world), out, out_root=world, shard_size=40, **kwargs)


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory) -> bytes:
    """An uninterrupted one-process build."""
    out = tmp_path_factory.mktemp("ref") / "ref.jsonl"
    result = _run(world, out)
    assert result.shards == 6 and result.resumed_shards == 0 and not shards_dir(out).exists()
    return out.read_bytes()


def test_two_processes_give_the_same_bytes(world, tmp_path, reference):
    out = tmp_path / "two.jsonl"
    seen: list[BuildProgress] = []
    result = _run(world, out, num_proc=2, progress=seen.append)
    assert out.read_bytes() == reference
    assert result.pairs == 2 * 240 == len(reference.splitlines())
    assert [p.units_done for p in seen] == [0, 40, 80, 120, 160, 200, 240]
    assert seen[-1].pairs == seen[-1].new_pairs == 480


def test_an_exception_midway_then_a_rerun_gives_the_uninterrupted_output(world, tmp_path, reference, monkeypatch):
    out = tmp_path / "crash.jsonl"
    real_build = CorruptImageBuilder.build

    def failing(self, unit, shared, seed):
        if unit["id"] == "train-000100-caption":  # in shard 2 (units 80-119)
            raise RuntimeError("injected failure")
        return real_build(self, unit, shared, seed)

    monkeypatch.setattr(CorruptImageBuilder, "build", failing)
    with pytest.raises(RuntimeError, match="injected failure"):
        _run(world, out)
    shards = shards_dir(out)
    assert sorted(p.name for p in shards.glob("shard-*")) == ["shard-00000.jsonl", "shard-00001.jsonl"]
    assert not out.exists()
    monkeypatch.setattr(CorruptImageBuilder, "build", real_build)
    seen: list[BuildProgress] = []
    result = _run(world, out, num_proc=2, progress=seen.append)
    assert result.resumed_shards == 2 and seen[0].units_done == 80 and result.new_pairs == 480 - 160
    assert out.read_bytes() == reference and not shards.exists()


def test_a_killed_build_resumes_to_the_same_bytes(world, tmp_path, reference):
    out = tmp_path / "killed.jsonl"
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from mmalign.pairs.registry import BuildInputs, make_builder
        from mmalign.pairs.shards import run_build

        def progress(p):
            if p.units_done >= 120:  # three shards written: die without any cleanup
                os.kill(os.getpid(), signal.SIGKILL)

        world = Path({str(world)!r})
        run_build(make_builder("corrupt-image", {OPTIONS!r}), BuildInputs(world=world), {str(out)!r},
                  out_root=world, shard_size=40, progress=progress)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    assert len(list(shards_dir(out).glob("shard-*.jsonl"))) == 3 and not out.exists()
    result = _run(world, out)
    assert result.resumed_shards == 3 and out.read_bytes() == reference


def test_a_different_build_in_the_way_is_refused_unless_restarted(world, tmp_path, monkeypatch):
    out = tmp_path / "other.jsonl"
    real_build = CorruptImageBuilder.build

    def failing(self, unit, shared, seed):
        if unit["id"] == "train-000050-caption":
            raise RuntimeError("stop")
        return real_build(self, unit, shared, seed)

    monkeypatch.setattr(CorruptImageBuilder, "build", failing)
    with pytest.raises(RuntimeError):
        _run(world, out)
    monkeypatch.setattr(CorruptImageBuilder, "build", real_build)
    with pytest.raises(ConfigError, match="unfinished build with different seed: run the same command"):
        _run(world, out, seed=7)
    result = _run(world, out, seed=7, restart=True)
    assert result.resumed_shards == 0 and result.pairs == 480


def test_options_and_output_names_are_checked(world, tmp_path):
    with pytest.raises(ConfigError, match=r"name the output \*\.jsonl"):
        _run(world, tmp_path / "out.parquet")
    with pytest.raises(ConfigError, match="num_proc must be at least 1"):
        _run(world, tmp_path / "x.jsonl", num_proc=0)
    with pytest.raises(ConfigError, match="unknown build strategy 'no-such-strategy'"):
        make_builder("no-such-strategy")
    stray = shards_dir(tmp_path / "y.jsonl")
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"has no manifest\.json"):
        _run(world, tmp_path / "y.jsonl")


def test_a_new_strategy_is_one_registered_class(world, tmp_path, h):
    """The extension point: a Builder subclass registered under its name builds through the same machinery."""
    from dataclasses import dataclass
    from typing import ClassVar

    from mmalign.data.records import PreferenceRecord, assistant, user_prompt
    from mmalign.pairs.registry import Builder, Plan, register_builder

    @dataclass(frozen=True)
    class EchoOptions:
        word: str = "hi"

    @register_builder
    class Echo(Builder):
        name: ClassVar[str] = "echo-test"
        options_class: ClassVar[type] = EchoOptions

        def plan(self, inputs, seed):
            return Plan([{"id": f"u{i}"} for i in range(5)], world, "fp", None, "5 echoes")

        def build(self, unit, shared, seed):
            return [
                PreferenceRecord(
                    unit["id"],
                    user_prompt("Say it.", 0),
                    assistant(self.options.word),
                    assistant(f"not {self.options.word}"),
                    source=self.name,
                )
            ]

    out = tmp_path / "echo.jsonl"
    result = run_build(make_builder("echo-test", {"word": "yes"}), BuildInputs(), out, shard_size=2)
    assert result.shards == 3 and next(h.texts(r) for r in h.read_lines(out)) == ("yes", "not yes")
