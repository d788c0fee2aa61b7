"""The video pair builders on a tiny moving world: every ``video-hallucinate`` kind checked against the ground truth
sentence by sentence, skips counted, determinism; ``video-corrupt``'s rejected frames a permutation or a strict
subset of the clip's; frames carried to another output root by a build and by a mix."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from mmalign.data.io import read_records
from mmalign.errors import ConfigError, DataError
from mmalign.pairs import BuildInputs, make_builder, run_build
from mmalign.pairs.mix import MixSource, mix
from mmalign.world.config import WorldConfig
from mmalign.world.text import NO_CHANGE
from mmalign.world.video import generate_video_world

CLIPS = WorldConfig(video=True, train_scenes=16, val_scenes=1, test_scenes=1, image_size=48, min_events=0, max_events=4)


@pytest.fixture(scope="module")
def video_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("video-pairs") / "w"
    generate_video_world(out, CLIPS)
    return out


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def clips(world: Path) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in lines(world / "train" / "clips.jsonl")}


def text(row: dict[str, Any], side: str) -> str:
    return row[side][0]["content"][0]["text"]


def sentences(caption: str) -> list[str]:
    """The still caption, then one sentence per event (the world's captions have one period a sentence)."""
    return re.findall(r"[^.]+\.", caption.replace(". ", ".\n").replace("\n", ""))


def build(world: Path, out: Path, strategy: str, seed: int = 0, **options: Any):
    return run_build(make_builder(strategy, options), BuildInputs(world=world), out, seed=seed)


@pytest.fixture(scope="module")
def pairs(video_world: Path) -> list[dict[str, Any]]:
    build(video_world, video_world / "pairs" / "vh.jsonl", "video-hallucinate")
    rows = lines(video_world / "pairs" / "vh.jsonl")
    kinds = {r["meta"]["kind"] for r in rows}
    assert kinds == {"order", "invent", "miss", "count", "static", "before"}, kinds  # every kind is tested below
    return rows


def of_kind(pairs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in pairs if r["meta"]["kind"] == kind]


def test_the_chosen_caption_is_the_ground_truth_and_the_rejected_one_differs(pairs, video_world):
    truth = clips(video_world)
    for row in pairs:
        assert text(row, "chosen") != text(row, "rejected")
        assert row["videos"] == [
            {
                "path": truth[row["meta"]["clip_id"]]["video"],
                "sampling": {"mode": "uniform", "max_frames": 16, "num_frames": 8},
            }
        ]
        assert row["prompt"][0]["content"][0] == {"type": "video"}
        if row["meta"]["kind"] != "before":
            assert text(row, "chosen") == truth[row["meta"]["clip_id"]]["caption"]
            assert row["prompt"][0]["content"][1]["text"] == "Describe the video."
    assert len(list(read_records(video_world / "pairs" / "vh.jsonl"))) == len(pairs)  # every record reads back


def test_order_swaps_two_events_and_nothing_else(pairs):
    for row in of_kind(pairs, "order"):
        chosen, rejected = sentences(text(row, "chosen")), sentences(text(row, "rejected"))
        differ = [k for k in range(len(chosen)) if chosen[k] != rejected[k]]
        assert len(chosen) == len(rejected) and len(differ) == 2 and differ[0] > 0  # the still caption is kept
        a, b = differ
        assert (rejected[a], rejected[b]) == (chosen[b], chosen[a])
        first, then = row["meta"]["swapped"]
        assert first["frame"] < then["frame"] and row["meta"]["positions"] == [a - 1, b - 1]
        for spans, side in ((row["chosen_spans"], chosen), (row["rejected_spans"], rejected)):
            whole = text(row, "chosen" if side is chosen else "rejected")
            assert [whole[s:e] for s, e in spans] == [side[a], side[b]]


def test_invent_adds_one_event_absent_from_the_ground_truth(pairs, video_world):
    truth = clips(video_world)
    for row in of_kind(pairs, "invent"):
        clip = truth[row["meta"]["clip_id"]]
        chosen, rejected = sentences(text(row, "chosen")), sentences(text(row, "rejected"))
        k = row["meta"]["position"] + 1
        said = rejected[k]
        assert [*rejected[:k], *rejected[k + 1 :]] == (
            chosen if clip["events"] else chosen[:-1]
        )  # drop "Nothing changes."
        assert [text(row, "rejected")[s:e] for s, e in row["rejected_spans"]] == [said] and row["chosen_spans"] == []
        event = row["meta"]["invented"]
        assert said.endswith(f"{event['object']} {event['type']}s.")
        if event["type"] == "appear":  # never in any frame
            assert all(event["object"] not in frame for frame in clip["per_frame"])
        else:  # present then, and never disappears
            assert event["object"] in clip["per_frame"][row["meta"]["after_frame"]]
            assert not any(e["type"] == "disappear" and e["object"] == event["object"] for e in clip["events"])


def test_miss_leaves_out_one_real_appearance_or_disappearance(pairs, video_world):
    truth = clips(video_world)
    for row in of_kind(pairs, "miss"):
        chosen, rejected = sentences(text(row, "chosen")), sentences(text(row, "rejected"))
        k = row["meta"]["position"] + 1
        missed = row["meta"]["missed"]
        assert missed in truth[row["meta"]["clip_id"]]["events"] and missed["type"] in ("appear", "disappear")
        left = [*chosen[:k], *chosen[k + 1 :]]
        assert rejected == (left if len(left) > 1 else [*left, NO_CHANGE])
        assert chosen[k].endswith(f"{missed['type']}s.")


def test_count_says_an_event_twice_that_happens_once(pairs):
    for row in of_kind(pairs, "count"):
        chosen, rejected = sentences(text(row, "chosen")), sentences(text(row, "rejected"))
        differ = [k for k in range(len(chosen)) if chosen[k] != rejected[k]]
        assert len(differ) == 1 and chosen.count(chosen[differ[0]]) == 1
        assert rejected[differ[0]] == chosen[differ[0]][:-1] + " twice."


def test_static_says_nothing_changes_in_a_clip_that_changes(pairs, video_world):
    truth = clips(video_world)
    rows = of_kind(pairs, "static")
    assert {r["meta"]["clip_id"] for r in rows} == {i for i, c in truth.items() if c["events"]}
    for row in rows:
        chosen = sentences(text(row, "chosen"))
        assert text(row, "rejected") == f"{chosen[0]} {NO_CHANGE}"


def test_before_asks_in_the_true_order_and_the_swapped_one(pairs):
    rows = of_kind(pairs, "before")
    assert len(rows) % 2 == 0
    for yes, no in zip(rows[::2], rows[1::2], strict=True):
        first, then = yes["meta"]["first"], yes["meta"]["then"]
        assert first["frame"] < then["frame"]
        assert (text(yes, "chosen"), text(yes, "rejected"), text(no, "chosen")) == ("Yes.", "No.", "No.")
        assert yes["prompt"][0]["content"][1]["text"].startswith(f"Does the {first['object']} ")
        assert no["prompt"][0]["content"][1]["text"].startswith(f"Does the {then['object']} ")


def test_kinds_that_do_not_apply_are_skipped_and_counted(video_world, tmp_path):
    truth = list(clips(video_world).values())
    result = build(video_world, tmp_path / "s.jsonl", "video-hallucinate", kinds=["static", "order"])
    static_skips = sum(1 for c in truth if not c["events"])
    order_skips = sum(1 for c in truth if len(set(sentences(c["caption"])[1:]) - {NO_CHANGE}) < 2)
    assert static_skips > 0 and order_skips > static_skips
    assert f"order {order_skips} (" in result.description and f"static {static_skips} (no event)" in result.description
    assert result.pairs == 2 * len(truth) - static_skips - order_skips


def test_the_build_is_deterministic_by_seed_and_frames_can_be_listed(video_world, tmp_path):
    build(video_world, tmp_path / "a.jsonl", "video-hallucinate", seed=3)
    build(video_world, tmp_path / "b.jsonl", "video-hallucinate", seed=3)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    build(video_world, tmp_path / "f.jsonl", "video-hallucinate", video="frames", num_frames=4, kinds=["static"])
    row = lines(tmp_path / "f.jsonl")[0]
    folder = clips(video_world)[row["meta"]["clip_id"]]["frames"]
    assert row["videos"] == [{"frames": [f"{folder}/{i:03d}.png" for i in (0, 2, 4, 7)]}]  # linspace(0, 7, 4) as int
    assert all((tmp_path / f).is_file() for f in row["videos"][0]["frames"])  # copied under the output's root


@pytest.mark.parametrize(
    ("strategy", "options"),
    [
        ("video-hallucinate", {"kinds": ["flip"]}),
        ("video-hallucinate", {"video": "gif"}),
        ("video-hallucinate", {"sampling": "fps"}),
        ("video-corrupt", {"shuffle_frames": 1}),
        ("video-corrupt", {"variants": 3}),
    ],
)
def test_bad_options_are_refused(strategy, options):
    with pytest.raises(ConfigError):
        make_builder(strategy, options)


def test_shuffled_frames_are_a_permutation_and_dropped_ones_a_strict_subset(video_world, tmp_path):
    out = tmp_path / "c.jsonl"
    build(video_world, out, "video-corrupt", variants=2, shuffle_frames=3, drop_frames=3)
    rows = lines(out)
    assert len(rows) == 2 * len(clips(video_world))
    for row in rows:
        chosen, rejected = row["videos"][0]["frames"], row["rejected_videos"][0]["frames"]
        assert text(row, "chosen") == text(row, "rejected") == clips(video_world)[row["meta"]["clip_id"]]["caption"]
        assert chosen == [f"frames/train/{row['meta']['clip_id']}/{i:03d}.png" for i in range(8)]
        assert rejected == [chosen[i] for i in row["meta"]["order"]]
        if row["meta"]["mode"] == "shuffle":
            assert sorted(rejected) == chosen and sum(a != b for a, b in zip(chosen, rejected, strict=True)) == 3
        else:
            assert len(rejected) == 5 and set(rejected) < set(chosen) and rejected == sorted(rejected)
        assert all((tmp_path / f).is_file() for f in rejected)  # the world's frames, copied to the output's root
    assert len(list(read_records(out))) == len(rows)


def test_a_mix_from_another_root_carries_the_frames(video_world, tmp_path):
    out = video_world / "pairs" / "c.jsonl"  # inside the world: frames referenced in place, nothing copied
    build(video_world, out, "video-corrupt")
    assert not (video_world / "pairs" / "frames").exists()
    mixed = tmp_path / "mixed" / "m.jsonl"
    mix([MixSource(out, count=3)], mixed, seed=1)
    for row in lines(mixed):
        for frame in row["videos"][0]["frames"] + row["rejected_videos"][0]["frames"]:
            assert (mixed.parent / frame).read_bytes() == (video_world / frame).read_bytes()


def test_video_files_are_copied_by_a_build_and_refused_by_a_mix_across_roots(video_world, tmp_path):
    out = tmp_path / "files" / "vh.jsonl"
    build(video_world, out, "video-hallucinate", kinds=["static"])
    for row in lines(out):
        path = row["videos"][0]["path"]
        assert (out.parent / path).read_bytes() == (video_world / path).read_bytes()
    inside = video_world / "pairs" / "files.jsonl"
    build(video_world, inside, "video-hallucinate", kinds=["static"])
    with pytest.raises(DataError, match=r"is a video file .* under another data root") as err:
        mix([MixSource(inside)], tmp_path / "mixed" / "m.jsonl")
    assert err.value.field == "videos[0].path" and err.value.record_id is not None


def test_a_caption_that_is_not_the_ground_truth_is_refused_naming_the_clip(video_world, tmp_path):
    import shutil

    world = tmp_path / "w"
    shutil.copytree(video_world, world, ignore=shutil.ignore_patterns("pairs"))
    rows = lines(world / "train" / "clips.jsonl")
    rows[2]["caption"] += " The red circle moves up."
    (world / "train" / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match="is not the ground truth") as err:
        build(world, tmp_path / "x.jsonl", "video-hallucinate")
    assert (err.value.record_id, err.value.field) == (rows[2]["id"], "caption")
    assert str(err.value.file).endswith("clips.jsonl")
