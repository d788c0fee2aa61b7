"""Two runs never write one output: every writing command holds :class:`mmalign.files.OutputLock`; a second run
into the same output stops at once (exit 4) naming the first, whose files stay as they were; a lock left by a
run that died is taken over with a note."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mmalign.errors import EXIT_IN_USE, OutputInUseError
from mmalign.files import LOCK_NAME, OutputLock

SRC = Path(__file__).resolve().parents[2] / "src"

# command, whether its lock lives inside the output folder (else beside it), its arguments for output OUT
COMMANDS: list[tuple[str, bool, Callable[[Path], list[str]]]] = [
    (
        "train sft",
        True,
        lambda out: ["train", "sft", "model.path=none", "data.train=none.jsonl", f"train.output_dir={out}"],
    ),
    (
        "train pref",
        True,
        lambda out: ["train", "pref", "model.path=none", "data.train=none.jsonl", f"train.output_dir={out}"],
    ),
    (
        "eval run",
        True,
        lambda out: [
            "eval",
            "run",
            "--model",
            str(out.parent / "none"),
            "--out",
            str(out),
            "--tasks",
            "pope_random",
            "--no-progress",
        ],
    ),
    ("eval compare", True, lambda out: ["eval", "compare", str(out.parent / "a"), "--out", str(out)]),
    ("demo", True, lambda out: ["demo", "--out", str(out), "--quick", "--no-progress"]),
    ("data split", True, lambda out: ["data", "split", str(out.parent / "none.jsonl"), str(out)]),
    ("world", False, lambda out: ["world", "--out", str(out), "--scenes", "10"]),
    ("model init", False, lambda out: ["model", "init", "--out", str(out)]),
    (
        "data build",
        False,
        lambda out: ["data", "build", str(out), "--strategy", "hallucinate", "--world", str(out.parent / "none")],
    ),
    ("data import", False, lambda out: ["data", "import", "trl", str(out.parent / "none.jsonl"), str(out)]),
    ("data convert", False, lambda out: ["data", "convert", str(out.parent / "none.jsonl"), str(out)]),
    ("data filter", False, lambda out: ["data", "filter", str(out.parent / "none.jsonl"), str(out)]),
    (
        "data filter --dropped",
        False,
        lambda out: [
            "data",
            "filter",
            str(out.parent / "none.jsonl"),
            str(out.parent / "kept.jsonl"),
            "--dropped",
            str(out),
        ],
    ),
    ("data dedup", False, lambda out: ["data", "dedup", str(out.parent / "none.jsonl"), str(out)]),
    ("data mix", False, lambda out: ["data", "mix", str(out), "--input", str(out.parent / "none.jsonl")]),
    (
        "eval score --json",
        False,
        lambda out: [
            "eval",
            "score",
            "--task",
            "pope",
            "--answers",
            str(out.parent / "none.jsonl"),
            "--json",
            str(out),
        ],
    ),
]


def held(out: Path, inside: bool) -> OutputLock:
    return OutputLock(out, "mmalign test") if inside else OutputLock.beside(out, "mmalign test")


@pytest.mark.parametrize(("name", "inside", "argv"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_second_run_into_a_locked_output_refuses(cli_run, tmp_path, name, inside, argv):
    out = tmp_path / "out"
    if inside or name in ("world", "model init"):  # a folder, holding the first run's files
        out.mkdir()
        (out / "metrics.jsonl").write_text('{"step": 1}\n', encoding="utf-8")
    else:
        out.write_text('{"id": "first"}\n', encoding="utf-8")
    before = {p.name: p.read_bytes() for p in ([out] if out.is_file() else out.iterdir())}
    with held(out, inside) as lock:
        code, stdout, stderr = cli_run(argv(out))
        assert code == EXIT_IN_USE, stderr + stdout
        text = " ".join(stderr.split())
        assert f"{out} is in use by mmalign pid {os.getpid()} on {socket.gethostname()}" in text
        assert "(command mmalign test)" in text and str(lock.lock_file) in text and "Traceback" not in stderr
        assert lock.lock_file.is_file()
    after = {p.name: p.read_bytes() for p in ([out] if out.is_file() else out.iterdir())}
    assert after == before  # the first run's files untouched, and its lock gone with it
    assert not lock.lock_file.exists()


def test_lock_file_places_and_cleanup(tmp_path):
    folder = tmp_path / "new" / "run"
    with OutputLock(folder, "mmalign train pref") as lock:
        assert lock.lock_file == folder / LOCK_NAME
        record = json.loads(lock.lock_file.read_text(encoding="utf-8"))
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["command"] == "mmalign train pref" and record["started"]
        with pytest.raises(OutputInUseError, match="is in use by mmalign pid"), OutputLock(folder):
            pass  # another open of the same lock file conflicts, even in one process
    assert not folder.exists()  # made by the lock and left empty: removed
    target = tmp_path / "data" / "pairs.jsonl"
    with OutputLock.beside(target) as lock:
        assert lock.lock_file == tmp_path.resolve() / "data" / f".pairs.jsonl{LOCK_NAME}"
        target.write_text("kept\n", encoding="utf-8")
    assert target.read_text(encoding="utf-8") == "kept\n" and not lock.lock_file.exists()


def test_a_stale_lock_is_taken_over_with_a_note(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    dead = {"pid": 999_999_999, "host": socket.gethostname(), "command": "mmalign world", "started": "yesterday"}
    (folder / LOCK_NAME).write_text(json.dumps(dead), encoding="utf-8")  # left by a run killed with SIGKILL
    with OutputLock(folder) as lock:
        assert lock.took_over is not None and lock.took_over.pid == 999_999_999
        assert json.loads(lock.lock_file.read_text(encoding="utf-8"))["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert "was locked by mmalign pid 999999999" in err and "which is gone; taking the lock over" in err


def test_other_ranks_of_a_distributed_launch_take_no_lock(tmp_path, monkeypatch):
    with OutputLock(tmp_path / "run"):
        monkeypatch.setenv("RANK", "1")
        with OutputLock(tmp_path / "run") as rank1:  # rank 0 (this lock's holder) speaks for the launch
            assert rank1.took_over is None


HOLDER = textwrap.dedent(
    """
    import sys, time
    from mmalign.files import OutputLock

    with OutputLock.beside(sys.argv[1], "mmalign world"):
        print("held", flush=True)
        time.sleep(300)
    """
)


def test_a_lock_held_by_another_process_then_left_by_its_death(cli_run, tmp_path):
    out = tmp_path / "world"
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        code, _, err = cli_run(["world", "--out", str(out), "--scenes", "12", "--size", "32"])
        assert code == EXIT_IN_USE and f"is in use by mmalign pid {child.pid} on" in " ".join(err.split())
        assert not out.exists()
        child.send_signal(signal.SIGKILL)  # dies holding it: the kernel frees the flock, the file stays
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert (tmp_path / f".world{LOCK_NAME}").is_file()
    start = time.monotonic()
    code, _, err = cli_run(["world", "--out", str(out), "--scenes", "12", "--size", "32"])
    assert code == 0, err
    assert f"was locked by mmalign pid {child.pid}" in " ".join(err.split()) and "which is gone" in err
    assert (out / "world.json").is_file() and not (tmp_path / f".world{LOCK_NAME}").exists()
    assert time.monotonic() - start < 30
