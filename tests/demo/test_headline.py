"""What the demo claims, on hand-made numbers: baseline checks, the goal, verdicts against the control, the headline."""

from __future__ import annotations

import pytest

from mmalign.demo.headline import (
    baseline_checks,
    control_sentence,
    goal_checks,
    headline_lines,
    interval_text,
    relative_change,
    verdict,
    wrap,
)


def iv(estimate: float, low: float | None = None, high: float | None = None) -> dict[str, float]:
    return {"estimate": estimate, "low": estimate if low is None else low, "high": estimate if high is None else high}


def delta(before: float, after: float, low: float, high: float) -> dict[str, float]:
    return {
        "before": before,
        "after": after,
        "delta": after - before,
        "low": low,
        "high": high,
        "share_above_zero": 0.5,
    }


def baseline_models(random_acc=0.85, adversarial_acc=0.81, partner=0.30, partner_mentions=0.24, other=0.05):
    return {
        "baseline": {
            "pope_random": {"accuracy": iv(random_acc)},
            "pope_adversarial": {"accuracy": iv(adversarial_acc)},
            "chair": {
                "absent_partner_caption_rate": iv(partner),
                "absent_partner_mention_rate": iv(partner_mentions),
                "other_absent_mention_rate": iv(other),
            },
        }
    }


def test_a_competent_hallucinating_baseline_passes_every_check():
    checks = baseline_checks(baseline_models())
    assert [c["pass"] for c in checks] == [True, True, True, True]
    assert checks[3]["value"] == pytest.approx(0.24 / 0.05)  # 4.8 times as often as other absent objects


@pytest.mark.parametrize(
    ("kwargs", "failing"),
    [
        ({"random_acc": 0.79}, 0),  # not competent on random negatives
        ({"adversarial_acc": 0.7999}, 1),
        ({"partner": 0.149}, 2),  # hallucinates too little
        ({"partner_mentions": 0.149, "other": 0.05}, 3),  # 2.98× < 3×
    ],
)
def test_each_baseline_check_fails_on_its_own(kwargs, failing):
    checks = baseline_checks(baseline_models(**kwargs))
    assert [i for i, c in enumerate(checks) if not c["pass"]] == [failing]


def method_deltas(partner=(0.30, 0.12), chair_i=(0.20, 0.16), recall=(0.80, 0.75), accuracy_high=0.01):
    return {
        "chair": {
            "absent_partner_caption_rate": delta(*partner, -0.25, -0.10),
            "chair_i": delta(*chair_i, -0.06, -0.02),
            "recall": delta(*recall, -0.08, -0.02),
        },
        "pope_adversarial": {"accuracy": delta(0.82, 0.81, -0.03, accuracy_high), "f1": delta(0.80, 0.83, 0.01, 0.05)},
    }


def test_the_goal_is_met_only_when_all_four_conditions_hold():
    checks = goal_checks(method_deltas())
    # partner 0.30 → 0.12 is -60 %; CHAIR-i -0.04; recall -0.05; accuracy interval [-0.03, +0.01] reaches 0
    assert [c["pass"] for c in checks] == [True, True, True, True]
    assert checks[0]["value"] == pytest.approx(-0.6)
    assert not goal_checks(method_deltas(partner=(0.30, 0.16)))[0]["pass"]  # -47 %
    assert not goal_checks(method_deltas(chair_i=(0.20, 0.175)))[1]["pass"]  # -0.025
    assert not goal_checks(method_deltas(recall=(0.80, 0.73)))[2]["pass"]  # -0.07
    assert not goal_checks(method_deltas(accuracy_high=-0.001))[3]["pass"]  # significantly worse


def test_relative_change_of_a_zero_rate_is_undefined():
    assert relative_change(delta(0.0, 0.1, 0.0, 0.2)) is None
    assert not goal_checks(method_deltas(partner=(0.0, 0.0)))[0]["pass"]


def test_verdicts_read_the_interval_in_the_metric_s_good_direction():
    assert verdict("f1", delta(0.8, 0.85, 0.01, 0.09)) == "better"
    assert verdict("f1", delta(0.8, 0.75, -0.09, -0.01)) == "worse"
    assert verdict("chair_i", delta(0.3, 0.2, -0.15, -0.05)) == "better"  # lower is better
    assert verdict("absent_partner_caption_rate", delta(0.1, 0.2, 0.05, 0.15)) == "worse"
    assert verdict("chair_i", delta(0.3, 0.28, -0.05, 0.01)) == "same"  # the interval holds 0
    assert verdict("total", delta(150.0, 160.0, 0.0, 20.0)) == "same"  # touching 0 is not excluding it


def test_control_sentence_claims_only_what_the_intervals_show():
    deltas = {
        "chair": {
            "chair_i": delta(0.20, 0.15, -0.08, -0.02),
            "recall": delta(0.8, 0.7, -0.15, -0.05),
            "absent_partner_caption_rate": delta(0.2, 0.18, -0.06, 0.02),
        },
        "pope_adversarial": {"f1": delta(0.8, 0.81, -0.01, 0.03)},
    }
    sentence = control_sentence("DPO", deltas)
    assert sentence == (
        "DPO beats the control on CHAIR-i (-5.0 [-8.0, -2.0] pp); is worse than the control on object recall "
        "(-10.0 [-15.0, -5.0] pp); is no better than the control on POPE-adversarial F1, partner naming."
    )
    assert control_sentence("X", {}) == "X: no paired comparison with the control."


def test_interval_text_uses_points_for_rates_and_plain_numbers_for_mme_total():
    assert interval_text("f1", delta(0.5, 0.512, -0.004, 0.03)) == "+1.2 [-0.4, +3.0] pp"
    assert interval_text("total", delta(150.0, 162.5, 2.0, 20.0)) == "+12.5 [+2.0, +20.0]"


def test_headline_lists_each_method_with_its_intervals_goal_and_sentence():
    deltas = method_deltas()
    results = {
        "settings": {"seed": 3},
        "world": {"test_scenes": 400},
        "methods": {"dpo_nll": {"label": "DPO + NLL"}, "control": {"label": "SFT on chosen (control)"}},
        "vs_baseline": {"dpo_nll": deltas, "control": method_deltas(partner=(0.30, 0.2))},
        "criteria": {
            "baseline": baseline_checks(baseline_models(random_acc=0.7)),
            "methods": {"dpo_nll": goal_checks(deltas), "control": goal_checks(method_deltas(partner=(0.30, 0.2)))},
        },
        "claims": {"dpo_nll": "DPO + NLL is no better than the control on CHAIR-i."},
    }
    lines = headline_lines(results)
    text = "\n".join(lines)
    assert "400 held-out scenes" in text and "seed 3" in text
    row = next(line for line in lines if line.strip().startswith("DPO + NLL"))
    assert "met" in row and "not met" not in row
    # Δ POPE-adv F1, Δ CHAIR-i and Δ partner naming, in percentage points (said once, above the table)
    assert row.split()[-9:] == "+3.0 [+1.0, +5.0] -4.0 [-6.0, -2.0] -18.0 [-25.0, -10.0]".split()
    assert "Δ: percentage points [paired bootstrap 95 % interval]" in text
    control = next(line for line in lines if line.strip().startswith("SFT on chosen"))
    assert "not met" in control  # -33 % only
    joined = " ".join(line.strip() for line in lines)  # sentences wrap at 100 columns
    assert "baseline 30.0%; DPO + NLL 12.0% (-60 %), SFT on chosen (control) 20.0% (-33 %)." in joined
    assert "met by DPO + NLL." in joined
    assert "Warning: the baseline fails POPE random accuracy ≥ 0.80" in joined
    assert text.rstrip().endswith("DPO + NLL is no better than the control on CHAIR-i.")


def test_every_headline_line_fits_100_columns_with_long_labels_and_sentences():
    sentence = control_sentence(
        "SFT on chosen (control)",
        {
            "chair": {
                "chair_i": delta(0.20, 0.15, -0.08, -0.02),
                "recall": delta(0.8, 0.7, -0.15, -0.05),
                "absent_partner_caption_rate": delta(0.4, 0.05, -0.45, -0.25),
            },
            "pope_adversarial": {"f1": delta(0.8, 0.71, -0.123, -0.051), "accuracy": delta(0.8, 0.81, -0.01, 0.03)},
            "mme": {"total": delta(200.0, 120.5, -99.4, -60.7)},
        },
    )
    wide = method_deltas(partner=(0.382, 0.036), chair_i=(0.077, 0.028))
    wide["pope_adversarial"]["f1"] = delta(0.9, 0.795, -0.123, -0.088)
    labels = {
        "dpo": "DPO",
        "dpo_nll": "DPO + NLL",
        "mdpo": "mDPO",
        "simpo": "SimPO",
        "control": "SFT on chosen (control)",
    }
    results = {
        "settings": {"seed": 12345},
        "world": {"test_scenes": 10000},
        "methods": {n: {"label": label} for n, label in labels.items()},
        "vs_baseline": dict.fromkeys(labels, wide),
        "criteria": {
            "baseline": baseline_checks(baseline_models(random_acc=0.7, adversarial_acc=0.7, partner=0.1)),
            "methods": dict.fromkeys(labels, goal_checks(wide)),
        },
        "claims": dict.fromkeys(labels, sentence),
    }
    lines = headline_lines(results)
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert sum(line.startswith("  SFT on chosen (control)  ") for line in lines) == 1  # the table row
    # a wrapped sentence keeps each interval whole: no line ends inside brackets or parentheses
    for line in lines:
        assert line.count("[") == line.count("]") and line.count("(") == line.count(")"), line


def test_wrap_breaks_at_spaces_outside_parentheses():
    text = "aaa (b c d) eee fff"
    assert wrap(text, width=12) == ["  aaa", "    (b c d)", "    eee fff"]
    assert wrap("x" * 20, width=10) == ["  " + "x" * 20]  # a word longer than the width stays whole
