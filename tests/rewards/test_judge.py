"""The judge reward: questions, facts and images go to the judge; its 1-10 scores come back in order."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from mmalign.errors import DataError
from mmalign.rewards.judge import JudgeReward, question_text


class StubJudge:
    """Answers each conversation with the next reply, and keeps what it was sent."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.sent: list = []

    def complete_many(self, conversations, *, rubric_version="", return_errors=False, desc=""):
        self.sent += conversations
        return [self.replies.pop(0) for _ in conversations]


def test_question_text():
    assert question_text("How many?", 0) == "How many?"
    chat = [
        {"role": "user", "content": "First."},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]},
    ]
    assert question_text(chat, 0) == "How many?"
    with pytest.raises(DataError, match="row 2: the prompt has no user message"):
        question_text([{"role": "system", "content": "x"}], 2)


def test_judge_scores_in_order_and_none_when_unreadable():
    judge = StubJudge("Rating: 7", "[[3]]", "I cannot rate this.")
    reward = JudgeReward(judge, facts_column="objects")
    red = Image.new("RGB", (8, 8), (220, 40, 40))
    completions = ["A red circle.", None, [{"role": "assistant", "content": "A star."}], "Nothing."]
    out = reward(
        ["Describe.", "Describe.", [{"role": "user", "content": "Describe it."}], "Describe."],
        completions,
        images=[[red], [red], [], None],
        objects=[["red circle"], None, [{"name": "blue star"}], None],
    )
    assert out == [7.0, 0.0, 3.0, None]  # None completion: 0.0, not sent; unreadable reply: None
    assert len(judge.sent) == 3
    sent = [json.dumps(conversation) for conversation in judge.sent]
    assert "Objects in the image: red circle" in sent[0] and "data:image/png;base64," in sent[0]
    assert "Describe it." in sent[1] and "Objects in the image: blue star" in sent[1] and "data:image" not in sent[1]
    assert "Objects in the image" not in sent[2]
    assert reward.__name__ == "judge"
