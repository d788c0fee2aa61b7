"""The scoring fast path: it picks what greedy generation starts with, batched or not, one- or multi-token."""

from __future__ import annotations

import pytest
import torch

from mmalign.data.records import EvalItem
from mmalign.errors import ConfigError
from mmalign.eval.run.fastpath import YES_NO, OptionSet, choose_options, letter_options
from mmalign.eval.tasks.items import read_eval_items
from mmalign.models import load


def pope_items(world_dir, n: int = 10) -> list[EvalItem]:
    return read_eval_items(world_dir / "test" / "pope_adversarial.jsonl")[:n]


def first_greedy_token(loaded, item: EvalItem, root) -> int:
    batch = loaded.collator(mode="generate", image_root=root)([item])
    with torch.no_grad():
        out = loaded.model.generate(**batch.model_inputs(), max_new_tokens=1, do_sample=False)
    return int(out[0, -1])


def test_picks_the_option_greedy_generation_starts_with(models, world_dir):
    """Options built around the token generate emits first: the fast path must pick it (in a batch of 4, left
    padded, so positions and padding are exercised), whatever the other option is."""
    loaded = load(models["base"])
    items = pope_items(world_dir, 8)
    sets, expected = [], []
    for k, item in enumerate(items):
        token = loaded.tokenizer.decode([first_greedy_token(loaded, item, world_dir)])
        other = "Yes" if token.strip().lower() != "yes" else "No"
        texts = (token, other) if k % 2 else (other, token)
        sets.append(OptionSet(("first", "second"), texts))
        expected.append(texts.index(token))
    choices = choose_options(loaded, items, sets, batch_size=4, image_root=world_dir)
    assert [c.index for c in choices] == expected
    assert all(c.forwards == 1 and c.margin >= 0 for c in choices)


def test_greedy_says_whether_generation_starts_with_the_option(models, world_dir):
    """``greedy`` is true exactly when greedy generation's first token is a form of the picked option: always
    for options built around that token and for the determined yes/no model; for the untrained model's yes/no,
    only where Yes or No happens to be the vocabulary's argmax."""
    items = pope_items(world_dir, 8)
    for name in ("base", "yesno"):
        loaded = load(models[name])
        choices = choose_options(loaded, items, [YES_NO] * 8, batch_size=4, image_root=world_dir)
        for item, choice in zip(items, choices, strict=True):
            firsts = {loaded.tokenizer(f, add_special_tokens=False)["input_ids"][0] for f in YES_NO.forms(choice.index)}
            assert choice.greedy == (first_greedy_token(loaded, item, world_dir) in firsts), (name, item.id)
        if name == "yesno":
            assert all(c.greedy for c in choices)
    loaded = load(models["base"])
    sets = [
        OptionSet(("first", "other"), (loaded.tokenizer.decode([first_greedy_token(loaded, i, world_dir)]), "Yes"))
        for i in items
    ]
    chosen = choose_options(loaded, items, sets, batch_size=4, image_root=world_dir)
    assert all(c.greedy for c in chosen if c.index == 0) and any(c.index == 0 for c in chosen)


def test_yes_no_log_probs_are_the_next_token_distribution(models, world_dir):
    loaded = load(models["base"])
    items = pope_items(world_dir, 3)
    choices = choose_options(loaded, items, [YES_NO] * 3, batch_size=3, image_root=world_dir)
    yes_ids = [loaded.tokenizer(f, add_special_tokens=False)["input_ids"][0] for f in YES_NO.forms(0)]
    for item, choice in zip(items, choices, strict=True):
        batch = loaded.collator(mode="generate", image_root=world_dir)([item])
        with torch.no_grad():
            logps = loaded.model(**batch.model_inputs()).logits[0, -1].log_softmax(-1)
        assert choice.logps[0] == pytest.approx(max(float(logps[t]) for t in yes_ids), abs=1e-5)
        assert choice.label == ("yes" if choice.logps[0] > choice.logps[1] else "no")
        assert choice.margin == pytest.approx(abs(choice.logps[0] - choice.logps[1]), abs=1e-6)


def _constrained_greedy(loaded, item, options: OptionSet, root) -> int:
    """Reference: one unbatched forward per form and prefix; follow the best next token among the forms."""
    forms = [
        (i, tuple(loaded.tokenizer(f, add_special_tokens=False)["input_ids"]))
        for i in range(len(options.texts))
        for f in options.forms(i)
    ]
    prompt = loaded.collator(mode="generate", image_root=root)([item])
    prefix: tuple[int, ...] = ()
    while True:
        alive = [(i, t) for i, t in forms if t[: len(prefix)] == prefix]
        if len({i for i, _ in alive}) == 1:
            return alive[0][0]
        alive = [(i, t) for i, t in alive if len(t) > len(prefix)]
        ids = torch.cat([prompt.input_ids, torch.tensor([prefix], dtype=torch.long)], 1)
        extras = dict(prompt.extras)
        if "mm_token_type_ids" in extras:
            pad = torch.zeros(1, len(prefix), dtype=torch.long)
            extras["mm_token_type_ids"] = torch.cat([extras["mm_token_type_ids"], pad], 1)
        with torch.no_grad():
            logps = loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids), **extras).logits[0, -1]
        prefix = (*prefix, max({t[len(prefix)] for _, t in alive}, key=lambda tok: float(logps[tok])))


@pytest.mark.parametrize("preset", ["tiny-llava", "tiny-qwen2-vl"])
def test_options_sharing_a_first_token_follow_the_greedy_walk(tmp_path, models, world_dir, preset):
    from mmalign.models import ensure_preset

    loaded = load(models["base"] if preset == "tiny-llava" else ensure_preset(preset, tmp_path))
    options = OptionSet(("top left", "top right", "bottom left"), ("Top left", "Top right", "Bottom left"))
    items = pope_items(world_dir, 5)
    choices = choose_options(loaded, items, [options] * 5, batch_size=5, image_root=world_dir)
    for item, choice in zip(items, choices, strict=True):
        assert choice.index == _constrained_greedy(loaded, item, options, world_dir)
    assert any(c.forwards == 2 for c in choices)  # "Top left" / "Top right" share "Top": a second forward


def test_letters_and_bad_option_sets(models):
    assert letter_options(3).labels == ("A", "B", "C")
    assert letter_options(2).forms(1) == ["B", "b", "(B", "(b", " B", " b", " (B", " (b"]
    with pytest.raises(ConfigError, match="2 to 26 options"):
        letter_options(1)
    loaded = load(models["base"])
    item = EvalItem("x", "mc", "Which?", "A")
    with pytest.raises(ConfigError, match="tokenize the same way"):
        choose_options(loaded, [item], [OptionSet(("a", "b"), ("yes", "Yes"))])
    with pytest.raises(ConfigError, match="option sets"):
        choose_options(loaded, [item], [])
