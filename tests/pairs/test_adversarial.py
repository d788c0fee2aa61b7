"""``adversarial``: PGD raises the NLL of the correct answer within epsilon, survives PNG quantisation, is seeded."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmalign.data.images import encode_png, load_image
from mmalign.data.io import read_records
from mmalign.data.records import assistant, user_prompt
from mmalign.errors import ConfigError
from mmalign.models import ensure_preset, load
from mmalign.models.examples import Example
from mmalign.pairs import adversarial
from mmalign.pairs.adversarial import is_correct, pgd_attack, response_nll
from mmalign.pairs.registry import BuildInputs, make_builder
from mmalign.pairs.shards import run_build


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "sample-rank-models"


@pytest.fixture(scope="module")
def policy(models: Path) -> Path:
    return ensure_preset("tiny-llava", models)


@pytest.fixture(scope="module")
def loaded(policy: Path):
    return load(policy)


def questions(world: Path, n: int = 3) -> list[Example]:
    rows = [json.loads(line) for line in (world / "train" / "sft.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["meta"]["task"] != "caption"][:n]
    return [Example(r["id"], r["prompt"], [load_image(r["images"][0], world)], r["completion"]) for r in rows]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_pgd_raises_the_nll_within_epsilon_after_quantisation(world, loaded):
    examples = questions(world)
    attack = pgd_attack(loaded, examples, epsilon=4.5, step_size=1.5, steps=4, random_start=True, seeds=[1, 2, 3])
    # the PNG the record carries, read back through the processor: the correct answer got less likely
    attacked = [
        Example(e.id, e.prompt, [Image.open(io.BytesIO(encode_png(imgs[0])))], e.response)
        for e, imgs in zip(examples, attack.images, strict=True)
    ]
    nll_png = response_nll(loaded, attacked)
    clean_nll = response_nll(
        loaded, [Example(e.id, e.prompt, clean, e.response) for e, clean in zip(examples, attack.clean, strict=True)]
    )
    assert clean_nll == pytest.approx(attack.nll_clean, abs=1e-3)  # the clean view is what the model saw
    for i in range(len(examples)):
        gain, float_gain = nll_png[i] - attack.nll_clean[i], attack.nll_attack[i] - attack.nll_clean[i]
        assert gain > 0.05 and gain > 0.5 * float_gain  # quantisation keeps most of the attack
        change = np.abs(pixels(attack.images[i][0]) - pixels(attack.clean[i][0]))
        assert change.max() == attack.linf[i] <= 4  # floor(4.5) levels out of 255, after rounding
        assert attack.images[i][0].size == (48, 48)  # the model's input resolution
    # the clean view is the original 32 px image resized by the processor: the same picture
    assert pixels(attack.clean[0][0]).shape == (48, 48, 3)


def test_pgd_is_deterministic_by_seed(world, loaded):
    examples = questions(world, 2)
    kwargs = {"epsilon": 8.0, "step_size": 2.0, "steps": 2, "random_start": True}
    first = pgd_attack(loaded, examples, seeds=[5, 6], **kwargs)
    again = pgd_attack(loaded, examples, seeds=[5, 6], **kwargs)
    other = pgd_attack(loaded, examples, seeds=[7, 6], **kwargs)
    png = [[encode_png(img) for img in imgs] for imgs in first.images]
    assert png == [[encode_png(img) for img in imgs] for imgs in again.images]
    assert [encode_png(img) for img in other.images[0]] != png[0]
    # without a random start PGD begins at the clean image: seeds do not matter
    plain = [
        pgd_attack(loaded, examples, epsilon=8.0, step_size=2.0, steps=1, random_start=False, seeds=s)
        for s in ([1, 2], [3, 4])
    ]
    assert [encode_png(i[0]) for i in plain[0].images] == [encode_png(i[0]) for i in plain[1].images]


def test_answer_matching():
    assert is_correct("Yes.", "yes") and is_correct("yes, there is", "Yes.") and is_correct("Top left.", "top left")
    assert not is_correct("No.", "Yes.") and not is_correct("yesterday", "yes") and not is_correct("", "yes")
    assert not is_correct("two", "")


def test_build_from_the_world(world, policy, tmp_path, h):
    before = adversarial.STATS.copy()
    out = tmp_path / "adv" / "adv.jsonl"
    options = {"model": str(policy), "limit": 4, "steps": 2, "max_new_tokens": 4, "items_per_unit": 2}
    builder = make_builder("adversarial", options)
    result = run_build(builder, BuildInputs(world=world), out, seed=1, out_root=world)
    assert result.units == 2
    rows = h.read_lines(out)
    records = list(read_records(out, root=world, check_images="decode"))
    assert len(records) == len(rows) >= 1
    stats = adversarial.STATS - before
    assert stats["questions"] == 4 and stats["pairs"] == len(rows)
    sft = {r["id"]: r for r in h.read_lines(world / "train" / "sft.jsonl")}
    for row in rows:
        meta = row["meta"]
        source = sft[meta["from_id"]]
        assert source["meta"]["task"] != "caption" and row["id"] == f"{source['id']}-adv"
        chosen, rejected = h.texts(row)
        assert chosen == source["completion"][0]["content"][0]["text"] and not is_correct(rejected, chosen)
        assert row["prompt"] == source["prompt"] and row["source"] == "adversarial"
        assert row["images"][0].startswith("images/adversarial/") and meta["from_images"] == source["images"]
        assert meta["linf"] <= 8 and meta["epsilon"] == 8.0 and meta["steps"] == 2
        assert meta["survives_quantisation"] == (meta["nll_png"] > meta["nll_clean"])
        assert Image.open(world / row["images"][0]).size == (48, 48)
    again = tmp_path / "again" / "adv.jsonl"
    run_build(builder, BuildInputs(world=world), again, seed=1, out_root=world)
    assert again.read_bytes() == out.read_bytes()


def test_errors(world, policy, models, tmp_path):
    def build(model: Path | str, inputs: BuildInputs, **options: object) -> None:
        run_build(
            make_builder("adversarial", {"model": str(model), "limit": 1, "steps": 1, **options}),
            inputs,
            tmp_path / "o.jsonl",
            restart=True,
        )

    with pytest.raises(ConfigError, match="does not exist"):
        build(tmp_path / "missing", BuildInputs(world=world))
    with pytest.raises(ConfigError, match="training questions"):
        build(policy, BuildInputs(world=world, split="val"))
    with pytest.raises(ConfigError, match=r"pixel_values of shape \(images, 3, H, W\)"):
        build(ensure_preset("tiny-qwen2-vl", models), BuildInputs(world=world))
    for bad in ({"epsilon": 0.0}, {"steps": 0}, {"tasks": ["jokes"]}, {"epsilon": 300.0}):
        with pytest.raises(ConfigError):
            make_builder("adversarial", {"model": "m", **bad})
    # evaluation items from another split, through --input
    items = tmp_path / "count.jsonl"
    items.write_text((world / "val" / "count.jsonl").read_text().splitlines()[0] + "\n")
    build(policy, BuildInputs(input=items, root=world))
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(rows) == 1  # the random tiny model does not count
    for row in rows:
        assert row["prompt"] == user_prompt(json.loads(items.read_text())["question"])
        assert row["chosen"] == assistant(json.loads(items.read_text())["answer"])
