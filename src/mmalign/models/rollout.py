"""Group rollouts for online RL: G sampled completions per prompt, the prompt and its images encoded once.

GRPO-style training (issue 17) samples a group of G completions for each prompt. ``generate(...,
num_return_sequences=G)`` (what TRL's ``GRPOTrainer`` does, with every prompt repeated G times in the batch) runs
the vision tower and the prompt's prefill G times. Here they run once per distinct prompt, with the machinery of
the shared-prefix forward (:mod:`mmalign.models.prefix`):

1. the prompts are collated as a right-padded training batch (the collator's prompt tokens are exactly what
   generation sees) and grouped by identical tokens and images (:func:`~mmalign.models.prefix.plan_prefixes`);
2. one forward over the distinct prompts minus their last token fills a KV cache (vision tower included);
3. the cache is gathered G times per prompt and every completion is decoded on it, one token a step: the input is
   the last prompt token, then each sampled token, with position ids that continue the prompt (M-RoPE: the text
   position plus the row's rope delta) and an attention mask over [cache slots, new tokens] that hides the
   padding inside the cache.

Image placeholder tokens are never drawn (a completion holding one would have no image behind it, and the
update's forward would refuse it). Sampling applies temperature, then top-k and top-p (``transformers``' logits
warpers), and draws with a seeded generator, so a call is reproducible and leaves the global random state alone.
Each sampled token's log-prob under the temperature-scaled distribution (before top-k / top-p and the placeholder
ban, as TRL computes its old log-probs) is returned with it.
:meth:`Rollouts.batch` lays prompts and completions out as a training batch whose response tokens are exactly the
sampled ones (no decode/re-encode round trip), for the policy and reference log-probs of the update.

A model the shared path cannot serve (see :func:`~mmalign.models.prefix.plan_prefixes`) is refused with the
reason; :func:`mmalign.models.generation.generate` on repeated prompts is the fallback the caller may take.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmalign.data.records import assistant
from mmalign.errors import ConfigError
from mmalign.models.collate import IGNORE, PER_TOKEN, Batch, Collator
from mmalign.models.examples import Input, as_record, examples_from
from mmalign.models.generation import decode_response, eos_token_ids
from mmalign.models.loading import LoadedModel
from mmalign.models.logps import model_device_dtype, unwrap_model
from mmalign.models.pixel_rows import gather_images, image_token_ids
from mmalign.models.prefix import (
    _prefix_forward,
    _repeat_cache,
    _rope_index_owner,
    plan_prefixes,
)


@dataclass
class SamplingOptions:
    """How completions are drawn (the names and meaning of ``transformers``' generation options)."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0: no top-k cut."""
    do_sample: bool = True
    """False: greedy (temperature, top-k and top-p are then ignored; log-probs are at temperature 1)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1 and self.top_k >= 0):
            raise ConfigError("sampling needs temperature > 0, 0 < top_p <= 1 and top_k >= 0")


@dataclass
class Rollouts:
    """G completions for each of B prompts: row ``b * G + g`` is completion g of prompt b."""

    prompts: Batch
    """(B, P) the prompts, right-padded, with their image inputs (labels all -100)."""
    group_size: int
    completion_ids: Tensor
    """(B·G, C) sampled token ids; after a row's end-of-turn token: the pad id."""
    completion_mask: Tensor
    """(B·G, C) 1 on the completion's tokens, its end-of-turn token included (as TRL masks completions)."""
    token_logps: Tensor
    """(B·G, C) float32 log-prob of each sampled token under the sampling distribution's temperature, 0 on padding."""
    texts: list[str]
    """(B·G,) each completion's text before its end-of-turn token, special tokens dropped."""
    finished: Tensor
    """(B·G,) whether the completion ended with an end-of-turn token (False: cut at ``max_new_tokens``)."""
    row_images: list[dict[str, Tensor]] = field(default_factory=list, repr=False)
    """Per prompt, its slice of the image inputs."""

    def __len__(self) -> int:
        return int(self.completion_ids.shape[0])

    @property
    def prompt_index(self) -> Tensor:
        """(B·G,) the prompt of each completion."""
        return torch.arange(len(self.prompts), device=self.completion_ids.device).repeat_interleave(self.group_size)

    def batch(self) -> Batch:
        """The B·G sequences prompt + completion as a right-padded training batch: labels on exactly the sampled
        tokens (end-of-turn included), image inputs repeated per row; log-probs of it
        (:func:`mmalign.models.sequence_logps`, :func:`mmalign.models.prefix.shared_prefix_logps`) equal
        :attr:`token_logps` at temperature 1."""
        prompts, rows = self.prompts, self.prompt_index.to(self.prompts.input_ids.device)
        lengths = prompts.prompt_lengths[rows]
        n_done = self.completion_mask.sum(-1).to(lengths.device)
        width = int((lengths + n_done).max())
        columns = torch.arange(width, device=lengths.device).unsqueeze(0)
        in_completion = (columns >= lengths.unsqueeze(-1)) & (columns < (lengths + n_done).unsqueeze(-1))
        completion_index = (columns - lengths.unsqueeze(-1)).clamp(min=0, max=self.completion_ids.shape[1] - 1)
        sampled = self.completion_ids.to(lengths.device).gather(1, completion_index)
        prompt_ids = _widen(prompts.input_ids, width)[rows]
        input_ids = torch.where(in_completion, sampled, prompt_ids)
        in_prompt = columns < lengths.unsqueeze(-1)
        extras = {
            k: torch.where(in_prompt, _widen(v, width)[rows], torch.zeros_like(input_ids))
            for k, v in prompts.extras.items()
            if k in PER_TOKEN
        }
        extras.update(gather_images([self.row_images[int(r)] for r in rows]))
        return Batch(
            input_ids=input_ids,
            attention_mask=(in_prompt | in_completion).long(),
            labels=torch.where(in_completion, sampled, torch.full_like(sampled, IGNORE)),
            prompt_lengths=lengths,
            extras=extras,
            ids=[prompts.ids[int(r)] for r in rows],
        )


def _widen(t: Tensor, width: int) -> Tensor:
    """(B, T) → (B, width): cut or padded with zeros on the right."""
    if t.shape[1] >= width:
        return t[:, :width]
    return torch.cat([t, t.new_zeros(t.shape[0], width - t.shape[1])], dim=1)


def prompt_batch(loaded: LoadedModel, items: list[Input], image_root: str | Path | None = None) -> Batch:
    """The prompts of ``items`` (examples, records or evaluation items) as a right-padded batch of prompt tokens
    (the generation prompt included) and their image inputs: collated in train mode with a one-token placeholder
    response, which is then cut off."""
    placeholder = assistant(".")
    examples = [replace(examples_from(as_record(item))[0], response=placeholder) for item in items]
    full = Collator(loaded.processor, mode="train", image_root=image_root)(examples)
    width = int(full.prompt_lengths.max())
    keep = torch.arange(width).unsqueeze(0) < full.prompt_lengths.unsqueeze(-1)
    extras = {k: (v[:, :width] * keep) if k in PER_TOKEN else v for k, v in full.extras.items()}
    return replace(
        full,
        input_ids=full.input_ids[:, :width] * keep,
        attention_mask=keep.long(),
        labels=torch.full((len(full), width), IGNORE, dtype=torch.long),
        extras=extras,
        response_offsets=[],
        response_text_start=[],
    )


def _mine(done: bool) -> bool:
    return done


def _warpers(options: SamplingOptions) -> list[Any]:
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    out: list[Any] = []
    if options.top_k > 0:
        out.append(TopKLogitsWarper(options.top_k))
    if options.top_p < 1.0:
        out.append(TopPLogitsWarper(options.top_p))
    return out


@torch.no_grad()
def sample_groups(
    loaded: LoadedModel,
    items: list[Input],
    group_size: int,
    options: SamplingOptions | None = None,
    seed: int = 0,
    image_root: str | Path | None = None,
    all_done: Callable[[bool], bool] | None = None,
) -> Rollouts:
    """``group_size`` completions for each item's prompt (in order), each distinct prompt + images prefilled once.

    The model runs in eval mode (restored after). Refuses a model whose inputs the shared path cannot split by row
    (with the reason), and ``group_size`` < 1. ``all_done(mine)``: given whether this process's rows have all
    ended, whether every process's have; the loop decodes until then (a sharded model's forwards may be collective,
    so every process must run as many; the steps after this process's own end are dropped). Default: ``mine``."""
    options = options or SamplingOptions()
    if group_size < 1:
        raise ConfigError(f"group_size must be at least 1, got {group_size}")
    if not items:
        raise ConfigError("no prompts to sample from")
    model = loaded.model
    device, dtype = model_device_dtype(model)
    prompts = prompt_batch(loaded, items, image_root)
    base = unwrap_model(model)
    plan = plan_prefixes(base, prompts)
    if not plan.row_images and plan.reason is not None:
        raise ConfigError(f"grouped sampling cannot share this model's prompts: {plan.reason}")
    plan.reason = None
    plan.row_images = [
        {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in r.items()}
        for r in plan.row_images
    ]
    on_device = prompts.to(device, dtype)
    eos = torch.tensor(eos_token_ids(loaded), device=device)
    pad = loaded.tokenizer.pad_token_id
    pad = int(eos[0]) if pad is None else int(pad)
    generator = torch.Generator(device=device).manual_seed(seed)
    warpers = _warpers(options) if options.do_sample else []
    banned = torch.tensor(image_token_ids(base.config), dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        cache, prefix_mask, deltas = _prefix_forward(base, on_device, plan)
        prefix_of_row = torch.tensor(plan.row_prefix, device=device).repeat_interleave(group_size)
        prompt_of_row = torch.arange(len(items), device=device).repeat_interleave(group_size)
        cache = _repeat_cache(cache, prefix_of_row)
        lengths = on_device.prompt_lengths[prompt_of_row]
        tokens = on_device.input_ids[prompt_of_row, lengths - 1]
        mask = prefix_mask[prefix_of_row]
        start = lengths - 1 + deltas[prefix_of_row]
        m_rope = _rope_index_owner(base) is not None
        rows = len(prompt_of_row)
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        ids: list[Tensor] = []
        logps: list[Tensor] = []
        live: list[Tensor] = []
        steps = options.max_new_tokens  # the steps this process keeps: up to its own last token
        for step in range(options.max_new_tokens):
            mask = torch.cat([mask, torch.ones(rows, 1, dtype=mask.dtype, device=device)], dim=1)
            positions = (start + step).unsqueeze(-1)
            if m_rope:
                positions = positions.unsqueeze(0).expand(3, -1, -1)
            out = base(
                input_ids=tokens.unsqueeze(-1),
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            logits = out.logits[:, -1].float()
            if options.do_sample:
                logits = logits / options.temperature
            logp = logits.log_softmax(-1)  # the model's distribution, as a training forward scores it
            scores = logits.index_fill(1, banned, float("-inf"))  # no image placeholder without an image behind it
            if options.do_sample:
                for warp in warpers:
                    scores = warp(None, scores)
                probs = scores.softmax(-1)
                chosen = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            else:
                chosen = scores.argmax(-1)
            chosen = torch.where(done, torch.full_like(chosen, pad), chosen)
            live.append(~done)
            ids.append(chosen)
            logps.append(logp.gather(-1, chosen.unsqueeze(-1)).squeeze(-1) * (~done))
            done = done | torch.isin(chosen, eos)
            tokens = chosen
            mine = bool(done.all())
            if mine and steps == options.max_new_tokens:
                steps = step + 1
            if (all_done or _mine)(mine):
                break
    finally:
        model.train(was_training)
    ids, live, logps = ids[:steps], live[:steps], logps[:steps]
    completion_ids = torch.stack(ids, dim=1).cpu()
    completion_mask = torch.stack(live, dim=1).long().cpu()
    eos_ids = eos_token_ids(loaded)
    texts = [
        decode_response(loaded, row[mask_row.bool()].tolist(), eos_ids)
        for row, mask_row in zip(completion_ids, completion_mask, strict=True)
    ]
    return Rollouts(
        prompts=prompts,
        group_size=group_size,
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        token_logps=torch.stack(logps, dim=1).cpu(),
        texts=texts,
        finished=done.cpu(),
        row_images=[{k: v.cpu() for k, v in r.items()} for r in plan.row_images],
    )
