"""What :class:`~mmalign.train.grpo.GRPOTrainer` calls for ``grpo.rollout: server``: sync the server when it is due,
ask it for G completions per prompt, and return the same :class:`~mmalign.models.rollout.Rollouts` as local sampling.

The server is reached (``GET /health``, the model's name) and the sync's prerequisites checked at the first call,
so a wrong URL or a missing vLLM fails before any training. Sync is due before a rollout when the optimiser has taken
``sync_steps`` steps since the last one (the first rollout of a resumed run syncs at once): that is "after every
``sync_steps``-th optimiser step", done lazily when the weights are next needed. Evaluation rollouts sync first if the
server is behind, then sample there; with ``sync: none`` they are sampled locally (the server's stale policy would
not measure the trained one).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mmalign.errors import ConfigError
from mmalign.models.examples import Example
from mmalign.models.loading import LoadedModel
from mmalign.models.rollout import Rollouts, SamplingOptions
from mmalign.models.rollout_ids import rollouts_from_ids
from mmalign.train import weight_sync
from mmalign.train.prompts import Prompt
from mmalign.train.rollout_server import RolloutServerConfig, ServerClient
from mmalign.train.weight_sync import LoraSync, NcclSync, NoSync

log = logging.getLogger("mmalign.train")


class ServerRollouts:
    """Rollouts from an external server for one training process."""

    def __init__(self, config: RolloutServerConfig, lora: bool, output_dir: str | Path, world_size: int = 1) -> None:
        if world_size > 1:
            raise ConfigError(
                "grpo.rollout server runs in one training process (the sync is not coordinated across processes "
                f"yet); this run has {world_size}"
            )
        self.config = config
        self.mode = config.sync_mode(lora)
        self.client = ServerClient(config)
        if self.mode == "nccl":
            self.sync: Any = NcclSync(self.client, weight_sync.nccl_broadcaster())
        elif self.mode == "lora":
            self.sync = LoraSync(self.client, Path(config.adapter_dir or Path(output_dir) / "server-adapters"))
        else:
            self.sync = NoSync()
        self.synced_step = 0
        self.connected = False
        self.warned_prompt = False

    @property
    def serves_eval(self) -> bool:
        """Whether evaluation samples on the server (it can be brought up to date)."""
        return self.mode != "none"

    def connect(self) -> None:
        if not self.connected:
            self.sync.check()
            self.client.connect()
            log.info(
                "rollouts from %s (%s protocol, model %s, sync %s every %d steps)",
                self.client.root,
                self.config.protocol,
                self.client.model,
                self.mode,
                self.config.sync_steps,
            )
            self.connected = True

    def catch_up(self, model: Any, step: int, training: bool) -> None:
        """Sync the server with ``model`` if it is due (training) or behind at all (evaluation)."""
        behind = step - self.synced_step
        if behind >= self.config.sync_steps or (behind > 0 and not training):
            self.sync.sync(model, step)
            self.synced_step = step

    def rollouts(
        self,
        loaded: LoadedModel,
        prompts: list[Prompt],
        root: Path,
        group_size: int,
        sampling: SamplingOptions,
        seed: int,
        step: int,
        training: bool,
    ) -> Rollouts:
        """G completions per prompt from the server, as :func:`~mmalign.models.rollout.sample_groups` returns them."""
        self.connect()
        self.catch_up(loaded.model, step, training)
        groups = self.client.sample(prompts, root, group_size, sampling, seed, loaded.tokenizer)
        items = [Example(p.id, p.prompt, list(p.images)) for p in prompts]
        rollouts = rollouts_from_ids(loaded, items, groups, sampling.max_new_tokens, image_root=root)
        self.compare_prompts(rollouts)
        return rollouts

    def compare_prompts(self, rollouts: Rollouts) -> None:
        """Warn once when the server's prompt tokens (where it returns them) differ from the policy's: the server
        then sampled after another prompt (chat template, image processing) than the update scores them after."""
        batch = rollouts.prompts
        for b, server_ids in enumerate(self.client.prompt_ids):
            if self.warned_prompt or server_ids is None:
                continue
            ours = batch.input_ids[b, : int(batch.prompt_lengths[b])].tolist()
            if server_ids != ours:
                log.warning(
                    "rollout server: its prompt tokens for %r (%d) differ from the policy's (%d): its chat template or "
                    "image processing is not the policy's, so the update scores completions after another prompt "
                    "than the one they were sampled after",
                    batch.ids[b],
                    len(server_ids),
                    len(ours),
                )
                self.warned_prompt = True
