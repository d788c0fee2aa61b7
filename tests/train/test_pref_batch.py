"""What a preference batch carries for the loss: dense DPO's span masks on tokens, mDPO's corrupted-image rows (the
same corruption for a record every time, the record's own rejected images when it has them), pairs kept whole."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from mmalign.data.records import PreferenceRecord, assistant, user_prompt
from mmalign.losses import build_loss
from mmalign.models import load
from mmalign.seeding import record_rng
from mmalign.train.pref_batch import PreferenceCollator, preference_inputs
from mmalign.train.trainer import Collate


def picture(shift: int = 0) -> Image.Image:
    """A red circle on a colour gradient (so that crops at different places differ)."""
    img = Image.new("RGB", (48, 48))
    img.putdata([(5 * x, 5 * y, 128) for y in range(48) for x in range(48)])
    ImageDraw.Draw(img).ellipse((4 + shift, 4, 30 + shift, 30), fill=(220, 40, 40))
    return img


def pair(i: int, **kw) -> PreferenceRecord:
    question = kw.pop("question", "Describe the image.")
    return PreferenceRecord(
        f"b-{i}",
        user_prompt(question),
        assistant("There is a red circle."),
        assistant("There is a red circle and a blue star."),
        [picture(i)],
        **kw,
    )


@pytest.fixture(scope="module")
def loaded(tiny_dir):
    return load(tiny_dir("tiny-llava"))


def tokens(loaded, batch, row: int) -> list[str]:
    labels = batch.rows.labels[row]
    return loaded.tokenizer.convert_ids_to_tokens(labels[labels != -100].tolist())


def test_span_masks_mark_the_annotated_words(loaded):
    # chosen "There is a red circle." span [11, 21) = "red circle"; rejected span [22, 37) = "and a blue star"
    record = pair(0, chosen_spans=[[11, 21]], rejected_spans=[[22, 37]])
    batch = PreferenceCollator(loaded.collator(mode="train"), build_loss("ddpo"))([record, pair(1)])
    assert tokens(loaded, batch, 0) == ["There", "Ġis", "Ġa", "Ġred", "Ġcircle", ".", "<|end|>"]
    marked = [t for t, m in zip(tokens(loaded, batch, 0), batch.chosen_span_mask[0].tolist(), strict=False) if m]
    assert marked == ["Ġred", "Ġcircle"]
    marked = [t for t, m in zip(tokens(loaded, batch, 2), batch.rejected_span_mask[0].tolist(), strict=False) if m]
    assert marked == ["Ġand", "Ġa", "Ġblue", "Ġstar"]
    assert not batch.chosen_span_mask[1].any() and not batch.rejected_span_mask[1].any()  # no spans: no weights
    assert batch.chosen_tokens == 14  # 7 response tokens in each chosen row
    assert batch.rows.n_pairs == 2 and len(batch.rows) == 4


def test_mdpo_rows_corrupt_the_same_way_every_time(loaded):
    collate = PreferenceCollator(loaded.collator(mode="train"), build_loss("mdpo"), seed=7)
    records = [pair(0), pair(1)]
    first, again = collate(records), collate(list(reversed(records)))
    pixels = first.rows.extras["pixel_values"]
    assert len(first.rows) == 6 and first.has_corrupted
    assert first.rows.labels[4].tolist() == first.rows.labels[0].tolist()  # the chosen response, scored again
    assert torch.equal(pixels[0], pixels[2])  # chosen and rejected see the real image
    assert not torch.equal(pixels[0], pixels[4])  # the conditional row sees a corrupted one
    # Another epoch, another batch order: the same corrupted image for the same record.
    assert torch.equal(again.rows.extras["pixel_values"][5], pixels[4])
    other = PreferenceCollator(loaded.collator(mode="train"), build_loss("mdpo"), seed=8)([records[0]])
    assert not torch.equal(other.rows.extras["pixel_values"][2], pixels[4])
    assert record_rng(7, "b-0").random() == record_rng(7, "b-0").random() != record_rng(7, "b-1").random()


def test_mdpo_uses_a_records_own_rejected_images(loaded):
    record = pair(0, rejected_images=[picture(12)])
    batch = PreferenceCollator(loaded.collator(mode="train"), build_loss("mdpo"))([record])
    pixels = batch.rows.extras["pixel_values"]
    assert not torch.equal(pixels[1], pixels[0])  # the rejected row (DPO term) sees rejected_images, not m
    assert torch.equal(pixels[2], pixels[1])  # the corrupted row is the rejected side's image
    off = PreferenceCollator(loaded.collator(mode="train"), build_loss("mdpo", prefer_record_images=False))([record])
    assert not torch.equal(off.rows.extras["pixel_values"][2], pixels[1])  # ... unless told to corrupt on the fly
    assert torch.equal(off.rows.extras["pixel_values"][1], pixels[1])  # the rejected row keeps rejected_images


@pytest.mark.parametrize("loss", ["sigmoid", "mdpo"])
def test_a_pair_that_does_not_fit_is_dropped_whole(loaded, loss):
    long = pair(5, question=" ".join(["Describe the image in every detail."] * 12))
    collator = loaded.collator(mode="train", max_length=40, on_overflow="skip")
    batch = PreferenceCollator(collator, build_loss(loss))([pair(0), long, pair(1)])
    assert batch.ids == ["b-0", "b-1"]
    assert len(batch.rows) == (6 if loss == "mdpo" else 4)
    assert collator.n_skipped == 1
    inputs = Collate(PreferenceCollator(collator, build_loss(loss)), preference_inputs)([pair(2)])
    assert inputs["batch"].ids == ["b-2"] and inputs["input_ids"] is inputs["batch"].rows.input_ids


def test_only_preference_records(loaded, tmp_path: Path):
    from mmalign.data.records import SFTRecord
    from mmalign.errors import DataError

    sft = SFTRecord("s-1", user_prompt("Describe the image."), assistant("A red circle."), [picture()])
    with pytest.raises(DataError, match="needs preference records"):
        PreferenceCollator(loaded.collator(mode="train"), build_loss("sigmoid"))([sft])


def qwen_row_pixels(batch) -> list[torch.Tensor]:
    """Per row of a Qwen-VL batch (one image a row), its patch rows of pixel_values (t * h * w rows an image)."""
    sizes = batch.extras["image_grid_thw"].prod(-1).tolist()
    return list(batch.extras["pixel_values"].split(sizes))


@pytest.mark.parametrize("preset", ["tiny-qwen2-vl", "tiny-qwen2.5-vl"])
def test_mdpo_rows_on_qwen_carry_each_rows_image_grid(tiny_dir, preset):
    qwen = load(tiny_dir(preset))
    collate = PreferenceCollator(qwen.collator(mode="train"), build_loss("mdpo"), seed=7)
    records = [pair(0), pair(1)]
    first, again = collate(records), collate(list(reversed(records)))
    rows = first.rows
    assert len(rows) == 6 and first.has_corrupted
    grid = rows.extras["image_grid_thw"]
    assert grid.shape == (6, 3) and grid[:4].tolist() == [[1, 6, 6]] * 4  # 48 x 48 px at 8 px patches
    # every row holds exactly the image tokens of its own grid (the corrupted crop may have another size)
    merge = qwen.model.config.vision_config.spatial_merge_size
    tokens = (rows.input_ids == qwen.processor.image_token_id).sum(-1)
    assert tokens.tolist() == (grid.prod(-1) // merge**2).tolist()
    assert torch.equal(rows.extras["mm_token_type_ids"].bool(), rows.input_ids == qwen.processor.image_token_id)
    pixels = qwen_row_pixels(rows)
    assert torch.equal(pixels[0], pixels[2])  # chosen and rejected see the real image
    assert pixels[0].shape != pixels[4].shape or not torch.equal(pixels[0], pixels[4])  # the corrupted one
    assert torch.equal(qwen_row_pixels(again.rows)[5], pixels[4])  # the same m' in another batch order
