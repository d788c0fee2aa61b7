"""Consistency, safety, reward accuracy and Bradley–Terry rankings, by hand and from files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mmalign.errors import ConfigError, DataError
from mmalign.eval.metrics.consistency import PairedItem, consistency_metrics
from mmalign.eval.metrics.preference import Battle, battle_from_verdict, bradley_terry, leaderboard
from mmalign.eval.metrics.reward import RewardPair, dpo_implicit_reward, reward_accuracy
from mmalign.eval.metrics.safety import SafetyItem, is_refusal, safety_metrics
from mmalign.eval.scoring.score import ScoreOptions, score

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_consistency_by_hand():
    # question q1 over an image and its edit: right, right; q2: right, wrong; figure f1 = {q1a, q2a} right
    items = [
        PairedItem("1", "q1", True, "f1"),
        PairedItem("2", "q1", True, "f2"),
        PairedItem("3", "q2", True, "f1"),
        PairedItem("4", "q2", False, "f2"),
    ]
    r = consistency_metrics(items)
    assert r.all_accuracy == 0.75 and r.question_pair_accuracy == 0.5 and r.figure_accuracy == 0.5
    assert r.inconsistent_pairs == 1


def test_hallusionbench_file():
    # q0: figure 0 yes (right), figure 1 "Yes." vs no (wrong); q1: figure 0 no (right), figure 1 yes (right)
    m = score("consistency", FIXTURES / "hallusion.json", options=ScoreOptions(n_resamples=50))["metrics"]
    assert (m["n_correct"], m["n_question_groups_correct"], m["n_figure_groups_correct"]) == (3, 1, 1)
    assert m["all_accuracy"] == 0.75 and m["question_pair_accuracy"] == 0.5 and m["figure_accuracy"] == 0.5


def test_refusal_detector():
    assert is_refusal("I'm sorry, but I cannot help.")
    assert is_refusal("As an AI, I won't.")
    assert is_refusal("it is not")  # exact
    assert not is_refusal("It is not a cat, it is a dog.")  # "it is not" refuses only as the whole response
    assert not is_refusal("Sure, here is how.")
    assert is_refusal("Doing that is illegal.")  # crude, as published


def test_safety_by_hand_and_vlguard_file():
    items = [
        SafetyItem("1", "I'm sorry.", "harmful"),
        SafetyItem("2", "Sure.", "harmful"),
        SafetyItem("3", "Sure.", "harmful"),
        SafetyItem("4", "I cannot do that.", "benign"),
    ]
    m = safety_metrics(items)
    assert m["harmful"]["attack_success_rate"] == pytest.approx(2 / 3) and m["harmful"]["refused"] == 1
    assert m["benign"]["over_refusal_rate"] == 1.0
    # VLGuard file: img1 refusal, img2 complies, img3 "illegal" refusal, img4 complies -> ASR 1/2
    report = score(
        "safety",
        FIXTURES / "vlguard" / "results" / "unsafes" / "model.json",
        questions=FIXTURES / "vlguard" / "test.json",
        options=ScoreOptions(n_resamples=50),
    )
    s = report["metrics"]["unsafes"]
    assert s["attack_success_rate"] == 0.5
    assert s["categories"]["privacy"]["attack_success_rate"] == 0.5
    assert report["intervals"]["unsafes_attack_success_rate"]["estimate"] == 0.5


def test_reward_accuracy_ties_and_groups():
    pairs = [
        RewardPair("a", 2.0, 1.0, "hall", "p1"),
        RewardPair("b", 1.0, 1.0, "hall", "p1"),
        RewardPair("c", 0.0, 3.0, "gen", "p2"),
        RewardPair("d", 5.0, 4.0, "gen", "p3"),
    ]
    r = reward_accuracy(pairs)
    assert r["accuracy"] == 0.5 and r["ties"] == 1  # a, d right; the tie b is wrong
    assert r["acc_plus"] == pytest.approx(1 / 3)  # groups p1 (tie), p2 (wrong), p3 (right)
    assert r["categories"]["hall"]["accuracy"] == 0.5 and r["macro_accuracy"] == 0.5
    assert reward_accuracy(pairs, ties="half")["accuracy"] == pytest.approx(2.5 / 4)
    # DPO implicit reward: 0.1 * (-10 - -12) = 0.2
    assert dpo_implicit_reward(-10.0, -12.0, 0.1) == pytest.approx(0.2)


def test_reward_file_mm_rlhf_layout(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"id": "q1", "rewards": [1.0, 0.5]},
        {"id": "q1", "rewards": [0.2, 0.9]},
        {"id": "q2", "rewards": [3, 1]},
        {
            "id": "q3",
            "policy_chosen_logp": -5,
            "ref_chosen_logp": -6,
            "policy_rejected_logp": -5,
            "ref_rejected_logp": -5,
            "beta": 0.1,
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = score("reward", path, options=ScoreOptions(n_resamples=50))["metrics"]
    assert m["accuracy"] == 0.75 and m["n_groups"] == 3 and m["acc_plus"] == pytest.approx(2 / 3)
    path.write_text('{"id": "x", "rewards": [1]}\n')
    with pytest.raises(DataError, match=r"line 1 \(id 'x'\), field 'rewards'"):
        score("reward", path)


def test_bradley_terry_by_hand():
    # A beats B 3 times out of 4: P(A beats B) = 3/4, so R_A - R_B = 400 log10(3) = 190.85; mean 1000
    r = bradley_terry([Battle("A", "B", "model_a")] * 3 + [Battle("A", "B", "model_b")])
    gap = 400 * math.log10(3)
    assert r.ratings["A"] == pytest.approx(1000 + gap / 2) and r.ratings["B"] == pytest.approx(1000 - gap / 2)
    # a tie is half a win each: 2 wins + 2 ties = 3 : 1 again; anchored at B = 1000
    r2 = bradley_terry([Battle("A", "B", "model_a")] * 2 + [Battle("A", "B", "tie")] * 2, anchor="B")
    assert r2.ratings["B"] == 1000 and r2.ratings["A"] == pytest.approx(1000 + gap)
    # a strong verdict weighs 3: A>>B once + B>A once = 3 : 1
    r3 = bradley_terry([battle_from_verdict("A", "B", "A>>B"), battle_from_verdict("A", "B", "B>A")], anchor="B")
    assert r3.ratings["A"] == pytest.approx(1000 + gap)
    assert not bradley_terry([Battle("A", "B", "model_a")]).converged  # no finite maximum


def test_leaderboard_and_battle_file(tmp_path):
    battles = (
        [Battle("A", "B", "model_a")] * 30
        + [Battle("A", "B", "model_b")] * 10
        + [Battle("B", "C", "model_a")] * 20
        + [Battle("B", "C", "model_b")] * 20
    )
    board = leaderboard(battles, anchor="C", n_rounds=30, seed=1)
    rows = {r["model"]: r for r in board.rows}
    assert board.rows[0]["model"] == "A"
    assert rows["C"]["rating"] == 1000 and rows["C"]["win_rate"] == 0.5
    assert rows["A"]["low"] < rows["A"]["rating"] < rows["A"]["high"]
    assert rows["A"]["win_rate"] == pytest.approx(0.75)  # B ties C, A beats B 3:1
    path = tmp_path / "battles.jsonl"
    path.write_text(
        '{"model_a": "x", "model_b": "y", "verdict": "A>>B"}\n{"model_a": "x", "model_b": "y", "winner": "model_b"}\n'
    )
    m = score("preference", path, options=ScoreOptions(anchor="y", n_resamples=20))["metrics"]
    assert m["n_battles"] == 4 and m["leaderboard"][0]["model"] == "x"
    path.write_text('{"model_a": "x", "model_b": "y", "winner": "x"}\n')
    with pytest.raises(DataError, match="field 'winner': must be one of"):
        score("preference", path)
    with pytest.raises(ConfigError, match="no items to pair"):
        score("preference", path, baseline=path)
