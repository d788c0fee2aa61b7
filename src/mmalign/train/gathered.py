"""Sampling from a model that training wraps or shards: the module to decode with, and a loop every process ends
together (``train grpo``'s rollouts, :func:`mmalign.models.rollout.sample_groups`).

    with sampling_view(model) as view:
        rollouts = sample_groups(replace(loaded, model=view.module), items, g, options, seed, all_done=view.all_done)

The decode loop runs one forward per token, and each process stops when its own rows have ended. That is fine
when every process holds the whole model; with sharded weights a forward may be a collective, so:

* **one process, DDP** (and DeepSpeed ZeRO-1/2): every process holds the whole model. The module inside the
  wrapper samples; no collective, each process stops when its rows end;
* **FSDP2** (``fully_shard``; accelerate's ``fsdp_version: 2``): every FSDP module is unsharded once (one
  all-gather per module) and kept whole for the rollout (its reshard-after-forward switched off, then FSDP's own
  setting put back and the module resharded), so the decode loop's forwards gather nothing. Every process still
  decodes until all have ended (one all-reduce of one number per token), so a rollout is a fixed number of
  collectives whatever the wrapping does inside a forward. Peak memory: the whole model on every process while
  sampling, as ZeRO-3's gathered rollout in TRL;
* **FSDP1** (``FullyShardedDataParallel``): refused with a :class:`~mmalign.errors.ConfigError`.
  ``summon_full_params`` forbids forwards inside it, and the per-forward gathering path is not tested here: use
  FSDP2 (``configs/accelerate/fsdp.yaml`` is FSDP2);
* **DeepSpeed ZeRO-3**: the parameters gathered with ``deepspeed.zero.GatheredParameters`` for the rollout, the
  loop synced. **Not run here** (DeepSpeed is not installed in this project's environment): untested.

Under FSDP and ZeRO-3 the update's log-probs come from the plain forward, not the shared-prefix one
(:func:`mmalign.models.prefix.plan_shared` falls back: gradients through the prefix's KV cache would reach weights
FSDP2 has already resharded, and its backward fails).

Tested on CPU with two gloo processes (tests/train/test_grpo_processes.py): under FSDP2 (``fully_shard`` by
hand) the sampled completions and log-probs equal the unsharded model's, greedy and seeded, both processes run
the same forwards when their completions end at different steps, the shards and FSDP's settings are back after,
and a GRPO step's gradient equals one process's on the union of the rollouts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from mmalign.errors import ConfigError
from mmalign.train.reference import unwrap_module


@dataclass
class SamplingView:
    """What to sample with: the module, and how this process learns that every process's rows have ended."""

    module: Any
    all_done: Callable[[bool], bool]
    sharding: str
    """``none`` (one process, DDP, ZeRO-1/2), ``fsdp2`` or ``zero3``."""


def sharding(model: Any) -> str:
    """How ``model`` (as the trainer hands it to the loss: the DDP / FSDP / DeepSpeed wrapper, or the module)
    holds its weights: ``none``, ``fsdp1``, ``fsdp2`` or ``zero3``."""
    stage = getattr(model, "zero_optimization_stage", None)
    if callable(stage) and stage() == 3:
        return "zero3"
    if not torch.distributed.is_available():
        return "none"
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

    if isinstance(model, FullyShardedDataParallel) or any(
        isinstance(m, FullyShardedDataParallel) for m in model.modules()
    ):
        return "fsdp1"
    if any(isinstance(m, FSDPModule) for m in model.modules()):
        return "fsdp2"
    return "none"


def _own(done: bool) -> bool:
    return done


def synced(device: torch.device) -> Callable[[bool], bool]:
    """``all_done``: one all-reduce of this process's flag (on ``device``, as NCCL needs)."""

    def all_done(done: bool) -> bool:
        left = torch.tensor([0.0 if done else 1.0], device=device)
        torch.distributed.all_reduce(left)
        return float(left.item()) == 0.0

    return all_done


@contextlib.contextmanager
def sampling_view(model: Any) -> Iterator[SamplingView]:
    """The module to sample from with its whole weights, for the duration (module docstring)."""
    kind = sharding(model)
    if kind == "none":
        yield SamplingView(unwrap_module(model), _own, kind)
        return
    if kind == "fsdp1":
        raise ConfigError(
            "sampling from an FSDP1 (FullyShardedDataParallel) model is not supported: use FSDP2 "
            "(accelerate's fsdp_version: 2, as configs/accelerate/fsdp.yaml), DDP or DeepSpeed"
        )
    module = unwrap_module(model)
    device = next(module.parameters()).device
    if kind == "fsdp2":
        with _unsharded(model):
            yield SamplingView(module, synced(device), kind)
    else:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            yield SamplingView(module, synced(device), kind)


@contextlib.contextmanager
def _unsharded(model: Any) -> Iterator[None]:
    """Every FSDP2 module of ``model`` unsharded and kept so through forwards; resharded and its
    reshard-after-forward setting restored after."""
    from torch.distributed.fsdp import FSDPModule

    modules = [m for m in model.modules() if isinstance(m, FSDPModule)]
    # The root's first forward decides its settings (it does not reshard after forward unless told to); settled
    # here, before they are saved, so the first rollout does not decide them with resharding switched off.
    modules[0]._get_fsdp_state()._lazy_init()
    saved = [_reshard_setting(m) for m in modules]
    try:
        for m in modules:
            m.set_reshard_after_forward(False, recurse=False)
            m.unshard()
        yield
    finally:
        for m, setting in zip(modules, saved, strict=True):
            _restore_reshard_setting(m, setting)
            m.reshard()


def _reshard_setting(module: Any) -> tuple[Any, list[Any]]:
    # FSDP2 has a setter for reshard-after-forward but no getter; the root's value differs from the others'
    # (False unless set), so the state's own fields are saved and put back as they were.
    state = module._get_fsdp_state()
    return state._auto_reshard_after_forward, [g.post_forward_mesh_info for g in state._fsdp_param_groups]


def _restore_reshard_setting(module: Any, setting: tuple[Any, list[Any]]) -> None:
    state = module._get_fsdp_state()
    state._auto_reshard_after_forward = setting[0]
    for group, mesh_info in zip(state._fsdp_param_groups, setting[1], strict=True):
        group.post_forward_mesh_info = mesh_info
