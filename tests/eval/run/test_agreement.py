"""The fast path's agreement with generate-and-parse: the computation, and which tasks use the fast path."""

from __future__ import annotations

import pytest

from mmalign.data.records import EvalItem
from mmalign.eval.run.agreement import agreement, fast_path_plan, parsed_answer, sample_warning
from mmalign.eval.tasks.measured import MEASURED, MIN_AGREEMENT, Agreement
from mmalign.eval.tasks.specs import TASKS, TaskSpec


def test_agreement_by_hand():
    # 5 items: b (yes / no) and d (None / "other") differ; None agrees with None (e: both unparsed)
    result = agreement(["yes", "yes", "A", None, None], ["yes", "no", "A", "other", None], ["a", "b", "c", "d", "e"])
    assert result == {"n": 5, "agree": 3, "agreement": 3 / 5, "disagreements": ["b", "d"]}
    assert agreement([], [], [])["agreement"] is None
    with pytest.raises(ValueError, match="2 fast answers, 1 generated answers"):
        agreement(["yes", "no"], ["yes"], ["a", "b"])


def test_each_task_is_read_by_its_official_parser():
    mme, pope, mc = TASKS["mme"], TASKS["pope_random"], TASKS["mc"]
    item = EvalItem("q", "mc", "Which?", "B", choices=["red circle", "blue star"])
    # "Not sure": MME's first-four-characters rule says no, POPE's word rule says yes ("Not" is not "not")
    assert parsed_answer(mme, item, "Not sure") == "no" and parsed_answer(pope, item, "Not sure") == "yes"
    assert parsed_answer(mme, item, "Triangle.") == "other"  # what MME items off the options were
    assert parsed_answer(mc, item, "B.") == "B" and parsed_answer(mc, item, "Blue.") is None


def test_every_closed_task_states_a_measured_figure_and_none_below_99_percent_uses_the_fast_path():
    for name, spec in TASKS.items():
        plan = fast_path_plan(spec, None)
        assert plan["applies"] == spec.fast and plan["reason"]
        if spec.fast:
            assert name in MEASURED and plan["measured"]["n"] >= 400, name
            assert plan["used"] == (MEASURED[name].rate >= MIN_AGREEMENT) == spec.fast_by_default
        else:
            assert not plan["used"] and plan["measured"] is None


@pytest.mark.parametrize(
    ("agree", "forced", "used", "reason"),
    [
        (99, None, True, "measured agreement 99.0% of 100 items (at least 99%): fast path by default"),
        (98, None, False, "measured agreement 98.0% of 100 items, below 99%: generate-and-parse by default"),
        (None, None, False, "agreement never measured: generate-and-parse by default"),
        (98, True, True, "--fast although measured agreement 98.0% of 100 items"),
        (100, True, True, "--fast"),
        (100, False, False, "--generate: every answer generated and parsed"),
    ],
)
def test_fast_path_plan(monkeypatch, agree, forced, used, reason):
    spec = TaskSpec("closed", "general", "yesno", "pope", "a closed test task")
    if agree is None:
        monkeypatch.delitem(MEASURED, "closed", raising=False)
    else:
        monkeypatch.setitem(MEASURED, "closed", Agreement(agree, 100, "by hand"))
    plan = fast_path_plan(spec, forced)
    assert plan["used"] == used and plan["reason"].startswith(reason)
    assert plan["measured"] == (
        None if agree is None else {"agreement": agree / 100, "agree": agree, "n": 100, "measured_by": "by hand"}
    )


def test_sample_warning():
    assert sample_warning("mme", {"n": 200, "agreement": 0.99}) is None
    assert sample_warning("mme", {"n": 0, "agreement": None}) is None
    assert "mme: the fast path agreed with generate-and-parse on only 75.0% of 200 sampled items" in str(
        sample_warning("mme", {"n": 200, "agreement": 0.75})
    )
