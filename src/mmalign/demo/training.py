"""The demo's trained models: each method's config from ``configs/demo/``, with the demo's paths and seed,
all on one budget; and the run itself (preference training, or SFT for the control).

A method's YAML names its default paths under ``demo-out/`` (so ``mmalign train pref --config
configs/demo/dpo.yaml`` works after a demo run); the demo overrides them with its own output directory,
sets ``train.seed``, turns intermediate checkpoints off, and applies ``--steps`` / ``--batch-size``.
"""

from __future__ import annotations

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


def method_config(
    method: Method, configs: Path, layout: Layout, seed: int, steps: int | None, batch_size: int | None
) -> Any:
    """The checked config of ``method`` (PreferenceConfig or, for the control, SFTConfig) as the demo runs it."""
    from mmalign.train.preference import PreferenceConfig
    from mmalign.train.sft import SFTConfig

    path = configs / method.config
    cls = PreferenceConfig if method.trainer == "pref" else SFTConfig
    data = read_yaml(path)
    if data.get("kind") != method.trainer:
        raise ConfigError(f"{path}: kind must be {method.trainer!r} for method {method.name}")
    overrides = [
        f"model.path={layout.model('baseline')}",
        f"data.train={layout.pair_file(method.pairs)}",
        f"data.root={layout.pair_root(method.pairs)}",
        "data.eval=null",
        f"train.output_dir={layout.train(method.name)}",
        f"train.seed={seed}",
        "train.save_steps=null",
        "train.eval_steps=null",
        "train.resume=false",
    ]
    if method.trainer == "pref" and data.get("reference", {}).get("mode") == "precomputed":
        overrides.append(f"reference.cache_dir={layout.out / 'cache' / 'reference'}")
    if steps is not None:
        overrides.append(f"train.max_steps={steps}")
    if batch_size is not None:
        overrides += [f"train.batch_size={batch_size}", "train.grad_accum=1"]
    return load_config(cls, path, overrides)


def budget(config: Any) -> tuple[int, int]:
    """(optimiser steps, examples per step) of a config."""
    train = config.train
    if train.max_steps < 1:
        raise ConfigError(f"{train.output_dir}: the demo's methods must fix train.max_steps (same budget for all)")
    return train.max_steps, train.batch_size * train.grad_accum


def common_budget(configs: dict[str, Any]) -> tuple[int, int]:
    """The budget every method shares; ConfigError naming the odd ones out when they differ."""
    budgets = {name: budget(config) for name, config in configs.items()}
    if len(set(budgets.values())) != 1:
        listed = ", ".join(f"{name} {s} steps × {b}" for name, (s, b) in budgets.items())
        raise ConfigError(f"the demo's methods must share one budget (steps × pairs per step): {listed}")
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


def train_method(method: Method, config: Any, progress: bool) -> Path:
    """Train one method from its config; returns the training directory (which holds the final model)."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    if method.trainer == "sft":
        from mmalign.train.sft import train_sft

        result = train_sft(config, progress=progress)
        assert result.model_dir is not None, "the control trains the full model (no LoRA), so it is saved whole"
        return result.model_dir
    from mmalign.train.preference import train_preference

    result_pref = train_preference(config, progress=progress)
    assert result_pref.model_dir is not None, "the demo's methods train the full model, saved whole"
    return result_pref.model_dir
