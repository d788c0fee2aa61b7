"""A tiny world on disk: determinism, valid records, statistics, caption noise, disjoint splits, atomicity."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from itertools import combinations
from pathlib import Path

import pytest

from mmalign.data.io import read_records
from mmalign.errors import ConfigError, DataError
from mmalign.world import generate
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world, read_world
from mmalign.world.items import EVAL_TASKS, scene_from_row, train_caption
from mmalign.world.scene import absent_partners, sample_split
from mmalign.world.text import reference_caption

SMALL = WorldConfig(train_scenes=120, val_scenes=20, test_scenes=20, image_size=48)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_same_config_gives_byte_identical_worlds_with_any_number_of_workers(tmp_path):
    cfg = SMALL
    a = tree_digest(generate_world(tmp_path / "a", cfg).out_dir)
    b = tree_digest(generate_world(tmp_path / "b", cfg, num_workers=2).out_dir)
    assert a == b
    assert len([k for k in a if k.endswith(".png")]) == 160
    c = tree_digest(generate_world(tmp_path / "c", cfg.replace(seed=1)).out_dir)
    assert c["world.json"] != a["world.json"] and c["train/sft.jsonl"] != a["train/sft.jsonl"]


def test_every_record_validates_and_its_image_decodes(tiny_world):
    root, summary = tiny_world
    info = read_world(root)
    for rel, n in info["files"].items():
        if rel.startswith("images/"):
            assert len(list((root / rel).glob("*.png"))) == n
            continue
        if rel.endswith("scenes.jsonl"):
            assert len(read_jsonl(root / rel)) == n
            continue
        kind = "sft" if rel.startswith("train/") else "eval"
        records = list(read_records(root / rel, kind=kind, root=root, check_images="decode"))
        assert len(records) == n > 0, rel
        assert len({r.id for r in records}) == n, rel  # ids are unique
    assert set(info["files"]) >= {f"val/{t}.jsonl" for t in EVAL_TASKS} | {"train/sft.jsonl"}
    assert summary.files == info["files"]


def test_world_json_statistics_match_the_scenes_written(tiny_world):
    root, summary = tiny_world
    info = read_world(root)
    assert info["config"] == summary.config.to_dict()
    rows = read_jsonl(root / "train/scenes.jsonl")
    freq = Counter(name for row in rows for name in row["present"])
    pairs = Counter(frozenset(p) for row in rows for p in combinations(row["present"], 2))
    stats = info["statistics"]["train"]
    assert stats["scenes"] == len(rows) == summary.config.train_scenes
    assert stats["object_frequency"] == {t: freq[t] for t in info["objects"]}
    for entry in stats["pair_cooccurrence"]:
        assert pairs[frozenset((entry["a"], entry["b"]))] == entry["count"]
    assert sum(e["count"] for e in stats["pair_cooccurrence"]) == sum(pairs.values())
    for a, b in info["partner_pairs"]:
        assert stats["p_partner_given_object"][a] == round(pairs[frozenset((a, b))] / freq[a], 4)
    trials = sum(row["partner_trials"] for row in rows)
    assert (stats["partner_trials"], stats["partner_added"]) == (trials, sum(r["partner_added"] for r in rows))
    assert summary.p_partner_given_object > 5 * summary.p_other_given_object  # the co-occurrence structure


def test_splits_are_disjoint_on_disk(tiny_world):
    root, _ = tiny_world
    keys = {
        split: {row["key"] for row in read_jsonl(root / split / "scenes.jsonl")} for split in ("train", "val", "test")
    }
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
    for split in keys:  # the key is what the objects and cells say
        for row in read_jsonl(root / split / "scenes.jsonl"):
            assert row["key"] == scene_from_row(row).key()


def test_caption_noise_rate_only_in_train_and_only_with_an_absent_partner():
    cfg = WorldConfig(caption_noise=0.3, train_scenes=3000)
    captions = [(s, train_caption(s, cfg)) for s in sample_split(cfg, "train", 3000)]
    eligible = [c for s, c in captions if absent_partners(s, cfg)]
    assert all(c.eligible for c in eligible) and not any(c.noisy for s, c in captions if not absent_partners(s, cfg))
    rate, n = sum(c.noisy for c in eligible) / len(eligible), len(eligible)
    assert n > 500 and abs(rate - 0.3) <= 4 * math.sqrt(0.3 * 0.7 / n)
    for scene, caption in captions:
        assert caption.clean == reference_caption(scene, cfg)
        if caption.noisy:
            assert caption.text != caption.clean and set(caption.named_absent) == set(absent_partners(scene, cfg))
    clean = WorldConfig(caption_noise=0.0)
    assert not any(train_caption(s, clean).noisy for s in sample_split(clean, "train", 300))


def test_noise_on_disk(tiny_world):
    root, summary = tiny_world
    rows = {row["id"]: row for row in read_jsonl(root / "train/scenes.jsonl")}
    sft = [r for r in read_jsonl(root / "train/sft.jsonl") if r["meta"]["task"] == "caption"]
    clean = {r["id"]: r for r in read_jsonl(root / "train/captions_clean.jsonl")}
    noisy = 0
    for record in sft:
        row, text = rows[record["meta"]["scene_id"]], record["completion"][0]["content"][0]["text"]
        assert text == row["train_caption"]
        assert clean[record["id"]]["completion"][0]["content"][0]["text"] == row["caption"]
        if record["meta"]["noisy"]:
            noisy += 1
            assert row["absent_partners"] and record["meta"]["named_absent"] == row["absent_partners"]
            assert all(name in text and name not in row["present"] for name in row["absent_partners"])
        else:
            assert text == row["caption"]
    assert noisy == summary.noise_applied > 0
    info = read_world(root)["caption_noise"]
    assert (info["eligible"], info["noisy"]) == (summary.noise_eligible, noisy)
    for split in ("val", "test"):  # evaluation is always clean
        scenes = {row["id"]: row for row in read_jsonl(root / split / "scenes.jsonl")}
        for item in read_jsonl(root / split / "caption.jsonl"):
            scene = scenes[item["meta"]["scene_id"]]
            assert item["answer"] == scene["caption"] and item["objects"] == scene["present"]
            assert item["meta"]["absent_partners"] == scene["absent_partners"]


def test_pope_negatives_follow_each_strategy(tiny_world):
    root, summary = tiny_world
    info = read_world(root)
    train = read_jsonl(root / "train/scenes.jsonl")
    freq = Counter(name for row in train for name in row["present"])
    co = Counter(frozenset(p) for row in train for p in combinations(row["present"], 2))
    order = {t: i for i, t in enumerate(info["objects"])}
    for split in ("val", "test"):
        scenes = {row["id"]: row for row in read_jsonl(root / split / "scenes.jsonl")}
        by_strategy = {
            s: _by_scene(read_jsonl(root / split / f"pope_{s}.jsonl")) for s in ("random", "popular", "adversarial")
        }
        for scene_id, row in scenes.items():
            present = row["present"]
            absent = [t for t in info["objects"] if t not in present]
            k = min(summary.config.pope_k, len(present))
            popular = sorted(absent, key=lambda t: (-freq[t], order[t]))[:k]
            score = {t: sum(co[frozenset((p, t))] for p in present) for t in absent}
            adversarial = sorted(absent, key=lambda t: (-score[t], -freq[t], order[t]))[:k]
            positives = None
            for strategy, items in by_strategy.items():
                mine = items[scene_id]
                yes = [i["meta"]["object"] for i in mine if i["answer"] == "yes"]
                no = [i["meta"]["object"] for i in mine if i["answer"] == "no"]
                assert len(yes) == len(no) == k  # balanced, as in POPE
                assert [i["answer"] for i in mine] == ["yes", "no"] * k
                assert set(yes) <= set(present) and not set(no) & set(present)
                assert all(i["question"] == f"Is there a {i['meta']['object']} in the image?" for i in mine)
                assert all(i["meta"]["absent_partner"] == (i["meta"]["object"] in row["absent_partners"]) for i in mine)
                positives = positives or yes
                assert yes == positives  # the same ground-truth objects for every strategy
                if strategy == "popular":
                    assert no == popular
                elif strategy == "adversarial":
                    assert no == adversarial
                else:
                    assert len(set(no)) == k


def _by_scene(items: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for item in items:
        out.setdefault(item["meta"]["scene_id"], []).append(item)
    return out


def test_adversarial_negatives_include_the_absent_partners(tiny_world):
    root, _ = tiny_world
    scenes = {row["id"]: row for row in read_jsonl(root / "val/scenes.jsonl")}
    negatives = _by_scene([i for i in read_jsonl(root / "val/pope_adversarial.jsonl") if i["answer"] == "no"])
    covered = total = 0
    for scene_id, row in scenes.items():
        if row["absent_partners"] and len(row["absent_partners"]) <= len(negatives[scene_id]):
            total += 1
            covered += set(row["absent_partners"]) <= {i["meta"]["object"] for i in negatives[scene_id]}
    assert total > 5 and covered / total > 0.9, (covered, total)


def test_other_eval_files(tiny_world):
    root, _ = tiny_world
    scenes = {row["id"]: row for row in read_jsonl(root / "test/scenes.jsonl")}
    for item in read_jsonl(root / "test/count.jsonl"):
        row = scenes[item["meta"]["scene_id"]]
        shape = item["meta"]["shape"]
        n = sum(1 for o in row["objects"] if shape is None or o["shape"] == shape)
        assert item["answer"] == ["zero", "one", "two", "three", "four"][n]
    for item in read_jsonl(root / "test/position.jsonl"):
        obj = next(o for o in scenes[item["meta"]["scene_id"]]["objects"] if o["name"] == item["meta"]["object"])
        assert item["answer"] == obj["position"]
    for item in read_jsonl(root / "test/colour.jsonl"):
        obj = next(o for o in scenes[item["meta"]["scene_id"]]["objects"] if o["name"] == item["meta"]["object"])
        assert item["answer"] == obj["colour"] and item["question"] == f"What colour is the {obj['shape']}?"
    for item in read_jsonl(root / "test/mc.jsonl"):
        answer = item["choices"]["ABCD".index(item["answer"])]
        assert answer in item["objects"] and sum(c in item["objects"] for c in item["choices"]) == 1
    groups = Counter(item["meta"]["group"] for item in read_jsonl(root / "test/mme.jsonl"))
    assert set(groups.values()) == {2} and len(groups) == len(scenes)


def test_refuses_to_replace_what_is_not_a_world_and_needs_overwrite(tmp_path):
    cfg = SMALL.replace(train_scenes=10, val_scenes=2, test_scenes=2)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a shapes world"):
        generate_world(other, cfg, overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"
    out = tmp_path / "w"
    generate_world(out, cfg)
    with pytest.raises(ConfigError, match="--overwrite"):
        generate_world(out, cfg)
    generate_world(out, cfg.replace(seed=5), overwrite=True)
    assert read_world(out)["config"]["seed"] == 5
    with pytest.raises(DataError, match=r"world\.json is missing"):
        read_world(other)


def test_a_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(jobs, size):
        raise RuntimeError("disk full")

    monkeypatch.setattr(generate, "render_to_files", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_world(tmp_path / "w", SMALL.replace(train_scenes=10, val_scenes=2, test_scenes=2))
    assert list(tmp_path.iterdir()) == []


def test_world_json_is_plain_json(tiny_world):
    root, _ = tiny_world
    text = (root / "world.json").read_text()
    assert json.loads(text)["format"] == "mmalign.world/1"
