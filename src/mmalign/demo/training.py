"""The demo's trained models: each method's config from ``configs/demo/``, with the demo's paths and seed,
all on one budget; and the run itself (preference training, SFT for the control, GRPO, on-policy DPO).

A method's YAML names its default paths under ``demo-out/`` (so ``mmalign train pref --config
configs/demo/dpo.yaml`` works after a demo run); the demo overrides them with its own output directory,
sets ``train.seed``, turns intermediate checkpoints off, and applies ``--steps`` / ``--batch-size``.

The budget is optimiser steps × examples per step for every method: pairs (DPO family), chosen answers (the
control), scenes each with G sampled descriptions (GRPO), and sampled pairs (on-policy DPO, whose steps are split
into rounds, each sampling from the policy the previous round left).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmalign.config import config_to_dict, load_config, read_yaml
from mmalign.demo.settings import Method
from mmalign.errors import ConfigError


def repo_configs() -> Path:
    """``configs/demo`` of the checkout this package runs from (an editable install)."""
    import mmalign

    return Path(mmalign.__file__).resolve().parents[2] / "configs" / "demo"


def configs_dir(given: Path | None) -> Path:
    found = repo_configs() if given is None else Path(given)
    if not found.is_dir():
        raise ConfigError(
            f"the demo's configs are not at {found}: run from a checkout of mmalign, or pass --configs DIR"
        )
    return found


@dataclass(frozen=True)
class Layout:
    """Where the demo's files go, under its output directory."""

    out: Path

    @property
    def world(self) -> Path:
        return self.out / "world"

    @property
    def pairs(self) -> Path:
        return self.out / "pairs"

    @property
    def sft(self) -> Path:
        return self.out / "sft"

    def model(self, name: str) -> Path:
        """The model directory (weights, config, processor only) of ``baseline`` or a method."""
        return self.out / "models" / name

    def train(self, name: str) -> Path:
        """A method's training directory: logs (metrics.jsonl), config, result."""
        return self.out / "train" / name

    def eval(self, name: str) -> Path:
        return self.out / "eval" / name

    def pair_file(self, kind: str) -> Path:
        return self.pairs / f"{kind}.jsonl"

    def pair_root(self, kind: str) -> Path:
        """The data root of a training file: the world for text pairs, the pairs folder for corrupted images."""
        return self.pairs if kind == "corrupt-image" else self.world


def config_class(trainer: str) -> Any:
    from mmalign.train.grpo import GRPOConfig
    from mmalign.train.online_dpo import OnlineDPOConfig
    from mmalign.train.preference import PreferenceConfig
    from mmalign.train.sft import SFTConfig

    classes = {"pref": PreferenceConfig, "sft": SFTConfig, "grpo": GRPOConfig, "online_dpo": OnlineDPOConfig}
    return classes[trainer]


def rounds_for(steps: int, rounds: int) -> int:
    """The most rounds, at most ``rounds``, that split ``steps`` evenly (every round trains as long)."""
    return max(r for r in range(1, min(rounds, steps) + 1) if steps % r == 0)


def method_overrides(method: Method, data: dict[str, Any], layout: Layout, steps: int, batch: int) -> list[str]:
    """The paths of a method's training data under the demo's output directory, and (online methods) how its
    budget of ``steps`` × ``batch`` examples becomes scenes: GRPO sees ``steps × batch`` training scenes once;
    on-policy DPO splits the steps into rounds, each sampling as many new scenes as its steps take pairs."""
    world = layout.world
    if method.trainer == "grpo":
        return [
            f"data.train={world / 'train' / 'scenes.jsonl'}",
            f"data.eval={world / 'val' / 'scenes.jsonl'}",
            f"data.root={world}",
            f"data.limit={steps * batch}",
            f"train.eval_steps={max(1, steps // 4)}",
        ]
    if method.trainer == "online_dpo":
        rounds = rounds_for(steps, int(data.get("online", {}).get("rounds", 1)))
        return [
            f"online.world={world}",
            "online.split=train",
            f"online.rounds={rounds}",
            f"train.max_steps={steps // rounds}",
            f"online.prompts_per_round={steps // rounds * batch}",
            "train.eval_steps=null",
        ]
    return [
        f"data.train={layout.pair_file(method.pairs)}",
        f"data.root={layout.pair_root(method.pairs)}",
        "data.eval=null",
        "train.eval_steps=null",
    ]


def method_config(
    method: Method,
    configs: Path,
    layout: Layout,
    seed: int,
    steps: int | None,
    batch_size: int | None,
    extra: list[str] | None = None,
) -> Any:
    """The checked config of ``method`` (PreferenceConfig, SFTConfig for the control, GRPOConfig,
    OnlineDPOConfig) as the demo runs it; ``extra``: more overrides (bench/demo_sweep.py's grid point)."""
    path = configs / method.config
    data = read_yaml(path)
    if data.get("kind") != method.trainer:
        raise ConfigError(f"{path}: kind must be {method.trainer!r} for method {method.name}")
    train = data.get("train", {})
    rounds = int(data.get("online", {}).get("rounds", 1))
    steps = steps if steps is not None else int(train.get("max_steps", 0)) * rounds
    batch = batch_size if batch_size is not None else int(train.get("batch_size", 1)) * int(train.get("grad_accum", 1))
    if steps < 1:
        raise ConfigError(f"{path}: the demo's methods must fix train.max_steps (same budget for all)")
    overrides = [
        f"model.path={layout.model('baseline')}",
        *method_overrides(method, data, layout, steps, batch),
        f"train.output_dir={layout.train(method.name)}",
        f"train.seed={seed}",
        "train.save_steps=null",
        "train.resume=false",
    ]
    if data.get("reference", {}).get("mode") == "precomputed":
        overrides.append(f"reference.cache_dir={layout.out / 'cache' / 'reference'}")
    if method.trainer != "online_dpo":
        overrides.append(f"train.max_steps={steps}")
    if batch_size is not None:
        overrides += [f"train.batch_size={batch_size}", "train.grad_accum=1"]
    return load_config(config_class(method.trainer), path, [*overrides, *(extra or [])])


def budget(config: Any) -> tuple[int, int]:
    """(optimiser steps, examples per step) of a config: pairs, chosen answers, or (GRPO) scenes."""
    train = config.train
    if train.max_steps < 1:
        raise ConfigError(f"{train.output_dir}: the demo's methods must fix train.max_steps (same budget for all)")
    rounds = config.online.rounds if hasattr(config, "online") else 1
    return train.max_steps * rounds, train.batch_size * train.grad_accum


def common_budget(configs: dict[str, Any]) -> tuple[int, int]:
    """The budget every method shares; ConfigError naming the odd ones out when they differ."""
    budgets = {name: budget(config) for name, config in configs.items()}
    if len(set(budgets.values())) != 1:
        listed = ", ".join(f"{name} {s} steps × {b}" for name, (s, b) in budgets.items())
        raise ConfigError(f"the demo's methods must share one budget (steps × examples per step): {listed}")
    return next(iter(budgets.values()))


def config_record(config: Any, out: Path) -> dict[str, Any]:
    """A config as results.json records it: paths under the output directory written relative to it."""
    prefix = str(out.resolve())

    def relative(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: relative(v) for k, v in value.items()}
        if isinstance(value, str) and value.startswith(prefix):
            return "OUT" + value[len(prefix) :]
        return value

    return relative(config_to_dict(config))


def training_log(train_dir: Path) -> list[dict[str, Any]]:
    """The rows of a method's ``metrics.jsonl``; on-policy DPO's rounds (``round-<r>/train/``) joined in order, each
    row with its ``round`` and its step counted on from the rounds before (the demo's optimiser steps)."""
    from mmalign.train.callbacks import METRICS_FILE, read_metrics

    if (train_dir / METRICS_FILE).is_file():
        return read_metrics(train_dir / METRICS_FILE)
    rows: list[dict[str, Any]] = []
    offset = 0
    for r in itertools.count():
        path = train_dir / f"round-{r}" / "train" / METRICS_FILE
        if not path.is_file():
            return rows
        part = read_metrics(path)
        rows += [{**row, "round": r, "step": row["step"] + offset} if "step" in row else row for row in part]
        offset += max((int(row["step"]) for row in part if "step" in row), default=0)
    return rows


def train_method(method: Method, config: Any, progress: bool) -> Path:
    """Train one method from its config; returns the training directory (which holds the final model)."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    if method.trainer == "grpo":
        from mmalign.train.grpo import train_grpo

        done = train_grpo(config, progress=progress)
        assert done.model_dir is not None, "the demo's GRPO trains the full model, saved whole"
        return done.model_dir
    if method.trainer == "online_dpo":
        from mmalign.train.online_dpo import train_online_dpo

        return train_online_dpo(config, progress=progress).model_dir
    if method.trainer == "sft":
        from mmalign.train.sft import train_sft

        result = train_sft(config, progress=progress)
        assert result.model_dir is not None, "the control trains the full model (no LoRA), so it is saved whole"
        return result.model_dir
    from mmalign.train.preference import train_preference

    result_pref = train_preference(config, progress=progress)
    assert result_pref.model_dir is not None, "the demo's methods train the full model, saved whole"
    return result_pref.model_dir
