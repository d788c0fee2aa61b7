"""A trained reward model as a reward: the scalar it gives each (prompt, images, completion).

Wraps :func:`mmalign.models.reward.score_examples` (batched, eval mode, right padding as in training), so the
score is the one the reward-model trainer's evaluation reports. Load the model with
:func:`mmalign.models.reward.load_reward_model`.

Prompts may be a string (one user turn, the images first), or chat messages whose contents are strings or
mmalign's parts (``{"type": "image"}``, ``{"type": "text", "text": ...}``); when no message holds an image part,
the row's images are put before the first user message's text. Images come from the ``images`` column (a list per
row: paths under ``image_root``, PIL images or blobs) or the ``image`` column (one per row), as TRL reads them.
A None completion scores 0.0 (malformed); an empty one is scored as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmalign.data.records import Message, assistant, text_message, user_prompt
from mmalign.errors import ConfigError, DataError
from mmalign.rewards.base import column, completion_text


def prompt_messages(prompt: Any, n_images: int, row: int) -> list[Message]:
    """The prompt as mmalign chat messages with ``n_images`` image placeholders (module docstring)."""
    if isinstance(prompt, str):
        return user_prompt(prompt, n_images)
    if not isinstance(prompt, list) or not all(isinstance(m, dict) and "role" in m for m in prompt):
        raise DataError(f"reward model: row {row}: a prompt must be a string or a list of messages", field="prompt")
    messages = [text_message(m["role"], m["content"]) if isinstance(m.get("content"), str) else m for m in prompt]
    if n_images and not any(p.get("type") == "image" for m in messages for p in m["content"]):
        first = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
        if first is None:
            raise DataError(f"reward model: row {row}: images but no user message to hold them", field="prompt")
        messages[first] = {**messages[first], "content": [{"type": "image"}] * n_images + messages[first]["content"]}
    return messages


class RewardModelReward:
    """``reward(prompts, completions, images=...)`` = the reward model's score of each completion."""

    def __init__(
        self,
        loaded: Any,
        batch_size: int = 8,
        image_root: str | Path | None = None,
        share_prefix: bool | str = "auto",
        max_length: int | None = None,
        name: str = "reward_model",
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"reward model: batch_size must be at least 1, got {batch_size}")
        self.loaded, self.batch_size, self.image_root = loaded, batch_size, image_root
        self.share_prefix, self.max_length = share_prefix, max_length
        self.__name__ = name

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        from mmalign.models.examples import Example
        from mmalign.models.reward import score_examples

        n = len(completions)
        if len(prompts) != n:
            raise DataError(f"reward model: {len(prompts)} prompts for {n} completions", field="prompt")
        images = column("images", kwargs, n)
        single = column("image", kwargs, n)
        examples, rows = [], []
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            text = completion_text(completion)
            if text is None:
                continue
            row_images = list(images[i] or ([] if single[i] is None else [single[i]]))
            messages = prompt_messages(prompt, len(row_images), i)
            examples.append(Example(f"completion {i}", messages, row_images, assistant(text)))
            rows.append(i)
        out: list[float | None] = [0.0] * n
        if examples:
            scores = score_examples(
                self.loaded, examples, self.batch_size, self.image_root, self.share_prefix, self.max_length
            )
            for i, score in zip(rows, scores, strict=True):
                out[i] = score
        return out
