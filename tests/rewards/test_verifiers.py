"""The shapes-world verifiers on hand-checked completions, malformed ones included (0.0), and rows without ground
truth (None)."""

from __future__ import annotations

import pytest

from mmalign.errors import ConfigError, DataError
from mmalign.rewards import (
    THINK_ANSWER,
    FormatReward,
    GroundingReward,
    ObjectReward,
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


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


TRUTH = ["red circle", "blue star"]


def test_object_rewards_by_hand():
    completions = [
        "A red circle and a green square.",  # 1 of 2 mentions present; 1 of 2 objects named
        "Two red circles next to a large blue star.",  # both present, both named (sizes, counts ignored)
        "A green square, a green square and a red circle.",  # 2 of 3 mentions absent ("each counts")
        "An image with shapes.",  # no mention: precision 1 (CHAIR's), recall 0
    ]
    objects = [TRUTH] * 4
    assert object_precision(None, completions, objects=objects) == pytest.approx([0.5, 1.0, 1 / 3, 1.0])
    assert object_recall(None, completions, objects=objects) == pytest.approx([0.5, 1.0, 0.5, 0.0])
    # F1: 2·0.5·0.5/1 = 0.5; 1; 2·(1/3)·(1/2)/(5/6) = 0.4; precision 1, recall 0 → 0
    assert object_f1(None, completions, objects=objects) == pytest.approx([0.5, 1.0, 0.4, 0.0])
    assert object_chair_s(None, completions, objects=objects) == [0.0, 1.0, 0.0, 1.0]


def test_object_truth_from_scene_rows_and_conversational_completions():
    scene_objects = [{"name": "red circle", "box": [0, 0, 0.5, 0.5]}, {"name": "blue star", "box": [0.5, 0, 1, 0.5]}]
    completion = chat("<think>I see a circle.</think><answer>A red circle.</answer>")  # scored on the answer
    assert object_recall(None, [completion], objects=[scene_objects]) == [0.5]


def test_object_rewards_malformed_and_missing_truth():
    # None or empty completion: 0.0 even for precision (an empty caption is no clean caption); no truth: None
    out = object_precision(None, [None, "   ", "a red circle"], objects=[TRUTH, TRUTH, None])
    assert out == [0.0, 0.0, None]
    assert object_f1(None, ["a red circle"]) == [None]  # no objects column at all
    with pytest.raises(DataError, match="row 0: expected a list of object names"):
        object_f1(None, ["a red circle"], objects=["red circle"])
    with pytest.raises(ConfigError, match="metric must be one of"):
        ObjectReward("chair_i")


def test_object_reward_with_coco_vocabulary():
    reward = ObjectReward("precision", vocabulary="coco")
    # "puppy" is a dog (present), "cat" is absent: 1/2
    assert reward(None, ["A puppy chases a cat."], objects=[["dog"]]) == [0.5]


def test_count_by_hand():
    completions = ["There are three.", "3", chat("Three objects."), "<answer>2</answer>", "Many.", None, "Zero."]
    counts = [3, 3, 3, 3, 3, 3, 0]
    assert count_exact(None, completions, count=counts) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert count_exact(None, ["3"], count=[None]) == [None]
    with pytest.raises(DataError, match="expected an integer count"):
        count_exact(None, ["3"], count=["3"])


def test_yes_no_by_hand():
    completions = ["Yes.", "no", "Yes, no doubt.", "I think not.", "NO!", chat("yes"), "Yesterday."]
    answers = ["yes", "yes", "yes", "no", "no", True, "yes"]
    # first whole word yes/no decides; "not" and "Yesterday" are neither → 0.0
    assert yes_no(None, completions, answer=answers) == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    with pytest.raises(DataError, match="expected 'yes' or 'no'"):
        yes_no(None, ["yes"], answer=["maybe"])


def test_parse_box_formats():
    assert parse_box("[0.1, 0.2, 0.5, 0.6]") == [0.1, 0.2, 0.5, 0.6]  # fractions
    assert parse_box("at (100, 200, 500, 600)") == pytest.approx([0.1, 0.2, 0.5, 0.6])  # 0-1000 grid
    assert parse_box("<|box_start|>(100,200),(500,600)<|box_end|>") == pytest.approx([0.1, 0.2, 0.5, 0.6])
    assert parse_box("[16, 32, 48, 64]", scale=64) == [0.25, 0.5, 0.75, 1.0]  # pixels of a 64-pixel image
    assert parse_box("no box here, just (1, 2)") is None


def test_iou_by_hand():
    # [0, 0, 0.5, 0.5] vs [0.25, 0.25, 0.75, 0.75]: overlap 0.25² = 0.0625, union 0.25 + 0.25 − 0.0625 = 0.4375
    assert iou([0, 0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]) == pytest.approx(0.0625 / 0.4375)
    assert iou([0, 0, 0.5, 0.5], [0.6, 0.6, 1, 1]) == 0.0
    assert iou([0.5, 0, 0.1, 0.5], [0, 0, 1, 1]) == 0.0  # empty box (x1 < x0)


def test_grounding_by_hand():
    truth = [0.0, 0.0, 0.5, 0.5]
    completions = ["[0.25, 0.25, 0.75, 0.75]", "(0,0),(500,500)", "It is at the top left.", None, "[0.5, 0.5, 0, 0]"]
    out = grounding_iou(None, completions, box=[truth] * 5)
    assert out == pytest.approx([0.0625 / 0.4375, 1.0, 0.0, 0.0, 0.0])
    # several true boxes: the best IoU
    assert grounding_iou(None, ["[0.5, 0.5, 1, 1]"], box=[[truth, [0.5, 0.5, 1.0, 1.0]]]) == [1.0]
    assert grounding_iou(None, ["[0, 0, 1, 1]"], box=[None]) == [None]
    with pytest.raises(DataError, match="expected a box"):
        grounding_iou(None, ["[0, 0, 1, 1]"], box=[[0, 0, 1]])
    with pytest.raises(ConfigError, match="scale must be > 0"):
        GroundingReward(scale=0)


def test_format_by_hand():
    completions = [
        "<think>two shapes</think>\n<answer>Two.</answer>",
        "<think>two shapes</think>Two.",  # no answer tags
        "Two. <think>x</think><answer>2</answer>",  # text before the think tags
        chat("<think>\nmulti\nline\n</think> <answer>yes</answer>\n"),
        None,
    ]
    assert think_answer_format(None, completions) == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert FormatReward(r"(Yes|No)\.")(None, ["Yes.", "Yes. Definitely."]) == [1.0, 0.0]
    with pytest.raises(ConfigError, match="bad pattern"):
        FormatReward("(")
    assert THINK_ANSWER.startswith("<think>")


def test_column_length_must_match():
    with pytest.raises(DataError, match=r"column 'count' must hold one value per completion \(2\), got 1"):
        count_exact(None, ["1", "2"], count=[1])


def test_rewards_are_named_and_hashable_like_functions():
    assert {object_f1, count_exact, yes_no, grounding_iou} and object_f1.__name__ == "object_f1"
    assert ObjectReward("f1") is not object_f1 and ObjectReward("f1") != object_f1  # identity, as functions
    assert ObjectReward("recall", name="recall_coco", vocabulary="coco").__name__ == "recall_coco"
