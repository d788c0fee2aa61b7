"""The judge model as a reward: an external judge rates each completion 1-10 (Silkie's rubric, as the ``judge``
pair scorer and LLaVA-Bench use it; :func:`mmalign.judge.score_answers`), all of a batch in one parallel, cached
call.

The question is the prompt's text (a string, or the text of the last user message); the images come from the
``images`` (or ``image``) column, as paths or PIL images; with ``facts_column`` (e.g. ``"objects"``) the judge is
also told "Objects in the image: …" (LLaVA-Bench style), as the ``judge`` pair scorer's ``facts`` option does.
A None completion scores 0.0 (malformed); a judgment the judge did not give (its reply unreadable, the request
failed) is None, so TRL skips it rather than blame the completion.
"""

from __future__ import annotations

from typing import Any

from mmalign.errors import DataError
from mmalign.rewards.base import column, completion_text


def question_text(prompt: Any, row: int) -> str:
    """A prompt's question: itself when a string, else the text of its last user message."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return completion_text([users[-1]]) or ""
    raise DataError(
        f"judge reward: row {row}: the prompt has no user message to read the question from", field="prompt"
    )


class JudgeReward:
    """``reward(prompts, completions, images=...)`` = the judge's 1-10 score of each completion."""

    def __init__(self, client: Any, facts_column: str | None = None, name: str = "judge") -> None:
        self.client, self.facts_column = client, facts_column
        self.__name__ = name

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        from mmalign.judge import ScoreItem, score_answers

        n = len(completions)
        images, single = column("images", kwargs, n), column("image", kwargs, n)
        facts = column(self.facts_column, kwargs, n) if self.facts_column else [None] * n
        items, rows = [], []
        for i, completion in enumerate(completions):
            text = completion_text(completion)
            if text is None:
                continue
            row_images = list(images[i] or ([] if single[i] is None else [single[i]]))
            context = None
            if facts[i] is not None:
                names = [o.get("name", "") if isinstance(o, dict) else str(o) for o in facts[i]]
                context = "Objects in the image: " + (", ".join(names) or "none")
            items.append(ScoreItem(question_text(prompts[i], i), text, row_images, context=context, id=str(i)))
            rows.append(i)
        out: list[float | None] = [0.0] * n
        if items:
            for i, judgment in zip(rows, score_answers(self.client, items, desc="judging completions"), strict=True):
                out[i] = judgment.score
        return out
