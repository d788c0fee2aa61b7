"""The reward convention: completion text, weighted sums, verl's adapter both ways, and TRL 1.16's own
``_calculate_rewards`` calling our rewards (conversational completions, dataset columns, None)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from trl.trainer.grpo_trainer import GRPOTrainer

from mmalign.errors import ConfigError, DataError
from mmalign.rewards import (
    WeightedSum,
    answer_text,
    as_verl,
    completion_text,
    count_exact,
    from_verl,
    named,
    object_f1,
    think_answer_format,
    yes_no,
)


def test_completion_text_of_every_form():
    assert completion_text("Two.") == "Two."
    assert completion_text([{"role": "assistant", "content": "Two."}]) == "Two."
    parts = [{"type": "text", "text": "Two"}, {"type": "image"}, {"type": "text", "text": "."}]
    assert completion_text([{"role": "assistant", "content": parts}]) == "Two."
    assert completion_text(None) is None
    with pytest.raises(DataError, match="must be a string or a list of messages"):
        completion_text(3)
    assert answer_text("<think>a</think><answer>1</answer> <answer>2</answer>") == "2"  # the last answer
    assert answer_text("no tags") == "no tags"


def test_weighted_sum_by_hand():
    reward = WeightedSum([(count_exact, 1.0), (think_answer_format, 0.5)], name="count_and_format")
    completions = ["<think>x</think><answer>3</answer>", "3", "<think>x</think><answer>4</answer>", "4"]
    # count (1, 1, 0, 0) + 0.5·format (1, 0, 1, 0); the last row has no count: format alone, 0.5·0 = 0
    out = reward(None, completions, count=[3, 3, 3, None])
    assert out == [1.5, 1.0, 0.5, 0.0]
    assert reward.__name__ == "count_and_format"
    # every term None → None (skipped by TRL)
    assert WeightedSum([(count_exact, 1.0), (yes_no, 2.0)])(None, ["3"], count=[None], answer=[None]) == [None]
    with pytest.raises(ConfigError, match=r"\(callable, number\) pairs"):
        WeightedSum([(count_exact, "1")])
    with pytest.raises(DataError, match="returned 1 values for 2 completions"):
        WeightedSum([(lambda prompts, completions, **kw: [1.0], 1.0)])(None, ["a", "b"])


def test_as_verl_by_hand():
    score = as_verl(count_exact, ground_truth_column="count")
    assert score("shapes", "There are three.", 3) == 1.0
    assert score("shapes", "Four.", 3) == 0.0
    assert score("shapes", "3", None) == 0.0  # not applicable → none_score
    assert as_verl(count_exact, none_score=-1.0)("shapes", "3", {"count": None}) == -1.0
    # a dict ground truth gives the columns; extra_info adds more (and the prompt)
    f1 = as_verl(object_f1)
    assert (
        f1("shapes", "A red circle.", {"objects": ["red circle", "blue star"]}, {"prompt": "Describe."}) == 0.5 / 0.75
    )
    assert score.__name__ == "count_exact_compute_score"


def test_from_verl_by_hand():
    seen = []

    def compute_score(data_source, solution_str, ground_truth, extra_info=None):
        seen.append((data_source, extra_info))
        return {"score": float(solution_str.strip() == ground_truth)} if ground_truth == "b" else 0.5

    reward = from_verl(compute_score, ground_truth_column="solution", data_source="mine")
    completions = ["b", [{"role": "assistant", "content": "a"}]]
    assert reward(["p", "p"], completions, solution=["b", "b"], level=[1, 2], trainer_state=object()) == [1.0, 0.0]
    assert seen == [("mine", {"level": 1}), ("mine", {"level": 2})]  # TRL's extras are not extra_info
    assert reward.__name__ == "compute_score"
    assert named(reward, "exact").__name__ == "exact"


def test_round_trip_through_verl():
    back = from_verl(as_verl(yes_no, ground_truth_column="answer"), ground_truth_column="answer")
    assert back(None, ["Yes.", "No."], answer=["yes", "yes"]) == [1.0, 0.0]


def test_trl_calculate_rewards_calls_our_rewards():
    """TRL's real reward call: conversational completions, dataset columns repeated per completion, None → NaN."""
    rewards = [object_f1, count_exact, WeightedSum([(yes_no, 1.0), (think_answer_format, 0.5)])]
    inputs = [
        {
            "prompt": [{"role": "user", "content": "Describe."}],
            "objects": ["red circle"],
            "count": None,
            "answer": None,
        },
        {"prompt": [{"role": "user", "content": "How many?"}], "objects": None, "count": 2, "answer": None},
        {"prompt": [{"role": "user", "content": "A star?"}], "objects": None, "count": None, "answer": "no"},
    ]
    completions = [
        [{"role": "assistant", "content": "A red circle and a blue star."}],
        [{"role": "assistant", "content": "Two."}],
        [{"role": "assistant", "content": "<think>none</think><answer>No.</answer>"}],
    ]
    trainer = SimpleNamespace(
        accelerator=SimpleNamespace(device=torch.device("cpu"), is_main_process=True),
        args=SimpleNamespace(report_to=[]),
        reward_funcs=rewards,
        reward_processing_classes=[None] * 3,
        reward_func_names=[r.__name__ for r in rewards],
        state=SimpleNamespace(global_step=0),
        environments=None,
        _log_completion_extra=lambda *args: None,
        _log_metric=lambda *args: None,
    )
    prompts = [x["prompt"] for x in inputs]
    got = GRPOTrainer._calculate_rewards(trainer, inputs, prompts, completions, [[1]] * 3)
    nan = math.nan
    # row 0: F1 of (precision 1/2, recall 1) = 2/3; the format reward scores every row (0, 0, 1) so the sum is
    # 0.5·0 = 0 where yes/no has no answer, and 1 + 0.5 = 1.5 on row 2
    expected = torch.tensor([[2 / 3, nan, 0.0], [nan, 1.0, 0.0], [nan, nan, 1.5]])
    assert torch.allclose(got, expected, equal_nan=True)
