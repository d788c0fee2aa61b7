"""What differs between model families: where the vision tower, projector and language model live.

Everything else (image placeholders, token expansion, extra model inputs) is the processor's business, so
the collator and the log-prob code stay family-agnostic. A family here only answers "which submodule is
what" for freezing and for LoRA's default target modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Family:
    """How one architecture family lays out its submodules (paths relative to the top model)."""

    name: str
    model_types: tuple[str, ...]
    """``config.model_type`` values that belong to the family."""
    vision: tuple[str, ...] = ()
    """Submodules that make up the vision tower (frozen by ``freeze_vision``)."""
    projector: tuple[str, ...] = ()
    """Submodules that map vision features into the language model (frozen by ``freeze_projector``)."""
    language: tuple[str, ...] = ()
    """The language model (LoRA's default targets live here)."""
    multimodal: bool = True


FAMILIES: tuple[Family, ...] = (
    Family(
        "llava",
        ("llava",),
        vision=("model.vision_tower",),
        projector=("model.multi_modal_projector",),
        language=("model.language_model",),
    ),
    Family(
        # Qwen2-VL's patch merger sits inside the vision module; it is the projector.
        "qwen2_vl",
        ("qwen2_vl", "qwen2_5_vl"),
        vision=("model.visual",),
        projector=("model.visual.merger",),
        language=("model.language_model",),
    ),
    Family(
        # SmolVLM is Idefics3 with other defaults.
        "idefics3",
        ("idefics3", "smolvlm"),
        vision=("model.vision_model",),
        projector=("model.connector",),
        language=("model.text_model",),
    ),
)

GENERIC_VLM = Family(
    "vlm",
    (),
    vision=("model.vision_tower", "model.visual", "model.vision_model", "vision_tower", "vision_model"),
    projector=("model.multi_modal_projector", "model.connector", "multi_modal_projector", "connector"),
    language=("model.language_model", "model.text_model", "language_model"),
)
"""Any other image-text-to-text model: the usual submodule names are tried in turn."""

TEXT = Family("text", (), language=("model",), multimodal=False)
"""A text-only causal LM."""

LORA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Linear layers LoRA adapts by default: attention and MLP projections of the language model (LoRA paper,
Hu et al., 2021, adapts attention only; QLoRA, Dettmers et al., 2023, shows all linear layers work better)."""


def family_for(model_type: str, multimodal: bool) -> Family:
    """The family a ``config.model_type`` belongs to (a generic one for other models)."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    return GENERIC_VLM if multimodal else TEXT


def find_modules(model: torch.nn.Module, paths: tuple[str, ...]) -> dict[str, torch.nn.Module]:
    """The submodules at ``paths`` that exist in ``model`` (path -> module)."""
    named = dict(model.named_modules())
    found: dict[str, torch.nn.Module] = {}
    for path in paths:
        if path in named and not any(path.startswith(prefix + ".") for prefix in found):
            found[path] = named[path]
    return found


def lora_target_regex(model: torch.nn.Module, family: Family) -> str:
    """A PEFT ``target_modules`` regex: the language model's attention/MLP projections, nothing visual."""
    import re

    language = find_modules(model, family.language)
    names = "|".join(LORA_PROJECTIONS)
    if not language or family is TEXT:
        return rf".*\.({names})"
    prefixes = "|".join(re.escape(path) for path in language)
    return rf"({prefixes})\..*\.({names})"
