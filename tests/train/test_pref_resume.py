"""Runs in other processes: a run SIGKILLed after a checkpoint and resumed logs the same losses as an
uninterrupted one; two processes (DDP on CPU, gloo) log the losses of one process with the same global batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw

from mmalign.cli.main import main
from mmalign.data.io import write_records
from mmalign.data.records import PreferenceRecord, assistant, user_prompt
from mmalign.train.callbacks import read_metrics

# Stops in on_save once checkpoint-2 is complete (on_save comes after trainer_state.json is written), says so,
# and waits to be killed: a SIGKILL at a known point, with nothing written after the checkpoint.
CHILD = textwrap.dedent(
    """
    import sys, time
    from transformers import TrainerCallback
    from mmalign.config import load_config
    from mmalign.train.preference import PreferenceConfig, train_preference

    class WaitAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                open(sys.argv[2], "w").write("checkpoint-2")
                time.sleep(600)

    train_preference(load_config(PreferenceConfig, sys.argv[1]), callbacks=[WaitAfterSave()], progress=False)
    """
)


def record(i: int) -> PreferenceRecord:
    img = Image.new("RGB", (48, 48), (64, 64, 64))
    ImageDraw.Draw(img).ellipse((4 + 5 * i, 6, 26 + 5 * i, 28), fill=(220, 200 - 40 * i, 40))
    rejected = assistant(f"There is a yellow circle and {'a red star' * (1 + i % 2)}.")
    return PreferenceRecord(
        f"k-{i}", user_prompt("Describe the image."), assistant("There is a yellow circle."), rejected, [img]
    )


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pref-resume")
    model = tiny_dir("tiny-llava")
    write_records(root / "data" / "train.jsonl", [record(i) for i in range(8)])
    return {"root": root, "model": model, "train": root / "data" / "train.jsonl"}


def write_config(setup: dict[str, Path], out: Path, **train: object) -> Path:
    config = {
        "kind": "pref",
        "model": {"path": str(setup["model"])},
        "data": {"train": str(setup["train"])},
        "train": {
            "output_dir": str(out),
            "batch_size": 2,
            "max_steps": 5,
            "logging_steps": 1,
            "save_steps": 2,
            "learning_rate": 1e-3,
            **train,
        },
        "loss": {"name": "rpo"},
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r}


def env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def test_sigkill_after_a_checkpoint_then_resume(setup, tmp_path, capsys):
    straight = tmp_path / "straight"
    with pytest.raises(SystemExit) as done:
        main(["train", "pref", "--config", str(write_config(setup, straight)), "--no-progress"])
    assert done.value.code in (0, None)

    killed = tmp_path / "killed"
    config = write_config(setup, killed)
    (tmp_path / "child.py").write_text(CHILD, encoding="utf-8")
    marker = tmp_path / "saved"
    child = subprocess.Popen(
        [sys.executable, str(tmp_path / "child.py"), str(config), str(marker)],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert child.poll() is None, child.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the child never reached checkpoint-2"
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    assert (killed / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (killed / "config.json").exists()  # killed mid-run: no final model
    assert sorted(losses(killed)) == [1, 2]

    with pytest.raises(SystemExit) as done:
        main(["train", "pref", "--config", str(config), "train.resume=true", "--no-progress"])
    assert done.value.code in (0, None)
    assert "resuming from" in capsys.readouterr().out
    resumed, reference = losses(killed), losses(straight)
    assert sorted(resumed) == [1, 2, 3, 4, 5]
    for step in (3, 4, 5):  # the steps after the checkpoint, logged by the resumed process
        assert resumed[step] == pytest.approx(reference[step], abs=1e-6), step
    assert reference[5] != pytest.approx(reference[3], abs=1e-3)


def test_two_processes_match_one_with_the_same_global_batch(setup, tmp_path, capsys):
    # 4 pairs and a global batch of 4: every step sees all of them, in whatever order each process draws.
    data = tmp_path / "four.jsonl"
    write_records(data, [record(i) for i in range(4)])
    one, two = tmp_path / "one", tmp_path / "two"
    with pytest.raises(SystemExit):
        main(
            [
                "train",
                "pref",
                "--config",
                str(write_config(setup, one, batch_size=4, max_steps=3, save_steps=None)),
                f"data.train={data}",
                "--no-progress",
            ]
        )
    config = write_config(setup, two, batch_size=2, max_steps=3, save_steps=None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "mmalign.cli.main",
        "train",
        "pref",
        "--config",
        str(config),
        f"data.train={data}",
        "--no-progress",
    ]
    proc = subprocess.run(
        command, env={**env(), "ACCELERATE_USE_CPU": "true"}, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 pairs a step" in proc.stdout and proc.stdout.count("trained 3 steps") == 1
    single, ddp = losses(one), losses(two)
    assert sorted(ddp) == [1, 2, 3]  # one metrics file, written once per step
    for step in (1, 2, 3):
        assert ddp[step] == pytest.approx(single[step], abs=1e-5), step
    assert single[3] != pytest.approx(single[1], abs=1e-3)
