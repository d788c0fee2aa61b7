"""The TRL export (``mmalign data convert`` to a ``datasets`` directory) feeds TRL's DPOTrainer as it is.

Imported records (RLAIF-V's embedded images; LLaVA-RLHF's multi-turn prompts with images named by path) are
exported, loaded with ``datasets.load_from_disk`` and given to ``trl.DPOTrainer`` with a tiny LLaVA built
from a config (``tiny_dir``: saved to a temporary folder and loaded back); one optimizer step runs.
"""

from __future__ import annotations

import os

import pytest
import torch

from mmalign.data.importers import import_file

from .conftest import RLAIF_V_SCHEMA, rlaif_v_rows, write_parquet

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
trl = pytest.importorskip("trl")
pytestmark = pytest.mark.usefixtures("one_thread")


def test_exported_records_train_one_dpo_step_in_trl(tmp_path, src, helpers, cli_run, tiny_dir):
    import datasets
    from PIL import Image
    from trl import DPOConfig, DPOTrainer

    from mmalign.models import load

    write_parquet(tmp_path / "rlaif" / "RLAIF-V-Dataset_000.parquet", rlaif_v_rows(0, 2), RLAIF_V_SCHEMA)
    import_file("rlaif-v", tmp_path / "rlaif", tmp_path / "data" / "rlaif.jsonl")
    images = tmp_path / "coco"
    for name in ("000000000009.jpg", "000000000025.jpg", "000000000030.jpg"):
        helpers.png(images, name)
    import_file("llava-rlhf", src.llava_rlhf, tmp_path / "data" / "llava.jsonl", image_root=images, limit=2)
    exported = []
    for name in ("rlaif", "llava"):
        code, _, err = cli_run(["data", "convert", str(tmp_path / "data" / f"{name}.jsonl"), str(tmp_path / name)])
        assert code == 0, err
        exported.append(datasets.load_from_disk(str(tmp_path / name)))
    dataset = datasets.concatenate_datasets(exported)

    # TRL's vision DPO layout: images (decoded), conversational prompt / chosen / rejected
    row = dataset[3]  # the second LLaVA-RLHF row: two user turns
    assert {"images", "prompt", "chosen", "rejected"} <= set(dataset.column_names)
    assert isinstance(row["images"][0], Image.Image)
    assert [m["role"] for m in row["prompt"]] == ["user", "assistant", "user"]  # LLaVA-RLHF's history kept
    answer = {"type": "text", "text": "It is eating leaves from a tree."}  # preference 2: output_2
    assert row["chosen"] == [{"role": "assistant", "content": [answer]}]

    policy = load(tiny_dir("tiny-llava"))
    config = DPOConfig(
        output_dir=str(tmp_path / "trl-out"),
        max_steps=1,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        bf16=False,
        fp16=False,
        max_length=None,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = DPOTrainer(policy.model, args=config, train_dataset=dataset, processing_class=policy.processor)
    batch = trainer.data_collator([dataset[i] for i in range(4)])
    assert batch["pixel_values"].shape[0] == 8  # each pair's image, once with chosen and once with rejected
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters() if p.requires_grad}
    result = trainer.train()
    assert result.global_step == 1 and abs(result.training_loss - 0.6931) < 1e-3  # log 2: policy = reference
    moved = [n for n, p in policy.model.named_parameters() if p.requires_grad and not torch.equal(before[n], p)]
    assert len(moved) > len(before) // 2
