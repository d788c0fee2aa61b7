"""The collator: templated prompts through the processor, labels on responses only, padding, truncation."""

from __future__ import annotations

import pytest
import torch

from mmalign.data.records import PreferenceRecord, assistant, user_prompt
from mmalign.errors import ConfigError, DataError
from mmalign.models import Example, load
from mmalign.models.collate import IGNORE, Collator

VLMS = ("tiny-llava", "tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-idefics3")


@pytest.fixture(scope="module")
def llava(tiny_dir):
    return load(tiny_dir("tiny-llava"))


def response_of(tokenizer, labels: torch.Tensor) -> str:
    return tokenizer.decode([t for t in labels.tolist() if t != IGNORE])


@pytest.mark.parametrize("preset", VLMS)
def test_prompt_is_what_the_processor_makes_and_labels_are_the_response(tiny_dir, preset, mk):
    loaded = load(tiny_dir(preset))
    records = [mk.sft(0, "Yes."), mk.sft(1, "There is a small blue star.", images=[mk.image(size=(64, 32))])]
    batch = loaded.collator()(records)
    tokenizer = loaded.tokenizer
    for row, record in enumerate(records):
        prompt = loaded.processor.apply_chat_template(record.prompt, add_generation_prompt=True, tokenize=False)
        alone = loaded.processor(text=[prompt], images=record.images, return_tensors="pt", add_special_tokens=False)
        n = int(batch.prompt_lengths[row])
        assert torch.equal(batch.input_ids[row, :n], alone["input_ids"][0])  # image tokens expanded as upstream
        assert (batch.labels[row, :n] == IGNORE).all()  # prompt and image tokens carry no loss
        assert response_of(tokenizer, batch.labels[row]) == record.completion_text + "<|end|>"
        length = int(batch.attention_mask[row].sum())
        assert (batch.labels[row, length:] == IGNORE).all() and (batch.attention_mask[row, :length] == 1).all()
        assert torch.equal(batch.labels[row, n:length], batch.input_ids[row, n:length])
    assert batch.padding_side == "right" and batch.labels.shape == batch.input_ids.shape
    if preset.startswith("tiny-qwen"):  # mRoPE needs token types; the response is text (0)
        types = batch.extras["mm_token_type_ids"]
        assert types.shape == batch.input_ids.shape
        assert torch.equal(types.bool(), batch.input_ids == loaded.processor.image_token_id)
        assert batch.extras["image_grid_thw"].tolist() == [[1, 6, 6], [1, 4, 8]]  # 48x48 and 64x32 at 8 px
    if preset == "tiny-idefics3":
        assert batch.extras["pixel_values"].shape[:2] == batch.extras["pixel_attention_mask"].shape[:2]


def test_generation_batches_are_left_padded_prompts(llava, mk):
    records = [mk.item(0, "Is there a red circle in the image?"), mk.item(1, "What?")]
    batch = llava.collator(mode="generate")(records)
    assert batch.labels is None and batch.padding_side == "left"
    lengths = batch.attention_mask.sum(-1)
    assert lengths.tolist() == batch.prompt_lengths.tolist()
    short = int(lengths.argmin())
    pad = batch.input_ids.shape[1] - int(lengths[short])
    assert pad > 0 and (batch.input_ids[short, :pad] == llava.tokenizer.pad_token_id).all()
    last = llava.tokenizer.convert_ids_to_tokens(batch.input_ids[:, -1].tolist())
    assert last == ["<|assistant|>", "<|assistant|>"]  # every row ends with the generation prompt
    # an eval item's images come before its question, in one user turn
    text = llava.tokenizer.decode(batch.input_ids[0, batch.attention_mask[0].bool()])
    assert text.startswith("<|user|>" + "<image>" * 9 + "Is there")


def test_preference_rows_are_chosen_then_rejected_with_rejected_images(llava, mk):
    red, green = mk.image((220, 40, 40)), mk.image((40, 170, 60))
    pairs = [mk.pref(0), mk.pref(1, "Red.", "Green.", rejected_images=[green], images=[red])]
    batch = llava.collator()(pairs)
    assert batch.n_pairs == 2 and len(batch) == 4 and batch.ids == ["p-0", "p-1", "p-0", "p-1"]
    texts = [response_of(llava.tokenizer, batch.labels[i]) for i in range(4)]
    assert texts == [
        "There is a red circle.<|end|>",
        "Red.<|end|>",
        "There is a red circle and a star.<|end|>",
        "Green.<|end|>",
    ]
    pixels = batch.extras["pixel_values"]
    assert torch.equal(pixels[0], pixels[2])  # pair 0: both sides see the same image
    assert not torch.equal(pixels[1], pixels[3])  # pair 1: the rejected side sees its own image
    single = llava.collator()([pairs[1]])
    assert torch.equal(single.extras["pixel_values"][1], pixels[3])


@pytest.mark.parametrize("preset", ["tiny-qwen2-vl", "tiny-qwen2.5-vl"])
def test_qwen_preference_rows_carry_their_image_grids_in_row_order(tiny_dir, preset, mk):
    loaded = load(tiny_dir(preset))
    wide, tall = mk.image(size=(64, 32)), mk.image((40, 170, 60), (32, 64))
    pairs = [mk.pref(0), mk.pref(1, "Red.", "Green.", images=[wide], rejected_images=[tall])]
    batch = loaded.collator()(pairs)
    # rows chosen 0, chosen 1, rejected 0, rejected 1; 48 x 48 -> 6 x 6, 64 x 32 -> 4 x 8, 32 x 64 -> 8 x 4 patches
    grid = batch.extras["image_grid_thw"]
    assert grid.tolist() == [[1, 6, 6], [1, 4, 8], [1, 6, 6], [1, 8, 4]]
    tokens = (batch.input_ids == loaded.processor.image_token_id).sum(-1)
    assert tokens.tolist() == (grid.prod(-1) // 4).tolist() == [9, 8, 9, 8]  # merged 2 x 2
    assert batch.extras["pixel_values"].shape[0] == int(grid.prod(-1).sum())


def test_response_offsets_locate_record_text(llava, mk):
    batch = llava.collator()([mk.sft(0, "A big star.")])
    offsets, start = batch.response_offsets[0], batch.response_text_start[0]
    response = "A big star.<|end|>"
    assert start == 0 and len(offsets) == int((batch.labels[0] != IGNORE).sum())
    pieces = [response[a:b] for a, b in offsets]
    assert "".join(pieces) == response and pieces[-1] == "<|end|>"


@pytest.mark.parametrize("preset", VLMS)
def test_truncation_cuts_the_response_never_the_prompt(tiny_dir, preset, mk):
    loaded = load(tiny_dir(preset))
    record = mk.sft(0, "There is a small red circle and a large blue star.", images=[mk.image(size=(64, 32))])
    full = loaded.collator()([record])
    n_prompt = int(full.prompt_lengths[0])
    n_response = int((full.labels != IGNORE).sum())
    assert n_response > 3
    cut = loaded.collator(max_length=n_prompt + 3)([record])
    assert cut.input_ids.shape[1] == n_prompt + 3 and int(cut.prompt_lengths[0]) == n_prompt
    assert torch.equal(cut.input_ids[0], full.input_ids[0, : n_prompt + 3])  # the start of the response stays
    assert int((cut.labels != IGNORE).sum()) == 3
    assert cut.extras.keys() == full.extras.keys()
    for key, value in full.extras.items():  # per-token inputs cut with the tokens, image inputs untouched
        expected = value[:, : n_prompt + 3] if value.shape[:2] == full.input_ids.shape else value
        assert torch.equal(cut.extras[key], expected), key
    if preset.startswith("tiny-qwen"):  # every image token kept, as many as image_grid_thw says
        image_id = loaded.processor.image_token_id
        grid = cut.extras["image_grid_thw"]
        assert grid.tolist() == [[1, 4, 8]]  # 64 x 32 px at 8 px patches
        merge = loaded.model.config.vision_config.spatial_merge_size
        assert int((cut.input_ids == image_id).sum()) == int(grid.prod(-1).sum()) // merge**2 == 8
        assert cut.extras["pixel_values"].shape[0] == int(grid.prod(-1).sum())


@pytest.mark.parametrize("preset", VLMS)
def test_prompt_that_cannot_fit_is_an_error_or_skipped_and_counted(tiny_dir, preset, mk):
    loaded = load(tiny_dir(preset))
    long_prompt = mk.sft(7, question="Describe the image in one short sentence please.")
    n_prompt = int(loaded.collator()([long_prompt]).prompt_lengths[0])
    with pytest.raises(DataError, match=r"\(id 's-7'\).*no room for a response within max_length"):
        loaded.collator(max_length=n_prompt)([mk.sft(0, question="Hi?"), long_prompt])
    collator = loaded.collator(max_length=n_prompt, on_overflow="skip")
    small = {"images": [mk.image(size=(32, 32))]}  # Qwen: a 4 x 4 grid, so the kept images are told apart
    batch = collator([mk.sft(0, question="Hi?", **small), long_prompt, mk.sft(2, question="Hi?")])
    assert batch.ids == ["s-0", "s-2"] and batch.skipped == ["s-7"] and collator.n_skipped == 1
    if preset.startswith("tiny-qwen"):  # the skipped record's image is gone too
        assert batch.extras["image_grid_thw"].tolist() == [[1, 4, 4], [1, 6, 6]]
        assert batch.extras["pixel_values"].shape[0] == 16 + 36
    else:
        assert batch.extras["pixel_values"].shape[0] == 2
    empty = collator([long_prompt])
    assert len(empty) == 0 and empty.skipped == ["s-7"] and collator.n_skipped == 2


def test_a_pair_is_kept_or_skipped_whole(llava, mk):
    short = mk.pref(0, "Red.", "Green.")
    long = mk.pref(1, "Red.", "Green.", question="Describe the image in one short sentence please.")
    limit = int(llava.collator()([long]).prompt_lengths[0])  # long's prompt fills it: no room for a response
    batch = llava.collator(max_length=limit, on_overflow="skip")([short, long])
    assert batch.n_pairs == 1 and batch.ids == ["p-0", "p-0"] and batch.skipped == ["p-1"]


def test_image_count_must_match_placeholders(llava, mk):
    record = Example("x-1", user_prompt("Compare.", 2), [mk.image()], assistant("Same."))
    with pytest.raises(DataError, match=r"\(id 'x-1'\), field 'images': the prompt has 2 image placeholder"):
        llava.collator()([record])
    pair = mk.pref(3, rejected_images=[mk.image(), mk.image()])
    with pytest.raises(DataError, match=r"\(id 'p-3'\), field 'rejected_images': the prompt has 1"):
        llava.collator()([pair])


def test_image_paths_open_under_the_root_and_missing_files_are_named(llava, mk, tmp_path):
    mk.image().save(tmp_path / "red.png")
    record = mk.sft(0, images=["red.png"])
    batch = llava.collator(image_root=tmp_path)([record])
    assert torch.equal(batch.extras["pixel_values"], llava.collator()([mk.sft(0)]).extras["pixel_values"])
    with pytest.raises(DataError, match=r"\(id 's-1'\), field 'images\[0\]': image file not found"):
        llava.collator(image_root=tmp_path)([mk.sft(1, images=["gone.png"])])
    with pytest.raises(DataError, match="needs a data root"):
        llava.collator()([record])


def test_record_dicts_are_parsed_and_checked(llava, mk):
    row = mk.sft(0).to_dict()
    assert llava.collator()([row]).ids == ["s-0"]
    row["prompt"][0]["content"].append({"type": "image"})
    with pytest.raises(DataError, match="2 image placeholder"):
        llava.collator()([row])


def test_text_only_model_refuses_images_and_batches_text(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-llama"))
    with pytest.raises(DataError, match=r"\(id 's-0'\), field 'images': the model is text-only"):
        loaded.collator()([mk.sft(0)])
    batch = loaded.collator()([mk.sft(1, "Yes.", images=[])])
    assert batch.extras == {} and response_of(loaded.tokenizer, batch.labels[0]) == "Yes.<|end|>"


def test_bad_batches_and_options(llava, mk):
    with pytest.raises(ConfigError, match="mixes preference pairs"):
        llava.collator()([mk.pref(0), mk.sft(1)])
    with pytest.raises(DataError, match="no response"):
        llava.collator()([mk.item(0, answer="")])
    with pytest.raises(ConfigError, match="mode"):
        Collator(llava.processor, mode="eval")
    with pytest.raises(ConfigError, match="on_overflow"):
        Collator(llava.processor, on_overflow="truncate")
    with pytest.raises(DataError, match="cannot encode"):
        llava.collator()([42])


def test_pairs_with_identical_sides_are_allowed_only_via_images(llava, mk):
    # an image-side pair (mDPO): same text, other image; rows differ only in pixels
    pair = PreferenceRecord(
        "i-0",
        user_prompt("Describe.", 1),
        assistant("Red."),
        assistant("Red."),
        [mk.image()],
        rejected_images=[mk.image((40, 80, 220))],
    )
    batch = llava.collator()([pair])
    assert torch.equal(batch.input_ids[0], batch.input_ids[1])
    assert not torch.equal(batch.extras["pixel_values"][0], batch.extras["pixel_values"][1])


def test_a_template_that_is_not_prefix_stable_is_a_config_error(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-llava"))
    # the generation prompt says "ASSISTANT>" but a rendered assistant turn says "assistant:": no common prefix
    loaded.processor.chat_template = (
        "{% for m in messages %}{{ m['role'] }}:{% for p in m['content'] %}"
        "{% if p['type'] == 'image' %}<image>{% else %}{{ p['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT>{% endif %}"
    )
    with pytest.raises(ConfigError, match=r"cannot tell where the response starts \(record 's-0'\)"):
        loaded.collator()([mk.sft(0)])
    assert len(loaded.collator(mode="generate")([mk.sft(0)])) == 1  # generation needs only the prompt
