"""What every reward shares: TRL's calling convention, reading a completion's text, verl's adapter, weighted sums.

**The convention** (TRL 1.16's ``reward_funcs``, trl/trainer/grpo_trainer.py ``_calculate_rewards``): a reward
is a callable ``reward(prompts, completions, **kwargs) -> list[float | None]``, one value per completion.
``completions`` are plain strings (standard datasets) or, for conversational ones, each a list of one message
``[{"role": "assistant", "content": "..."}]`` whose content is a string (or a list of ``{"type": "text", ...}``
parts); ``kwargs`` holds the dataset's other columns as lists aligned with the completions (a prompt's columns
repeated for each of its G completions), plus TRL's ``completion_ids``, ``trainer_state``, ``log_extra`` and
``log_metric``, which our rewards ignore.

**None or 0** (as TRL expects): a reward returns **None** when it does not apply to the row (its ground-truth
column is missing or None there, as in multi-task training: a count reward on a captioning row); TRL then leaves
it out of that completion's sum, and a completion every reward skips gets advantage 0. A completion that is
*malformed* (no number where a count was asked, no box, no yes/no, not matching the format; a None or empty
completion) gets **0.0**: it answered, and wrongly, so it should rank below its siblings that answered well.

**verl**: :func:`as_verl` turns a reward into verl's ``compute_score(data_source, solution_str, ground_truth,
extra_info=None) -> float``; :func:`from_verl` turns a ``compute_score`` into a reward.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from mmalign.errors import ConfigError, DataError

Reward = Callable[..., list[float | None]]
"""``reward(prompts, completions, **columns) -> list[float | None]`` (the module docstring)."""

TRL_EXTRAS = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")
"""Keyword arguments TRL passes besides the dataset's columns."""

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)


def completion_text(completion: Any) -> str | None:
    """The text of one completion: a string, a list of messages (their contents joined), or None (None).

    ``[{"role": "assistant", "content": "Two."}]`` → ``"Two."``; content parts ``[{"type": "text", "text":
    "Two"}, {"type": "text", "text": "."}]`` → ``"Two."`` (non-text parts are skipped).
    """
    if completion is None or isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if not isinstance(completion, list):
        raise DataError(f"a completion must be a string or a list of messages, got {type(completion).__name__}")
    texts = []
    for message in completion:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        elif content is not None:
            raise DataError(f"a message's content must be a string or a list of parts, got {type(content).__name__}")
    return "".join(texts)


def answer_text(completion: Any) -> str | None:
    """The answer part of a completion: inside its last ``<answer>…</answer>`` when it has one (the think/answer
    format), else its whole text."""
    text = completion_text(completion)
    if text is None:
        return None
    found = _ANSWER.findall(text)
    return found[-1] if found else text


def column(name: str, kwargs: dict[str, Any], n: int) -> list[Any]:
    """The dataset column ``name`` as a list of ``n`` values (all None when the dataset has no such column)."""
    values = kwargs.get(name)
    if values is None:
        return [None] * n
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or len(values) != n:
        count = len(values) if isinstance(values, Sequence) else type(values).__name__
        raise DataError(f"column {name!r} must hold one value per completion ({n}), got {count}", field=name)
    return list(values)


def named(reward: Reward, name: str) -> Reward:
    """Give a reward the name TRL logs it under (``rewards/<name>/mean``)."""
    try:
        reward.__name__ = name  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        object.__setattr__(reward, "__name__", name)
    return reward


class WeightedSum:
    """Σ wᵢ·rewardᵢ per completion. A reward's None counts as 0 while another reward scored the completion; the
    sum is None when every reward returned None (so it is skipped, as in TRL's own sum over ``reward_funcs``).

    ``WeightedSum([(object_f1, 1.0), (format_reward, 0.5)])``: F1 0.8 and format 1 → 1.3.
    """

    def __init__(self, terms: Sequence[tuple[Reward, float]], name: str = "weighted_sum") -> None:
        if not terms:
            raise ConfigError("a weighted sum needs at least one (reward, weight)")
        for reward, weight in terms:
            if not callable(reward) or isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ConfigError(f"a weighted sum takes (callable, number) pairs, got ({reward!r}, {weight!r})")
        self.terms = list(terms)
        self.__name__ = name

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        total: list[float | None] = [None] * len(completions)
        for reward, weight in self.terms:
            values = reward(prompts=prompts, completions=completions, **kwargs)
            if len(values) != len(completions):
                name = getattr(reward, "__name__", type(reward).__name__)
                raise DataError(f"reward {name!r} returned {len(values)} values for {len(completions)} completions")
            for i, value in enumerate(values):
                if value is not None:
                    total[i] = (total[i] or 0.0) + weight * float(value)
        return total


def as_verl(reward: Reward, ground_truth_column: str = "ground_truth", none_score: float = 0.0) -> Callable:
    """verl's ``compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float`` from a reward.

    The reward sees one completion, ``solution_str``, with columns: ``extra_info``'s items, then
    ``ground_truth``'s items when it is a dict (``{"count": 3}`` → column ``count``) or else ``ground_truth``
    itself as column ``ground_truth_column``; ``data_source`` as column ``data_source``; the prompt is
    ``extra_info["prompt"]`` when given. A None reward (not applicable) scores ``none_score``.
    """

    def compute_score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: dict | None = None) -> float:
        columns = dict(extra_info or {})
        prompt = columns.pop("prompt", None)
        if isinstance(ground_truth, dict):
            columns.update(ground_truth)
        else:
            columns[ground_truth_column] = ground_truth
        columns["data_source"] = data_source
        (value,) = reward(prompts=[prompt], completions=[solution_str], **{k: [v] for k, v in columns.items()})
        return none_score if value is None else float(value)

    compute_score.__name__ = f"{getattr(reward, '__name__', type(reward).__name__)}_compute_score"
    return compute_score


def from_verl(compute_score: Callable, ground_truth_column: str = "ground_truth", data_source: str = "") -> Reward:
    """A reward from verl's ``compute_score``: each completion's text as ``solution_str``, column
    ``ground_truth_column`` as ``ground_truth``, the other columns as ``extra_info``; a dict result's ``score``."""

    def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        n = len(completions)
        truths = column(ground_truth_column, kwargs, n)
        others = {k: column(k, kwargs, n) for k in kwargs if k not in (*TRL_EXTRAS, ground_truth_column)}
        out: list[float | None] = []
        for i, completion in enumerate(completions):
            extra = {k: v[i] for k, v in others.items()}
            source = extra.pop("data_source", data_source)
            score = compute_score(source, completion_text(completion) or "", truths[i], extra)
            out.append(float(score["score"] if isinstance(score, dict) else score))
        return out

    return named(reward, getattr(compute_score, "__name__", "compute_score"))
