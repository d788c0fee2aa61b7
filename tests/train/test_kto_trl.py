"""KTO on a VLM against TRL 1.16's own ``KTOTrainer`` (its vision collator ``DataCollatorForVisionUnpairedPreference``,
reference model in memory) on the tiny LLaVA and the same feedback records: the loss and the logged metrics of one
batch with the policy apart from the reference agree to 1e-6, and so do four training steps.

TRL refuses ``precompute_ref_log_probs=True`` for vision datasets, so TRL is run with its reference in memory; that
mmalign's precomputed reference gives the in-memory loss is tests/train/test_kto.py's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mmalign.data.io import write_records
from mmalign.models import load
from mmalign.train.feedback_batch import feedback_inputs
from mmalign.train.preference import build_trainer

from .test_kto import feedback, make_config, nudge

pytestmark = pytest.mark.usefixtures("one_thread")

METRICS = ("kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected")


def _trl() -> Any:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    trl = pytest.importorskip("trl")
    if not trl.__version__.startswith("1.16."):
        pytest.skip(f"parity is pinned to trl 1.16, found {trl.__version__}")
    return trl


def _recorder() -> Any:
    from transformers import TrainerCallback

    class Logs(TrainerCallback):
        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []

        def on_log(self, _args: Any, _state: Any, _control: Any, logs: dict[str, float] | None = None, **kw: Any):
            if logs and "loss" in logs:
                self.rows.append(dict(logs))

    return Logs()


def trl_trainer(model_dir: Path, records: list[Any], out: Path, loss_type: str, steps: int, callbacks=()) -> Any:
    """TRL's KTOTrainer on the tiny LLaVA, configured as make_config configures ours (batch 4, file order)."""
    trl = _trl()
    from datasets import Dataset

    rows = [{"images": r.images, "prompt": r.prompt, "completion": r.completion, "label": r.label} for r in records]
    args = trl.KTOConfig(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        beta=0.5,
        desirable_weight=1.3,
        undesirable_weight=0.7,
        loss_type=loss_type,
        gradient_checkpointing=False,
        optim="adamw_torch",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_length=None,
        train_sampling_strategy="sequential",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,  # TRL's configs default to bf16 where the machine has it; both sides run fp32
        seed=0,
        disable_tqdm=True,
    )
    policy, reference = load(model_dir), load(model_dir)
    return trl.KTOTrainer(
        policy.model,
        ref_model=reference.model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=policy.processor,
        callbacks=list(callbacks),
    )


@pytest.fixture(scope="module")
def model_dir(tiny_dir) -> Path:
    return tiny_dir("tiny-llava")


@pytest.mark.parametrize("loss_type", ["kto", "apo_zero_unpaired"])
def test_one_batch_equals_trl(loss_type, model_dir, tmp_path):
    records = feedback(4)
    write_records(tmp_path / "train.jsonl", records)
    trl = trl_trainer(model_dir, records, tmp_path / "trl", loss_type, steps=1)
    ours = build_trainer(
        make_config(model_dir, tmp_path / "train.jsonl", tmp_path / "ours", f"loss.name={loss_type}"), load(model_dir)
    )
    nudge(trl.ref_model)  # a reference less fit than the policy: z0 > 0, the log-ratios are not 0
    nudge(ours.reference.inner.model)
    trl.model.train()
    trl_loss = trl._compute_loss(trl.model, trl.data_collator([dict(trl.train_dataset[i]) for i in range(4)]), False)
    trl_metrics = {k: v[-1] for k, v in trl._metrics["train"].items()}
    ours.model.train()
    out = ours.batch_loss(ours.model, feedback_inputs(ours.collators["train"](records)))
    metrics = ours._means("train")
    assert abs(out.loss.item() - trl_loss.item()) < 1e-6
    if loss_type == "kto":
        assert trl_metrics["kl"] > 0.1 and abs(out.metrics["kl"] - trl_metrics["kl"]) < 1e-5  # a sum over tokens
    for key in METRICS[1:]:
        trl_value = (
            trl_metrics[key]
            if key != "rewards/margins"
            else trl_metrics["rewards/chosen"] - trl_metrics["rewards/rejected"]
        )
        assert abs(metrics[key] - trl_value) < 1e-5, key
    assert metrics["rewards/margins"] != 0


def test_four_training_steps_equal_trl(model_dir, tmp_path):
    records = feedback(16)
    write_records(tmp_path / "train.jsonl", records)
    logs = {"trl": _recorder(), "ours": _recorder()}
    trl_trainer(model_dir, records, tmp_path / "trl", "kto", steps=4, callbacks=[logs["trl"]]).train()
    config = make_config(model_dir, tmp_path / "train.jsonl", tmp_path / "ours", "train.max_steps=4")
    ours = build_trainer(
        config, load(model_dir), [logs["ours"]], optim="adamw_torch", train_sampling_strategy="sequential", use_cpu=True
    )
    ours.train()
    trl_rows, our_rows = logs["trl"].rows, logs["ours"].rows
    assert len(trl_rows) == len(our_rows) == 4
    assert max(r["kl"] for r in trl_rows) > 1  # z0 leaves 0 once the policy moves
    for trl_row, our_row in zip(trl_rows, our_rows, strict=True):
        assert abs(trl_row["loss"] - our_row["loss"]) < 1e-6
        assert abs(trl_row["grad_norm"] - our_row["grad_norm"]) < 1e-4
        for key in METRICS:
            assert abs(trl_row[key] - our_row[key]) < 1e-4, key
