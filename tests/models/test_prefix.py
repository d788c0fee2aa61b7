"""The shared-prefix forward against the concatenated one: values and gradients, every family, mixed prompts."""

from __future__ import annotations

import logging

import pytest
import torch

import mmalign.models.prefix as prefix
from mmalign.errors import ConfigError
from mmalign.models import Example, load, preference_logps, sequence_logps
from mmalign.models.prefix import plan_prefixes, shared_prefix_logps, shared_prefix_preference_logps

FAMILIES = ("tiny-llava", "tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-idefics3", "tiny-llama")
TOL = {"atol": 1e-4, "rtol": 0}


def mixed_pairs(mk, multimodal: bool):
    """Four pairs: prompts of different lengths, a pair whose rejected side has its own (differently sized)
    image, and a pair repeating pair 0's prompt and image."""
    n = int(multimodal)
    red, blue = [mk.image()][:n], [mk.image((40, 80, 220))][:n]
    own = {"rejected_images": [mk.image((40, 170, 60), (32, 64))]} if multimodal else {}
    return [
        mk.pref(0, images=red),
        mk.pref(1, "Red.", "Green and a blue star.", question="What colour is the circle in the picture?", images=blue),
        mk.pref(2, "Yes.", "No.", question="Is there a circle?", images=red, **own),
        mk.pref(3, "A circle.", "A star.", images=red),
    ]


def run(fn, model, batch):
    """``fn``'s log-probs, the gradient of a loss that reads sums, means and token log-probs, and each model
    call's number of rows."""
    rows: list[int] = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: rows.append(len(kw["input_ids"])), with_kwargs=True)
    model.zero_grad(set_to_none=True)
    out = fn(model, batch, token_level=True)
    hook.remove()
    weights = torch.arange(1.0, 1.0 + len(out.chosen.sum))
    loss = (weights * out.chosen.sum).sum() - 3 * out.rejected.mean.sum() + out.rejected.token_logps.sum() / 7
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, grads, rows


@pytest.mark.parametrize("preset", FAMILIES)
def test_shared_prefix_equals_the_concatenated_forward(tiny_dir, preset, mk):
    loaded = load(tiny_dir(preset))
    model = loaded.model.train()  # dropout is 0 in the tiny models; train mode as in training
    batch = loaded.collator()(mixed_pairs(mk, loaded.multimodal))
    assert len(set(batch.prompt_lengths.tolist())) > 1  # prompts of different lengths: padding inside the cache
    plan = plan_prefixes(model, batch)
    # rows: chosen 0..3, rejected 0..3; pair 3 repeats pair 0's prompt; rejected 2 has its own image (not text-only)
    expected = [0, 1, 2, 0, 0, 1, 3, 0] if loaded.multimodal else [0, 1, 2, 0, 0, 1, 2, 0]
    assert plan.reason is None and plan.row_prefix == expected
    naive, naive_grads, naive_rows = run(preference_logps, model, batch)
    shared, shared_grads, shared_rows = run(shared_prefix_preference_logps, model, batch)
    assert naive_rows == [8] and shared_rows == [plan.n_prefixes, 8]  # the prefixes once, then 8 continuations
    for side in ("chosen", "rejected"):
        a, b = getattr(naive, side), getattr(shared, side)
        torch.testing.assert_close(b.sum, a.sum, **TOL)
        torch.testing.assert_close(b.mean, a.mean, **TOL)
        torch.testing.assert_close(b.token_logps, a.token_logps, **TOL)
        assert torch.equal(b.n_tokens, a.n_tokens) and torch.equal(b.token_mask, a.token_mask)
    assert naive.rejected.n_tokens.tolist() == [10, 7, 3, 4]  # the response lengths differ too
    # every parameter that gets a gradient gets the same one (vision tower: once, summed over the responses)
    assert shared_grads.keys() == naive_grads.keys() and len(naive_grads) > 20
    for name, grad in naive_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, **TOL, msg=name)


def rope_positions(model, fn, batch) -> tuple[list[torch.Tensor], object]:
    """The position ids every call of ``model``'s text rotary embedding received while ``fn`` scored ``batch``."""
    rotary = next(m for name, m in model.named_modules() if name.endswith("language_model.rotary_emb"))
    seen: list[torch.Tensor] = []
    hook = rotary.register_forward_pre_hook(lambda m, args: seen.append(args[1].clone()))
    with torch.no_grad():
        out = fn(model, batch, token_level=True)
    hook.remove()
    return seen, out


@pytest.mark.parametrize("preset", ["tiny-qwen2-vl", "tiny-qwen2.5-vl"])
@pytest.mark.parametrize("cut", [False, True], ids=["whole", "cut"])
def test_mrope_positions_of_the_shared_path_are_the_concatenated_ones(tiny_dir, preset, cut, mk):
    loaded = load(tiny_dir(preset))
    model = loaded.model
    pairs = mixed_pairs(mk, True)
    batch = loaded.collator()(pairs)
    if cut:  # responses cut by max_length: the longest prompt keeps 2 response tokens
        batch = loaded.collator(max_length=int(batch.prompt_lengths.max()) + 2)(pairs)
        assert int((batch.labels != -100).sum(-1).min()) == 2
    plan = plan_prefixes(model, batch)
    assert plan.reason is None
    # the concatenated forward: the model numbers the whole sequence itself (get_rope_index), (3, B, T)
    (full,), naive = rope_positions(model, preference_logps, batch)
    owner = next(m for m in model.modules() if callable(getattr(m, "get_rope_index", None)))
    expected, _ = owner.get_rope_index(
        batch.input_ids,
        batch.extras["mm_token_type_ids"],
        image_grid_thw=batch.extras["image_grid_thw"],
        attention_mask=batch.attention_mask,
    )
    assert full.shape == (3, *batch.input_ids.shape)
    ends = batch.attention_mask.sum(-1)
    for row, end in enumerate(ends.tolist()):
        assert torch.equal(full[:, row, :end], expected[:, row, :end])
    # images really are 3-D: height and width positions differ from the temporal ones inside the image
    assert not torch.equal(full[0], full[1])
    # the shared path: prefixes (prompt minus its last token), then each row from its last prompt token on
    (prefixes, continuations), shared = rope_positions(model, shared_prefix_preference_logps, batch)
    assert prefixes.shape[:2] == (3, plan.n_prefixes) and continuations.shape[:2] == (3, len(batch))
    for row, (end, start) in enumerate(zip(ends.tolist(), (batch.prompt_lengths - 1).tolist(), strict=True)):
        joined = torch.cat([prefixes[:, plan.row_prefix[row], :start], continuations[:, row, : end - start]], dim=1)
        assert torch.equal(joined, full[:, row, :end]), row
    for side in ("chosen", "rejected"):
        a, b = getattr(naive, side), getattr(shared, side)
        torch.testing.assert_close(b.sum, a.sum, atol=1e-5, rtol=0)
        torch.testing.assert_close(b.token_logps, a.token_logps, atol=1e-5, rtol=0)


def test_mdpo_conditional_rows_share_the_same_two_forwards(tiny_dir, mk):
    # mDPO's three sequences per pair in one batch: chosen | m, rejected | m, chosen | m' (corrupted image).
    loaded = load(tiny_dir("tiny-qwen2-vl"))
    pairs = [mk.pref(0), mk.pref(1, "Red.", "Blue.", question="What colour is it?", images=[mk.image((40, 80, 220))])]
    corrupted = [mk.image((90, 90, 90)), mk.image((10, 10, 10), (32, 32))]
    rows = [Example(p.id, p.prompt, p.images, p.chosen) for p in pairs]
    rows += [Example(p.id, p.prompt, p.images, p.rejected) for p in pairs]
    rows += [Example(p.id, p.prompt, [image], p.chosen) for p, image in zip(pairs, corrupted, strict=True)]
    batch = loaded.collator()(rows)
    assert batch.n_pairs == 0 and len(batch) == 6
    plan = plan_prefixes(loaded.model, batch)
    assert plan.row_prefix == [0, 1, 0, 1, 2, 3]  # 2n distinct prefixes for 3n rows
    calls: list[int] = []
    hook = loaded.model.register_forward_pre_hook(lambda m, a, kw: calls.append(len(kw["input_ids"])), with_kwargs=True)
    with torch.no_grad():
        shared = shared_prefix_logps(loaded.model, batch, token_level=True)
    hook.remove()
    with torch.no_grad():
        naive = sequence_logps(loaded.model, batch, token_level=True)
    assert calls == [4, 6]
    torch.testing.assert_close(shared.sum, naive.sum, **TOL)
    torch.testing.assert_close(shared.token_logps, naive.token_logps, **TOL)
    # the corrupted image changes the chosen response's log-prob (the conditional term is not a copy)
    assert (shared.sum[4:] - shared.sum[:2]).abs().min() > 1e-3


def test_a_batch_without_shared_prefixes_runs_the_concatenated_forward(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-llava"))
    pairs = [mk.pref(i, images=[mk.image()], rejected_images=[mk.image((40, 170, 60))]) for i in range(2)]
    pairs[1] = mk.pref(
        1,
        "Red.",
        "Green.",
        question="What colour?",
        images=[mk.image((1, 2, 3))],
        rejected_images=[mk.image((40, 170, 60))],
    )
    batch = loaded.collator()(pairs)
    plan = plan_prefixes(loaded.model, batch)
    assert plan.reason == "no two rows share a prompt and its images" and plan.n_prefixes == 4
    with torch.no_grad():
        naive = preference_logps(loaded.model, batch)
    _, _, rows = run(shared_prefix_preference_logps, loaded.model, batch)
    assert rows == [4]  # one forward, like the concatenated path
    with torch.no_grad():
        shared = shared_prefix_preference_logps(loaded.model, batch)
    torch.testing.assert_close(shared.rejected.sum, naive.rejected.sum, atol=0, rtol=0)


def test_models_it_cannot_split_fall_back_with_one_warning(tiny_dir, mk, caplog, monkeypatch):
    monkeypatch.setattr(prefix, "_warned", set())
    loaded = load(tiny_dir("tiny-llava"))
    loaded.model.config.model_type = "some_other_vlm"  # unknown image-input layout
    batch = loaded.collator()(mixed_pairs(mk, True)[:2])
    assert "not one whose image inputs can be split" in plan_prefixes(loaded.model, batch).reason
    with caplog.at_level(logging.WARNING, logger="mmalign.models.prefix"), torch.no_grad():
        first = shared_prefix_preference_logps(loaded.model, batch)
        shared_prefix_preference_logps(loaded.model, batch)
    assert sum("share_prefix" in r.message for r in caplog.records) == 1  # once per reason and process
    with torch.no_grad():
        torch.testing.assert_close(first.chosen.sum, preference_logps(loaded.model, batch).chosen.sum, **TOL)


def test_lora_model_gets_the_same_adapter_gradients(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-idefics3"), lora={"r": 4, "alpha": 8, "dropout": 0.0})
    model = loaded.model.train()
    for name, p in model.named_parameters():  # B = 0 at start: give the update a value so A gets a gradient too
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(0))
    batch = loaded.collator()(mixed_pairs(mk, True)[:2])
    naive, naive_grads, _ = run(preference_logps, model, batch)
    shared, shared_grads, _ = run(shared_prefix_preference_logps, model, batch)
    torch.testing.assert_close(shared.chosen.sum, naive.chosen.sum, **TOL)
    assert naive_grads and all(".lora_" in name for name in naive_grads)
    for name, grad in naive_grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(shared_grads[name], grad, **TOL, msg=name)


def test_gradient_checkpointing_is_refused_while_training(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-llava"), gradient_checkpointing=True)
    batch = loaded.collator()([mk.pref(0)])
    loaded.model.train()
    with pytest.raises(ConfigError, match="gradient checkpointing"):
        shared_prefix_preference_logps(loaded.model, batch)
    loaded.model.eval()  # checkpointing only acts in training: scoring a batch works
    with torch.no_grad():
        shared = shared_prefix_preference_logps(loaded.model, batch)
        torch.testing.assert_close(shared.chosen.sum, preference_logps(loaded.model, batch).chosen.sum, **TOL)


def test_batches_it_cannot_score_are_refused(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-llava"))
    with pytest.raises(ConfigError, match="not a preference batch"):
        shared_prefix_preference_logps(loaded.model, loaded.collator()([mk.sft(0)]))
    with pytest.raises(ConfigError, match="training batch"):
        shared_prefix_logps(loaded.model, loaded.collator(mode="generate")([mk.item(0)]))
