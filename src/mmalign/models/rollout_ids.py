"""Rollouts from completions sampled elsewhere (an inference server): the same :class:`~mmalign.models.rollout.Rollouts`
the local sampler returns, so rewards, advantages and the update forward do not know where the tokens came from.

    completions = [[Completion(ids, text, finished=True), ...G...], ...B...]   # per prompt, in order
    rollouts = rollouts_from_ids(loaded, items, completions, max_new_tokens=48, image_root=root)

The prompts are collated exactly as :func:`~mmalign.models.rollout.sample_groups` collates them (the update forward
scores the completions after *these* prompt tokens). Each completion's token ids are checked before they reach the
model: in the vocabulary, no image placeholder token (it would have no image behind it), no longer than
``max_new_tokens``, at least one token; the error names the prompt and the completion. A completion the server ended
(``finished``) whose last token is not an end-of-turn token (a server that strips it, or text tokenized here) gets the
model's first end-of-turn id appended, so the update trains the policy to stop there as the local sampler's
completions do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from mmalign.errors import DataError
from mmalign.models.examples import Input
from mmalign.models.generation import eos_token_ids
from mmalign.models.loading import LoadedModel
from mmalign.models.logps import unwrap_model
from mmalign.models.pixel_rows import image_token_ids
from mmalign.models.prefix import plan_prefixes
from mmalign.models.rollout import Rollouts, prompt_batch


@dataclass
class Completion:
    """One completion as a server returned it."""

    token_ids: list[int]
    text: str
    """The completion's text as the server returned it: what the reward functions see."""
    finished: bool
    """True: it ended on an end-of-turn token or stop (False: cut at the token limit)."""
    logps: list[float] | None = None
    """Each token's log-prob as the server computed it (None: not given)."""


def vocabulary_size(loaded: LoadedModel) -> int:
    """Rows of the policy's input embedding: the ids the update forward can embed."""
    return int(unwrap_model(loaded.model).get_input_embeddings().weight.shape[0])


def check_completion(ids: list[int], vocabulary: int, banned: set[int], max_new_tokens: int, where: str) -> None:
    """:class:`DataError` naming ``where`` (the prompt and completion) for ids the update cannot score."""
    if not ids:
        raise DataError(f"{where}: the server returned an empty completion (no token ids)")
    if len(ids) > max_new_tokens:
        raise DataError(f"{where}: {len(ids)} tokens, over grpo.max_new_tokens={max_new_tokens}")
    bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocabulary]
    if bad:
        raise DataError(f"{where}: token ids {bad[:5]} are outside the policy's vocabulary of {vocabulary}")
    placeholders = sorted(set(ids) & banned)
    if placeholders:
        raise DataError(
            f"{where}: holds image placeholder token {placeholders[0]}, which has no image behind it "
            "(is the server serving another model?)"
        )


def rollouts_from_ids(
    loaded: LoadedModel,
    items: list[Input],
    completions: list[list[Completion]],
    max_new_tokens: int,
    image_root: str | Path | None = None,
) -> Rollouts:
    """:class:`Rollouts` of ``completions[b][g]`` (G per item, in order) after the items' prompts."""
    if len(completions) != len(items):
        raise DataError(f"{len(completions)} groups of completions for {len(items)} prompts")
    group_size = len(completions[0]) if completions else 0
    prompts = prompt_batch(loaded, items, image_root)
    base = unwrap_model(loaded.model)
    plan = plan_prefixes(base, prompts)
    if not plan.row_images and plan.reason is not None:
        raise DataError(f"this model's prompts cannot be split by row for the update: {plan.reason}")
    eos = eos_token_ids(loaded)
    pad = loaded.tokenizer.pad_token_id
    pad = eos[0] if pad is None else int(pad)
    vocabulary, banned = vocabulary_size(loaded), set(image_token_ids(base.config))
    rows: list[list[int]] = []
    logps: list[list[float]] = []
    for b, group in enumerate(completions):
        prompt_id = prompts.ids[b]
        if len(group) != group_size:
            raise DataError(f"prompt {prompt_id!r}: {len(group)} completions, expected {group_size}")
        for g, completion in enumerate(group):
            ids = list(completion.token_ids)
            where = f"prompt {prompt_id!r}, completion {g}"
            check_completion(ids, vocabulary, banned, max_new_tokens, where)
            given = list(completion.logps) if completion.logps is not None else [math.nan] * len(ids)
            if len(given) != len(ids):
                raise DataError(f"{where}: {len(given)} log-probs for {len(ids)} tokens")
            if completion.finished and ids[-1] not in eos:
                ids, given = [*ids, eos[0]], [*given, math.nan]
            rows.append(ids)
            logps.append(given)
    width = max(len(r) for r in rows)
    completion_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    completion_mask = torch.zeros((len(rows), width), dtype=torch.long)
    token_logps = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, (ids, values) in enumerate(zip(rows, logps, strict=True)):
        completion_ids[i, : len(ids)] = torch.tensor(ids)
        completion_mask[i, : len(ids)] = 1
        token_logps[i, : len(ids)] = torch.tensor(values, dtype=torch.float32)
    return Rollouts(
        prompts=prompts,
        group_size=group_size,
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        token_logps=token_logps,
        texts=[c.text for group in completions for c in group],
        finished=torch.tensor([c.finished for group in completions for c in group]),
        row_images=plan.row_images,
    )
