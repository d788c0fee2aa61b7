"""The ``reward`` scorer: a trained reward model (``mmalign train rm``) rates each candidate.

A candidate's score is the reward model's reward ``r(prompt, images, candidate)``
(:func:`mmalign.models.critique.score_with`: the scalar head on the response's last token, or on the critique a
critique reward model writes first), batched over every
candidate of a unit's prompts. Rewards are Bradley-Terry logits: under the model, the best of two candidates is
preferred with probability ``sigmoid(r_best - r_worst)``, so the default ``min_gap`` of 0.5 keeps pairs the
model prefers with probability at least ``sigmoid(0.5) = 0.62``.

The reward model is loaded once per process (the scorers' cache, :func:`mmalign.pairs.scorers.cached`). Its
identity for a build's fingerprint (:func:`reward_fingerprint`) is the bytes of ``config.json`` and of
``reward_head.safetensors`` (the head trains in every reward-model run, so a retrained model differs there)
and the names and sizes of the other weight files: cheap, without reading gigabytes of weights.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mmalign.config import option
from mmalign.errors import ConfigError
from mmalign.pairs.scorers import ScoreContext, Scorer, cached

DEFAULT_MIN_GAP = 0.5
"""Bradley-Terry: a reward gap of 0.5 is a preference probability of sigmoid(0.5) = 0.62."""


@dataclass(frozen=True)
class RewardOptions:
    path: str = option("", "Local reward-model directory (saved by `mmalign train rm`). Needed for reward.")
    batch_size: int = option(16, "Candidates scored per forward pass.")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"reward.batch_size must be at least 1, got {self.batch_size}")


def check_reward_dir(path: str | Path, option_name: str = "reward.path") -> Path:
    """A reward-model directory: a model folder whose ``config.json`` names a reward head, and the head file."""
    from mmalign.models.loading import check_model_dir
    from mmalign.models.reward import HEAD_FILE, head_spec_of

    if not str(path):
        raise ConfigError(f"the reward scorer needs {option_name}: a reward-model directory (mmalign train rm)")
    directory = Path(path)
    check_model_dir(directory)
    if head_spec_of(directory) is None or not (directory / HEAD_FILE).is_file():
        raise ConfigError(
            f"{directory} is not a reward model (no mmalign_reward_head in config.json, or no {HEAD_FILE}): "
            "train one with `mmalign train rm`"
        )
    return directory


def reward_fingerprint(path: str | Path) -> str:
    """A cheap identity of a reward-model directory (see the module docstring)."""
    from mmalign.models.reward import HEAD_FILE

    path = Path(path)
    digest = hashlib.sha256((path / "config.json").read_bytes())
    digest.update((path / HEAD_FILE).read_bytes())
    for weights in sorted(path.glob("*.safetensors")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()


def reward_model(path: str | Path, dtype: str = "float32", device: str | None = None) -> Any:
    """The loaded reward model (:class:`mmalign.models.LoadedModel` holding a ``RewardModel``), once per process."""
    from mmalign.models.reward import load_reward_model

    directory = check_reward_dir(path)
    key = ("reward", str(directory.resolve()), dtype, device)
    return cached(key, lambda: load_reward_model(directory, dtype=dtype, device=device))


class RewardScorer(Scorer):
    """Each candidate's reward under a trained reward model (see the module docstring)."""

    name: ClassVar[str] = "reward"
    default_min_gap: ClassVar[float] = DEFAULT_MIN_GAP

    def __init__(self, options: RewardOptions, dtype: str = "float32", device: str | None = None) -> None:
        self.options = options
        self.loaded = reward_model(options.path, dtype, device)

    def score_many(self, groups: list[tuple[list[str], ScoreContext]]) -> list[list[float]]:
        from mmalign.data.records import assistant
        from mmalign.models.critique import score_with  # a critique model writes its critique first
        from mmalign.models.examples import Example

        examples = [
            Example(f"{context.id}#{j}", context.prompt, list(context.images), assistant(candidate))
            for candidates, context in groups
            for j, candidate in enumerate(candidates)
        ]
        rewards = score_with(self.loaded, examples, batch_size=self.options.batch_size) if examples else []
        out, i = [], 0
        for candidates, _ in groups:
            out.append(rewards[i : i + len(candidates)])
            i += len(candidates)
        return out
