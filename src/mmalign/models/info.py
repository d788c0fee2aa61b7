"""What a person wants to know about a loaded model: family, sizes, vocabulary, image tokens per image."""

from __future__ import annotations

import json
from typing import Any

from PIL import Image

from mmalign.data.records import user_prompt
from mmalign.models.collate import Collator
from mmalign.models.examples import Example
from mmalign.models.loading import LoadedModel


def image_tokens(loaded: LoadedModel, width: int, height: int) -> tuple[int, int]:
    """For one ``width`` x ``height`` image: (image feature tokens, all tokens the image adds to a prompt,
    markers such as ``<fake_token_around_image>`` or ``<|vision_start|>`` included)."""
    collator = Collator(loaded.processor, mode="generate")
    image = Image.new("RGB", (width, height), (64, 64, 64))
    with_image = collator([Example("probe", user_prompt("What is this?", 1), [image])])
    without = collator([Example("probe", user_prompt("What is this?", 0))])
    image_token_id = getattr(loaded.processor, "image_token_id", None)
    features = int((with_image.input_ids == image_token_id).sum()) if image_token_id is not None else 0
    return features, int(with_image.input_ids.shape[1] - without.input_ids.shape[1])


def describe(loaded: LoadedModel) -> dict[str, str]:
    """Plain facts about ``loaded``, in display order."""
    model, tokenizer = loaded.model, loaded.tokenizer
    parameter = next(model.parameters())
    facts = {
        "path": str(loaded.path),
        "family": loaded.family.name,
        "model type": model.config.model_type,
        "class": type(model.get_base_model() if hasattr(model, "get_base_model") else model).__name__,
        "parameters": f"{loaded.n_parameters():,}",
        "trainable": f"{loaded.n_parameters(trainable_only=True):,}",
        "dtype": str(parameter.dtype).removeprefix("torch."),
        "device": str(parameter.device),
        "vocabulary": f"{len(tokenizer):,} tokens (eos {tokenizer.eos_token!r}, pad {tokenizer.pad_token!r})",
        "processor": type(loaded.processor).__name__,
    }
    if loaded.multimodal:
        size = _probe_size(loaded)
        features, total = image_tokens(loaded, size, size)
        facts["image tokens"] = f"{features} per {size}x{size} image ({total} prompt tokens with markers)"
    spec = loaded.path / "mmalign.json"
    if spec.is_file():
        record: dict[str, Any] = json.loads(spec.read_text(encoding="utf-8"))
        facts["built by"] = f"{record.get('built_by')} ({record.get('preset') or record['spec']['arch']})"
    return facts


def _probe_size(loaded: LoadedModel) -> int:
    """The image side the tiny models were built for, else a common 224."""
    spec = loaded.path / "mmalign.json"
    if spec.is_file():
        return int(json.loads(spec.read_text(encoding="utf-8"))["spec"]["image_size"])
    return 224
