"""Batched generation with the model's chat template: prompts in, response texts out.

Prompts are left-padded (so every row's next token comes at the same position), generation stops at
the end-of-turn / EOS token or after ``max_new_tokens``, and the text before the first EOS is returned
without special tokens. Sampling is seeded per call and leaves the global random state untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmalign.errors import ConfigError
from mmalign.models.collate import Collator
from mmalign.models.examples import Input
from mmalign.models.loading import LoadedModel
from mmalign.models.logps import model_device_dtype


def eos_token_ids(loaded: LoadedModel) -> list[int]:
    """Every token id that ends a response: the generation config's EOS ids and the tokenizer's EOS."""
    ids: list[int] = []
    configured = getattr(loaded.model.generation_config, "eos_token_id", None)
    for value in (configured if isinstance(configured, list) else [configured]) + [loaded.tokenizer.eos_token_id]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    return ids


@torch.no_grad()
def generate(
    loaded: LoadedModel,
    items: list[Input],
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    seed: int = 0,
    image_root: str | Path | None = None,
    max_length: int | None = None,
    overflow_hint: str = "raise max_length",
) -> list[str]:
    """The model's response to each item's prompt, in order (greedy unless ``do_sample``).

    ``items`` are evaluation items, records (their prompt is used) or :class:`Example` objects.
    ``max_length`` bounds prompt + generation (and the memory one prompt costs: its text is cut before
    tokenising); a prompt that does not fit raises a ``DataError`` ending with ``overflow_hint``.
    """
    if max_new_tokens < 1 or batch_size < 1:
        raise ConfigError("max_new_tokens and batch_size must be at least 1")
    if do_sample and (temperature <= 0 or not 0 < top_p <= 1):
        raise ConfigError("sampling needs temperature > 0 and 0 < top_p <= 1")
    room = None if max_length is None else max_length - max_new_tokens
    if room is not None and room < 1:
        raise ConfigError(f"max_length {max_length} leaves no room for a prompt with max_new_tokens {max_new_tokens}")
    collator = Collator(
        loaded.processor, mode="generate", image_root=image_root, max_length=room, overflow_hint=overflow_hint
    )
    model = loaded.model
    device, dtype = model_device_dtype(model)
    eos = eos_token_ids(loaded)
    options: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "eos_token_id": eos,
        "pad_token_id": loaded.tokenizer.pad_token_id,
    }
    if do_sample:
        options |= {"temperature": temperature, "top_p": top_p, "top_k": 0}
    else:  # a saved generation config may carry sampling settings; greedy ignores them
        options |= {"temperature": None, "top_p": None, "top_k": None}
    was_training = model.training
    model.eval()
    texts: list[str] = []
    try:
        with torch.random.fork_rng(
            devices=[] if device.type == "cpu" else [device.index or 0], device_type=device.type
        ):
            torch.manual_seed(seed)
            for start in range(0, len(items), batch_size):
                batch = collator(items[start : start + batch_size]).to(device, dtype)
                output = model.generate(**batch.model_inputs(), **options)
                texts += [decode_response(loaded, row, eos) for row in output[:, batch.input_ids.shape[1] :].tolist()]
    finally:
        model.train(was_training)
    return texts


def decode_response(loaded: LoadedModel, tokens: list[int], eos: list[int]) -> str:
    """The text before the first EOS, special tokens dropped."""
    for i, token in enumerate(tokens):
        if token in eos:
            tokens = tokens[:i]
            break
    return loaded.tokenizer.decode(tokens, skip_special_tokens=True).strip()
