"""The reward-model reward scores what score_examples scores, from TRL-style prompts, completions and images."""

from __future__ import annotations

import pytest
from PIL import Image

from mmalign.data.records import assistant, user_prompt
from mmalign.errors import ConfigError, DataError
from mmalign.models import load
from mmalign.models.examples import Example
from mmalign.models.loading import LoadedModel
from mmalign.models.reward import RewardModel, score_examples
from mmalign.rewards.model import RewardModelReward, prompt_messages


def test_prompt_messages_puts_the_images_first():
    assert prompt_messages("Describe.", 1, 0) == user_prompt("Describe.", 1)
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Describe."}]
    out = prompt_messages(chat, 2, 0)
    assert out[0] == {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
    assert out[1]["content"] == [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Describe."}]
    parts = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}]
    assert prompt_messages(parts, 1, 0) == parts  # placeholders already there: as they are
    with pytest.raises(DataError, match="row 3: images but no user message"):
        prompt_messages([{"role": "system", "content": "x"}], 1, 3)
    with pytest.raises(DataError, match="row 0: a prompt must be a string or a list of messages"):
        prompt_messages(7, 0, 0)


def test_reward_model_reward_equals_score_examples(tiny_dir):
    base = load(tiny_dir("tiny-llava"))
    loaded = LoadedModel(**{**vars(base), "model": RewardModel(base.model, seed=5)})
    red, blue = Image.new("RGB", (48, 48), (220, 40, 40)), Image.new("RGB", (32, 48), (40, 40, 220))
    prompts = ["Describe the image.", [{"role": "user", "content": "Is there a red circle?"}], "Describe the image."]
    completions = ["A red circle.", [{"role": "assistant", "content": "Yes."}], None]
    reward = RewardModelReward(loaded, batch_size=2, name="rm")
    got = reward(prompts, completions, images=[[red], [blue], [red]])
    expected = score_examples(
        loaded,
        [
            Example("a", user_prompt("Describe the image.", 1), [red], assistant("A red circle.")),
            Example("b", user_prompt("Is there a red circle?", 1), [blue], assistant("Yes.")),
        ],
        batch_size=1,
    )
    assert got[:2] == pytest.approx(expected, abs=1e-5)
    assert got[2] == 0.0  # a None completion is malformed
    assert got[0] != pytest.approx(got[1], abs=1e-4)  # the scores differ: the reward reads the completion
    # TRL's single-image column gives the same
    assert reward(prompts[:1], completions[:1], image=[red]) == pytest.approx(expected[:1], abs=1e-5)
    assert reward.__name__ == "rm"
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        RewardModelReward(loaded, batch_size=0)
