"""The tiny models' tokenizer and chat template, built offline from the shapes world's vocabulary.

A byte-level BPE (GPT-2's byte alphabet, Radford et al., 2019) is trained with the ``tokenizers`` library
on :func:`mmalign.objects.shapes.tokenizer_corpus`: every world word becomes a single token (with and without
its leading space, lower-case and capitalised), and any other text still encodes, byte by byte, so
evaluation on arbitrary text never meets ``<unk>``. Role markers and each family's image tokens are
special tokens, never split.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

PAD = "<|pad|>"
EOS = "<|end|>"
"""End of a turn; also the EOS token: generation stops on it."""
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|{{ message['role'] }}|>"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}@IMAGE@"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "<|end|>"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)
"""Jinja chat template: ``<|role|>content<|end|>`` per turn, content a string or a list of parts; an image
part becomes the family's placeholder (``@IMAGE@`` is replaced by :func:`chat_template`)."""


def chat_template(image_placeholder: str) -> str:
    """The chat template with ``image_placeholder`` emitted for each image part."""
    return CHAT_TEMPLATE.replace("@IMAGE@", image_placeholder)


def training_corpus() -> Iterator[str]:
    """The world's sentences, then every word in its lower-case and capitalised forms, each at the start of a
    line and after a space (byte-level BPE learns ``word`` and `` word`` as different tokens)."""
    from mmalign.objects.shapes import tokenizer_corpus

    lines = list(tokenizer_corpus())
    yield from lines
    words = sorted({word.strip(".,?!:()") for line in lines for word in line.split()} - {""})
    for word in words:
        for form in {word.lower(), word.capitalize()}:
            yield f"{form} {form}"


def build_tokenizer(special_tokens: tuple[str, ...] = (), vocab_size: int = 1024) -> Any:
    """A ``transformers`` fast tokenizer (byte-level BPE) with ``<|pad|>``, ``<|end|>`` (EOS), the role
    markers and ``special_tokens`` (image placeholders) as special tokens. Deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, EOS, *ROLE_TOKENS, *special_tokens]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        eos_token=EOS,
        extra_special_tokens=list(ROLE_TOKENS),
        padding_side="right",
    )
