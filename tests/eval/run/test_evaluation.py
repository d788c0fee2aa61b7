"""``mmalign eval run`` end to end on the shapes world: files, official formats, determinism, resume, agreement."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmalign.eval.config import EvalConfig
from mmalign.eval.metrics.pope import official_yes_no
from mmalign.eval.results import COMPARED, compared_part
from mmalign.eval.run import runner
from mmalign.eval.run.evaluation import evaluate

OFFLINE = "pope_adversarial,chair,consistency,mme,mc,safety"


def run(cli, model: Path, world: Path, out: Path, *extra: str) -> dict:
    args = ["eval", "run", "--model", str(model), "--data", str(world), "--out", str(out), "--no-progress", *extra]
    assert cli(args) == 0
    return json.loads((out / "results.json").read_text())


def test_run_writes_results_report_and_official_predictions(cli, models, world_dir, tmp_path, capsys):
    out = tmp_path / "run"
    results = run(
        cli,
        models["base"],
        world_dir,
        out,
        "--tasks",
        OFFLINE,
        "--limit",
        "6",
        "--max-new-tokens",
        "6",
        "--agreement-sample",
        "4",
        "--bootstrap",
        "200",
    )
    assert f"results written to {out / 'results.json'}" in capsys.readouterr().out
    assert list(results) == [*COMPARED, "timings"]
    assert results["settings"]["tasks"] == OFFLINE.split(",")
    assert set(results["dimensions"]) == {"hallucination", "general", "safety"}
    for name, entry in results["tasks"].items():
        assert entry["status"] == "done", name
        assert (out / entry["files"]["questions"]).is_file() and (out / entry["files"]["predictions"]).is_file()
        assert all(
            iv["n_resamples"] == 200 and iv["low"] <= iv["estimate"] <= iv["high"] for iv in entry["intervals"].values()
        )
    # POPE answers in the official answer format. The untrained model's greedy answers never start with Yes or
    # No, so the fast path generates every one of them (what generate-and-parse writes): agreement 1
    lines = [json.loads(x) for x in (out / "predictions/pope_adversarial.jsonl").read_text().splitlines()]
    assert all(set(row) == {"question_id", "text", "answer"} for row in lines)
    fp = results["tasks"]["pope_adversarial"]["fast_path"]
    assert fp["used"] and fp["measured"]["agreement"] >= 0.99 and fp["generated"] == len(lines)
    assert fp["n"] == 4 and fp["forwards_per_item"] == 1.0 and fp["agreement"] == 1.0
    # `mmalign eval score` reproduces every task's metrics from the written files, line by line for POPE
    for name, entry in results["tasks"].items():
        report = tmp_path / f"{name}.json"
        assert cli([*entry["score_command"].split()[1:], "--bootstrap", "200", "--json", str(report)]) == 0
        scored = json.loads(report.read_text())
        expected = {k: v for k, v in entry["metrics"].items() if k != "absent_partner"}
        assert scored["metrics"] == expected, name
        assert {k: scored["intervals"][k] for k in scored["intervals"]} == {
            k: v for k, v in entry["intervals"].items() if k in scored["intervals"]
        }
        if name == "pope_adversarial":
            assert [i["parsed"] for i in scored["items"]] == [official_yes_no(row["text"]) for row in lines]
    # MME also in the eval tool's own layout, which scores to the same total
    assert (
        cli(
            [
                "eval",
                "score",
                "--task",
                "mme",
                "--answers",
                str(out / "predictions/mme"),
                "--json",
                str(tmp_path / "mme-tool.json"),
            ]
        )
        == 0
    )
    assert (
        json.loads((tmp_path / "mme-tool.json").read_text())["metrics"]["total"]
        == (results["tasks"]["mme"]["metrics"]["total"])
    )
    report_md = (out / "report.md").read_text()
    for heading in ("## Summary", "## Hallucination", "## General knowledge", "## Safety", "## Fast path agreement"):
        assert heading in report_md
    assert all((out / png).stat().st_size > 1000 for png in ("dimensions.png", "pope.png", "partners.png"))


def test_chair_counts_absent_partners_named(models, world_dir, tmp_path):
    """Captions that name every absent partner: the partner rate is 1 and other absent objects are never named."""
    from mmalign.eval.scoring.rescore import rescore
    from mmalign.eval.tasks.items import read_eval_items

    items = read_eval_items(world_dir / "test" / "caption.jsonl")
    types = json.loads((world_dir / "world.json").read_text())["objects"]
    questions, answers = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
    rows, texts = [], []
    for item in items:
        item.meta["absent_objects"] = [t for t in types if t not in item.objects]
        rows.append(json.dumps(item.to_dict()))
        caption = " and ".join("a " + name for name in item.meta["absent_partners"])
        texts.append(json.dumps({"question_id": item.id, "text": caption}))
    questions.write_text("\n".join(rows) + "\n")
    answers.write_text("\n".join(texts) + "\n")
    result = rescore("chair", {"questions": "q.jsonl", "predictions": "a.jsonl"}, tmp_path)
    partner = result.metrics["absent_partner"]
    with_partner = sum(1 for i in items if i.meta["absent_partners"])
    assert with_partner > 0
    assert partner["absent_partner_mention_rate"] == 1.0 and partner["absent_partner_caption_rate"] == 1.0
    assert partner["other_absent_mention_rate"] == 0.0 and partner["captions_with_absent_partner"] == with_partner
    assert result.metrics["n_hallucinated_mentions"] == sum(len(i.meta["absent_partners"]) for i in items)


def test_same_seed_same_results_and_resume_after_a_crash(models, world_dir, tmp_path, monkeypatch):
    """A fresh run, then the same run killed after two batches and resumed: identical results.json (timings
    aside), and the resumed run computes only what the killed one did not finish. The determined model
    answers Yes/No first, so generate-and-parse agrees with the fast path on every item."""
    cfg = EvalConfig(
        model=models["yesno"],
        out=tmp_path / "run",
        tasks="pope_adversarial,mme,consistency",
        data=world_dir,
        limit=12,
        batch_size=4,
        agreement_sample=100,
        max_new_tokens=1,
        n_resamples=100,
        progress=False,
    )
    first = evaluate(cfg, echo=lambda _: None)
    for entry in first["tasks"].values():
        assert entry["fast_path"]["agreement"] == 1.0 and entry["fast_path"]["n"] == entry["n_items"]
    shutil.rmtree(cfg.out / "cache")

    real = runner.choose_options
    calls = {"n": 0, "items": 0}

    def crashing(loaded, items, options, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return real(loaded, items, options, **kw)

    monkeypatch.setattr(runner, "choose_options", crashing)
    with pytest.raises(RuntimeError, match="killed"):
        evaluate(cfg, echo=lambda _: None)

    def counting(loaded, items, options, **kw):
        calls["items"] += len(items)
        return real(loaded, items, options, **kw)

    monkeypatch.setattr(runner, "choose_options", counting)
    resumed = evaluate(cfg, echo=lambda _: None)
    assert compared_part(resumed) == compared_part(first)
    n_items = sum(e["n_items"] for e in first["tasks"].values())
    assert calls["items"] == n_items - 2 * cfg.batch_size  # two batches survived the crash
    assert resumed["timings"]["tasks"]["pope_adversarial"]["items_cached"] == 2 * cfg.batch_size


def test_reward_accuracy_from_dpo_implicit_rewards(cli, models, world_dir, tmp_path):
    import torch

    from mmalign.eval.tasks.world import reward_pairs
    from mmalign.models import load, preference_logps

    out = tmp_path / "reward"
    results = run(
        cli,
        models["yesno"],
        world_dir,
        out,
        "--tasks",
        "reward",
        "--reference",
        str(models["base"]),
        "--limit",
        "6",
        "--beta",
        "0.5",
    )
    rows = [json.loads(x) for x in (out / "predictions/reward.jsonl").read_text().splitlines()]
    pairs = reward_pairs(world_dir, "test")[: len(rows)]
    loaded = load(models["yesno"])
    with torch.no_grad():
        logps = preference_logps(loaded.model, loaded.collator(image_root=world_dir)(pairs[:2]))
    assert [r["policy_chosen_logp"] for r in rows[:2]] == pytest.approx(logps.chosen.sum.tolist(), abs=1e-4)

    # accuracy by hand: β (log π − log π_ref) of chosen strictly above that of rejected
    def reward(r: dict, side: str) -> float:
        return 0.5 * (r[f"policy_{side}_logp"] - r[f"ref_{side}_logp"])

    wins = [reward(r, "chosen") > reward(r, "rejected") for r in rows]
    metrics = results["tasks"]["reward"]["metrics"]
    assert metrics["accuracy"] == sum(wins) / len(rows) and metrics["n"] == len(rows)
    assert set(metrics["categories"]) <= {"absent_partner", "absent_object", "attribute"}
    assert results["reference"]["path"] == str(models["base"])
    # the model as its own reference: every implicit reward is 0, every pair a tie, and a tie is wrong
    same = run(
        cli,
        models["base"],
        world_dir,
        tmp_path / "same",
        "--tasks",
        "reward",
        "--reference",
        str(models["base"]),
        "--limit",
        "6",
    )
    assert same["tasks"]["reward"]["metrics"]["accuracy"] == 0.0
    assert same["tasks"]["reward"]["metrics"]["ties"] == len(rows)
