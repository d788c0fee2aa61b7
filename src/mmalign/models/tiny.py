"""Tiny random-weight models, built offline from configs and saved like any Hugging Face checkpoint.

Each family handles images its own way, and the tiny models keep that: ``llava`` (a CLIP tower, an MLP
projector, a fixed number of image tokens; Liu et al., 2023), ``qwen2_vl`` / ``qwen2_5_vl`` (native dynamic
resolution, 2x2 patch merging and multimodal rotary positions, M-RoPE; Wang et al., 2024; Bai et al., 2025),
``idefics3`` (the SmolVLM family: image splitting into tiles plus a global view, pixel shuffle;
Laurençon et al., 2024) and ``llama`` (text only). A saved directory holds only standard files
(``config.json``, ``model.safetensors``, processor and tokenizer files, ``chat_template.jinja``) and loads
with ``AutoModelForImageTextToText`` / ``AutoProcessor`` (``AutoModelForCausalLM`` / ``AutoTokenizer``
for ``llama``), plus ``mmalign.json`` recording the spec it was built from.

``tiny-llava`` is the project's embedded default model: 48 px images cut in 16 px patches (9 image tokens;
8 px patches did not learn in the prototype), a CLIP tower 64 wide x 2 layers, Llama 128 wide x 3 layers,
about 0.8 M parameters.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.errors import ConfigError
from mmalign.models.tokenizer import build_tokenizer, chat_template

ARCHS = ("llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "llama")


@dataclass(frozen=True)
class TinySpec:
    """Sizes of a tiny model. Every field is an option of ``mmalign model init``."""

    arch: str = "llava"
    """Architecture family: llava, qwen2_vl, qwen2_5_vl, idefics3 or llama (text only)."""
    image_size: int = 48
    """Image side in pixels the vision tower sees (llava: resized square; qwen: at most this many pixels
    squared; idefics3: one tile)."""
    patch_size: int = 16
    """Vision patch side in pixels."""
    image_split: int = 2
    """idefics3 only: images are resized to this many tiles per side (plus a global view); 1 disables splitting."""
    vision_width: int = 64
    """Hidden size of the vision tower."""
    vision_layers: int = 2
    """Transformer layers in the vision tower."""
    vision_heads: int = 2
    """Attention heads in the vision tower."""
    text_width: int = 128
    """Hidden size of the language model."""
    text_layers: int = 3
    """Decoder layers in the language model."""
    text_heads: int = 4
    """Attention heads in the language model."""
    max_positions: int = 2048
    """Longest sequence the language model accepts."""
    seed: int = 0
    """Seed of the random weights (same spec and seed, same weights)."""

    def replace(self, **changes: Any) -> TinySpec:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown tiny-model option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown arch {self.arch!r}; expected one of {', '.join(ARCHS)}")
        for name in (
            "image_size",
            "patch_size",
            "image_split",
            "vision_width",
            "vision_layers",
            "vision_heads",
            "text_width",
            "text_layers",
            "text_heads",
            "max_positions",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.vision_width % self.vision_heads or self.text_width % self.text_heads:
            raise ConfigError("vision_width and text_width must be divisible by their head counts")
        if (self.text_width // self.text_heads) % 2:
            raise ConfigError("text_width / text_heads (the head size) must be even for rotary positions")
        grid = {"qwen2_vl": 2 * self.patch_size, "qwen2_5_vl": 2 * self.patch_size, "idefics3": 2 * self.patch_size}
        step = grid.get(self.arch, self.patch_size)
        if self.arch != "llama" and self.image_size % step:
            raise ConfigError(f"{self.arch}: image_size {self.image_size} must be a multiple of {step}")


PRESETS: dict[str, TinySpec] = {
    "tiny-llava": TinySpec(arch="llava"),
    "tiny-qwen2-vl": TinySpec(arch="qwen2_vl", patch_size=8),
    "tiny-qwen2.5-vl": TinySpec(arch="qwen2_5_vl", patch_size=8),
    "tiny-idefics3": TinySpec(arch="idefics3", patch_size=8),
    "tiny-llama": TinySpec(arch="llama"),
}
DEFAULT_PRESET = "tiny-llava"
ARCH_PRESETS = {spec.arch: name for name, spec in PRESETS.items()}


def spec_for(preset: str | None = None, arch: str | None = None, **overrides: Any) -> TinySpec:
    """The spec of ``preset`` (or of ``arch``'s preset), with ``overrides`` (None values ignored)."""
    if preset is not None and arch is not None:
        raise ConfigError("give a preset or an arch, not both")
    if arch is not None:
        if arch not in ARCH_PRESETS:
            raise ConfigError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
        preset = ARCH_PRESETS[arch]
    preset = preset or DEFAULT_PRESET
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    spec = PRESETS[preset].replace(**overrides)
    spec.validate()
    return spec


# ------------------------------------------------------------------------------------------------ building


def _text_config(spec: TinySpec, tokenizer: Any) -> dict[str, Any]:
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": spec.text_width,
        "intermediate_size": 2 * spec.text_width,
        "num_hidden_layers": spec.text_layers,
        "num_attention_heads": spec.text_heads,
        "num_key_value_heads": spec.text_heads,
        "max_position_embeddings": spec.max_positions,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": None,
    }


def _mrope_section(spec: TinySpec) -> list[int]:
    """Split of the rotary half-dimension into (time, height, width), in Qwen2-VL's 16:24:24 proportion."""
    half = spec.text_width // spec.text_heads // 2
    time = max(1, half // 4)
    height = (half - time) // 2
    return [time, height, half - time - height]


def _build_llava(spec: TinySpec) -> tuple[Any, Any]:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    tokenizer = build_tokenizer(("<image>",))
    n_tokens = (spec.image_size // spec.patch_size) ** 2
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=spec.vision_width,
            intermediate_size=2 * spec.vision_width,
            num_hidden_layers=spec.vision_layers,
            num_attention_heads=spec.vision_heads,
            image_size=spec.image_size,
            patch_size=spec.patch_size,
            projection_dim=spec.vision_width,
        ),
        text_config=LlamaConfig(**_text_config(spec, tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=n_tokens,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    image_processor = LlavaImageProcessorPil(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
        do_pad=True,  # LLaVA-1.5 pads to a square before resizing, so nothing is cropped away
    )
    # CLIP prepends a CLS token that the "default" strategy drops: one more patch position, one fewer token.
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=chat_template("<image>"),
    )
    return LlavaForConditionalGeneration(config), processor


QWEN_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def _build_qwen(spec: TinySpec) -> tuple[Any, Any]:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from mmalign.models.processors import image_only_processor_class

    tokenizer = build_tokenizer(QWEN_TOKENS)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_TOKENS}
    text = _text_config(spec, tokenizer) | {
        "rope_parameters": {"rope_type": "default", "mrope_section": _mrope_section(spec), "rope_theta": 10000.0}
    }
    special = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    vision = {
        "depth": spec.vision_layers,
        "num_heads": spec.vision_heads,
        "patch_size": spec.patch_size,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    if spec.arch == "qwen2_vl":
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

        vision |= {"embed_dim": spec.vision_width, "hidden_size": spec.text_width, "mlp_ratio": 2}
        model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=text, vision_config=vision, **special))
        processor_name = "Qwen2VLProcessor"
    else:
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        vision |= {
            "hidden_size": spec.vision_width,
            "intermediate_size": 2 * spec.vision_width,
            "out_hidden_size": spec.text_width,
            "window_size": 4 * spec.patch_size,  # windows of 2x2 merged patches, so windowing is exercised
            "fullatt_block_indexes": [spec.vision_layers - 1],
        }
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **special)
        model = Qwen2_5_VLForConditionalGeneration(config)
        processor_name = "Qwen2_5_VLProcessor"
    factor = 2 * spec.patch_size
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=spec.patch_size,
        merge_size=2,
        temporal_patch_size=2,
        size={"shortest_edge": factor * factor, "longest_edge": spec.image_size * spec.image_size},
    )
    placeholder = "<|vision_start|><|image_pad|><|vision_end|>"
    processor = image_only_processor_class(processor_name)(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template(placeholder)
    )
    return model, processor


IDEFICS3_TOKENS = (
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
    *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
)


def _build_idefics3(spec: TinySpec) -> tuple[Any, Any]:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tokenizer = build_tokenizer(IDEFICS3_TOKENS)
    scale = 2
    config = Idefics3Config(
        vision_config={
            "hidden_size": spec.vision_width,
            "intermediate_size": 2 * spec.vision_width,
            "num_hidden_layers": spec.vision_layers,
            "num_attention_heads": spec.vision_heads,
            "image_size": spec.image_size,
            "patch_size": spec.patch_size,
        },
        text_config={"model_type": "llama", **_text_config(spec, tokenizer)},
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=scale,
    )
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": spec.image_size * spec.image_split},
        max_image_size={"longest_edge": spec.image_size},
        do_image_splitting=spec.image_split > 1,
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=(spec.image_size // spec.patch_size) ** 2 // scale**2,
        chat_template=chat_template("<image>"),
    )
    return Idefics3ForConditionalGeneration(config), processor


def _build_llama(spec: TinySpec) -> tuple[Any, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    tokenizer.chat_template = chat_template("")
    return LlamaForCausalLM(LlamaConfig(**_text_config(spec, tokenizer))), tokenizer


_BUILDERS = {
    "llava": _build_llava,
    "qwen2_vl": _build_qwen,
    "qwen2_5_vl": _build_qwen,
    "idefics3": _build_idefics3,
    "llama": _build_llama,
}


def build_tiny(spec: TinySpec) -> tuple[Any, Any]:
    """A random-weight model (fp32, eval mode) and its processor (tokenizer for ``llama``) for ``spec``."""
    import torch

    spec.validate()
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        model, processor = _BUILDERS[spec.arch](spec)
    tokenizer = getattr(processor, "tokenizer", processor)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model.eval(), processor


def save_tiny(spec: TinySpec, out: str | Path, overwrite: bool = False, preset: str | None = None) -> Path:
    """Build ``spec`` and save it to ``out`` atomically (a complete directory or nothing). Returns ``out``."""
    from mmalign.files import atomic_path
    from mmalign.models.processors import save_upstream_processor

    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())) and not overwrite:
        raise ConfigError(f"{out} already exists and is not empty (pass overwrite to replace it)")
    model, processor = build_tiny(spec)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        model.save_pretrained(tmp)
        save_upstream_processor(processor, tmp)
        record = {"built_by": "mmalign model init", "preset": preset, "spec": dataclasses.asdict(spec)}
        (tmp / "mmalign.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out


def ensure_preset(name: str, root: str | Path) -> Path:
    """The directory of preset ``name`` under ``root`` (``root/name``), built first if it is not there."""
    spec = spec_for(name)
    out = Path(root) / name
    marker = out / "mmalign.json"
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")).get("spec") == dataclasses.asdict(spec):
        return out
    return save_tiny(spec, out, overwrite=True, preset=name)
