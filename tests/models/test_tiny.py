"""Tiny offline models: what is saved, that plain transformers loads it, tokenizer and chat template."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file

from mmalign.errors import ConfigError
from mmalign.models import load
from mmalign.models.processors import has_torchvision
from mmalign.models.tiny import PRESETS, build_tiny, spec_for
from mmalign.models.tokenizer import EOS, build_tokenizer, chat_template
from mmalign.objects import shapes

VLMS = ("tiny-llava", "tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-idefics3")


@pytest.mark.parametrize("preset", VLMS)
def test_saved_directory_loads_with_plain_transformers(tiny_dir, preset, mk):
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    path = tiny_dir(preset)
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "chat_template.jinja", "tokenizer.json"} <= names
    assert not any(name.endswith((".bin", ".pt", ".py")) for name in names)  # no pickles, no custom code
    assert "auto_map" not in json.loads((path / "config.json").read_text())
    model = AutoModelForImageTextToText.from_pretrained(path)
    assert type(model).__module__.startswith("transformers.models.")
    assert AutoConfig.from_pretrained(path).model_type == spec_for(preset).arch
    config = json.loads((path / "processor_config.json").read_text())
    if preset.startswith("tiny-qwen"):
        # saved under the upstream class name, with the video half Qwen's processor expects
        assert config["processor_class"] in ("Qwen2VLProcessor", "Qwen2_5_VLProcessor")
        assert config["video_processor"]["patch_size"] == config["image_processor"]["patch_size"] == 8
    if preset.startswith("tiny-qwen") and not has_torchvision():
        # Qwen-VL's AutoProcessor builds a video processor, which needs torchvision (not installable beside the
        # CPU torch here): mmalign's loader builds the same processor from the image processor and tokenizer.
        processor = load(path).processor
        assert type(processor).__name__ == config["processor_class"] + "ImageOnly"
        assert isinstance(processor, getattr(transformers, config["processor_class"]))
    else:
        processor = AutoProcessor.from_pretrained(path)
        assert type(processor).__module__.startswith("transformers.models.")
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}],
        add_generation_prompt=True,
    )
    inputs = processor(text=[text], images=[mk.image(size=(64, 32))], return_tensors="pt")
    if preset.startswith("tiny-qwen"):
        assert "<|vision_start|><|image_pad|><|vision_end|>Describe the image." in text
        # 64 x 32 px at 8 px patches: grid (t, h, w) = (1, 4, 8) -> 32 patches, merged 2 x 2 -> 32 / 4 = 8 tokens
        assert inputs["image_grid_thw"].tolist() == [[1, 4, 8]]
        merge = processor.image_processor.merge_size
        assert merge == model.config.vision_config.spatial_merge_size == 2
        n_image = int((inputs["input_ids"] == model.config.image_token_id).sum())
        assert n_image == 1 * 4 * 8 // merge**2 == 8
        assert inputs["pixel_values"].shape[0] == 32  # one row per patch
        assert torch.equal(inputs["mm_token_type_ids"].bool(), inputs["input_ids"] == model.config.image_token_id)
    with torch.no_grad():
        assert model(**inputs).logits.shape == (*inputs["input_ids"].shape, model.config.get_text_config().vocab_size)


def test_tiny_llava_is_the_prototype_that_learned():
    # 48 px images, 16 px patches -> (48/16)^2 = 9 image tokens; CLIP 64 x 2, Llama 128 x 3
    model, processor = build_tiny(spec_for())
    assert spec_for() == PRESETS["tiny-llava"]
    vision, text = model.config.vision_config, model.config.text_config
    assert (vision.image_size, vision.patch_size, vision.hidden_size, vision.num_hidden_layers) == (48, 16, 64, 2)
    assert (text.hidden_size, text.num_hidden_layers) == (128, 3)
    assert model.config.image_seq_length == 9
    assert 0.7e6 < sum(p.numel() for p in model.parameters()) < 1.0e6
    ids = processor(text=["<|user|><image>"], images=[torch.zeros(3, 48, 48)], return_tensors="pt")["input_ids"]
    assert int((ids == model.config.image_token_id).sum()) == 9


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    from mmalign.models.tiny import save_tiny

    spec = spec_for("tiny-qwen2-vl", text_layers=1, vision_layers=1)
    a = load_file(save_tiny(spec, tmp_path / "a") / "model.safetensors")
    b = load_file(save_tiny(spec, tmp_path / "b") / "model.safetensors")
    c = load_file(save_tiny(spec.replace(seed=1), tmp_path / "c") / "model.safetensors")
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert sum(1 for k in a if "layers.0." in k) > 0 and not any("layers.1." in k for k in a)  # 1 text layer


def test_overrides_change_the_model():
    model, processor = build_tiny(spec_for(arch="idefics3", image_size=32, patch_size=8, image_split=1))
    # one 32 px tile of (32/8)^2 = 16 patches, pixel-shuffled by 2 -> 4 image tokens, no splitting
    assert processor.image_seq_len == 4
    assert processor.image_processor.do_image_splitting is False
    model, _ = build_tiny(spec_for(arch="qwen2_vl", text_width=64, text_heads=2))
    assert model.config.text_config.hidden_size == 64
    # head size 32 -> rotary half 16 = time 4 + height 6 + width 6 (Qwen2-VL's 16:24:24 proportion)
    assert model.config.text_config.rope_parameters["mrope_section"] == [4, 6, 6]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "tiny-llava", "arch": "llava"}, "not both"),
        ({"arch": "gpt"}, "unknown arch"),
        ({"preset": "huge"}, "unknown preset"),
        ({"arch": "llava", "image_size": 50}, "multiple of 16"),
        ({"arch": "qwen2_vl", "image_size": 40}, "multiple of 16"),
        ({"arch": "llava", "text_width": 100, "text_heads": 3}, "divisible"),
        ({"arch": "llava", "text_layers": 0}, "at least 1"),
        ({"arch": "llava", "depth": 3}, "unknown tiny-model option"),
    ],
)
def test_bad_specs_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        spec_for(**kwargs)


def test_world_words_are_single_tokens_and_any_text_encodes():
    tokenizer = build_tokenizer(("<image>",))
    words = {w.strip(".,?!:()") for line in shapes.tokenizer_corpus() for w in line.split()} - {""}
    words = {w for w in words if w.isalpha()}  # "image1" splits into "image" + "1" (digits are pre-split)
    assert {"circle", "hexagons", "purple", "yes", "describe"} <= {w.lower() for w in words}
    for word in words:
        for form in (word, " " + word, word.capitalize(), " " + word.capitalize()):
            assert len(tokenizer.encode(form, add_special_tokens=False)) == 1, form
    text = "Zebra naïve 🙂 <|user|>x\tQ?"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.unk_token_id is None or tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text
    # special tokens are single ids, never split
    for token in ("<|user|>", "<|assistant|>", "<|end|>", "<image>"):
        assert tokenizer.encode(token, add_special_tokens=False) == [tokenizer.convert_tokens_to_ids(token)]
    assert tokenizer.eos_token == EOS


def test_chat_template_string_or_parts_placeholder_generation_prompt_and_eos():
    tokenizer = build_tokenizer(("<image>",))
    tokenizer.chat_template = chat_template("<image>")
    parts = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Red."}]},
    ]
    as_string = [{"role": "user", "content": "<image>What colour?"}, {"role": "assistant", "content": "Red."}]
    rendered = tokenizer.apply_chat_template(parts, tokenize=False)
    assert rendered == "<|user|><image>What colour?<|end|><|assistant|>Red.<|end|>"
    assert tokenizer.apply_chat_template(as_string, tokenize=False) == rendered
    prompt = tokenizer.apply_chat_template(parts[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|user|><image>What colour?<|end|><|assistant|>"
    assert rendered.startswith(prompt)  # prompt + response renders as prompt followed by the response


def test_ensure_preset_builds_once_and_rebuilds_a_stale_directory(tmp_path):
    from mmalign.models.tiny import ensure_preset

    path = ensure_preset("tiny-llama", tmp_path)
    assert path == tmp_path / "tiny-llama" and (path / "model.safetensors").is_file()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert ensure_preset("tiny-llama", tmp_path) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # built once
    record = json.loads((path / "mmalign.json").read_text())
    record["spec"]["text_layers"] = 9  # a directory built from another spec is rebuilt
    (path / "mmalign.json").write_text(json.dumps(record))
    ensure_preset("tiny-llama", tmp_path)
    assert json.loads((path / "mmalign.json").read_text())["spec"]["text_layers"] == 3
