"""Rewards for online RL: plain callables with TRL's ``reward_funcs`` signature, so users bring their own and
take ours to TRL, and :func:`as_verl` gives verl's ``compute_score``.

    rewards = [object_f1, WeightedSum([(count_exact, 1.0), (think_answer_format, 0.2)])]
    rewards[0](prompts, completions, objects=[["red circle"], ...])  # -> [0.67, ...]

:mod:`~mmalign.rewards.base` holds the convention (None: the reward does not apply; 0.0: a malformed completion),
:mod:`~mmalign.rewards.verifiers` the shapes-world verifiers, :mod:`~mmalign.rewards.model` a trained reward model
(``RewardModelReward``), :mod:`~mmalign.rewards.judge` the judge model (``JudgeReward``); import those two from
their modules (they load mmalign.models and mmalign.judge).
"""

from mmalign.rewards.base import (
    Reward,
    WeightedSum,
    answer_text,
    as_verl,
    completion_text,
    from_verl,
    named,
)
from mmalign.rewards.verifiers import (
    THINK_ANSWER,
    CountReward,
    FormatReward,
    GroundingReward,
    ObjectReward,
    YesNoReward,
    count_exact,
    grounding_iou,
    iou,
    object_chair_s,
    object_f1,
    object_precision,
    object_recall,
    parse_box,
    think_answer_format,
    yes_no,
)

REWARDS: dict[str, Reward] = {
    reward.__name__: reward
    for reward in (
        object_f1,
        object_precision,
        object_recall,
        object_chair_s,
        count_exact,
        yes_no,
        grounding_iou,
        think_answer_format,
    )
}
"""The built-in rewards a config names (``grpo.rewards``), by the name TRL logs them under."""


def get_reward(name: str) -> Reward:
    """The built-in reward called ``name``; an unknown name is refused with the list of known ones."""
    from mmalign.errors import ConfigError

    if name not in REWARDS:
        raise ConfigError(f"unknown reward {name!r}; built in: {', '.join(REWARDS)} (or pass Python callables)")
    return REWARDS[name]


__all__ = [
    "REWARDS",
    "THINK_ANSWER",
    "CountReward",
    "FormatReward",
    "GroundingReward",
    "ObjectReward",
    "Reward",
    "WeightedSum",
    "YesNoReward",
    "answer_text",
    "as_verl",
    "completion_text",
    "count_exact",
    "from_verl",
    "get_reward",
    "grounding_iou",
    "iou",
    "named",
    "object_chair_s",
    "object_f1",
    "object_precision",
    "object_recall",
    "parse_box",
    "think_answer_format",
    "yes_no",
]
