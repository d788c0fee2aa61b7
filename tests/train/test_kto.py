"""KTO and unpaired APO-zero on the tiny LLaVA: the trainer's loss on a batch is losses.kto's on log-probs computed
row by row, the KL rows are the batch's completions rotated by one, the precomputed reference gives the in-memory
reference's loss, and a short run on shapes-world feedback lowers the loss and saves a model that loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image, ImageDraw

from mmalign.config import apply_overrides, config_from_dict
from mmalign.data.io import write_records
from mmalign.data.records import FeedbackRecord, PreferenceRecord, assistant, user_prompt
from mmalign.errors import ConfigError, DataError
from mmalign.losses.kto import UnpairedLogps, unpaired_metrics
from mmalign.models import load
from mmalign.models.examples import Example
from mmalign.models.logps import sequence_logps
from mmalign.train.callbacks import read_metrics
from mmalign.train.feedback_batch import FeedbackCollator, feedback_inputs
from mmalign.train.preference import PreferenceConfig, build_trainer, train_preference

pytestmark = pytest.mark.usefixtures("one_thread")

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 205, 30)}
TOL = 1e-6


def image(i: int) -> Image.Image:
    img = Image.new("RGB", (48, 48), (64, 64, 64))
    ImageDraw.Draw(img).ellipse((6 + 3 * i, 8, 30 + 3 * i, 32), fill=list(COLOURS.values())[i % 4])
    return img


def feedback(n: int, prefix: str = "f") -> list[FeedbackRecord]:
    """n records of varied lengths, alternately desirable (names the shape's colour) and undesirable (adds one)."""
    out = []
    for i in range(n):
        colour, other = list(COLOURS)[i % 4], list(COLOURS)[(i + 1) % 4]
        good = f"There is a {'large ' * (i % 3)}{colour} circle."
        text = good if i % 2 == 0 else f"{good[:-1]} and a small {other} star."
        out.append(
            FeedbackRecord(f"{prefix}-{i}", user_prompt("Describe the image."), assistant(text), i % 2 == 0, [image(i)])
        )
    return out


@pytest.fixture(scope="module")
def model_dir(tiny_dir) -> Path:
    return tiny_dir("tiny-llava")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kto-data")
    write_records(root / "train.jsonl", feedback(8))
    write_records(root / "eval.jsonl", feedback(4, "e"))
    pair = PreferenceRecord("p", user_prompt("Q?"), assistant("yes"), assistant("no"), [image(0)])
    write_records(root / "pairs.jsonl", [pair])
    return {name: root / f"{name}.jsonl" for name in ("train", "eval", "pairs")}


def make_config(model_dir: Path, train: Path, out: Path, *overrides: str) -> PreferenceConfig:
    base = {
        "model": {"path": str(model_dir)},
        "data": {"train": str(train)},
        "train": {
            "output_dir": str(out),
            "batch_size": 4,
            "max_steps": 2,
            "logging_steps": 1,
            "learning_rate": 1e-3,
            "lr_scheduler": "constant",
        },
        "loss": {"name": "kto", "options": {"beta": 0.5, "desirable_weight": 1.3, "undesirable_weight": 0.7}},
    }
    return config_from_dict(PreferenceConfig, apply_overrides(base, list(overrides)), "test")


def nudge(model: Any, seed: int = 0) -> None:
    """Move every weight a little, so that the policy differs from the reference (log-ratios are not 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def one_row(model: Any, collator: Any, record: FeedbackRecord, completion_of: FeedbackRecord) -> float:
    """Summed log-prob of ``record``'s prompt and image with ``completion_of``'s completion, in a batch of one."""
    example = Example(record.id, record.prompt, list(record.images), completion_of.completion)
    with torch.no_grad():
        return sequence_logps(model, collator([example])).sum.item()


def test_collator_rotates_completions_for_the_kl_rows(model_dir, data):
    loaded = load(model_dir)
    records = feedback(4)
    batch = FeedbackCollator(loaded.collator(mode="train"))(records)
    # TRL: completions[-1:] + completions[:-1]: record 0's KL row holds record 3's completion, record i's i-1's
    assert batch.kl_ids == ["f-3", "f-0", "f-1", "f-2"] and batch.label.tolist() == [True, False, True, False]
    direct = loaded.collator(mode="train")(
        [Example("f-1", records[1].prompt, records[1].images, records[0].completion)]
    )
    assert batch.kl_rows.input_ids[1, : direct.input_ids.shape[1]].tolist() == direct.input_ids[0].tolist()
    assert FeedbackCollator(loaded.collator(mode="train"), needs_kl=False)(records).kl_rows is None
    with pytest.raises(DataError, match="mmalign data unpair"):
        FeedbackCollator(loaded.collator(mode="train"))(
            [PreferenceRecord("p", user_prompt("Q?", 0), assistant("a"), assistant("b"))]
        )


@pytest.mark.parametrize("name", ["kto", "apo_zero_unpaired"])
def test_batch_loss_is_losses_kto_on_row_by_row_logps(name, model_dir, data, tmp_path):
    config = make_config(model_dir, data["train"], tmp_path, f"loss.name={name}")
    trainer = build_trainer(config, load(model_dir))
    reference = trainer.reference.inner.model
    nudge(reference)  # a reference less fit to the data than the policy: z0 > 0, so the clamp is not what decides
    records = feedback(4)
    inputs = feedback_inputs(trainer.collators["train"](records))
    trainer.model.train()
    out = trainer.batch_loss(trainer.model, inputs)
    # by hand: each response and each KL pair (prompt i, completion i-1) scored alone
    collator = load(model_dir).collator(mode="train")
    trainer.model.eval()  # the tiny model has no dropout: train and eval forwards agree
    kl_of = [3, 0, 1, 2]
    logps = UnpairedLogps(
        policy=torch.tensor([one_row(trainer.model, collator, r, r) for r in records]),
        reference=torch.tensor([one_row(reference, collator, r, r) for r in records]),
        label=torch.tensor([r.label for r in records]),
        policy_kl=torch.tensor(
            [one_row(trainer.model, collator, r, records[j]) for r, j in zip(records, kl_of, strict=True)]
        ),
        reference_kl=torch.tensor(
            [one_row(reference, collator, r, records[j]) for r, j in zip(records, kl_of, strict=True)]
        ),
    )
    loss = config.build_loss()
    want = loss(logps)
    assert abs(out.loss.item() - want.loss.item()) < TOL
    assert abs(logps.policy - logps.reference).min() > 1e-3  # the models differ: a real test of the log-ratios
    if name == "kto":
        assert want.kl.item() > 0 and abs(out.metrics["kl"] - want.kl.item()) < TOL
    expected = unpaired_metrics(want, logps)
    stored = trainer._means("train")
    for key in ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected", "rewards/margins"):
        assert abs(stored[key] - expected[key]) < 1e-5, key


def test_precomputed_reference_gives_the_in_memory_loss(model_dir, data, tmp_path, caplog):
    losses = {}
    for mode in ("model", "precomputed"):
        overrides = [f"reference.mode={mode}", f"data.eval={data['eval']}"]
        overrides += [f"reference.cache_dir={tmp_path / 'cache'}"] * (mode == "precomputed")
        trainer = build_trainer(make_config(model_dir, data["train"], tmp_path / mode, *overrides), load(model_dir))
        nudge(trainer.model)
        trainer.model.train()
        sampler = list(iter(trainer._get_train_sampler()))
        assert mode == "model" or sorted(sampler[:4]) in ([0, 1, 2, 3], [4, 5, 6, 7])  # whole blocks
        records = trainer.train_dataset.records[4:8]
        losses[mode] = trainer.batch_loss(
            trainer.model, feedback_inputs(trainer.collators["train"](records))
        ).loss.item()
        eval_records = trainer.eval_dataset.records
        trainer.model.eval()
        with torch.no_grad():
            eval_batch = feedback_inputs(trainer.collators["eval"](eval_records))
            losses[f"eval-{mode}"] = trainer.batch_loss(trainer.model, eval_batch).loss.item()
    assert abs(losses["model"] - losses["precomputed"]) < TOL
    assert abs(losses["eval-model"] - losses["eval-precomputed"]) < TOL
    assert len(list((tmp_path / "cache").glob("reference-feedback-*.safetensors"))) == 2  # train and eval
    # a batch the cache was not made for (records 2..5: other KL partners) is refused, naming the record
    with pytest.raises(DataError, match="precomputed KL row of this record pairs it with") as err:
        trainer.batch_loss(
            trainer.model, feedback_inputs(trainer.collators["train"](trainer.train_dataset.records[2:6]))
        )
    assert err.value.record_id == "f-2"
    again = build_trainer(make_config(model_dir, data["train"], tmp_path / "again", *overrides), load(model_dir))
    assert "read from" in again.reference.description


def test_short_run_lowers_the_loss_and_saves(model_dir, data, tmp_path):
    config = make_config(
        model_dir,
        data["train"],
        tmp_path / "run",
        "train.max_steps=8",
        f"data.eval={data['eval']}",
        "train.eval_steps=8",
    )
    result = train_preference(config, progress=False, write=lambda line: None)
    rows = read_metrics(result.output_dir / "metrics.jsonl")
    losses = [r["loss"] for r in rows if "loss" in r and "eval_loss" not in r]
    assert len(losses) == 8 and losses[-1] < losses[0]
    first = next(r for r in rows if "loss" in r)
    for key in ("kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"):
        assert key in first, key
    assert "eval_rewards/margins" in result.eval_metrics and result.last_logged["rewards/margins"] > 0
    reloaded = load(result.model_dir)
    batch = reloaded.collator(mode="train")(feedback(2))
    assert torch.isfinite(sequence_logps(reloaded.model, batch).sum).all()


def test_bad_configs_and_data_fail_at_start(model_dir, data, tmp_path):
    with pytest.raises(ConfigError, match=r"train\.batch_size must be at least 2"):
        make_config(model_dir, data["train"], tmp_path, "train.batch_size=1")
    make_config(model_dir, data["train"], tmp_path, "train.batch_size=1", "loss.name=apo_zero_unpaired")  # no z0
    with pytest.raises(ConfigError, match="plain forward"):
        make_config(model_dir, data["train"], tmp_path, "share_prefix=true")
    with pytest.raises(ConfigError, match=r"guard\.max_kl"):
        make_config(
            model_dir, data["train"], tmp_path, f"data.eval={data['eval']}", "train.eval_steps=1", "guard.max_kl=1"
        )
    with pytest.raises(ConfigError, match=r"reference\.batch_size"):
        make_config(model_dir, data["train"], tmp_path, "reference.mode=precomputed", "reference.batch_size=2")
    with pytest.raises(DataError, match="feedback"):
        build_trainer(make_config(model_dir, data["pairs"], tmp_path), load(model_dir))


def test_cli_lists_and_trains_kto(model_dir, data, tmp_path, cli_run):
    code, out, _ = cli_run(["train", "pref", "--list-losses"])
    assert code == 0 and "kto" in out and "apo_zero_unpaired" in out and "binary-feedback records" in out
    args = [f"model.path={model_dir}", f"data.train={data['train']}", f"train.output_dir={tmp_path / 'cli'}"]
    args += ["train.max_steps=2", "train.batch_size=4", "train.logging_steps=1", "loss.options.beta=0.5"]
    code, out, err = cli_run(["train", "pref", "--loss", "kto", "--no-progress", *args])
    assert code == 0, err
    assert "trained 2 steps" in out and "last kl" in out and "margin" in out


def test_precomputed_run_trains_like_the_in_memory_reference(model_dir, data, tmp_path):
    # Both draw the same shuffled blocks of 4 (the in-memory run told to), so they see the same batches.
    from transformers import TrainerCallback

    class Losses(TrainerCallback):
        def __init__(self) -> None:
            self.values: list[float] = []

        def on_log(self, _args: Any, _state: Any, _control: Any, logs: dict[str, float] | None = None, **kw: Any):
            if logs and "loss" in logs:
                self.values.append(logs["loss"])

    runs = {}
    for mode in ("model", "precomputed"):
        overrides = [f"reference.mode={mode}", "train.max_steps=4"]
        overrides += [f"reference.cache_dir={tmp_path / 'cache'}"] * (mode == "precomputed")
        losses = Losses()
        trainer = build_trainer(
            make_config(model_dir, data["train"], tmp_path / mode, *overrides), load(model_dir), [losses]
        )
        trainer.blocks = 4
        trainer.train()
        runs[mode] = losses.values
    assert len(runs["model"]) == 4 and runs["model"][-1] < runs["model"][0]
    assert runs["precomputed"] == pytest.approx(runs["model"], abs=1e-6)


def test_lora_trains_with_the_adapter_as_reference(model_dir, data, tmp_path):
    overrides = ["model.lora.enabled=true", "model.lora.r=4", "loss.options.desirable_weight=1.0"]
    overrides += ["loss.options.undesirable_weight=1.0", "train.learning_rate=1e-2"]
    config = make_config(model_dir, data["train"], tmp_path / "lora", *overrides)
    assert config.reference_source() == "adapter"
    result = train_preference(config, progress=False, write=lambda line: None)
    losses = [r["loss"] for r in read_metrics(result.output_dir / "metrics.jsonl") if "loss" in r]
    # a fresh adapter is a no-op: policy = reference, r = 0 and z0 = 0, so every record's loss is 1 − σ(0) = 0.5
    assert losses[0] == pytest.approx(0.5, abs=1e-6) and losses[1] != pytest.approx(0.5, abs=1e-5)
    assert result.adapter_dir is not None and (result.adapter_dir / "adapter_model.safetensors").is_file()
