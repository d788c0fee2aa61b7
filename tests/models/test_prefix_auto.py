"""``share_prefix: auto``: the shared-prefix forward where the sizes make it faster, the concatenated one elsewhere."""

from __future__ import annotations

import pytest
import torch

import mmalign.models.prefix as prefix
from mmalign.models import load, save_tiny, sequence_logps, spec_for
from mmalign.models.prefix import auto_prefix_logps, plan_prefixes, prefix_saving
from mmalign.train.pref_batch import row_scorer


def calls(model, batch, **kw) -> list[int]:
    """Rows of each model call while ``auto_prefix_logps`` scores ``batch`` (no gradient)."""
    rows: list[int] = []
    hook = model.register_forward_pre_hook(lambda m, a, k: rows.append(len(k["input_ids"])), with_kwargs=True)
    with torch.no_grad():
        auto_prefix_logps(model, batch, **kw)
    hook.remove()
    return rows


def test_saving_by_hand(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-llava"))
    batch = loaded.collator()([mk.pref(0, "There is a red circle.", "There is a red circle and a blue star.")])
    prompt, ends, width = int(batch.prompt_lengths[0]), batch.attention_mask.sum(-1).tolist(), batch.input_ids.shape[1]
    assert batch.prompt_lengths.tolist() == [prompt, prompt] and max(ends) == width
    # one prefix of prompt - 1 tokens; two continuations as wide as the longer (last prompt token + response)
    expected = 1 - (1 * (prompt - 1) + 2 * (width - prompt + 1)) / (2 * width)
    assert prefix_saving(batch, plan_prefixes(loaded.model, batch)) == pytest.approx(expected)
    assert 0 < expected < 0.5  # a pair shares at most half of its positions


def test_auto_follows_the_threshold(tiny_dir, mk, monkeypatch):
    loaded = load(tiny_dir("tiny-llava"))
    batch = loaded.collator()([mk.pref(i, images=[mk.image((200, 40 + 90 * i, 40))]) for i in range(2)])
    saving = prefix_saving(batch, plan_prefixes(loaded.model, batch))
    monkeypatch.setattr(prefix, "AUTO_MIN_SAVING", saving + 0.01)
    assert calls(loaded.model, batch) == [4]  # the concatenated forward: one call over the four rows
    monkeypatch.setattr(prefix, "AUTO_MIN_SAVING", saving - 0.01)
    assert calls(loaded.model, batch) == [2, 4]  # two prefixes, then four continuations
    with torch.no_grad():
        torch.testing.assert_close(
            auto_prefix_logps(loaded.model, batch).sum, sequence_logps(loaded.model, batch).sum, atol=1e-4, rtol=0
        )


def test_the_demo_sizes_run_concatenated_and_llava_sizes_shared(tiny_dir, mk, tmp_path):
    """9 image tokens (the tiny model) with the world's captions leave out less than the break-even; 576 (LLaVA-1.5)
    leave out more."""
    small = load(tiny_dir("tiny-llava"))
    caption = "There is a small red circle, a large blue star, a green square and a small yellow heart."
    wrong = caption.replace("a green square", "a green square, a purple triangle")  # a world-style pair
    pairs = [mk.pref(i, caption, wrong, images=[mk.image((200, 40 + 90 * i, 40))]) for i in range(2)]
    batch = small.collator()(pairs)
    assert prefix_saving(batch, plan_prefixes(small.model, batch)) < prefix.AUTO_MIN_SAVING
    assert calls(small.model, batch) == [4]
    spec = spec_for("tiny-llava", image_size=384, patch_size=16)  # 24 x 24 = 576 image tokens
    large = load(save_tiny(spec, tmp_path / "large", preset="tiny-llava"))
    pairs = [mk.pref(i, images=[mk.image((200, 40 + 90 * i, 40), (384, 384))]) for i in range(2)]
    batch = large.collator()(pairs)
    assert prefix_saving(batch, plan_prefixes(large.model, batch)) > prefix.AUTO_MIN_SAVING
    assert calls(large.model, batch) == [2, 4]


def test_auto_trains_with_gradient_checkpointing_on_the_plain_forward(tiny_dir, mk, monkeypatch):
    monkeypatch.setattr(prefix, "AUTO_MIN_SAVING", 0.0)  # sharing would be chosen without checkpointing
    loaded = load(tiny_dir("tiny-llava"), gradient_checkpointing=True)
    batch = loaded.collator()([mk.pref(0)])
    model = loaded.model.train()
    out = auto_prefix_logps(model, batch)  # no refusal: the plain forward runs
    out.sum.sum().backward()
    assert any(p.grad is not None for p in model.parameters())


def test_row_scorer_modes():
    assert row_scorer("auto") == (auto_prefix_logps, True)
    assert row_scorer(True) == (prefix.shared_prefix_logps, True)
    assert row_scorer(False) == (sequence_logps, False)
