"""``load(path)``: a local Hugging Face model directory -> model + processor + family, ready for a stage.

Only local directories, only ``safetensors`` weights (pickle checkpoints can run code when loaded), and
no custom code unless ``trust_remote_code`` is asked for. Any model that ``AutoModelForImageTextToText``
handles loads as a vision-language model; any ``AutoModelForCausalLM`` model as a text-only one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmalign.config import check_ranges, option
from mmalign.errors import ConfigError
from mmalign.models.families import Family, family_for, find_modules, lora_target_regex
from mmalign.models.processors import load_processor
from mmalign.threads import apply_to_torch

DTYPES = ("auto", "float32", "bfloat16", "float16")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.ckpt", "tf_model.h5")


@dataclass
class LoraOptions:
    """LoRA adapters (Hu et al., 2021) through ``peft``: W + (alpha / r) * B A on the chosen linear layers.

    The one LoRA options type: ``model.lora`` of every trainer config, and ``load(lora=...)`` (where a mapping
    means ``enabled``). Defaults: rank 16, alpha 32 (the update scaled by 2), dropout 0.05, the language model's
    attention and MLP projections."""

    enabled: bool = option(False, "Train LoRA adapters instead of the full model.")
    r: int = option(16, "LoRA rank.", ge=1)
    alpha: int = option(32, "LoRA alpha (the update is scaled by alpha / r).", ge=1)
    dropout: float = option(0.05, "Dropout on the LoRA input.", ge=0, lt=1)
    target_modules: list[str] | None = option(
        None, "Module names to adapt; null = the language model's attention and MLP projections."
    )

    def __post_init__(self) -> None:
        check_ranges(self, prefix="model.lora.")


@dataclass
class LoadOptions:
    """How to load a model. Every field is a keyword of :func:`load`."""

    dtype: str = "float32"
    """Weights dtype: float32, bfloat16, float16, or auto (as saved)."""
    device: str | None = None
    """Move the model to this device (cpu, cuda, cuda:1...). Exclusive with device_map."""
    device_map: str | dict[str, Any] | None = None
    """Let accelerate place the model (e.g. "auto"). Exclusive with device."""
    attn_implementation: str | None = None
    """Attention kernel: eager, sdpa, flash_attention_2...; None lets transformers choose."""
    freeze_vision: bool = False
    """Freeze the vision tower."""
    freeze_projector: bool = False
    """Freeze the projector between vision tower and language model."""
    lora: LoraOptions | None = None
    """Wrap the model with LoRA adapters (only adapters train; vision and projector stay frozen); a mapping of
    :class:`LoraOptions` fields is read with ``enabled: true`` unless it says otherwise."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, about a third more compute)."""
    trust_remote_code: bool = False
    """Allow a model directory's own Python code to run. Off unless asked for."""


@dataclass
class LoadedModel:
    """A loaded model and what the stages need beside it."""

    model: Any
    """The ``transformers`` model, or a ``peft`` model wrapping it when LoRA is on."""
    processor: Any
    """The processor (a tokenizer for text-only models)."""
    family: Family
    path: Path
    options: LoadOptions = field(default_factory=LoadOptions)

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def multimodal(self) -> bool:
        return self.family.multimodal

    def collator(self, **options: Any) -> Any:
        """A :class:`~mmalign.models.collate.Collator` for this model (options as its fields)."""
        from mmalign.models.collate import Collator

        return Collator(self.processor, **options)

    def n_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad or not trainable_only)


def _options(options: LoadOptions | None, overrides: dict[str, Any]) -> LoadOptions:
    names = {f.name for f in dataclasses.fields(LoadOptions)}
    unknown = set(overrides) - names
    if unknown:
        raise ConfigError(f"unknown load option(s): {', '.join(sorted(unknown))} (known: {', '.join(sorted(names))})")
    opts = dataclasses.replace(options or LoadOptions(), **overrides)
    if isinstance(opts.lora, dict):
        lora_names = {f.name for f in dataclasses.fields(LoraOptions)}
        if set(opts.lora) - lora_names:
            raise ConfigError(f"unknown LoRA option(s): {', '.join(sorted(set(opts.lora) - lora_names))}")
        opts.lora = LoraOptions(**{"enabled": True, **opts.lora})
    if opts.dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {opts.dtype!r}")
    if opts.device is not None and opts.device_map is not None:
        raise ConfigError("give device or device_map, not both")
    if opts.lora is not None and not opts.lora.enabled:
        opts.lora = None
    return opts


def check_model_dir(path: Path, trust_remote_code: bool = False) -> dict[str, Any]:
    """Check a model directory before ``transformers`` sees it; returns its ``config.json``."""
    if not path.exists():
        raise ConfigError(f"model directory {path} does not exist")
    if not path.is_dir():
        raise ConfigError(f"{path} is not a model directory (expected a folder with config.json and weights)")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{path} has no config.json: not a Hugging Face model directory")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{config_path}: unreadable ({err})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ConfigError(f"{config_path}: no model_type")
    if "auto_map" in config and not trust_remote_code:
        raise ConfigError(
            f"{path} needs its own Python code (auto_map in config.json); pass trust_remote_code to run it"
        )
    if not any(path.glob("*.safetensors")):
        pickles = sorted(p.name for p in path.iterdir() if p.name in PICKLE_WEIGHTS or p.suffix in (".bin", ".pt"))
        if pickles:
            raise ConfigError(
                f"{path} has only pickle weights ({', '.join(pickles)}); mmalign loads safetensors only "
                "(convert with: model.save_pretrained(dir, safe_serialization=True))"
            )
        raise ConfigError(f"{path} has no weights (no *.safetensors file)")
    return config


def _auto_class(path: Path, trust_remote_code: bool) -> tuple[Any, bool]:
    """The Auto class that builds this model and whether it is multimodal."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: cannot read the model config ({err})") from None
    if config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES or (
        trust_remote_code and "AutoModelForImageTextToText" in (getattr(config, "auto_map", None) or {})
    ):
        return AutoModelForImageTextToText, True
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or trust_remote_code:
        return AutoModelForCausalLM, False
    raise ConfigError(
        f"{path}: model type {config.model_type!r} is neither an image-text-to-text nor a causal language model"
    )


def _dtype(name: str) -> Any:
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def _freeze(model: Any, family: Family, part: str) -> None:
    """Freeze the vision tower or the projector. A projector inside the tower (Qwen2-VL's merger) counts as the
    projector only, so the tower can be frozen while the projector trains."""
    paths = family.vision if part == "vision" else family.projector
    modules = find_modules(model, paths)
    if not modules:
        raise ConfigError(f"cannot freeze the {part} part: no {' / '.join(paths)} module in this {family.name} model")
    keep = tuple(p + "." for p in find_modules(model, family.projector)) if part == "vision" else ()
    prefixes = tuple(p + "." for p in modules)
    for name, parameter in model.named_parameters():
        if name.startswith(prefixes) and not name.startswith(keep):
            parameter.requires_grad_(False)


def _apply_lora(model: Any, family: Family, lora: LoraOptions) -> Any:
    from peft import LoraConfig, get_peft_model

    targets = lora.target_modules if lora.target_modules is not None else lora_target_regex(model, family)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as err:
        raise ConfigError(f"LoRA: {err}") from None


def load(path: str | Path, options: LoadOptions | None = None, **overrides: Any) -> LoadedModel:
    """Load a local model directory. ``overrides`` are :class:`LoadOptions` fields (unknown ones are errors).

    Example: ``load("out/tiny-llava", dtype="bfloat16", lora={"r": 16}, freeze_vision=True)``.
    """
    opts = _options(options, overrides)
    path = Path(path)
    check_model_dir(path, opts.trust_remote_code)
    apply_to_torch()  # the CLI's thread count (--threads), inter-op pool included, before the model's first work
    auto_class, multimodal = _auto_class(path, opts.trust_remote_code)
    processor = load_processor(path, multimodal, opts.trust_remote_code)
    tokenizer = getattr(processor, "tokenizer", processor)
    if getattr(tokenizer, "chat_template", None) is None and getattr(processor, "chat_template", None) is None:
        raise ConfigError(f"{path} has no chat template (chat_template.jinja or tokenizer_config.json)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict[str, Any] = {"dtype": _dtype(opts.dtype), "use_safetensors": True}
    kwargs["trust_remote_code"] = opts.trust_remote_code
    if opts.attn_implementation is not None:
        kwargs["attn_implementation"] = opts.attn_implementation
    if opts.device_map is not None:
        kwargs["device_map"] = opts.device_map
    try:
        model = auto_class.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot load the model ({err})") from None
    if opts.device is not None:
        model = model.to(opts.device)
    model.eval()
    family = family_for(model.config.model_type, multimodal)
    if opts.freeze_vision:
        _freeze(model, family, "vision")
    if opts.freeze_projector:
        _freeze(model, family, "projector")
    if opts.gradient_checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
        model.config.use_cache = False
    if opts.lora is not None:
        model = _apply_lora(model, family, opts.lora)
    return LoadedModel(model=model, processor=processor, family=family, path=path, options=opts)
