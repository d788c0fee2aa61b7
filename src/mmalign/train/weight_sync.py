"""Keeping an external rollout server's policy equal to the one being trained (``grpo.server.sync``).

- ``nccl`` (protocol ``trl``): vLLM's weight-transfer endpoints, as TRL 1.16's ``VLLMClient`` drives them. Once:
  ``GET /server_info`` (its ``weight_transfer_config`` must be set: ``--weight-transfer-config
  '{"backend": "nccl"}'``, and the endpoint exists only with ``VLLM_SERVER_DEV_MODE=1``), ``GET /get_world_size``,
  then ``POST /init_weight_transfer_engine`` while this process joins the NCCL group as rank 0. Each sync:
  ``POST /start_weight_update``, ``POST /update_weights`` (every tensor's name, dtype, shape) while the tensors are
  broadcast in that order, ``POST /finish_weight_update``, ``POST /reset_prefix_cache`` (cached prefixes were computed
  with the old weights). Names are the policy's ``named_parameters()`` names, which vLLM's ``load_weights`` maps as it
  maps a checkpoint's; with LoRA each adapted weight is sent merged (W + ΔW from PEFT's ``get_delta_weight``, the
  model itself left untouched) under the base model's name, the adapter's own tensors not at all.
  The broadcast itself (:class:`NcclBroadcaster`) needs ``vllm`` and a CUDA device in this process.
- ``lora`` (protocol ``openai``): the adapter saved to ``adapter_dir/step-<n>`` (a path the server must be able to
  read), ``POST /v1/load_lora_adapter`` under the name ``<model>-step-<n>`` (the server needs
  ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` and ``--enable-lora``), rollouts then ask for that name, and the previous
  adapter is unloaded (``POST /v1/unload_lora_adapter``) and its folder removed.
- ``none``: nothing is sent; the server samples from its starting weights, so after the first step the rollouts are
  off-policy (said in the log once).
"""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

from mmalign.files import atomic_path
from mmalign.train.rollout_server import RolloutServerError, ServerClient

log = logging.getLogger("mmalign.train")

NamedTensors = Iterator[tuple[str, torch.Tensor]]


def vllm_named_weights(model: Any) -> NamedTensors:
    """``(name, tensor)`` of every weight as vLLM loads it: the model's parameter names; for a PEFT model the base
    model's names with each LoRA-adapted weight merged (W + ΔW) and no adapter tensors. Nothing is modified."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    if not isinstance(model, PeftModel):
        yield from ((name, p.detach()) for name, p in model.named_parameters())
        return
    deltas: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, LoraLayer) and not module.merged:
            if any(module.use_dora.get(a, False) for a in module.active_adapters):
                raise RolloutServerError("weight sync of a DoRA adapter is not supported (use plain LoRA)")
            for adapter in module.active_adapters:
                if adapter in module.lora_A or adapter in getattr(module, "lora_embedding_A", {}):
                    delta = module.get_delta_weight(adapter).detach()
                    key = f"{module_name}.base_layer.weight"
                    deltas[key] = deltas[key] + delta if key in deltas else delta
    for name, p in model.named_parameters():
        if "lora_" in name or ".original_module." in name:
            continue
        tensor = p.detach() + deltas[name].to(p.dtype) if name in deltas else p.detach()
        clean = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
        yield clean.replace(".modules_to_save.default.", "."), tensor


class Broadcaster(Protocol):
    """The trainer's end of the NCCL weight-update group (rank 0)."""

    def check(self) -> None:
        """Fail now, naming what is missing, if :meth:`open` cannot work here."""

    def open(self, init_info: dict[str, Any]) -> dict[str, Any]:
        """Join the group the server opens with ``init_info``; returns extra ``update_info`` fields."""

    def send(self, tensors: NamedTensors) -> None:
        """Broadcast the tensors, in order, to the server's workers."""


class NcclBroadcaster:
    """vLLM's NCCL weight transfer, as TRL calls it: needs ``vllm`` and a CUDA device. Not run by the tests here
    (no vLLM, no GPU): the HTTP side around it is."""

    def __init__(self) -> None:
        self.group: Any = None
        self.stateful = True

    def check(self) -> None:
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise RolloutServerError(
                "grpo.server.sync nccl broadcasts the weights with vLLM's NCCL weight transfer, which needs vllm "
                "installed in the training environment (pip install vllm) and a CUDA device; or set "
                "grpo.server.sync: none (off-policy rollouts)"
            ) from None
        if not torch.cuda.is_available():
            raise RolloutServerError("grpo.server.sync nccl needs a CUDA device in the training process (NCCL)")

    def open(self, init_info: dict[str, Any]) -> dict[str, Any]:
        try:
            from vllm.distributed.weight_transfer.nccl_common import trainer_init
        except ImportError:  # vLLM before 0.28: the engine class, packing asked per update
            from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferEngine

            self.stateful = False
            self.group = NCCLWeightTransferEngine.trainer_init(init_info)
            return {"packed": True}
        self.group = trainer_init({**init_info, "packed": True})
        return {}

    def send(self, tensors: NamedTensors) -> None:
        if self.stateful:
            from vllm.distributed.weight_transfer.packed_tensor import packed_nccl_broadcast_producer

            device = torch.device("cuda", torch.cuda.current_device())
            items = ((name, t.to(device)) for name, t in tensors)
            packed_nccl_broadcast_producer(iterator=items, group=self.group, src=0, post_iter_func=lambda x: x[1])
        else:
            from vllm.distributed.weight_transfer.nccl_engine import (
                NCCLTrainerSendWeightsArgs,
                NCCLWeightTransferEngine,
            )

            args = NCCLTrainerSendWeightsArgs(group=self.group, packed=True)
            NCCLWeightTransferEngine.trainer_send_weights(iterator=tensors, trainer_args=args)


def nccl_broadcaster() -> Broadcaster:
    """The broadcaster ``sync: nccl`` uses (a test replaces this function)."""
    return NcclBroadcaster()


def _concurrently(request: Any, work: Any) -> Any:
    """Run ``request()`` on a thread while ``work()`` runs here (the server's side blocks until the collective
    ends); re-raise the request's error first."""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = request()
        except BaseException as err:  # handed to the caller below
            box["error"] = err

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    result = work()
    thread.join()
    if "error" in box:
        raise box["error"]
    return result


class NcclSync:
    """``sync: nccl`` (module docstring)."""

    def __init__(self, client: ServerClient, broadcaster: Broadcaster) -> None:
        self.client, self.broadcaster = client, broadcaster
        self.update_extra: dict[str, Any] | None = None

    def check(self) -> None:
        self.broadcaster.check()

    def open(self) -> None:
        info = self.client.get("/server_info?config_format=json")
        config = info.get("vllm_config")
        if not isinstance(config, dict) or config.get("weight_transfer_config") is None:
            raise RolloutServerError(
                f"rollout server at {self.client.root} has no weight-transfer engine: start it with "
                '--weight-transfer-config \'{"backend": "nccl"}\' and VLLM_SERVER_DEV_MODE=1'
            )
        world_size = self.client.get("/get_world_size").get("world_size")
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise RolloutServerError(f"rollout server at {self.client.root}/get_world_size: no world_size")
        c = self.client.config
        address = c.master_address or _local_address(urllib.parse.urlsplit(self.client.root).hostname or "")
        init_info = {
            "master_address": address,
            "master_port": c.nccl_port,
            "rank_offset": 1,
            "world_size": world_size + 1,
        }
        self.update_extra = _concurrently(
            lambda: self.client.post("/init_weight_transfer_engine", {"init_info": init_info}, text_ok=True),
            lambda: self.broadcaster.open(init_info),
        )

    def sync(self, model: Any, step: int) -> None:
        if self.update_extra is None:
            self.open()
        tensors = list(vllm_named_weights(model))
        update_info = {
            "names": [name for name, _ in tensors],
            "dtype_names": [str(t.dtype).removeprefix("torch.") for _, t in tensors],
            "shapes": [list(t.shape) for _, t in tensors],
            **(self.update_extra or {}),
        }
        self.client.post("/start_weight_update", {}, text_ok=True)
        _concurrently(
            lambda: self.client.post("/update_weights", {"update_info": update_info}, text_ok=True),
            lambda: self.broadcaster.send(iter(tensors)),
        )
        self.client.post("/finish_weight_update", {}, text_ok=True)
        self.client.post("/reset_prefix_cache", {}, text_ok=True)
        log.info("rollout server: %d tensors synced at step %d", len(tensors), step)


def _local_address(host: str) -> str:
    """This machine's address on the route to ``host`` (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))
        return str(probe.getsockname()[0])


class LoraSync:
    """``sync: lora`` (module docstring)."""

    def __init__(self, client: ServerClient, adapter_dir: Path) -> None:
        self.client, self.adapter_dir = client, adapter_dir
        self.base_name: str | None = None
        self.loaded: tuple[str, Path] | None = None

    def check(self) -> None:
        return None

    def sync(self, model: Any, step: int) -> None:
        if self.base_name is None:
            self.base_name = self.client.model
        folder = (self.adapter_dir / f"step-{step}").resolve()
        with atomic_path(folder) as tmp:
            model.save_pretrained(str(tmp))
        name = f"{self.base_name}-step-{step}"
        self.client.post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(folder)}, text_ok=True)
        self.client.model = name
        if self.loaded is not None and self.loaded[0] != name:
            old_name, old_folder = self.loaded
            self.client.post("/v1/unload_lora_adapter", {"lora_name": old_name}, text_ok=True)
            shutil.rmtree(old_folder, ignore_errors=True)
        self.loaded = (name, folder)
        log.info("rollout server: adapter %s loaded from %s", name, folder)


class NoSync:
    """``sync: none``: says once that the server's policy is stale."""

    def __init__(self) -> None:
        self.said = False

    def check(self) -> None:
        return None

    def sync(self, model: Any, step: int) -> None:
        if not self.said:
            log.warning(
                "rollout server: grpo.server.sync is none, so the server keeps its starting weights: from step %d on "
                "the rollouts are off-policy (sampled by a stale policy)",
                step,
            )
            self.said = True
