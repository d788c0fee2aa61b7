"""``mmalign rm study``: the suite's per-kind accuracy is a hand count, and the whole study runs end to end at a
tiny size with consistent numbers, then resumes without redoing a step."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from mmalign.data.io import read_records
from mmalign.demo.overopt import gold_rewards, well_formed
from mmalign.demo.rm_pairs import KINDS, build_study_pairs, kind_of
from mmalign.demo.rm_study import StudySettings, powers_of_two, run_study
from mmalign.demo.rm_suite import score_pairs, suite_accuracy
from mmalign.eval.metrics.reward import RewardPair
from mmalign.models import load
from mmalign.models.examples import examples_from
from mmalign.models.reward import RewardModel, score_examples
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    "train_scenes": 60,
    "val_scenes": 20,
    "test_scenes": 3,
    "rm_steps": 3,
    "rm_batch_size": 7,
    "suite_per_kind": 3,
    "prompts": 2,
    "samples": 6,
    "bootstrap": 50,
    "batch_size": 16,
    "max_new_tokens": 40,
}


def test_suite_accuracy_counts_strict_wins_per_kind_by_hand():
    pairs = [
        RewardPair("a1", 1.0, 0.0, "add"),  # right
        RewardPair("a2", 0.5, 0.5, "add"),  # tie: wrong
        RewardPair("s1", -1.0, -2.0, "swap"),  # right
        RewardPair("c1", 0.0, 1.0, "corrupt-image"),  # wrong
    ]
    rows = suite_accuracy(pairs, n_resamples=20)
    assert list(rows) == ["add", "swap", "corrupt-image", "hallucination", "all"]
    assert (rows["add"]["n"], rows["add"]["correct"], rows["add"]["ties"], rows["add"]["accuracy"]) == (2, 1, 1, 0.5)
    assert rows["swap"]["accuracy"] == 1.0 and rows["corrupt-image"]["accuracy"] == 0.0
    assert (rows["hallucination"]["n"], rows["hallucination"]["accuracy"]) == (3, pytest.approx(2 / 3))
    assert (rows["all"]["n"], rows["all"]["correct"]) == (4, 2)
    assert rows["add"]["margin_mean"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert rows["all"]["low"] <= 0.5 <= rows["all"]["high"]


def test_suite_of_a_tiny_rm_matches_scoring_each_side_alone(tmp_path, tiny_dir):
    world = tmp_path / "world"
    generate_world(world, WorldConfig(train_scenes=60, val_scenes=12, test_scenes=2))
    counts = build_study_pairs(world, tmp_path / "pairs", n_train=14, per_kind=2, seed=0, say=lambda text: None)
    assert counts["train"] == dict.fromkeys(KINDS, 2) and counts["suite"] == dict.fromkeys(KINDS, 2)
    records = list(read_records(tmp_path / "pairs" / "suite.jsonl", root=world))
    assert [kind_of(r) for r in records] == [k for k in KINDS for _ in range(2)]
    image_side = [r for r in records if kind_of(r) == "corrupt-image"]
    assert all(r.chosen == r.rejected and r.rejected_images for r in image_side)
    assert all(len(r.images) >= 2 for r in records if kind_of(r) == "multi-image")
    loaded = load(tiny_dir("tiny-llava"))
    loaded.model = RewardModel(loaded.model, seed=3)
    rows = suite_accuracy(score_pairs(loaded, records, world, batch_size=5), n_resamples=20)
    # the hand count: each side scored alone (batch of one: no padding), chosen strictly above rejected
    right = {k: 0 for k in KINDS}
    for record in records:
        chosen, rejected = score_examples(loaded, examples_from(record), batch_size=1, image_root=world)
        right[kind_of(record)] += chosen > rejected + 1e-6  # a gap this small would be padding noise, not a win
    for kind in KINDS:
        assert rows[kind]["n"] == 2 and rows[kind]["correct"] == right[kind], kind
    assert rows["all"]["correct"] == sum(right.values())


def test_study_runs_end_to_end_with_consistent_numbers_and_resumes(tmp_path):
    out = tmp_path / "study"
    said: list[str] = []
    results = run_study(StudySettings(out=out, seed=1, **TINY), said.append)
    for name in ("report.md", "results.json", "overopt.png", "overopt.json", "suite.json", "scored.jsonl"):
        assert (out / name).is_file(), name
    with Image.open(out / "overopt.png") as image:
        assert image.format == "PNG" and image.size[0] > 300
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    # suite: every kind, 3 pairs each; the rows add up
    suite = results["suite"]
    assert [k for k in suite if k in KINDS] == list(KINDS) and all(suite[k]["n"] == 3 for k in KINDS)
    assert suite["all"]["correct"] == sum(suite[k]["correct"] for k in KINDS) and suite["hallucination"]["n"] == 15
    # over-optimisation: n = 1 is the mean over every sample; n = N the top-proxy sample's
    rows = [json.loads(line) for line in (out / "scored.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["samples"]) == 6 == len(r["proxy"]) for r in rows)
    curves = results["overoptimisation"]["curves"]
    assert [c["n"] for c in curves] == [1, 2, 4, 6]
    all_proxy = [p for r in rows for p in r["proxy"]]
    assert curves[0]["proxy"]["estimate"] == pytest.approx(sum(all_proxy) / len(all_proxy))
    assert curves[0]["kl"] == 0.0 and curves[0]["f1_change"]["estimate"] == 0.0
    f1 = [gold_rewards(text, r["objects"])["f1"] for r in rows for text in r["samples"]]
    assert curves[0]["f1"]["estimate"] == pytest.approx(sum(f1) / len(f1))
    shares = [well_formed(text) for r in rows for text in r["samples"]]
    assert curves[0]["well_formed"]["estimate"] == pytest.approx(sum(shares) / len(shares))
    words = [len(text.split()) for r in rows for text in r["samples"]]
    assert curves[0]["words"]["estimate"] == pytest.approx(sum(words) / len(words))
    top = [max(r["proxy"]) for r in rows]
    assert curves[-1]["proxy"]["estimate"] == pytest.approx(sum(top) / 2)
    report = (out / "report.md").read_text()
    assert "| add | 3 |" in report and "| 6 | " in report and "What the curve shows" in report
    # a rerun redoes nothing
    again = run_study(StudySettings(out=out, seed=1, **TINY), said.append)
    assert set(again["seconds"].values()) == {0.0}
    assert again["suite"] == results["suite"] and again["overoptimisation"] == results["overoptimisation"]


def test_well_formed_follows_the_world_caption_grammar():
    assert well_formed("There is a large red circle, a small purple square and a small green square.")
    assert well_formed("There is an orange star.") and well_formed("There is nothing in the image.")
    assert not well_formed("There is a large blue square and a small yellow see.")  # not a shape
    assert not well_formed("There is a right a small purple square and a small purple star.")
    assert not well_formed("There is a red circle, and a blue star.")  # no comma before "and"
    assert gold_rewards("There is a red circle and a green square.", ["red circle", "blue star"]) == {
        "f1": 0.5,
        "precision": 0.5,
        "recall": 0.5,
    }  # the truth scorer's worked example: one of two mentions present, one of two objects named


def test_powers_of_two_and_the_cli(cli_run, tmp_path, monkeypatch):
    assert powers_of_two(64) == [1, 2, 4, 8, 16, 32, 64] and powers_of_two(6) == [1, 2, 4, 6]
    assert powers_of_two(1) == [1]
    seen: list[StudySettings] = []
    monkeypatch.setattr("mmalign.demo.rm_study.run_study", lambda settings, say: seen.append(settings))
    code, _, stderr = cli_run(["rm", "study", "--out", str(tmp_path / "o"), "--quick", "--seed", "3"])
    assert code == 0, stderr
    quick = seen[0].with_quick_profile()
    assert (seen[0].seed, seen[0].quick, quick.rm_steps, quick.prompts, quick.samples) == (3, True, 60, 16, 64)
