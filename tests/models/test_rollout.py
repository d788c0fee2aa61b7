"""Group rollouts: each distinct prompt + images is prefilled once, greedy completions equal ``generate``'s, the
returned log-probs are the model's (a training forward over :meth:`Rollouts.batch` gives them back), sampling is
seeded, and top-k / top-p cut what may be drawn."""

from __future__ import annotations

import pytest
import torch

from mmalign.errors import ConfigError
from mmalign.models import generate, load, sequence_logps
from mmalign.models.prefix import shared_prefix_logps
from mmalign.models.rollout import SamplingOptions, sample_groups

FAMILIES = ("tiny-llava", "tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-idefics3", "tiny-llama")

pytestmark = pytest.mark.usefixtures("one_thread")


def items_for(loaded, mk):
    n = 1 if loaded.multimodal else 0
    return [
        mk.item(0, "Is there a red circle in the image?", images=[mk.image()][:n]),
        mk.item(1, "Describe.", images=[mk.image((40, 80, 220), (80, 48))][:n]),
    ]


@pytest.mark.parametrize("preset", FAMILIES)
def test_greedy_groups_equal_generate(tiny_dir, preset, mk):
    loaded = load(tiny_dir(preset))
    items = items_for(loaded, mk)
    rollouts = sample_groups(loaded, items, 2, SamplingOptions(max_new_tokens=6, do_sample=False))
    expected = generate(loaded, items, max_new_tokens=6)
    assert rollouts.texts == [expected[0], expected[0], expected[1], expected[1]]
    assert rollouts.completion_ids.shape[0] == 4 and rollouts.prompt_index.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("preset", FAMILIES)
def test_sampled_log_probs_are_the_models(tiny_dir, preset, mk):
    """A training forward over prompt + sampled tokens gives back each token's log-prob (temperature 1)."""
    loaded = load(tiny_dir(preset))
    rollouts = sample_groups(loaded, items_for(loaded, mk), 3, SamplingOptions(max_new_tokens=8), seed=1)
    batch = rollouts.batch()
    with torch.no_grad():
        plain = sequence_logps(loaded.model, batch, token_level=True)
        shared = shared_prefix_logps(loaded.model, batch, token_level=True)
    width = rollouts.token_logps.shape[1]
    n = rollouts.completion_mask.sum(-1)
    assert plain.n_tokens.tolist() == n.tolist()
    for out in (plain, shared):
        got = torch.zeros_like(rollouts.token_logps)
        got[:, : out.token_logps.shape[1]] = out.token_logps[:, :width]
        assert torch.allclose(got, rollouts.token_logps, atol=1e-4), (got - rollouts.token_logps).abs().max()
    tokenizer = loaded.tokenizer
    for row, text in enumerate(rollouts.texts):
        kept = rollouts.completion_ids[row][rollouts.completion_mask[row].bool()].tolist()
        assert text == tokenizer.decode(kept, skip_special_tokens=True).strip()


def test_the_vision_tower_runs_once_per_distinct_prompt(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-llava"))
    items = items_for(loaded, mk)
    seen: list[int] = []
    hook = loaded.model.model.vision_tower.register_forward_hook(lambda m, a, out: seen.append(a[0].shape[0]))
    try:
        sample_groups(loaded, [items[0], items[1], items[0]], 4, SamplingOptions(max_new_tokens=3))
    finally:
        hook.remove()
    assert seen == [2]  # one call, two distinct images: item 0 appears twice, each prompt's 4 completions share it


def test_sampling_is_seeded_and_cut_by_top_k(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-llava"))
    items = items_for(loaded, mk)
    options = SamplingOptions(max_new_tokens=5, temperature=1.5)
    state = torch.random.get_rng_state()
    a = sample_groups(loaded, items, 4, options, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = sample_groups(loaded, items, 4, options, seed=3)
    c = sample_groups(loaded, items, 4, options, seed=4)
    assert torch.equal(a.completion_ids, b.completion_ids) and not torch.equal(a.completion_ids, c.completion_ids)
    greedy = sample_groups(loaded, items, 1, SamplingOptions(max_new_tokens=5, do_sample=False))
    top1 = sample_groups(loaded, items, 3, SamplingOptions(max_new_tokens=5, top_k=1), seed=9)
    assert top1.texts == [greedy.texts[0]] * 3 + [greedy.texts[1]] * 3  # top-k 1 leaves only the argmax


def test_bad_options_are_refused(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-llava"))
    with pytest.raises(ConfigError, match="group_size"):
        sample_groups(loaded, items_for(loaded, mk), 0)
    with pytest.raises(ConfigError, match="temperature"):
        SamplingOptions(temperature=0)
    with pytest.raises(ConfigError, match="no prompts"):
        sample_groups(loaded, [], 2)


def test_image_placeholders_are_never_drawn(tiny_dir, mk):
    """Even a model that would rather say <image> samples other tokens: a completion holding a placeholder would
    have no image behind it."""
    loaded = load(tiny_dir("tiny-llava"))
    image_token = loaded.model.config.image_token_id
    with torch.no_grad():
        loaded.model.lm_head.weight[image_token] *= 0
        loaded.model.lm_head.weight[image_token] += loaded.model.lm_head.weight.abs().max() * 50  # its logit wins
    greedy = sample_groups(loaded, items_for(loaded, mk), 2, SamplingOptions(max_new_tokens=4, do_sample=False))
    sampled = sample_groups(loaded, items_for(loaded, mk), 2, SamplingOptions(max_new_tokens=4), seed=2)
    for rollouts in (greedy, sampled):
        assert not (rollouts.completion_ids == image_token).any()
        assert (rollouts.token_logps[rollouts.completion_mask.bool()] < -5).all()  # the model's own log-probs
