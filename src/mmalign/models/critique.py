"""Critique-then-score reward models (MM-RLHF, Zhang et al., 2025, §4.1): the model first writes a critique of the
response, and the scalar head scores the sequence that ends with that critique.

**The layout** of one scored sequence, as chat messages (the model's own chat template renders them)::

    prompt           the record's prompt turns, images in place             (e.g. user: <image> Describe the image.)
    response         the response being judged, as the assistant's turn    (assistant: There is a red circle.)
    request          one user turn: the critique request (CRITIQUE_REQUEST, or the model's own)
    critique         the assistant's reply: the critique                    (assistant: Every object in ...)

Training (``rm.critique``, :mod:`mmalign.train.critique`) takes the critique from the record
(``meta.chosen_critique`` / ``meta.rejected_critique``), puts labels on the critique's tokens only (its end-of-turn
token included) and reads the head at the critique's last token, which is the row's last non-padding token, as for
a plain reward model. Scoring (:func:`critique_rewards`) generates the critique greedily from prompt + response +
request (:func:`mmalign.models.generation.generate`), then scores prompt + response + request + critique in one
forward, the way MM-RLHF's reward evaluation does (llava/eval/eval_mm_reward_bench.py: generate, then
``rm_forward`` on the conversation ending with the critique).

MM-RLHF instead writes question and answer into one user turn of an evaluator prompt; here the response stays the
assistant's own turn, so multi-turn prompts, image placement and the chat template are those of every other
mmalign sequence, and the critique request is the only new text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmalign.data.records import PreferenceRecord, assistant, text_message
from mmalign.errors import ConfigError, DataError
from mmalign.models.examples import Example, examples_from
from mmalign.models.generation import generate
from mmalign.models.loading import LoadedModel
from mmalign.models.reward import score_examples

CRITIQUE_REQUEST = "Critique the answer above: is everything it says true of the image?"
"""The default user turn that asks for the critique (``rm.critique_request``); saved with the model."""
CRITIQUE_KEYS = ("chosen_critique", "rejected_critique")
"""Where a preference record carries its critiques: ``meta.chosen_critique`` and ``meta.rejected_critique``."""


def record_critiques(record: PreferenceRecord) -> tuple[str, str]:
    """The (chosen, rejected) critiques of a pair; a missing, non-string or blank one is a :class:`DataError`
    naming the record's file, line, id and field."""
    out = []
    for key in CRITIQUE_KEYS:
        value = record.meta.get(key)
        problem = None
        if value is None:
            problem = "is missing: rm.critique needs a critique of each side"
        elif not isinstance(value, str):
            problem = f"must be a string, got {type(value).__name__}"
        elif not value.strip():
            problem = "is empty"
        if problem is not None:
            err = DataError(f"the critique {problem}", record_id=record.id, field=f"meta.{key}")
            raise err.located(**record.origin.where()) if record.origin is not None else err
        out.append(value)
    return out[0], out[1]


def critique_example(example: Example, request: str, critique: str | None = None) -> Example:
    """``example`` (prompt, images, response) as the sequence that asks for a critique: prompt + response + a user
    turn with ``request``, and ``critique`` as the response (None: to generate it)."""
    if not example.response:
        raise ConfigError(f"example {example.id!r} has no response to critique")
    prompt = [*example.prompt, *example.response, text_message("user", request)]
    return dataclasses.replace(example, prompt=prompt, response=None if critique is None else assistant(critique))


def critique_pair(record: PreferenceRecord, request: str) -> tuple[Example, Example]:
    """A pair's chosen and rejected critique sequences with the record's critiques (each side with its images)."""
    chosen, rejected = examples_from(record)
    chosen_critique, rejected_critique = record_critiques(record)
    return critique_example(chosen, request, chosen_critique), critique_example(rejected, request, rejected_critique)


def request_of(loaded: LoadedModel) -> str:
    """The critique request of a critique reward model (:func:`~mmalign.models.reward.load_reward_model`)."""
    request = getattr(loaded.model, "critique_request", None)
    if request is None:
        raise ConfigError(f"{loaded.path} is not a critique reward model (trained without rm.critique)")
    return request


def generate_critiques(
    loaded: LoadedModel,
    examples: list[Example],
    max_new_tokens: int = 64,
    batch_size: int = 8,
    image_root: str | Path | None = None,
    max_length: int | None = None,
) -> list[str]:
    """The critique model's greedy critique of each example's response, in order."""
    request = request_of(loaded)
    asks = [critique_example(e, request) for e in examples]
    policy = dataclasses.replace(loaded, model=loaded.model.base)  # the causal LM under the head generates
    return generate(
        policy,
        asks,  # type: ignore[arg-type]
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        image_root=image_root,
        max_length=max_length,
        overflow_hint="raise max_length",
    )


def score_critiqued(
    loaded: LoadedModel,
    examples: list[Example],
    critiques: list[str],
    batch_size: int = 8,
    image_root: str | Path | None = None,
    max_length: int | None = None,
    progress: Callable[[int], Any] | None = None,
) -> list[float]:
    """The critique model's reward of each example given its critique (generated, or a reference one)."""
    if len(critiques) != len(examples):
        raise ConfigError(f"{len(critiques)} critiques for {len(examples)} examples")
    request = request_of(loaded)
    rows = [critique_example(e, request, c) for e, c in zip(examples, critiques, strict=True)]
    return score_examples(
        loaded,
        rows,
        batch_size,
        image_root,
        share_prefix=False,
        max_length=max_length,
        progress=progress,
        critiqued=True,
    )


def critique_rewards(
    loaded: LoadedModel,
    examples: list[Example],
    max_new_tokens: int = 64,
    batch_size: int = 8,
    image_root: str | Path | None = None,
    max_length: int | None = None,
    progress: Callable[[int], Any] | None = None,
) -> list[float]:
    """The reward of each example's (prompt, images, response), in order, the critique-then-score way: the model
    writes a critique greedily (at most ``max_new_tokens``), then the head scores the sequence ending with it.
    ``loaded.model`` is a critique :class:`~mmalign.models.reward.RewardModel` (``load_reward_model``).
    ``max_length`` bounds prompt + critique in tokens; ``progress(n)`` is called after each scored batch."""
    critiques = generate_critiques(loaded, examples, max_new_tokens, batch_size, image_root, max_length)
    return score_critiqued(loaded, examples, critiques, batch_size, image_root, max_length, progress)


def score_with(
    loaded: LoadedModel,
    examples: list[Example],
    batch_size: int = 8,
    image_root: str | Path | None = None,
    share_prefix: bool | str = "auto",
    max_length: int | None = None,
    progress: Callable[[int], Any] | None = None,
    max_new_tokens: int = 64,
) -> list[float]:
    """The reward of each example by whichever way the reward model was trained: a critique model
    (``"critique": true`` in its head spec) through :func:`critique_rewards` (``share_prefix`` unused), a plain one
    through :func:`~mmalign.models.reward.score_examples` (``max_new_tokens`` unused). The arguments are
    ``score_examples``'s, in its order, so a call of it can call this instead."""
    if getattr(loaded.model, "critique_request", None) is not None:
        return critique_rewards(loaded, examples, max_new_tokens, batch_size, image_root, max_length, progress)
    return score_examples(loaded, examples, batch_size, image_root, share_prefix, max_length, progress)
