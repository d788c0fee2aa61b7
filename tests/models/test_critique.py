"""Critique reward models: the layout (prompt + response + request + critique, labels on the critique only), the
one forward that gives rewards and logits (its last hidden state is the plain head path's, every family), the mode
saved in the head spec and loaded back to equal rewards, scoring that generates the critique first (and
``score_examples`` refusing a critique model), and hostile critique fields and specs."""

from __future__ import annotations

import json

import pytest
import torch

from mmalign.data.io import read_records, write_records
from mmalign.errors import ConfigError, DataError
from mmalign.models import load
from mmalign.models.collate import IGNORE
from mmalign.models.critique import (
    CRITIQUE_REQUEST,
    critique_example,
    critique_pair,
    critique_rewards,
    generate_critiques,
    record_critiques,
    score_critiqued,
    score_with,
)
from mmalign.models.examples import examples_from
from mmalign.models.loading import LoadedModel
from mmalign.models.processors import save_upstream_processor
from mmalign.models.reward import HEAD_KEY, RewardModel, batch_rewards, load_reward_model, score_examples

FAMILIES = ("tiny-llava", "tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-idefics3", "tiny-llama")
TOL = {"atol": 1e-5, "rtol": 0}
GOOD, BAD = "Every object in the answer is in the image.", "There is no green star in the image."

pytestmark = pytest.mark.usefixtures("one_thread")


def critiqued(mk, n_images=1, **kw):
    record = mk.pref(0, **kw, images=[mk.image()][:n_images])
    record.meta |= {"chosen_critique": GOOD, "rejected_critique": BAD}
    return record


def test_layout_labels_exactly_the_critique_and_its_end_of_turn(tiny_dir, mk):
    loaded = load(tiny_dir("tiny-llava"))
    record = critiqued(mk)
    chosen, rejected = critique_pair(record, "Is it right?")
    assert chosen.prompt == [
        *record.prompt,
        *record.chosen,
        {"role": "user", "content": [{"type": "text", "text": "Is it right?"}]},
    ]
    assert chosen.response == [{"role": "assistant", "content": [{"type": "text", "text": GOOD}]}]
    assert rejected.prompt[1] == record.rejected[0] and rejected.images == record.images
    batch = loaded.collator(mode="train")([chosen, rejected])
    tokenizer = loaded.tokenizer
    for row, critique in ((0, GOOD), (1, BAD)):
        labelled = (batch.labels[row] != IGNORE).nonzero().flatten()
        assert tokenizer.decode(batch.labels[row, labelled]) == critique + "<|end|>"
        # the labelled span is contiguous and ends at the row's last token: where the head reads
        assert labelled.tolist() == list(range(int(labelled[0]), int(labelled[-1]) + 1))
        assert int(labelled[-1]) == int(batch.attention_mask[row].nonzero().flatten()[-1])
        text = tokenizer.decode(batch.input_ids[row, : int(labelled[0])])
        answer = record.chosen if row == 0 else record.rejected
        assert text.endswith(answer[0]["content"][0]["text"] + "<|end|><|user|>Is it right?<|end|><|assistant|>")


@pytest.mark.parametrize("preset", FAMILIES)
def test_one_forward_gives_the_plain_rewards_and_the_models_logits(tiny_dir, preset, mk):
    """``with_logits``: hidden_states[-1] of the full model is what the plain head path reads (every family)."""
    loaded = load(tiny_dir(preset))
    model = RewardModel(loaded.model, seed=4, critique_request=CRITIQUE_REQUEST)
    batch = loaded.collator(mode="train")(list(critique_pair(critiqued(mk, int(loaded.multimodal)), "Check.")))
    with torch.no_grad():
        rewards, logits = model(**batch.model_inputs(), with_logits=True)
        plain = batch_rewards(model, batch)
        reference = loaded.model(**batch.model_inputs(), use_cache=False).logits
    torch.testing.assert_close(rewards, plain, **TOL)
    torch.testing.assert_close(logits, reference, **TOL)
    # by hand: w · h_L + b at the critique's last token (its end-of-turn), the last labelled position
    with torch.no_grad():
        hidden = loaded.model.base_model(**batch.model_inputs()).last_hidden_state
    w, b = model.reward_head.weight.detach()[0], float(model.reward_head.bias.detach()[0])
    for row in range(2):
        last = int((batch.labels[row] != IGNORE).nonzero().flatten()[-1])
        assert loaded.tokenizer.convert_ids_to_tokens(int(batch.input_ids[row, last])) == loaded.tokenizer.eos_token
        assert float(rewards[row]) == pytest.approx(float(hidden[row, last] @ w) + b, abs=1e-5)


def test_save_load_keeps_the_mode_and_gives_equal_rewards(tiny_dir, mk, tmp_path):
    base = load(tiny_dir("tiny-llava"))
    model = RewardModel(base.model, seed=6, critique_request="Is the answer true?")
    with torch.no_grad():
        model.reward_head.bias.fill_(0.5)
    records = [critiqued(mk), critiqued(mk, chosen="There is a red circle and a square.")]
    examples = [e for r in records for e in examples_from(r)]
    critiques = [GOOD, BAD, GOOD, BAD]
    rows = [critique_example(e, "Is the answer true?", c) for e, c in zip(examples, critiques, strict=True)]
    with torch.no_grad():
        before = batch_rewards(model, base.collator(mode="train")(rows))
    out = tmp_path / "rm"
    model.save_pretrained(out)
    save_upstream_processor(base.processor, out)
    spec = json.loads((out / "config.json").read_text())[HEAD_KEY]
    assert spec["critique"] is True and spec["critique_request"] == "Is the answer true?"

    again = load_reward_model(out)
    assert again.model.critique_request == "Is the answer true?"
    mode = again.model.training
    got = score_critiqued(again, examples, critiques, batch_size=3)
    assert got == pytest.approx(before.tolist(), abs=1e-5)
    with pytest.raises(ConfigError, match="is a critique reward model"):
        score_examples(again, examples)

    # scoring generates the critique greedily, then scores the sequence ending with it; score_with dispatches
    written = generate_critiques(again, examples, max_new_tokens=6, batch_size=3)
    assert len(written) == 4 and all(isinstance(c, str) for c in written)
    rewards = critique_rewards(again, examples, max_new_tokens=6, batch_size=3)
    assert rewards == pytest.approx(score_critiqued(again, examples, written), abs=1e-5)
    assert score_with(again, examples, max_new_tokens=6) == pytest.approx(rewards, abs=1e-5)
    assert again.model.training == mode and again.model.base.training == mode  # generation restores the mode

    plain = LoadedModel(**{**vars(base), "model": RewardModel(base.model, seed=6)})
    assert score_with(plain, examples) == pytest.approx(score_examples(plain, examples), abs=1e-6)
    with pytest.raises(ConfigError, match="not a critique reward model"):
        generate_critiques(plain, examples)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"critique": "yes", "critique_request": "Check."}, "must be true"),
        ({"critique": True}, "non-empty critique_request"),
        ({"critique": True, "critique_request": "  "}, "non-empty critique_request"),
        ({"critique": True, "critique_request": 3}, "non-empty critique_request"),
    ],
)
def test_a_bad_critique_spec_is_refused(tiny_dir, tmp_path, entry, message):
    out = tmp_path / "rm"
    RewardModel(load(tiny_dir("tiny-llava")).model).save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    config[HEAD_KEY] |= entry
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=message):
        load_reward_model(out)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("chosen_critique", None, "missing"),
        ("rejected_critique", 3, "must be a string, got int"),
        ("chosen_critique", ["a list"], "must be a string, got list"),
        ("rejected_critique", {"text": "x"}, "must be a string, got dict"),
        ("chosen_critique", True, "must be a string, got bool"),
        ("rejected_critique", " \n ", "is empty"),
    ],
)
def test_hostile_critique_fields_name_file_line_record_and_field(mk, tmp_path, key, value, message):
    records = [critiqued(mk), critiqued(mk)]
    records[1].id = "p-bad"
    if value is None:
        del records[1].meta[key]
    else:
        records[1].meta[key] = value
    path = tmp_path / "pairs.jsonl"
    write_records(path, records)
    read = list(read_records(path, root=tmp_path))
    assert record_critiques(read[0]) == (GOOD, BAD)
    with pytest.raises(DataError, match=message) as err:
        record_critiques(read[1])
    assert err.value.field == f"meta.{key}" and err.value.record_id == "p-bad"
    assert err.value.file == str(path) and err.value.line == 2
