"""Prompt and image computed once per pair: the shared-prefix forward behind ``share_prefix`` (auto / true).

In a preference batch the chosen and the rejected response of a pair follow the same prompt and image(s). The
concatenated forward (:func:`mmalign.models.preference_logps`, like TRL's ``concatenated_forward``) pushes both
full sequences through the model, so the vision tower and the prompt + image tokens (576 of them for LLaVA-1.5)
run twice. Here they run once:

1. rows whose prompt tokens and images are identical are grouped: a pair, normally; an Image-DPO / mDPO pair whose
   rejected side has its own images (``rejected_images``) makes two groups; pairs repeating a prompt share too;
2. one forward over the distinct prefixes (each prompt minus its last token, right-padded) fills a KV cache and
   keeps its graph, so the vision tower gets its gradient once, summed over every response that read it;
3. each row's cache is gathered along the batch and one forward runs every row's continuation (last prompt token
   + response) on it, with position ids that continue the prefix (for M-RoPE, the text position plus the row's
   rope delta, exactly as the model numbers the full sequence) and an attention mask over [cache slots, new tokens]
   that hides the padding inside the cache.

Because the continuation starts at the last prompt token, its first logit predicts the first response token and no
logits are needed on the prefix. Results equal the concatenated forward (about 1e-5 in fp32, values and gradients);
what is saved is the second pass over prompt and image (about 2.5x less work with 576 image tokens and 48-token
responses) and the activations it would keep for the backward pass.

mDPO's conditional term (Wang et al., 2024: the chosen response under a corrupted image m') has a prefix of its
own: every key after the first image token depends on the image, so nothing of real substance is shared with the
real-image rows. Collate the three sequences of each pair as one batch of :class:`~mmalign.models.Example` rows
(chosen | m, rejected | m, chosen | m') and call :func:`shared_prefix_logps`: one prefix forward over the 2n
distinct prefixes and one continuation forward over the 3n rows. Folding the conditional rows into the same forwards
saves no arithmetic against a separate call (the work is per token); it saves the fixed costs of extra passes
(launches, reading the weights again) and keeps one code path.

Where sharing cannot apply (no two rows share a prefix; a model whose inputs cannot be split by row here; a
continuation that would hold image tokens) the concatenated forward runs instead, with the same results;
:func:`plan_prefixes` says which path a batch takes and why. Gradient checkpointing drops the KV cache inside the
decoder layers, so training with it on is refused: turn one of the two off.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mmalign.errors import ConfigError
from mmalign.models.collate import IGNORE, PER_TOKEN, Batch
from mmalign.models.families import GENERIC_VLM, family_for
from mmalign.models.logps import (
    SHARDED,
    LogpOutput,
    PreferenceLogps,
    _keeps_logits,
    _response_aligned,
    model_device_dtype,
    preference_logps,
    sequence_logps,
    unwrap_model,
    weights_sharded,
)
from mmalign.models.pixel_rows import Unshareable, gather_images, image_token_ids, same_images, split_images

logger = logging.getLogger(__name__)

AUTO_MIN_SAVING = 0.25
"""``share_prefix: auto`` shares a batch's prefixes when that leaves out at least this share of the token positions
(:func:`prefix_saving`); below it the concatenated forward is faster. Measured by ``bench/prefix_breakeven.py``."""
_warned: set[str] = set()


@dataclass
class PrefixPlan:
    """How the rows of a training batch share prompt prefixes."""

    row_prefix: list[int] = field(default_factory=list)
    """(B,) index of each row's prefix among the distinct ones."""
    representatives: list[int] = field(default_factory=list)
    """(U,) for each distinct prefix, the first batch row that has it."""
    row_images: list[dict[str, Tensor]] = field(default_factory=list)
    """Per row, its slice of the image inputs."""
    reason: str | None = None
    """Why the concatenated forward runs instead (None: the shared path runs)."""

    @property
    def n_prefixes(self) -> int:
        return len(self.representatives)


def _gradient_checkpointing(model: Any) -> bool:
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def check_shareable_model(model: Any) -> None:
    """Raise ConfigError when the shared-prefix forward cannot train ``model`` (call it at start)."""
    if model.training and _gradient_checkpointing(model):
        raise ConfigError(
            "share_prefix cannot run with gradient checkpointing: checkpointed decoder layers drop the KV cache "
            "that carries the prompt to the responses; turn off gradient_checkpointing or share_prefix"
        )


# ------------------------------------------------------------------------------------------------ planning


def _model_problem(base: Any) -> str | None:
    config = base.config
    multimodal = hasattr(config, "vision_config")
    if family_for(config.model_type, multimodal) is GENERIC_VLM:
        return f"model type {config.model_type!r} is not one whose image inputs can be split by row here"
    if not multimodal:
        params = inspect.signature(base.forward).parameters
        if "position_ids" not in params or "past_key_values" not in params:
            return f"model type {config.model_type!r} takes no position_ids / past_key_values"
    text = config.get_text_config(decoder=True)
    kinds = set(getattr(text, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"}:
        return f"layers of type {', '.join(sorted(kinds - {'full_attention'}))} (only full attention is shared)"
    return None


def plan_prefixes(model: Any, batch: Batch) -> PrefixPlan:
    """Group the rows of ``batch`` by identical prompt tokens and images (exact comparison, no hashing)."""
    if len(batch) == 0:
        raise ConfigError("empty batch: every record was skipped (see batch.skipped)")
    if batch.labels is None or batch.padding_side != "right":
        raise ConfigError("log-probs need a right-padded training batch (labels); collate with mode='train'")
    base = unwrap_model(model)
    try:
        problem = _model_problem(base)
        if problem:
            raise Unshareable(problem)
        lengths = batch.prompt_lengths.tolist()
        if min(lengths) < 2:
            raise Unshareable("a prompt of fewer than 2 tokens")
        ids = torch.tensor(image_token_ids(base.config), dtype=torch.long, device=batch.input_ids.device)
        columns = torch.arange(batch.input_ids.shape[1], device=ids.device).unsqueeze(0)
        after = columns >= batch.prompt_lengths.to(ids.device).unsqueeze(-1) - 1
        if bool((torch.isin(batch.input_ids, ids) & after).any()):
            raise Unshareable("an image token at the last prompt position or in a response")
        row_images = split_images(batch, base.config)
    except Unshareable as why:
        return PrefixPlan(reason=str(why))
    plan = PrefixPlan(row_images=row_images)
    seen: dict[tuple[int, ...], list[int]] = {}  # prompt tokens -> prefixes with those tokens
    for row, length in enumerate(lengths):
        key = tuple(batch.input_ids[row, :length].tolist())
        found = next(
            (u for u in seen.get(key, []) if same_images(row_images[plan.representatives[u]], row_images[row])), None
        )
        if found is None:
            found = len(plan.representatives)
            plan.representatives.append(row)
            seen.setdefault(key, []).append(found)
        plan.row_prefix.append(found)
    if plan.n_prefixes == len(batch):
        plan.reason = "no two rows share a prompt and its images"
    return plan


# ------------------------------------------------------------------------------------------------ forward


def _rope_index_owner(model: Any) -> Any:
    """The submodule that numbers M-RoPE positions (Qwen2-VL family), or None for 1-D positions."""
    return next((m for m in model.modules() if callable(getattr(m, "get_rope_index", None))), None)


def _prefix_forward(model: Any, batch: Batch, plan: PrefixPlan) -> tuple[Any, Tensor, Tensor]:
    """Run the distinct prefixes; returns their KV cache, (U, P) attention mask and (U,) rope deltas."""
    reps = torch.tensor(plan.representatives, device=batch.input_ids.device)
    lengths = batch.prompt_lengths[reps] - 1  # the last prompt token goes with the response
    width = int(lengths.max())
    mask = (torch.arange(width, device=reps.device).unsqueeze(0) < lengths.unsqueeze(-1)).long()
    inputs: dict[str, Any] = {
        "input_ids": batch.input_ids[reps, :width],
        "attention_mask": mask,
        **{k: v[reps, :width] * mask for k, v in batch.extras.items() if k in PER_TOKEN},
        **gather_images([plan.row_images[r] for r in plan.representatives]),
    }
    owner = _rope_index_owner(model)
    if owner is not None:
        if "mm_token_type_ids" not in inputs:
            raise ConfigError("M-RoPE positions need mm_token_type_ids from the processor")
        positions, deltas = owner.get_rope_index(
            inputs["input_ids"],
            inputs["mm_token_type_ids"],
            image_grid_thw=inputs.get("image_grid_thw"),
            video_grid_thw=inputs.get("video_grid_thw"),
            attention_mask=mask,
            **({"second_per_grid_ts": inputs["second_per_grid_ts"]} if "second_per_grid_ts" in inputs else {}),
        )
        deltas = deltas.reshape(-1)
    else:
        positions = torch.arange(width, device=reps.device).unsqueeze(0).expand(len(reps), -1)
        deltas = torch.zeros(len(reps), dtype=torch.long, device=reps.device)
    if _keeps_logits(unwrap_model(model)):
        inputs["logits_to_keep"] = 1  # nothing is scored on the prefix
    out = model(**inputs, position_ids=positions, use_cache=True)
    return out.past_key_values, mask, deltas


def _repeat_cache(cache: Any, rows: Tensor) -> Any:
    """A new cache whose row i is the prefix cache's row ``rows[i]`` (differentiable: gradients sum back)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if layers is None or any(type(layer) is not DynamicLayer for layer in layers):
        raise ConfigError(f"share_prefix needs a DynamicCache of full-attention layers, got {type(cache).__name__}")
    return DynamicCache(
        ddp_cache_data=[(la.keys.index_select(0, rows), la.values.index_select(0, rows)) for la in layers]
    )


def continuation_inputs(model: Any, batch: Batch, plan: PrefixPlan) -> tuple[dict[str, Any], Tensor, Tensor]:
    """Run the distinct prefixes of ``batch`` (already on the model's device) and return the keyword inputs of
    the continuation forward (every row's last prompt token + response on its prefix's cache), the (B, W) batch
    column of each continuation position and the (B, W) mask of the positions that hold a token."""
    device = batch.input_ids.device
    cache, prefix_mask, deltas = _prefix_forward(model, batch, plan)
    rows = torch.tensor(plan.row_prefix, device=device)
    starts = batch.prompt_lengths - 1
    ends = batch.attention_mask.sum(-1)  # right padding: tokens are [0, end)
    width = int((ends - starts).max())
    columns = torch.arange(width, device=device).unsqueeze(0)
    index = starts.unsqueeze(-1) + columns
    valid = index < ends.unsqueeze(-1)
    index = index.clamp(max=batch.input_ids.shape[1] - 1)
    positions = index + deltas[rows].unsqueeze(-1)  # 1-D: the index itself; M-RoPE: text index + the row's delta
    if _rope_index_owner(model) is not None:
        positions = positions.unsqueeze(0).expand(3, -1, -1)
    inputs = {
        "input_ids": batch.input_ids.gather(1, index),
        "attention_mask": torch.cat([prefix_mask[rows], valid.long()], dim=1),
        "position_ids": positions,
        "past_key_values": _repeat_cache(cache, rows),
        "use_cache": True,
    }
    return inputs, index, valid


def on_device(model: Any, batch: Batch, plan: PrefixPlan) -> Batch:
    """``batch`` and the plan's image slices moved to the model's device (floating point to its dtype)."""
    device, dtype = model_device_dtype(model)
    plan.row_images = [
        {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in r.items()}
        for r in plan.row_images
    ]
    return batch.to(device, dtype)


def _shared_logps(model: Any, batch: Batch, plan: PrefixPlan, token_level: bool) -> LogpOutput:
    batch = on_device(model, batch, plan)
    device = batch.input_ids.device
    inputs, index, valid = continuation_inputs(model, batch, plan)
    out = model(**inputs)
    # column j predicts the token at index + 1, a response token where its label is set
    labels = batch.labels.gather(1, (index + 1).clamp(max=batch.input_ids.shape[1] - 1))  # type: ignore[union-attr]
    next_valid = torch.cat([valid[:, 1:], torch.zeros_like(valid[:, :1])], dim=1)
    targets = labels.masked_fill(~next_valid, IGNORE)
    mask = targets != IGNORE
    picked = out.logits[mask].float().log_softmax(-1).gather(-1, targets[mask].unsqueeze(-1)).squeeze(-1)
    token_logps = torch.zeros(targets.shape, dtype=torch.float32, device=device).masked_scatter(mask, picked)
    n_tokens = mask.sum(-1)
    total = token_logps.sum(-1)
    result = LogpOutput(sum=total, mean=total / n_tokens.clamp(min=1), n_tokens=n_tokens)
    if token_level:
        result.token_logps, result.token_mask = _response_aligned(token_logps, mask, n_tokens)
    return result


def prefix_saving(batch: Batch, plan: PrefixPlan) -> float:
    """The share of token positions the shared path leaves out on ``batch``: 1 - (U x prefix width + B x
    continuation width) / (B x batch width), the sizes both forwards are padded to (0 when nothing is shared)."""
    if plan.reason is not None or not plan.representatives:
        return 0.0
    rows, width = batch.input_ids.shape
    prefix = int(batch.prompt_lengths[plan.representatives].max()) - 1
    continuation = int((batch.attention_mask.sum(-1) - (batch.prompt_lengths - 1)).max())
    return 1.0 - (plan.n_prefixes * prefix + rows * continuation) / (rows * width)


def plan_shared(model: Any, batch: Batch, min_saving: float = 0.0) -> PrefixPlan:
    """:func:`plan_prefixes` after checking the model can share (gradient checkpointing), saying once why a batch
    cannot share, and with ``reason`` set where sharing would leave out less than ``min_saving`` of the positions
    or where gradients would flow into sharded weights (:data:`~mmalign.models.logps.SHARDED`)."""
    check_shareable_model(model)
    if torch.is_grad_enabled() and weights_sharded(model):  # no backward (reference, evaluation): sharing works
        plan = PrefixPlan(reason=SHARDED)
    else:
        plan = plan_prefixes(model, batch)
    if plan.reason is not None and plan.n_prefixes == 0 and plan.reason not in _warned:  # cannot share: say once
        _warned.add(plan.reason)  # asked for (share_prefix: true) it is a warning; under auto, information
        level = logging.INFO if min_saving > 0 else logging.WARNING
        logger.log(level, "share_prefix: %s; using the concatenated forward", plan.reason)
    if plan.reason is None and min_saving > 0:
        saving = prefix_saving(batch, plan)
        if saving < min_saving:
            plan.reason = (
                f"the shared prefix would leave out {saving:.0%} of the token positions, under the "
                f"{min_saving:.0%} from which it is faster (share_prefix: auto)"
            )
    return plan


def shared_prefix_logps(model: Any, batch: Batch, token_level: bool = False, min_saving: float = 0.0) -> LogpOutput:
    """Response log-probs of every row of a training batch, each distinct prompt + images computed once.

    Same inputs and outputs as :func:`mmalign.models.sequence_logps`, equal to it (fp32: ~1e-5, values and
    gradients). Falls back to it when nothing is shared or sharing does not apply (see :func:`plan_prefixes`), and
    when sharing would leave out less than ``min_saving`` of the token positions (:func:`prefix_saving`;
    ``share_prefix: auto`` passes :data:`AUTO_MIN_SAVING`).
    """
    plan = plan_shared(model, batch, min_saving)
    if plan.reason is not None:
        return sequence_logps(model, batch, token_level=token_level)
    return _shared_logps(model, batch, plan, token_level)


def auto_prefix_logps(model: Any, batch: Batch, token_level: bool = False) -> LogpOutput:
    """:func:`shared_prefix_logps` where it is faster by the sizes at hand (``share_prefix: auto``), else the
    concatenated forward: shared when it leaves out at least :data:`AUTO_MIN_SAVING` of the token positions, and
    never while gradient checkpointing trains the model (its layers drop the prefix's cache)."""
    if model.training and _gradient_checkpointing(model):
        return sequence_logps(model, batch, token_level=token_level)
    return shared_prefix_logps(model, batch, token_level, min_saving=AUTO_MIN_SAVING)


def shared_prefix_preference_logps(
    model: Any, batch: Batch, token_level: bool = False, min_saving: float = 0.0
) -> PreferenceLogps:
    """Chosen and rejected response log-probs with each pair's prompt and images computed once.

    A drop-in for :func:`mmalign.models.preference_logps` (same batch: rows ``[0, n)`` chosen, ``[n, 2n)``
    rejected; same outputs, equal to 1e-4 in fp32 for values and gradients). Pairs whose rejected side has its own
    images get a prefix per side. ``min_saving`` as in :func:`shared_prefix_logps`.
    """
    if batch.n_pairs == 0:
        raise ConfigError("not a preference batch: collate preference records (chosen/rejected) in train mode")
    plan = plan_shared(model, batch, min_saving)
    if plan.reason is not None:
        return preference_logps(model, batch, token_level=token_level)
    return _shared_logps(model, batch, plan, token_level).pairs(batch.n_pairs)
