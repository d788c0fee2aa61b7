"""Errors of the operating system (a file where a folder is expected, a full disk, a read-only file system,
permission denied) and an untrusted checkpoint on resume end in one line naming the path and what to do, a
non-zero exit code and no traceback; ``--debug`` shows the traceback. Earlier outputs are left as they were.

Tests run as root in CI, where chmod blocks nothing: full disks, read-only mounts and refused permissions are
simulated by making the call that would fail raise what the operating system raises."""

from __future__ import annotations

import errno
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from mmalign.cli.failures import explain, os_error_message
from mmalign.cli.main import main
from mmalign.data.io import write_records
from mmalign.data.records import PreferenceRecord, assistant, user_prompt
from mmalign.errors import EXIT_BAD_INPUT, EXIT_SYSTEM, UntrustedFileError

SRC = Path(__file__).resolve().parents[2] / "src"
pytestmark = pytest.mark.usefixtures("one_thread")


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "afile"
    path.write_text("the user's file\n", encoding="utf-8")
    return path


WHERE_A_FOLDER_IS_EXPECTED = {
    "train pref": lambda f: ["train", "pref", "model.path=m", "data.train=d.jsonl", f"train.output_dir={f}/run"],
    "train sft (output is a file)": lambda f: [
        "train",
        "sft",
        "model.path=m",
        "data.train=d.jsonl",
        f"train.output_dir={f}",
    ],
    "world": lambda f: ["world", "--out", f"{f}/world", "--scenes", "10"],
    "eval run": lambda f: ["eval", "run", "--model", "m", "--out", f"{f}/eval", "--tasks", "pope_random"],
    "demo": lambda f: ["demo", "--out", f"{f}/demo", "--quick"],
    "data build": lambda f: ["data", "build", f"{f}/pairs.jsonl", "--strategy", "hallucinate", "--world", "w"],
    "data convert": lambda f: ["data", "convert", "in.jsonl", f"{f}/out.jsonl"],
    "model init": lambda f: ["model", "init", "--out", f"{f}/model"],
}


@pytest.mark.parametrize("name", list(WHERE_A_FOLDER_IS_EXPECTED))
def test_a_file_where_a_folder_is_expected(cli_run, a_file, name):
    code, _, err = cli_run(WHERE_A_FOLDER_IS_EXPECTED[name](a_file))
    assert code == EXIT_SYSTEM
    assert f"{a_file.name} is a file where a folder is expected: rename or remove it" in one_line_error(err)
    assert a_file.read_text(encoding="utf-8") == "the user's file\n"


def test_debug_shows_the_traceback(a_file, monkeypatch):
    with pytest.raises(NotADirectoryError):
        main(["--debug", "world", "--out", f"{a_file}/world"])
    monkeypatch.setenv("MMALIGN_DEBUG", "1")
    with pytest.raises(NotADirectoryError):
        main(["world", "--out", f"{a_file}/world"])


def test_a_real_process_prints_one_line_and_exits_3(a_file):
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "mmalign.cli.main", "world", "--out", f"{a_file}/w"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_SYSTEM
    assert "is a file where a folder is expected" in one_line_error(proc.stderr)


def test_disk_full_while_saving_weights_is_safetensors_own_error(cli_run, tmp_path, monkeypatch):
    from safetensors import SafetensorError

    def full(tensors: Any, filename: str, metadata: Any = None) -> None:
        raise SafetensorError(
            f'Error while serializing: I/O error: No space left on device (os error 28) at path "{filename}"'
        )

    monkeypatch.setattr("transformers.modeling_utils.safe_save_file", full)
    out = tmp_path / "models" / "tiny"
    code, _, err = cli_run(["model", "init", "--preset", "tiny-llava", "--out", str(out)])
    assert code == EXIT_SYSTEM
    line = one_line_error(err)
    assert f"no space left on the device writing {out}: free some space" in line
    assert not (tmp_path / "models").exists()  # nothing half-written, and the folder made for it removed
    with pytest.raises(OSError) as raised:  # the traceback shows both: safetensors' error caused this one
        main(["--debug", "model", "init", "--preset", "tiny-llava", "--out", str(out)])
    assert isinstance(raised.value.__cause__, SafetensorError)


def test_disk_full_without_a_path_names_the_output_and_keeps_the_old_file(cli_run, tmp_path, monkeypatch):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_records(src, [pair(0)], root=tmp_path)
    dst.write_text("the previous output\n", encoding="utf-8")

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a failed write() says it: no path

    monkeypatch.setattr(os, "replace", full)
    code, _, err = cli_run(["data", "convert", str(src), str(dst)])
    assert code == EXIT_SYSTEM
    assert f"no space left on the device writing {dst}" in one_line_error(err)
    assert dst.read_text(encoding="utf-8") == "the previous output\n"


def test_read_only_file_system_and_permission_denied(cli_run, tmp_path, monkeypatch):
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: Any, **kwargs: Any) -> None:
        if tmp_path / "mnt" in (self, *self.parents):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, err = cli_run(["world", "--out", str(tmp_path / "mnt" / "world"), "--scenes", "10"])
    assert code == EXIT_SYSTEM
    assert f"{tmp_path / 'mnt'} is on a read-only file system: choose a writable output folder" in one_line_error(err)
    monkeypatch.undo()

    real_open = os.open

    def denied(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(tmp_path / "shared")):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    (tmp_path / "shared").mkdir()
    monkeypatch.setattr(os, "open", denied)
    code, _, err = cli_run(["eval", "run", "--model", "m", "--out", str(tmp_path / "shared"), "--tasks", "pope_random"])
    assert code == EXIT_SYSTEM
    assert f"permission denied: {tmp_path / 'shared'}/" in one_line_error(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_a_real_read_only_folder(cli_run, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code, _, err = cli_run(["world", "--out", str(folder / "world"), "--scenes", "10"])
    finally:
        folder.chmod(0o700)
    assert code == EXIT_SYSTEM and "permission denied" in one_line_error(err)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/runs/a"), "disk quota exceeded writing /runs/a"),
        (OSError(errno.EIO, "Input/output error", "/nfs/x"), "input/output error at /nfs/x: the disk"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/data"), "/data is a folder where a file is expected"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x.yaml"), "/x.yaml does not exist"),
        (OSError(errno.EMFILE, "Too many open files"), "too many open files (at a file): raise the limit"),
        (OSError(errno.EXDEV, "Invalid cross-device link", "/a", "/b"), "/a: Invalid cross-device link"),
    ],
)
def test_messages(error, expected):
    assert os_error_message(error).startswith(expected)


def test_errors_outside_a_known_place_still_get_one_line():
    from safetensors import SafetensorError

    refused = pickle.UnpicklingError(
        "Weights only load failed. ... Re-running `torch.load` with `weights_only` set "
        "to `False` will likely succeed, but it can result in arbitrary code execution."
    )
    message, code = explain(refused)  # type: ignore[misc]
    assert code == EXIT_BAD_INPUT and "untrusted and was not loaded" in message and "weights_only" not in message
    full = SafetensorError('Error while serializing: I/O error: No space left on device (os error 28) at path "/x/.t"')
    assert explain(full) == (
        "no space left on the device writing /x: free some space, or choose an output on another disk, then rerun",
        EXIT_SYSTEM,
    )
    message, code = explain(SafetensorError("Error while deserializing header: header too small"))  # type: ignore[misc]
    assert code == EXIT_BAD_INPUT and message.startswith("a safetensors file is damaged")
    assert explain(RuntimeError("a bug")) is None and explain(ValueError("a bug")) is None  # tracebacks: bugs


# ------------------------------------------------------------------------------------- checkpoints on resume


def pair(i: int) -> PreferenceRecord:
    image = Image.new("RGB", (32, 32), (40 * i, 90, 160))
    return PreferenceRecord(
        f"p-{i}",
        user_prompt("Describe the image."),
        assistant("A blue square."),
        assistant("A blue square and a red star."),
        [image],
    )


@pytest.fixture
def trained(tmp_path: Path, tiny_dir) -> dict[str, Path]:
    """A one-step preference run with its checkpoint-1, and its config."""
    write_records(tmp_path / "train.jsonl", [pair(i) for i in range(4)])
    config = {
        "kind": "pref",
        "model": {"path": str(tiny_dir("tiny-llava"))},
        "data": {"train": str(tmp_path / "train.jsonl")},
        "train": {
            "output_dir": str(tmp_path / "run"),
            "batch_size": 2,
            "max_steps": 1,
            "save_steps": 1,
            "logging_steps": 1,
        },
        "loss": {"name": "sigmoid"},
    }
    (tmp_path / "pref.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return {"config": tmp_path / "pref.yaml", "run": tmp_path / "run", "checkpoint": tmp_path / "run" / "checkpoint-1"}


class Payload:
    """What a tampered optimizer.pt would hold: unpickling it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_disk_full_while_saving_a_checkpoint_is_torch_own_error(cli_run, trained, monkeypatch):
    import torch

    def full(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", full)
    code, _, err = cli_run(["train", "pref", "--config", str(trained["config"]), "--no-progress"])
    assert code == EXIT_SYSTEM
    assert f"no space left on the device writing {trained['run']}" in one_line_error(err)


def test_a_tampered_optimizer_pickle_on_resume_is_untrusted(cli_run, trained, tmp_path):
    code, _, err = cli_run(["train", "pref", "--config", str(trained["config"]), "--no-progress"])
    assert code == 0, err
    optimizer = trained["checkpoint"] / "optimizer.pt"
    marker = tmp_path / "pwned"
    optimizer.write_bytes(pickle.dumps({"state": Payload(marker), "param_groups": []}))
    files = sorted(p.name for p in trained["checkpoint"].iterdir())
    resume = [
        "train",
        "pref",
        "--config",
        str(trained["config"]),
        "train.resume=true",
        "train.max_steps=2",
        "--no-progress",
    ]

    code, _, err = cli_run(resume)
    assert code == EXIT_BAD_INPUT
    line = one_line_error(err)
    assert f"checkpoint {trained['checkpoint']} is untrusted: its optimizer.pt holds more than tensors" in line
    assert "(not loaded); delete the checkpoint, or start without train.resume" in line
    assert "weights_only" not in err and not marker.exists()  # never advised, never run
    assert sorted(p.name for p in trained["checkpoint"].iterdir()) == files
    with pytest.raises(UntrustedFileError):
        main(["--debug", *resume])

    optimizer.write_bytes(b"PK\x03\x04 cut short")  # a damaged file, not a tampered one
    code, _, err = cli_run(resume)
    assert code == EXIT_BAD_INPUT
    assert "is damaged: its optimizer.pt cannot be read (PytorchStreamReader" in one_line_error(err)
