"""Online RL (``mmalign train grpo``): GRPO and its variants, RLOO advantages, on the trainer core.

    config = load_config(GRPOConfig, "configs/grpo/shapes.yaml", ["train.max_steps=50"])
    result = train_grpo(config)                    # or train_grpo(config, reward_funcs=[my_reward])

Each micro-batch is ``train.batch_size`` prompts (:mod:`mmalign.train.prompts`). For each:

1. **rollouts**: ``grpo.group_size`` (G) completions sampled from the current policy in eval mode, each distinct
   prompt + images prefilled once and its KV cache shared by the G completions (:mod:`mmalign.models.rollout`), or
   from an external vLLM server (``grpo.rollout: server``, :mod:`mmalign.train.server_rollouts`);
2. **rewards**: every reward function is called once on the B·G completions with TRL's ``reward_funcs``
   signature (``prompts``, ``completions`` as ``[{"role": "assistant", "content": text}]``, ``completion_ids``,
   ``trainer_state`` and each prompt column as a keyword list); None means "cannot score" (NaN). The weighted sum
   (:func:`~mmalign.losses.advantages.combine_rewards`) gives one reward per completion;
3. **advantages**: per group, GRPO's (reward − group mean) / std as ``grpo.scale_rewards`` says, or RLOO's
   leave-one-out baseline (``grpo.advantage: rloo``), :mod:`mmalign.losses.advantages`;
4. **update**: the policy's per-token log-probs of the sampled tokens from one training forward over prompt +
   completion (the shared-prefix forward: each prompt once for its G rows, ``share_prefix``), the reference's when
   β > 0 (a frozen copy; with LoRA the policy with its adapter disabled), and the clipped-ratio loss with its
   aggregation ``loss.loss_type`` (:class:`~mmalign.losses.grpo.GRPOLoss`). By default (TRL's ``num_iterations: 1``)
   one gradient step per rollout, so π_old = π (the ratio is 1 in value, its gradient ∇log π). With
   ``grpo.num_iterations`` μ > 1 or ``grpo.steps_per_generation`` ≠ ``train.grad_accum``, a generation of rollouts
   is sampled once, buffered with its old log-probs and reused, so the ratio and the clip act
   (:mod:`mmalign.train.grpo_buffer`).

Metrics, TRL's names: ``reward`` and ``reward_std`` (mean of the within-group std), ``rewards/<name>/mean`` and
``/std``, ``frac_reward_zero_std``, ``completions/mean_length``, ``/min_length``, ``/max_length``,
``completions/clipped_ratio`` (cut at ``max_new_tokens``), ``kl`` (β > 0), ``clip_ratio/*``. Held-out evaluation
(``data.eval``) samples the same way with a fixed seed per batch, so ``eval_reward`` is comparable across
evaluations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from mmalign.config import check_ranges, option, section
from mmalign.errors import ConfigError
from mmalign.losses.advantages import SCALE_REWARDS, combine_rewards
from mmalign.losses.grpo import GRPOLoss, RolloutLogps
from mmalign.models.examples import Example
from mmalign.models.loading import LoadedModel
from mmalign.models.logps import tempered
from mmalign.models.rollout import Rollouts, SamplingOptions, sample_groups
from mmalign.seeding import derive_seed
from mmalign.train.config import (
    DataConfig,
    ModelConfig,
    TrainingConfig,
    check_held_out,
    check_share_prefix,
    share_prefix_option,
)
from mmalign.train.gathered import sampling_view
from mmalign.train.grpo_buffer import check_generation, generation_buffer
from mmalign.train.grpo_global import global_extremes, step_advantages, token_denominator
from mmalign.train.grpo_rewards import RewardFunction, call_rewards, rollout_metrics
from mmalign.train.guard import GRPO_SIGNALS, GuardConfig, OverOptimisationGuard
from mmalign.train.pref_batch import fit_width, row_scorer
from mmalign.train.prompts import Prompt, PromptDataset, read_prompts
from mmalign.train.reference import eval_mode, frozen_copy, unwrap_module
from mmalign.train.rollout_server import RolloutServerConfig
from mmalign.train.server_rollouts import ServerRollouts
from mmalign.train.trainer import CoreTrainer, StepOutput, TrainResult, core_arguments, run


@dataclass
class GRPOOptions:
    """What only online RL has: sampling, rewards, advantages, the reference."""

    group_size: int = option(8, "Completions sampled per prompt (G).", ge=2)
    max_new_tokens: int = option(48, "Longest completion in tokens.", ge=1)
    temperature: float = option(1.0, "Sampling temperature.", gt=0)
    top_p: float = option(1.0, "Nucleus sampling: keep the smallest set of tokens with this probability.", gt=0, le=1)
    top_k: int = option(0, "Keep only the k most likely tokens (0: no cut).", ge=0)
    rewards: dict[str, float] = option(
        {"object_f1": 1.0}, "Reward functions by name and their weights (mmalign.rewards); summed per completion."
    )
    advantage: Literal["group", "rloo"] = option(
        "group", "group: GRPO's (r - group mean) / std; rloo: r - mean of the group's other rewards."
    )
    scale_rewards: Literal["group", "batch", "none"] = option(
        "group", "GRPO's std: of the group, of the batch, or none (Dr. GRPO)."
    )
    rloo_normalize: bool = option(False, "RLOO: normalise the advantages over the batch.")
    reference: Literal["auto", "copy", "adapter"] = option(
        "auto", "The KL reference when loss.beta > 0: copy (frozen starting policy), adapter (LoRA off); auto picks."
    )
    prompt: str = option("Describe the image.", "The question asked of each scene when data is a world split.")
    rollout: Literal["local", "server"] = option(
        "local", "Where completions are sampled: local (the policy, here) or server (grpo.server, e.g. vLLM)."
    )
    server: RolloutServerConfig = section(RolloutServerConfig, "The rollout server (grpo.rollout: server).")
    num_iterations: int = option(
        1, "μ (TRL's num_iterations): updates on each generation's completions, with the clipped ratio to π_old.", ge=1
    )
    steps_per_generation: int | None = option(
        None, "Micro-batches of train.batch_size prompts sampled at once and buffered; null: train.grad_accum.", ge=1
    )

    def __post_init__(self) -> None:
        check_ranges(self, prefix="grpo.")
        if self.scale_rewards not in SCALE_REWARDS:
            raise ConfigError(f"grpo.scale_rewards must be one of {', '.join(SCALE_REWARDS)}")
        if not self.rewards:
            raise ConfigError("grpo.rewards is empty: name at least one reward function")
        from mmalign.rewards import get_reward

        for name, weight in self.rewards.items():
            get_reward(name)  # an unknown name fails with the config, not at the first step
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
                raise ConfigError(f"grpo.rewards.{name}: the weight must be a finite number, got {weight!r}")

    def generation_steps(self, grad_accum: int) -> int:
        """Micro-batches per generation: ``steps_per_generation``, by default ``train.grad_accum`` (as TRL)."""
        return grad_accum if self.steps_per_generation is None else self.steps_per_generation

    def sampling(self) -> SamplingOptions:
        return SamplingOptions(self.max_new_tokens, self.temperature, self.top_p, self.top_k, do_sample=True)


@dataclass
class GRPOConfig:
    """``mmalign train grpo``: which model, which prompts, which rewards and loss, how to optimise."""

    kind: Literal["grpo"] = option("grpo", "Config kind: 'grpo' for this trainer (tells trainer configs apart).")
    model: ModelConfig = section(ModelConfig, "The policy to train.")
    data: DataConfig = section(DataConfig, "Prompts: records, or a world split's scenes.jsonl (data.eval: held out).")
    train: TrainingConfig = section(TrainingConfig, "Optimisation and checkpoints (batch_size: prompts a step).")
    loss: GRPOLoss = section(GRPOLoss, "The clipped policy-gradient loss.")
    grpo: GRPOOptions = section(GRPOOptions, "Sampling, rewards, advantages.")
    guard: GuardConfig = section(
        GuardConfig,
        "Early stopping: margin_drop watches the held-out reward (eval_reward), max_kl the held-out k3 KL (eval_kl).",
    )
    share_prefix: bool | Literal["auto"] = share_prefix_option("log-probs")

    def __post_init__(self) -> None:
        if not self.data.train:
            raise ConfigError("data.train is required: records, or a world split's scenes.jsonl")
        check_share_prefix(self.share_prefix, self.model)
        check_held_out(self.train, self.data)
        self.guard.check_evaluated(self.data.eval, self.train.eval_steps)
        if self.guard.max_kl is not None and not self.loss.needs_reference:
            raise ConfigError("guard.max_kl watches the KL to the reference: set loss.beta > 0 (else none is computed)")
        if self.loss.loss_type == "dr_grpo" and self.loss.max_completion_length != self.grpo.max_new_tokens:
            raise ConfigError("loss_type dr_grpo: set loss.max_completion_length to grpo.max_new_tokens")
        if self.grpo.rollout == "server":
            self.grpo.server.sync_mode(self.model.lora.enabled)  # a sync the protocol cannot do fails here
        check_generation(self.grpo, self.train, self.data.limit)

    def reference_source(self) -> Literal["none", "copy", "adapter"]:
        if not self.loss.needs_reference:
            return "none"
        if self.grpo.reference == "auto":
            return "adapter" if self.model.lora.enabled else "copy"
        if self.grpo.reference == "adapter" and not self.model.lora.enabled:
            raise ConfigError("grpo.reference adapter needs model.lora.enabled (the reference is LoRA switched off)")
        return self.grpo.reference


@dataclass
class PromptCollate:
    """Prompts → what :meth:`GRPOTrainer.batch_loss` receives (no tensors: rollouts are made in the step)."""

    root: Path
    n_skipped: int = 0

    def __call__(self, prompts: list[Prompt]) -> dict[str, Any]:
        return {"prompts": prompts, "root": self.root}


class GRPOTrainer(CoreTrainer):
    """The core trainer whose step samples, scores and updates (module docstring)."""

    def __init__(
        self,
        *args: Any,
        loaded: LoadedModel,
        loss: GRPOLoss,
        options: GRPOOptions,
        reward_funcs: list[tuple[str, RewardFunction, float]],
        reference: Literal["none", "copy", "adapter"],
        share_prefix: bool | str,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.loaded, self.loss, self.options, self.reward_funcs = loaded, loss, options, reward_funcs
        self.scorer = tempered(row_scorer(share_prefix)[0], options.temperature)  # log-probs as sampled, as TRL
        self.reference_kind = reference
        self.reference_model = frozen_copy(self.model) if reference == "copy" else None
        self._rollouts_made = 0
        self.server: ServerRollouts | None = None
        self.buffer = generation_buffer(options, self.args.gradient_accumulation_steps, self.args.train_batch_size)
        """The buffered generation when rollouts are reused (:mod:`mmalign.train.grpo_buffer`), else None."""

    # ------------------------------------------------------------------------------------------------ step

    def get_train_dataloader(self) -> Any:
        if self.buffer is None:
            return super().get_train_dataloader()
        return self.buffer.train_dataloader(self)  # each batch: a whole generation's prompts, tagged with its use

    def batch_loss(self, model: Any, inputs: dict[str, Any], num_items: Any = None) -> StepOutput:
        if self.buffer is not None and model.training:
            return self.buffer.batch_loss(self, model, inputs)
        prompts: list[Prompt] = inputs["prompts"]
        rollouts = self.rollouts(model, prompts, inputs["root"])
        per_function, total, advantages = self.score(prompts, rollouts, model.training)
        batch = rollouts.batch()
        width = rollouts.completion_ids.shape[1]
        policy = fit_width(self.scorer(model, batch, token_level=True).token_logps, width)
        reference = self.reference_logps(model, batch, width) if self.loss.needs_reference else None
        mask = rollouts.completion_mask.to(device=policy.device, dtype=policy.dtype)
        num_tokens = token_denominator(self.loss, mask, self.accelerator, model.training)  # over every process
        out = self.loss(
            RolloutLogps(policy, mask, None, reference), advantages.advantages.to(policy.device), num_tokens
        )
        metrics = self.metrics(rollouts, per_function, total, advantages)
        metrics.update(out.metrics)
        metrics = global_extremes(metrics, self.accelerator, model.training)
        if not model.training:
            metrics["loss"] = out.loss.item()
        return StepOutput(out.loss, metrics, len(prompts))

    def rollouts(self, model: Any, prompts: list[Prompt], root: Path, seed: int | None = None) -> Rollouts:
        """G completions per prompt from the policy as it is now (seeded: ``seed`` when given, else by step and call
        when training, by the batch's first prompt when evaluating, so evaluations sample alike), or from the server
        as last synced."""
        if seed is None and model.training:
            self._rollouts_made += 1
            step, process = self.state.global_step, self.args.process_index
            seed = derive_seed(self.args.seed, "grpo", step, process, self._rollouts_made)
        elif seed is None:
            seed = derive_seed(self.args.seed, "grpo-eval", prompts[0].id)
        if self.options.rollout == "server":
            policy = dataclasses.replace(self.loaded, model=unwrap_module(model))
            if self.server is None:
                lora = hasattr(policy.model, "peft_config")
                self.server = ServerRollouts(self.options.server, lora, self.args.output_dir, self.args.world_size)
            if model.training or self.server.serves_eval:
                step, g = self.state.global_step, self.options.group_size
                sampling = self.options.sampling()
                return self.server.rollouts(policy, prompts, root, g, sampling, seed, step, model.training)
        items = [Example(p.id, p.prompt, list(p.images)) for p in prompts]
        with sampling_view(model) as view:  # whole weights under FSDP2 / ZeRO-3, a loop all processes end together
            policy = dataclasses.replace(self.loaded, model=view.module)
            options, g = self.options.sampling(), self.options.group_size
            return sample_groups(policy, items, g, options, seed, image_root=root, all_done=view.all_done)

    def score(
        self, prompts: list[Prompt], rollouts: Rollouts, training: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """The reward functions' values (B·G, F), their weighted sum (B·G,) and the advantages (batch-wide
        statistics over every process's rewards in a multi-process training step: :mod:`mmalign.train.grpo_global`)."""
        per_function = self.rewards(prompts, rollouts)
        total = combine_rewards(per_function, [weight for _, _, weight in self.reward_funcs])
        return per_function, total, step_advantages(self.options, total, self.accelerator, training)

    def rewards(self, prompts: list[Prompt], rollouts: Rollouts) -> torch.Tensor:
        """(B·G, F) the reward functions' values (NaN for None), checked: one number or None per completion."""
        return call_rewards(self.reward_funcs, prompts, rollouts, self.state)

    def reference_logps(self, model: Any, batch: Any, width: int) -> torch.Tensor:
        """The reference's per-token log-probs of the sampled tokens (no gradients, eval mode)."""
        if self.reference_kind == "adapter":
            policy = unwrap_module(model)
            with policy.disable_adapter(), eval_mode(policy):
                return fit_width(self.scorer(policy, batch, token_level=True).token_logps, width)
        reference = self.reference_model
        device = next(unwrap_module(model).parameters()).device
        if next(reference.parameters()).device != device:
            reference.to(device)
        with eval_mode(reference):
            return fit_width(self.scorer(reference, batch, token_level=True).token_logps, width)

    def metrics(self, rollouts: Rollouts, per_function: torch.Tensor, total: torch.Tensor, advantages: Any) -> dict:
        return rollout_metrics(rollouts, per_function, total, advantages, self.reward_funcs, self.options.group_size)


# ------------------------------------------------------------------------------------------------ running


@dataclass
class GRPOResult(TrainResult):
    """What :func:`train_grpo` did."""

    last_logged: dict[str, Any]
    """The last training log row: loss, reward, rewards/<name>/mean, kl, clip ratios, completion lengths..."""
    eval_metrics: dict[str, Any]
    """The last held-out evaluation (eval_reward, eval_rewards/<name>/mean ...); empty without data.eval."""
    guard_stop: str | None = None
    """Why the over-optimisation guard stopped the run (None: it did not)."""


def resolve_rewards(
    options: GRPOOptions, reward_funcs: Sequence[RewardFunction] | None = None
) -> list[tuple[str, RewardFunction, float]]:
    """The reward functions to call: ``reward_funcs`` given in Python (weight 1 each, named by ``__name__``), else
    ``grpo.rewards`` looked up by name in :mod:`mmalign.rewards`."""
    if reward_funcs:
        return [(getattr(fn, "__name__", f"reward_{i}"), fn, 1.0) for i, fn in enumerate(reward_funcs)]
    from mmalign.rewards import get_reward

    return [(name, get_reward(name), float(weight)) for name, weight in options.rewards.items()]


def read_sets(config: GRPOConfig) -> dict[str, PromptDataset]:
    data, question = config.data, config.grpo.prompt
    sets = {"train": read_prompts(data.train, data.root, question, data.limit)}
    if data.eval is not None:
        sets["eval"] = read_prompts(data.eval, data.root, question)
    return sets


def build_trainer(
    config: GRPOConfig,
    loaded: LoadedModel,
    reward_funcs: Sequence[RewardFunction] | None = None,
    callbacks: list[Any] | None = None,
    sets: dict[str, PromptDataset] | None = None,
    **arg_overrides: Any,
) -> GRPOTrainer:
    """The configured :class:`GRPOTrainer` over ``loaded``."""
    sets = read_sets(config) if sets is None else sets
    guard = [OverOptimisationGuard(config.guard, signals=GRPO_SIGNALS)] if config.guard.enabled else []
    collators = {name: PromptCollate(dataset.root) for name, dataset in sets.items()}
    args = config.train.training_arguments(**core_arguments(include_num_input_tokens_seen="no", **arg_overrides))
    return GRPOTrainer(
        model=loaded.model,
        args=args,
        train_dataset=sets["train"],
        eval_dataset=sets.get("eval"),
        data_collator=collators["train"],
        eval_collator=collators.get("eval"),
        collators=collators,
        loaded=loaded,
        loss=config.loss,
        options=config.grpo,
        reward_funcs=resolve_rewards(config.grpo, reward_funcs),
        reference=config.reference_source(),
        share_prefix=config.share_prefix,
        processor=loaded.processor,
        callbacks=[*guard, *(callbacks or [])],
        max_nonfinite_steps=config.train.max_nonfinite_steps,
    )


def train_grpo(
    config: GRPOConfig,
    *,
    reward_funcs: Sequence[RewardFunction] | None = None,
    callbacks: list[Any] | None = None,
    progress: bool = True,
    write: Callable[[str], None] | None = None,
) -> GRPOResult:
    """Train ``config.model`` with online RL on ``config.data.train``'s prompts; returns where everything went and
    the last metrics. ``reward_funcs``: Python callables to use instead of ``grpo.rewards``."""
    sets = read_sets(config)

    def describe(trainer: GRPOTrainer, loaded: LoadedModel, per_step: int) -> str:
        o, loss = config.grpo, config.loss
        rewards = " + ".join(f"{w:g}·{name}" for name, _, w in trainer.reward_funcs)
        return (
            f"grpo: {config.model.path} ({loaded.n_parameters(trainable_only=True) / 1e6:.2f} M trainable); "
            f"{per_step} prompts × {o.group_size} completions a step (≤ {o.max_new_tokens} tokens, "
            f"T={o.temperature:g}); "
            f"reward {rewards}; advantage {o.advantage}; loss {loss.loss_type}, β={loss.beta:g}, "
            f"reference {config.reference_source()}; {len(sets['train'])} prompts from {sets['train'].source}"
            + ("" if trainer.buffer is None else f"; {trainer.buffer.describe()}")
        )

    return run(
        config,
        build=lambda loaded, say: build_trainer(config, loaded, reward_funcs, callbacks, sets),
        describe=describe,
        result=lambda done: GRPOResult(**done.common(), **done.latest(), guard_stop=done.trainer.stop_reason),
        progress=progress,
        write=write,
    )
