"""``mmalign rm score`` and ``mmalign rm best-of`` through the real CLI, and rejection-sampling fine-tuning: the
best-of-n records trained on by ``mmalign train sft`` (2 steps on a tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmalign.data.io import read_records
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world

pytestmark = pytest.mark.usefixtures("one_thread")

SFT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sft" / "generic.yaml"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rm-cli") / "world"
    generate_world(out, WorldConfig(train_scenes=12, val_scenes=4, test_scenes=4, image_size=32))
    return out


def test_rm_score_writes_rewards_and_names_bad_lines(world, reward_dir, tmp_path, cli_run):
    data = world / "train" / "sft.jsonl"  # the world's SFT records
    out = tmp_path / "scored.jsonl"
    argv = ["rm", "score", "--reward-model", str(reward_dir(1)), "--data", str(data), "--out", str(out)]
    code, stdout, stderr = cli_run([*argv, "--batch-size", "16", "--no-progress"])
    assert code == 0, stderr
    n = sum(1 for line in data.read_text().splitlines() if line.strip())
    assert f"wrote {n} lines to {out}" in stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == n and all(isinstance(r["meta"]["reward"], float) for r in rows)

    code, _, stderr = cli_run(argv)
    assert code == 2 and "exists: pass --overwrite" in stderr

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Q?", "responses": ["A.", 3]}\n', encoding="utf-8")
    code, _, stderr = cli_run(
        ["rm", "score", "--reward-model", str(reward_dir(1)), "--data", str(bad), "--out", str(tmp_path / "b.jsonl")]
    )
    assert code == 2 and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert f"{bad}, line 1" in stderr and "field 'responses[1]'" in stderr


def test_best_of_then_sft_is_rejection_sampling_fine_tuning(world, tiny_dir, reward_dir, tmp_path, cli_run):
    policy = tiny_dir("tiny-llava")
    out = tmp_path / "best.jsonl"
    argv = ["rm", "best-of", "--model", str(policy), "--reward-model", str(reward_dir(1)), "--world", str(world)]
    argv += ["--n", "3", "--limit", "4", "--max-new-tokens", "6", "--seed", "1", "--out", str(out), "--no-progress"]
    code, stdout, stderr = cli_run(argv)
    assert code == 0, stderr
    assert "wrote 4 SFT records from the first 4 of 12 prompts" in stdout and "image paths are relative to" in stdout
    records = list(read_records(out, root=tmp_path))  # images copied beside the output
    assert len(records) == 4 and all(r.meta["n"] == 3 for r in records)

    run = tmp_path / "rs-ft"
    overrides = [f"model.path={policy}", f"data.train={out}", f"data.root={tmp_path}", f"train.output_dir={run}"]
    overrides += ["train.max_steps=2", "train.batch_size=2", "train.logging_steps=1"]
    code, stdout, stderr = cli_run(["train", "sft", "--config", str(SFT_CONFIG), "--no-progress", *overrides])
    assert code == 0, stderr
    result = json.loads((run / "train_result.json").read_text())
    assert result["global_step"] == 2 and result["examples"] == 4 and (run / "model.safetensors").is_file()
