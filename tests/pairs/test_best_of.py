"""The ``reward`` scorer of ``sample-rank`` and the ``best-of-n`` builder: both rank by the reward model's rewards
(checked against ``score_examples`` candidate by candidate); best-of-n keeps the argmax, n=1 is the plain seeded
sample, ``min_reward`` leaves out (and counts) the prompts whose best is below it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mmalign.data.io import read_records
from mmalign.data.records import assistant
from mmalign.errors import ConfigError
from mmalign.models import load
from mmalign.models.examples import Example
from mmalign.models.generation import generate
from mmalign.models.reward import load_reward_model, score_examples
from mmalign.pairs import best_of
from mmalign.pairs.registry import BuildInputs, make_builder
from mmalign.pairs.reward_scorer import RewardScorer
from mmalign.pairs.shards import run_build
from mmalign.seeding import derive_seed

pytestmark = pytest.mark.usefixtures("one_thread")


def by_hand(reward_model: Path, world: Path, record: Any, texts: list[str]) -> list[float]:
    """The rewards of ``texts`` as answers to ``record``'s prompt, one sequence at a time."""
    examples = [Example(record.id, record.prompt, list(record.images), assistant(t)) for t in texts]
    return score_examples(load_reward_model(reward_model), examples, batch_size=1, image_root=world)


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def test_the_reward_scorer_ranks_by_the_reward_model(world, tiny_dir, reward_dir, tmp_path):
    options = {
        "model": str(tiny_dir("tiny-llava")),
        "scorer": "reward",
        "reward": {"path": str(reward_dir(1)), "batch_size": 5},
        "k": 3,
        "max_new_tokens": 6,
        "prompts_per_unit": 2,
        "batch_size": 6,
        "limit": 3,
        "min_gap": 0.0,
    }
    out = tmp_path / "sr.jsonl"
    run_build(make_builder("sample-rank", options), BuildInputs(world=world), out, seed=1, out_root=world)
    rows = list(read_records(out, root=world))
    assert len(rows) == 3  # random answers never repeat; continuous rewards never tie
    for row in rows:
        candidates = row.meta["candidates"]
        rewards = by_hand(reward_dir(1), world, row, [c["text"] for c in candidates])
        assert [c["score"] for c in candidates] == pytest.approx(rewards, abs=1e-5)
        assert row.chosen_text == candidates[argmax(rewards)]["text"]
        assert row.rejected_text == candidates[argmax([-r for r in rewards])]["text"]
        assert row.source == "sample-rank/reward" and row.meta["scorer_options"] == options["reward"]


def test_reward_scorer_options_default_gap_and_fingerprint(world, tiny_dir, reward_dir):
    assert RewardScorer.default_min_gap == 0.5
    policy = str(tiny_dir("tiny-llava"))
    with pytest.raises(ConfigError, match=r"reward\.batch_size"):
        make_builder("sample-rank", {"model": policy, "scorer": "reward", "reward": {"batch_size": 0}})
    inputs = BuildInputs(world=world)
    with pytest.raises(ConfigError, match=r"needs reward\.path"):
        make_builder("sample-rank", {"model": policy, "scorer": "reward"}).plan(inputs, 0)
    with pytest.raises(ConfigError, match="not a reward model"):
        make_builder("sample-rank", {"model": policy, "scorer": "reward", "reward": {"path": policy}}).plan(inputs, 0)
    prints = {
        make_builder("sample-rank", {"model": policy, "scorer": "reward", "reward": {"path": str(reward_dir(s))}})
        .plan(inputs, 0)
        .fingerprint
        for s in (1, 2)
    }
    assert len(prints) == 2  # the reward model is part of the build's fingerprint


def best_of_options(tiny_dir: Any, reward_dir: Any, **overrides: Any) -> dict[str, Any]:
    return {
        "model": str(tiny_dir("tiny-llava")),
        "reward": {"path": str(reward_dir(1)), "batch_size": 3},
        "n": 4,
        "max_new_tokens": 6,
        "prompts_per_unit": 2,
        "batch_size": 8,
        "limit": 4,
        **overrides,
    }


def test_best_of_n_keeps_the_highest_reward_and_min_reward_leaves_out(world, tiny_dir, reward_dir, tmp_path):
    out = tmp_path / "bo.jsonl"
    result = run_build(
        make_builder("best-of-n", best_of_options(tiny_dir, reward_dir)), BuildInputs(world=world), out, seed=3
    )
    records = list(read_records(out, root=result.out_root))
    assert len(records) == 4 and all(r.kind == "sft" and r.source == "best-of-n" for r in records)
    for i, record in enumerate(records):
        meta = record.meta
        texts = [c["text"] for c in meta["candidates"]]
        rewards = by_hand(reward_dir(1), result.out_root, record, texts)
        assert [c["reward"] for c in meta["candidates"]] == pytest.approx(rewards, abs=1e-5)
        assert record.completion_text == texts[argmax(rewards)]
        assert meta["reward"] == pytest.approx(max(rewards), abs=1e-5)
        assert sum(c["count"] for c in meta["candidates"]) == 4 and meta["n"] == 4
        assert meta["sampling"]["seed"] == derive_seed(3, "best-of-n", f"bo-{i // 2:06d}")
        assert meta["model"] == str(tiny_dir("tiny-llava")) and meta["reward_model"] == str(reward_dir(1))

    # min_reward: the prompts whose best is below it are left out and counted
    threshold = sorted(r.meta["reward"] for r in records)[2]  # two bests below it, two at or above
    before = best_of.STATS.copy()
    kept_out = tmp_path / "kept.jsonl"
    options = best_of_options(tiny_dir, reward_dir, min_reward=threshold)
    result = run_build(make_builder("best-of-n", options), BuildInputs(world=world), kept_out, seed=3)
    kept = list(read_records(kept_out, root=result.out_root))
    assert [r.id for r in kept] == [r.id for r in records if r.meta["reward"] >= threshold] and len(kept) == 2
    assert (best_of.STATS - before)["skipped:min_reward"] == 2


def test_n_1_is_the_plain_seeded_sample(world, tiny_dir, reward_dir, tmp_path):
    out = tmp_path / "n1.jsonl"
    options = best_of_options(tiny_dir, reward_dir, n=1, limit=2, temperature=0.7, top_p=0.9)
    result = run_build(make_builder("best-of-n", options), BuildInputs(world=world), out, seed=5, out_root=world)
    records = list(read_records(out, root=world))
    scenes = [(r.meta["from_id"], r) for r in records]
    policy = load(tiny_dir("tiny-llava"))
    items = [Example(pid, r.prompt, list(r.images)) for pid, r in scenes]
    seed = derive_seed(5, "best-of-n", "bo-000000")  # one unit: both prompts
    plain = generate(
        policy,
        items,
        max_new_tokens=6,
        do_sample=True,
        temperature=0.7,
        top_p=0.9,
        batch_size=8,
        seed=seed,
        image_root=world,
    )
    assert result.units == 1 and len(records) == 2
    assert [r.completion_text for r in records] == plain
    assert all(len(r.meta["candidates"]) == 1 and r.meta["candidates"][0]["count"] == 1 for r in records)


def test_best_of_options_are_checked(tiny_dir, world):
    for bad in ({"n": 0}, {"temperature": 0.0}, {"top_p": 1.5}, {"dtype": "int8"}, {"reward": {"batch_size": 0}}):
        with pytest.raises(ConfigError):
            make_builder("best-of-n", {"model": "m", **bad})
    with pytest.raises(ConfigError, match=r"needs reward\.path"):
        make_builder("best-of-n", {"model": str(tiny_dir("tiny-llava"))}).plan(BuildInputs(world=world), 0)
