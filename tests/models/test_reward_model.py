"""The reward model: its head reads the last response token (checked by hand), it saves as a Hugging Face folder
that ``load_reward_model`` and the plain-transformers recipe of its docstring load to the same rewards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmalign.errors import ConfigError
from mmalign.models import load
from mmalign.models.collate import IGNORE
from mmalign.models.processors import save_upstream_processor
from mmalign.models.reward import (
    HEAD_FILE,
    HEAD_KEY,
    RewardModel,
    batch_rewards,
    last_token_index,
    load_reward_model,
    new_head,
)

FAMILIES = ("tiny-llava", "tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-idefics3", "tiny-llama")
TOL = {"atol": 1e-5, "rtol": 0}

pytestmark = pytest.mark.usefixtures("one_thread")


def records_for(loaded, mk):
    """Preference pairs of different lengths (images of different sizes, for dynamic resolution)."""
    n = 1 if loaded.multimodal else 0
    return [
        mk.pref(0, "Yes.", "No.", question="Is there a red circle?", images=[mk.image()][:n]),
        mk.pref(
            1, "There is a small blue star and a large red circle.", "A star.", images=[mk.image(size=(64, 32))][:n]
        ),
    ]


def test_last_token_index_right_and_left_padding():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [2, 4, 4, 0]


@pytest.mark.parametrize("preset", FAMILIES)
def test_reward_is_the_head_on_the_last_response_tokens_hidden_state(tiny_dir, preset, mk):
    loaded = load(tiny_dir(preset))
    model = RewardModel(loaded.model, seed=3)
    batch = loaded.collator(mode="train")(records_for(loaded, mk))  # 4 rows: chosen, chosen, rejected, rejected
    with torch.no_grad():
        rewards = batch_rewards(model, batch)
        hidden = loaded.model.base_model(**batch.model_inputs()).last_hidden_state
    w, b = model.reward_head.weight.detach()[0], model.reward_head.bias.detach()[0]
    assert rewards.shape == (4,) and rewards.dtype == torch.float32
    for row in range(4):
        # the last response token: the last labelled position (right padding), which is the last non-pad one
        labelled = (batch.labels[row] != IGNORE).nonzero().flatten()
        last = int(labelled[-1])
        assert last == int(batch.attention_mask[row].nonzero().flatten()[-1])
        by_hand = sum(float(hidden[row, last, k]) * float(w[k]) for k in range(len(w))) + float(b)
        assert float(rewards[row]) == pytest.approx(by_hand, abs=1e-5)
    assert len(set(batch.attention_mask.sum(-1).tolist())) > 1  # rows of different lengths: padding was involved


def test_new_head_is_seeded_small_and_float32():
    a, b, c = new_head(128, seed=1), new_head(128, seed=1), new_head(128, seed=2)
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)
    assert a.weight.dtype == torch.float32 and float(a.bias.detach()) == 0.0
    assert float(a.weight.std()) == pytest.approx(1 / 129, rel=0.2)  # N(0, 1/(H+1)^2)


@pytest.mark.parametrize("preset", ["tiny-llava", "tiny-qwen2-vl"])
def test_save_then_load_reward_model_and_plain_transformers_give_the_same_rewards(tiny_dir, preset, mk, tmp_path):
    loaded = load(tiny_dir(preset))
    model = RewardModel(loaded.model, seed=5)
    with torch.no_grad():
        model.reward_head.bias.fill_(0.25)
    records = records_for(loaded, mk)
    batch = loaded.collator(mode="train")(records)
    with torch.no_grad():
        before = batch_rewards(model, batch)
    out = tmp_path / "rm"
    model.save_pretrained(out)
    save_upstream_processor(loaded.processor, out)
    config = json.loads((out / "config.json").read_text())
    assert config[HEAD_KEY] == {"hidden_size": 128, "token": "last_non_padding", "file": HEAD_FILE}
    assert set(load_file(out / HEAD_FILE)) == {"weight", "bias"}

    again = load_reward_model(out)
    assert isinstance(again.model, RewardModel)
    with torch.no_grad():
        torch.testing.assert_close(batch_rewards(again.model, again.collator(mode="train")(records)), before, **TOL)
        torch.testing.assert_close(RewardModel.from_pretrained(out)(**batch.model_inputs()), before, **TOL)

    # the recipe of mmalign.models.reward's docstring, with nothing from mmalign but the collated inputs
    from transformers import AutoModelForImageTextToText

    plain = AutoModelForImageTextToText.from_pretrained(out)
    spec = json.loads(Path(out, "config.json").read_text())["mmalign_reward_head"]
    head = torch.nn.Linear(spec["hidden_size"], 1)
    head.load_state_dict(load_file(Path(out, spec["file"])))
    inputs = batch.model_inputs()
    with torch.no_grad():
        hidden = plain.base_model(**inputs).last_hidden_state
        last = (inputs["attention_mask"] * torch.arange(hidden.shape[1])).argmax(-1)
        reward = head(hidden[torch.arange(len(hidden)), last].float()).squeeze(-1)
    torch.testing.assert_close(reward, before, **TOL)


def test_plain_processor_inputs_match_the_collator(tiny_dir, mk, tmp_path):
    """The docstring's processor call (prompt text + response text, one string per row) gives the collator's
    tokens on the tiny LLaVA, so its reward is the same."""
    from transformers import AutoProcessor

    loaded = load(tiny_dir("tiny-llava"))
    record = records_for(loaded, mk)[1]
    batch = loaded.collator(mode="train")([record])
    processor = AutoProcessor.from_pretrained(tiny_dir("tiny-llava"))
    prompt = processor.apply_chat_template(record.prompt, tokenize=False, add_generation_prompt=True)
    full = processor.apply_chat_template(record.prompt + record.chosen, tokenize=False)
    inputs = processor(text=[full], images=[record.images[0]], return_tensors="pt")
    assert full.startswith(prompt)
    assert inputs["input_ids"][0].tolist() == batch.input_ids[0].tolist()
    torch.testing.assert_close(inputs["pixel_values"], batch.extras["pixel_values"][:1])  # row 0: chosen


def test_not_a_reward_model_and_a_wrong_head_are_refused(tiny_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"not a reward model: its config\.json has no mmalign_reward_head"):
        load_reward_model(tiny_dir("tiny-llava"))
    loaded = load(tiny_dir("tiny-llava"))
    with pytest.raises(ConfigError, match="reads 64 features; the model has 128"):
        RewardModel(loaded.model, torch.nn.Linear(64, 1))
    out = tmp_path / "rm"
    RewardModel(loaded.model).save_pretrained(out)
    (out / HEAD_FILE).unlink()
    with pytest.raises(ConfigError, match=r"has no reward_head\.safetensors"):
        load_reward_model(out)


@pytest.mark.parametrize("preset", FAMILIES)
def test_shared_prefix_rewards_equal_the_plain_forward(tiny_dir, preset, mk):
    """Each pair's prompt + images computed once gives the concatenated forward's rewards (1e-5), and for the
    tiny LLaVA the same gradients; an image-side pair (its own rejected images) gets a prefix per side."""
    from mmalign.models.prefix import plan_prefixes

    loaded = load(tiny_dir(preset))
    model = RewardModel(loaded.model, seed=2)
    records = records_for(loaded, mk)
    if loaded.multimodal:
        records.append(mk.pref(2, images=[mk.image()], rejected_images=[mk.image((40, 80, 220))]))
    batch = loaded.collator(mode="train")(records)
    plan = plan_prefixes(model.base, batch)
    assert plan.reason is None and plan.n_prefixes == len(records) + loaded.multimodal  # it really shares
    plain = batch_rewards(model, batch)
    shared = batch_rewards(model, batch, share_prefix=True)
    torch.testing.assert_close(shared, plain, **TOL)
    if preset != "tiny-llava":
        return
    grads = []
    for rewards in (plain, shared):
        model.zero_grad()
        (rewards * torch.arange(1.0, len(rewards) + 1)).sum().backward(retain_graph=True)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "reward_head.weight" in grads[0]
    assert any("vision_tower" in name for name in grads[0])
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_score_examples_equals_one_row_at_a_time_in_any_batch_size(tiny_dir, mk):
    from mmalign.models.examples import examples_from
    from mmalign.models.loading import LoadedModel
    from mmalign.models.reward import score_examples

    base = load(tiny_dir("tiny-llava"))
    loaded = LoadedModel(**{**vars(base), "model": RewardModel(base.model, seed=5)})
    examples = [e for r in records_for(loaded, mk) for e in examples_from(r)]  # 4 rows, two prompts
    collator = loaded.collator(mode="train")
    with torch.no_grad():
        alone = [batch_rewards(loaded.model, collator([e])).item() for e in examples]
    seen: list[int] = []
    for batch_size, share in ((1, False), (3, True), (4, "auto")):
        got = score_examples(loaded, examples, batch_size=batch_size, share_prefix=share, progress=seen.append)
        assert got == pytest.approx(alone, abs=1e-5)
    assert seen == [1, 1, 1, 1, 3, 1, 4] and loaded.model.training  # progress per batch; training mode restored
    with pytest.raises(ConfigError, match="no response"):
        score_examples(loaded, [examples[0].__class__(examples[0].id, examples[0].prompt, examples[0].images)])
