"""A tiny random-weight CLIP (``CLIPModel`` + ``CLIPProcessor``) built offline, for the ``clip`` scorer's tests.

CLIP (Radford et al., 2021) scores how well a text matches an image by the cosine of their embeddings;
CLIP-DPO (Ouali et al., 2024) ranks a model's candidate answers that way. Real CLIP checkpoints come from
the hub; this builds a stand-in with the same files and classes, and no download:

* the tokenizer is CLIP's (``CLIPTokenizer``: lower-cased, CLIP's word-splitting regex, byte-level BPE with
  ``</w>`` marking word ends), its vocabulary and merges trained with the ``tokenizers`` library on the shapes
  world's corpus (:func:`mmalign.objects.shapes.tokenizer_corpus`), plus every byte with and without ``</w>``
  so that any text encodes without ``<unk>``;
* the image processor is CLIP's PIL one (resize the short side, centre crop, CLIP's mean and std);
* the model is ``CLIPModel`` from a ``CLIPConfig`` a few layers deep, saved as safetensors.

The saved directory loads back with plain ``CLIPModel.from_pretrained(dir)`` and
``CLIPProcessor.from_pretrained(dir)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.errors import ConfigError

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
SPLIT_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
"""CLIP's pre-tokenization regex (as ``transformers.CLIPTokenizer`` sets it)."""


@dataclass(frozen=True)
class TinyClipSpec:
    """Sizes of a tiny CLIP."""

    image_size: int = 32
    """Image side the vision tower sees (short side resized, then centre-cropped)."""
    patch_size: int = 8
    """Vision patch side in pixels."""
    width: int = 32
    """Hidden size of both towers."""
    layers: int = 2
    """Transformer layers in each tower."""
    heads: int = 2
    """Attention heads in each tower."""
    projection_dim: int = 32
    """Size of the shared image-text embedding."""
    max_text_tokens: int = 77
    """Longest text (tokens, BOS and EOS included), as real CLIP."""
    vocab_size: int = 600
    """BPE vocabulary trained on the world corpus (the byte alphabet is added on top)."""
    seed: int = 0
    """Seed of the random weights."""

    def validate(self) -> None:
        for name in ("image_size", "patch_size", "width", "layers", "heads", "projection_dim", "max_text_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"tiny CLIP: {name} must be at least 1, got {getattr(self, name)}")
        if self.image_size % self.patch_size or self.width % self.heads:
            raise ConfigError("tiny CLIP: image_size must be a multiple of patch_size and width of heads")


def build_clip_tokenizer(vocab_size: int = 600) -> Any:
    """A ``CLIPTokenizer`` whose BPE vocabulary and merges are trained on the world corpus. Deterministic."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    from mmalign.objects.shapes import tokenizer_corpus

    tokenizer = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>"))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=[BOS, EOS],
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(tokenizer_corpus()), trainer)
    model = json.loads(tokenizer.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    for char in alphabet:  # every byte, inside and at the end of a word: nothing maps to <unk>
        for token in (char, char + "</w>"):
            vocab.setdefault(token, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges)


def build_tiny_clip(spec: TinyClipSpec | None = None) -> tuple[Any, Any]:
    """A random-weight ``CLIPModel`` (eval mode) and its ``CLIPProcessor``."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    spec = spec or TinyClipSpec()
    spec.validate()
    tokenizer = build_clip_tokenizer(spec.vocab_size)
    tower = {
        "hidden_size": spec.width,
        "intermediate_size": 2 * spec.width,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
    }
    config = CLIPConfig(
        text_config={
            **tower,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": spec.max_text_tokens,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={**tower, "image_size": spec.image_size, "patch_size": spec.patch_size},
        projection_dim=spec.projection_dim,
    )
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": spec.image_size}, crop_size={"height": spec.image_size, "width": spec.image_size}
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        model = CLIPModel(config)
    return model.eval(), processor


def save_tiny_clip(out: str | Path, spec: TinyClipSpec | None = None) -> Path:
    """Build a tiny CLIP and save it to ``out`` atomically (safetensors weights, processor files)."""
    from mmalign.files import atomic_path

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists and is not empty")
    model, processor = build_tiny_clip(spec)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        model.save_pretrained(tmp)  # safetensors
        processor.save_pretrained(tmp)
    return out
