"""load(): bad model directories are clear errors; dtype, freezing, LoRA and checkpointing do what they say."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mmalign.errors import ConfigError
from mmalign.models import LoadOptions, load


def copy_without_weights(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    return dst


def test_missing_directory_config_or_weights(tiny_dir, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no config\.json"):
        load(tmp_path / "empty")
    bare = copy_without_weights(tiny_dir("tiny-llava"), tmp_path / "bare")
    with pytest.raises(ConfigError, match=r"bare has no weights \(no \*.safetensors file\)"):
        load(bare)


def test_pickle_checkpoint_is_refused_by_name(tiny_dir, tmp_path):
    from mmalign.models.tiny import build_tiny, spec_for

    path = copy_without_weights(tiny_dir("tiny-llava"), tmp_path / "pickled")
    model, _ = build_tiny(spec_for())
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    with pytest.raises(ConfigError, match=r"only pickle weights \(pytorch_model.bin\); mmalign loads safetensors"):
        load(path)


def test_custom_code_needs_trust_remote_code(tiny_dir, tmp_path):
    path = tmp_path / "custom"
    shutil.copytree(tiny_dir("tiny-llava"), path)
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageTextToText": "modeling_evil.EvilModel"}
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"needs its own Python code.*trust_remote_code"):
        load(path)


def test_unknown_and_contradictory_options(tiny_dir):
    path = tiny_dir("tiny-llava")
    with pytest.raises(ConfigError, match=r"unknown load option.*lora_rank"):
        load(path, lora_rank=8)
    with pytest.raises(ConfigError, match="device or device_map, not both"):
        load(path, device="cpu", device_map="auto")
    with pytest.raises(ConfigError, match="dtype"):
        load(path, dtype="fp8")
    with pytest.raises(ConfigError, match="unknown LoRA option"):
        load(path, lora={"rank": 4})
    with pytest.raises(ConfigError, match="r >= 1"):
        load(path, lora={"r": 0})


@pytest.mark.parametrize(
    ("preset", "vision", "projector"),
    [
        ("tiny-llava", "model.vision_tower.", "model.multi_modal_projector."),
        ("tiny-qwen2-vl", "model.visual.", "model.visual.merger."),
        ("tiny-qwen2.5-vl", "model.visual.", "model.visual.merger."),
        ("tiny-idefics3", "model.vision_model.", "model.connector."),
    ],
)
def test_freezing_vision_and_projector(tiny_dir, preset, vision, projector):
    frozen = load(tiny_dir(preset), freeze_vision=True)
    grads = {n: p.requires_grad for n, p in frozen.model.named_parameters()}
    tower = [n for n in grads if n.startswith(vision) and not n.startswith(projector)]
    assert tower and not any(grads[n] for n in tower)
    assert all(g for n, g in grads.items() if n not in tower)  # projector (Qwen's merger too), LM and head train
    both = load(tiny_dir(preset), freeze_projector=True)
    grads = {n: p.requires_grad for n, p in both.model.named_parameters()}
    assert not any(g for n, g in grads.items() if n.startswith(projector))
    assert any(g for n, g in grads.items() if n.startswith(vision) and not n.startswith(projector))


def test_lora_targets_the_language_model_only(tiny_dir):
    loaded = load(tiny_dir("tiny-llava"), lora={"r": 4, "alpha": 12})
    adapted = [n for n, m in loaded.model.named_modules() if hasattr(m, "lora_A")]
    # 3 decoder layers x (q, k, v, o, gate, up, down); CLIP's own q/k/v_proj are not touched
    assert len(adapted) == 3 * 7
    assert all(".language_model." in n for n in adapted)
    layer = dict(loaded.model.named_modules())[adapted[0]]
    assert layer.r["default"] == 4 and layer.scaling["default"] == pytest.approx(12 / 4)
    trainable = {n for n, p in loaded.model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert loaded.n_parameters(trainable_only=True) == sum(
        p.numel() for n, p in loaded.model.named_parameters() if n in trainable
    )
    custom = load(tiny_dir("tiny-llava"), lora={"r": 2, "target_modules": ["multi_modal_projector.linear_1"]})
    assert [n for n, m in custom.model.named_modules() if hasattr(m, "lora_A")] == [
        "base_model.model.model.multi_modal_projector.linear_1"
    ]


@pytest.mark.parametrize("preset", ["tiny-qwen2-vl", "tiny-qwen2.5-vl"])
def test_lora_on_qwen_leaves_the_vision_tower_alone(tiny_dir, preset):
    # Qwen2.5-VL's vision blocks have gate/up/down_proj too: matched by module name alone, LoRA would adapt them
    loaded = load(tiny_dir(preset), lora={"r": 4})
    adapted = [n for n, m in loaded.model.named_modules() if hasattr(m, "lora_A")]
    assert len(adapted) == 3 * 7 and all(".language_model." in n for n in adapted)  # 3 layers x q k v o gate up down
    trainable = {n for n, p in loaded.model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)


def test_dtype_attention_checkpointing_and_text_models(tiny_dir):
    loaded = load(tiny_dir("tiny-qwen2-vl"), LoadOptions(dtype="bfloat16"), attn_implementation="eager")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert loaded.model.config._attn_implementation == "eager"
    checkpointed = load(tiny_dir("tiny-llava"), gradient_checkpointing=True)
    assert checkpointed.model.is_activation_checkpointing and checkpointed.model.config.use_cache is False
    text = load(tiny_dir("tiny-llama"))
    assert text.family.name == "text" and not text.multimodal
    assert type(text.model).__name__ == "LlamaForCausalLM" and text.processor is text.tokenizer
    assert text.model.training is False
