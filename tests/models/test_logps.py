"""Response log-probs against a token-by-token reference, for every family; preference pairs in one forward.

The reference, :func:`reference_logps` at the end, is this file's test oracle: slow, obviously correct, one
sequence at a time, one token at a time. For each record alone (no padding, batch of one) and each response
token t, the model runs on the prefix ``tokens[:t]`` with the record's images and the last position's
distribution scores token t. Nothing is shared with :func:`mmalign.models.logps.sequence_logps` but the
collator's tokenization, so padding, shifting, masking, batching and ``logits_to_keep`` are all checked against
it. Cost: one forward per response token; use it on tiny models and short responses only.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from mmalign.errors import ConfigError
from mmalign.models import load, preference_logps, sequence_logps
from mmalign.models.collate import IGNORE, PER_TOKEN, Batch, Collator
from mmalign.models.examples import Input, as_record, examples_from
from mmalign.models.logps import LogpOutput, model_device_dtype, tempered

FAMILIES = ("tiny-llava", "tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-idefics3", "tiny-llama")
TOL = {"atol": 1e-5, "rtol": 0}


def records_for(loaded, mk):
    """SFT records with different prompt and response lengths (and image sizes, for dynamic resolution)."""
    n = 1 if loaded.multimodal else 0
    return [
        mk.sft(0, "Yes.", question="Is there a red circle in the image?", images=[mk.image()][:n]),
        mk.sft(1, "There is a small blue star and a large red circle.", images=[mk.image(size=(64, 32))][:n]),
        mk.sft(2, "Red.", question="What colour is the circle?", images=[mk.image((40, 80, 220))][:n]),
    ]


@pytest.mark.parametrize("preset", FAMILIES)
def test_sequence_logps_equal_the_token_by_token_reference(tiny_dir, preset, mk):
    loaded = load(tiny_dir(preset))
    records = records_for(loaded, mk)
    collator = loaded.collator()
    batch = collator(records)
    with torch.no_grad():
        out = sequence_logps(loaded.model, batch, token_level=True)
    ref = reference_logps(loaded.model, collator, records)
    assert out.n_tokens.tolist() == ref.n_tokens.tolist() == [3, 13, 3]  # words + "." + <|end|>
    assert out.sum.dtype == torch.float32
    torch.testing.assert_close(out.token_logps.double(), ref.token_logps, **TOL)
    torch.testing.assert_close(out.sum.double(), ref.sum, **TOL)
    torch.testing.assert_close(out.mean.double(), ref.mean, **TOL)
    assert torch.equal(out.token_mask, ref.token_mask)


@pytest.mark.parametrize("preset", FAMILIES)
def test_preference_logps_one_forward_equal_the_reference(tiny_dir, preset, mk):
    loaded = load(tiny_dir(preset))
    n = 1 if loaded.multimodal else 0
    other = {"rejected_images": [mk.image((40, 170, 60), (32, 64))]} if n else {}
    pairs = [
        mk.pref(0, images=[mk.image()][:n], **other),
        mk.pref(1, "Red.", "Green and blue.", question="What colour is it?", images=[mk.image()][:n]),
    ]
    collator = loaded.collator()
    batch = collator(pairs)
    calls = []
    hook = loaded.model.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        out = preference_logps(loaded.model, batch, token_level=True)
    hook.remove()
    assert len(calls) == 1  # chosen and rejected (with its own images) in one forward
    ref = reference_logps(loaded.model, collator, pairs)  # rows: chosen 0, chosen 1, rejected 0, rejected 1
    torch.testing.assert_close(out.chosen.sum.double(), ref.sum[:2], **TOL)
    torch.testing.assert_close(out.rejected.sum.double(), ref.sum[2:], **TOL)
    torch.testing.assert_close(out.rejected.mean.double(), ref.mean[2:], **TOL)
    assert out.chosen.n_tokens.tolist() == [7, 3] and out.rejected.n_tokens.tolist() == [10, 5]
    torch.testing.assert_close(out.rejected.token_logps.double(), ref.token_logps[2:, :10], **TOL)


@pytest.mark.parametrize("preset", FAMILIES)
def test_a_cut_response_keeps_the_log_probs_of_its_tokens(tiny_dir, preset, mk):
    loaded = load(tiny_dir(preset))
    n = 1 if loaded.multimodal else 0
    long = "There is a red circle and a small blue star. " * 150  # over the collator's text budget: cut as text first
    records = [*records_for(loaded, mk), mk.sft(3, long.strip(), images=[mk.image((40, 170, 60), (32, 64))][:n])]
    full = loaded.collator()(records)
    limit = int(full.prompt_lengths.max()) + 2  # the longest prompt keeps 2 response tokens, the others more
    collator = loaded.collator(max_length=limit)
    assert collator.text_budget is not None and collator.text_budget < len(long)
    cut = collator(records)
    assert torch.equal(cut.prompt_lengths, full.prompt_lengths)  # prompts and their image tokens are never cut
    for key in ("image_grid_thw", "pixel_values"):
        if key in full.extras:
            assert torch.equal(cut.extras[key], full.extras[key]), key
    with torch.no_grad():
        a = sequence_logps(loaded.model, full, token_level=True)
        b = sequence_logps(loaded.model, cut, token_level=True)
    kept = torch.minimum(a.n_tokens, limit - full.prompt_lengths)
    assert b.n_tokens.tolist() == kept.tolist() and int(kept.min()) == 2 and bool((kept < a.n_tokens).any())
    assert b.token_logps is not None and a.token_logps is not None
    width = b.token_logps.shape[1]
    torch.testing.assert_close(b.token_logps, a.token_logps[:, :width] * b.token_mask, **TOL)
    torch.testing.assert_close(b.sum, (a.token_logps[:, :width] * b.token_mask).sum(-1), **TOL)


def test_rejected_images_change_only_the_rejected_side(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-llava"))
    red, green = mk.image((220, 40, 40)), mk.image((40, 170, 60))
    same = loaded.collator()([mk.pref(0, images=[red])])
    other = loaded.collator()([mk.pref(0, images=[red], rejected_images=[green])])
    with torch.no_grad():
        a, b = preference_logps(loaded.model, same), preference_logps(loaded.model, other)
    torch.testing.assert_close(a.chosen.sum, b.chosen.sum, atol=1e-5, rtol=0)
    assert abs(float(a.rejected.sum - b.rejected.sum)) > 1e-4


def test_uniform_model_gives_minus_log_vocab_per_token(tiny_dir, mk):
    # With a zero LM head every next-token distribution is uniform over V tokens, so each response token has
    # log p = -log V: "Yes." + <|end|> is 3 tokens -> sum = -3 log V, mean = -log V.
    loaded = load(tiny_dir("tiny-llava"))
    torch.nn.init.zeros_(loaded.model.lm_head.weight)
    vocab = loaded.model.lm_head.weight.shape[0]
    batch = loaded.collator()([mk.sft(0, "Yes."), mk.sft(1, "There is a red circle.")])
    with torch.no_grad():
        out = sequence_logps(loaded.model, batch)
    assert out.n_tokens.tolist() == [3, 7]
    expected = torch.tensor([-3 * math.log(vocab), -7 * math.log(vocab)])
    torch.testing.assert_close(out.sum, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.mean, torch.full((2,), -math.log(vocab)), atol=1e-6, rtol=0)


def test_a_row_scores_the_same_alone_and_in_a_padded_batch(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-qwen2-vl"))
    records = records_for(loaded, mk)
    with torch.no_grad():
        together = sequence_logps(loaded.model, loaded.collator()(records))
        alone = [sequence_logps(loaded.model, loaded.collator()([r])).sum for r in records]
    torch.testing.assert_close(together.sum, torch.cat(alone), atol=1e-5, rtol=0)


def test_gradients_reach_lora_adapters_and_logps_stay_fp32_in_bf16(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-idefics3"), lora={"r": 4, "alpha": 8, "dropout": 0.0}, gradient_checkpointing=True)
    loaded.model.train()
    out = preference_logps(loaded.model, loaded.collator()([mk.pref(0)]))
    (out.chosen.sum - out.rejected.sum).backward()
    grads = {n: p.grad for n, p in loaded.model.named_parameters() if p.requires_grad}
    assert grads and all(".lora_" in n for n in grads)
    # LoRA starts with B = 0: the update B A is zero, so dL/dA = B^T (...) = 0 while dL/dB = (...) A^T is not
    assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)
    assert all(g is None or g.abs().sum() == 0 for n, g in grads.items() if "lora_A" in n)
    bf16 = load(tiny_dir("tiny-llava"), dtype="bfloat16")
    with torch.no_grad():
        low = sequence_logps(bf16.model, bf16.collator()([mk.sft(0)]))
    assert next(bf16.model.parameters()).dtype == torch.bfloat16 and low.sum.dtype == torch.float32


def test_models_without_logits_to_keep_score_the_same(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-llava"))

    class FullLogits(torch.nn.Module):
        """The same model behind a forward that has no ``logits_to_keep`` (computes every position's logits)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, use_cache=False, **pixels):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache, **pixels)

    batch = loaded.collator()([mk.sft(0), mk.sft(1, "Yes.")])
    with torch.no_grad():
        kept, full = sequence_logps(loaded.model, batch), sequence_logps(FullLogits(loaded.model), batch)
    torch.testing.assert_close(kept.sum, full.sum, atol=1e-5, rtol=0)


def test_logps_refuse_batches_they_cannot_score(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-llava"))
    with pytest.raises(ConfigError, match="training batch"):
        sequence_logps(loaded.model, loaded.collator(mode="generate")([mk.item(0)]))
    with pytest.raises(ConfigError, match="not a preference batch"):
        preference_logps(loaded.model, loaded.collator()([mk.sft(0)]))


# ------------------------------------------------------------------------------- the oracle


@torch.no_grad()
def reference_logps(model: Any, collator: Collator, items: list[Input]) -> LogpOutput:
    """Response log-probs of each row that ``collator(items)`` would make, in the same row order
    (for preference pairs: every chosen response, then every rejected one)."""
    device, dtype = model_device_dtype(model)
    units = [examples_from(as_record(item)) for item in items]
    width = max((len(unit) for unit in units), default=0)
    rows: list[list[float]] = []
    for side in range(width):
        for unit in units:
            single = collator([unit[side]])
            if len(single):  # skipped when it does not fit max_length, as in the batch
                rows.append(_token_by_token(model, single.to(device, dtype)))
    n_tokens = torch.tensor([len(r) for r in rows], dtype=torch.long)
    sums = torch.tensor([sum(r) for r in rows], dtype=torch.float64)
    token_logps = torch.zeros(len(rows), max(max(n_tokens.tolist(), default=0), 1), dtype=torch.float64)
    for i, r in enumerate(rows):
        token_logps[i, : len(r)] = torch.tensor(r, dtype=torch.float64)
    mask = torch.arange(token_logps.shape[1]) < n_tokens.unsqueeze(-1)
    return LogpOutput(sums, sums / n_tokens.clamp(min=1), n_tokens, token_logps, mask)


def _token_by_token(model: Any, batch: Batch) -> list[float]:
    """log p(token t | tokens < t, images) for each labelled t, each from its own forward on the prefix."""
    assert batch.labels is not None and len(batch) == 1
    labels = batch.labels[0]
    out = []
    for t in range(1, labels.shape[0]):
        if int(labels[t]) == IGNORE:
            continue
        inputs = {k: v[:, :t] if k in PER_TOKEN else v for k, v in batch.model_inputs().items()}
        logits = model(**inputs, use_cache=False).logits[0, -1].double()
        out.append(float(logits.log_softmax(-1)[labels[t]]))
    return out


@pytest.mark.parametrize("preset", ["tiny-llava", "tiny-qwen2-vl"])
def test_a_tempered_scorer_gives_log_probs_of_the_logits_divided_by_the_temperature(tiny_dir, preset, mk):
    from mmalign.models.prefix import shared_prefix_logps

    loaded = load(tiny_dir(preset))
    records = records_for(loaded, mk)
    batch = loaded.collator()(records)
    with torch.no_grad():
        logits = loaded.model(**batch.model_inputs()).logits.double()
        for scorer in (sequence_logps, shared_prefix_logps):
            out = tempered(scorer, 0.5)(loaded.model, batch, token_level=True)
            labels = batch.labels[:, 1:]
            mask = labels != IGNORE
            by_hand = (logits[:, :-1] / 0.5).log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            expected = [by_hand[i][mask[i]] for i in range(len(records))]
            got = [out.token_logps[i][out.token_mask[i]].double() for i in range(len(records))]
            for e, g in zip(expected, got, strict=True):
                torch.testing.assert_close(g, e, **TOL)
        plain = sequence_logps(loaded.model, batch, token_level=True)  # the hook is gone afterwards
        assert tempered(sequence_logps, 1.0) is sequence_logps
        assert not torch.allclose(plain.sum, tempered(sequence_logps, 0.5)(loaded.model, batch).sum)
        torch.testing.assert_close(plain.sum, sequence_logps(loaded.model, batch).sum)
