"""Videos in records: the agreed layout (a file with sampling, or an ordered frame list), parsed and checked like
images (placeholders, path safety, limits), read back from JSONL, validated with file, line, record and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mmalign.data.io import read_records
from mmalign.data.limits import DEFAULT_MAX_FRAMES
from mmalign.data.parse import record_from_dict
from mmalign.data.records import PreferenceRecord, Sampling, SFTRecord, VideoRef, assistant, user_prompt
from mmalign.data.validate import validate
from mmalign.data.video_refs import load_video, read_video_file, sample_indices
from mmalign.errors import DataError

COLOURS = [(220, 30, 30), (30, 220, 30), (30, 30, 220), (220, 220, 30), (30, 220, 220), (220, 30, 220)]


def video_prompt(text: str = "Describe the clip.", n: int = 1) -> list[dict]:
    return [{"role": "user", "content": [*({"type": "video"} for _ in range(n)), {"type": "text", "text": text}]}]


def pair_dict(videos, **extra) -> dict:
    return {
        "id": "v-1",
        "prompt": video_prompt(n=len(videos)),
        "chosen": assistant("A red circle appears."),
        "rejected": assistant("A red circle disappears."),
        "videos": videos,
        **extra,
    }


def write_frames(root: Path, folder: str, n: int) -> list[str]:
    paths = []
    for i in range(n):
        path = root / folder / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), COLOURS[i % len(COLOURS)]).save(path)
        paths.append(f"{folder}/{i:03d}.png")
    return paths


def write_mp4(path: Path, n: int, fps: int = 4) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_image(Image.new("RGB", (32, 32), COLOURS[i % len(COLOURS)]))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_both_video_shapes_round_trip():
    frames = {"frames": ["f/000.png", "f/001.png"]}
    path = {"path": "videos/a.mp4", "sampling": {"mode": "fps", "fps": 2.0, "max_frames": 8}}
    record = record_from_dict(pair_dict([frames, path]))
    assert record.videos == [
        VideoRef(frames=("f/000.png", "f/001.png")),
        VideoRef(path="videos/a.mp4", sampling=Sampling(mode="fps", num_frames=None, fps=2.0, max_frames=8)),
    ]
    assert record.to_dict()["videos"] == [
        frames,
        {"path": "videos/a.mp4", "sampling": {"mode": "fps", "fps": 2.0, "max_frames": 8}},
    ]
    assert record_from_dict(record.to_dict()) == record
    # A missing sampling takes the defaults (uniform, 8 frames, at most 16), written out in full.
    default = record_from_dict(pair_dict([{"path": "videos/a.mp4"}]))
    assert default.to_dict()["videos"] == [
        {"path": "videos/a.mp4", "sampling": {"mode": "uniform", "num_frames": 8, "max_frames": 16}}
    ]
    # Image-only records keep their exact layout: no "videos" key at all.
    still = SFTRecord("s", user_prompt("Describe."), assistant("A circle."), ["a.png"])
    assert "videos" not in still.to_dict()


def test_rejected_videos_make_a_video_side_pair():
    a, b = {"frames": ["f/000.png", "f/001.png"]}, {"frames": ["f/001.png", "f/000.png"]}  # shuffled frames
    same_text = pair_dict([a], rejected=assistant("A red circle appears."), rejected_videos=[b])
    record = record_from_dict(same_text)  # same text, other frames: a preference over the video alone
    assert isinstance(record, PreferenceRecord) and record.rejected_videos == [
        VideoRef(frames=("f/001.png", "f/000.png"))
    ]
    with pytest.raises(DataError, match="chosen is identical to rejected"):
        record_from_dict({**same_text, "rejected_videos": [a]})
    with pytest.raises(DataError, match="has 2 video") as err:
        record_from_dict({**same_text, "rejected_videos": [a, b]})
    assert err.value.field == "rejected_videos"


@pytest.mark.parametrize(
    ("videos", "field", "message"),
    [
        ([], "videos", "1 video placeholder"),  # the prompt has one <video>, the record none
        ([{"frames": []}], "videos[0].frames", "must not be empty"),
        ([{"frames": ["../secret.png"]}], "videos[0].frames[0]", "escapes the data root"),
        ([{"path": "/etc/x.mp4"}], "videos[0].path", "absolute"),
        ([{"path": "a.mp4", "frames": ["a.png"]}], "videos[0]", "exactly one of"),
        ([{"frames": ["a.png"], "sampling": {}}], "videos[0]", "not sampled"),
        ([{"path": "a.mp4", "sampling": {"mode": "fps"}}], "videos[0].sampling.fps", "positive 'fps'"),
        ([{"path": "a.mp4", "sampling": {"mode": "every"}}], "videos[0].sampling.mode", "must be one of"),
        ([{"path": "a.mp4", "sampling": {"frames": 3}}], "videos[0].sampling", "unknown sampling key"),
        (
            [{"path": "a.mp4", "sampling": {"max_frames": DEFAULT_MAX_FRAMES + 1}}],
            "videos[0].sampling.max_frames",
            "over the limit",
        ),
        ([{"frames": ["a.png"] * (DEFAULT_MAX_FRAMES + 1)}], "videos[0].frames", "over the limit"),
        (["a.mp4"], "videos[0]", "a video must be"),
    ],
)
def test_bad_videos_name_record_and_field(videos, field, message):
    data = pair_dict(videos)
    if not videos:
        data["prompt"] = video_prompt(n=1)
    with pytest.raises(DataError, match=message) as err:
        record_from_dict(data)
    assert err.value.record_id == "v-1" and err.value.field == field


def test_a_response_may_not_hold_a_video():
    data = pair_dict([{"frames": ["a.png"]}])
    data["chosen"] = [{"role": "assistant", "content": [{"type": "video"}, {"type": "text", "text": "x"}]}]
    with pytest.raises(DataError, match="image or video placeholders") as err:
        record_from_dict(data)
    assert err.value.field == "chosen"


def test_sample_indices_by_hand():
    # the reader's rule (LLaVA-Video): uniform 4 of 10 = linspace(0, 9, 4) cut to int: 0, 3, 6, 9
    assert sample_indices(10, 4.0, Sampling(num_frames=4)) == [0, 3, 6, 9]
    # fps: 2 frames a second of a 10 fps clip is every round(10 / 2) = 5th frame from 0: 0, 5, 10, 15
    assert sample_indices(20, 10.0, Sampling(mode="fps", num_frames=None, fps=2.0)) == [0, 5, 10, 15]
    # max_frames caps both (drawn again uniformly: the first and last); never more frames than the clip has
    assert sample_indices(20, 10.0, Sampling(num_frames=8, max_frames=2)) == [0, 19]
    assert sample_indices(3, 10.0, Sampling(num_frames=8)) == [0, 1, 2]


def test_a_video_file_is_decoded_and_sampled(tmp_path):
    write_mp4(tmp_path / "videos" / "a.mp4", 6)
    frames = read_video_file(tmp_path / "videos" / "a.mp4", Sampling(num_frames=3))
    # 3 of 6 frames: linspace(0, 5, 3) -> 0, 2, 5 -> colours 0, 2, 5 (lossy codec: compare the dominant channels)
    assert [f.size for f in frames] == [(32, 32)] * 3
    for frame, i in zip(frames, [0, 2, 5], strict=True):
        got = frame.getpixel((16, 16))
        assert all(abs(a - b) < 40 for a, b in zip(got, COLOURS[i], strict=True)), (got, COLOURS[i])
    ref = VideoRef(path="videos/a.mp4", sampling=Sampling(num_frames=3))
    assert len(load_video(ref, tmp_path)) == 3
    with pytest.raises(DataError, match="over the limit of 100 pixels") as err:
        load_video(ref, tmp_path, max_pixels=100, field="videos[0]")
    assert err.value.field == "videos[0].path"


def test_jsonl_with_videos_reads_back_and_validates(tmp_path):
    frames = write_frames(tmp_path, "frames/c0", 3)
    write_mp4(tmp_path / "videos" / "c0.mp4", 4)
    good = pair_dict([{"frames": frames}, {"path": "videos/c0.mp4", "sampling": {"num_frames": 2}}])
    missing = {**pair_dict([{"frames": [frames[0], "frames/c0/009.png"]}]), "id": "v-2"}
    corrupt_path = tmp_path / "videos" / "bad.mp4"
    corrupt_path.write_bytes(b"not a video at all")
    corrupt = {**pair_dict([{"path": "videos/bad.mp4"}]), "id": "v-3"}
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (good, missing, corrupt)))
    report = validate(path)
    assert report.n_records == 3 and report.n_bad == 2
    assert "line 2" in report.errors[0] and "'v-2'" in report.errors[0] and "videos[0].frames[1]" in report.errors[0]
    assert "not found" in report.errors[0]
    assert (
        "line 3" in report.errors[1]
        and "videos[0].path" in report.errors[1]
        and "could not be decoded" in report.errors[1]
    )
    from mmalign.data.validate import stats

    summary = stats(path).to_dict()
    assert summary["videos_per_record"] == {"1": 2, "2": 1} and summary["images_per_record"] == {"0": 3}
    records = list(read_records(path, check_images="none"))
    assert [r.id for r in records] == ["v-1", "v-2", "v-3"]
    assert records[0].videos[0].frames == tuple(frames) and records[0].to_dict()["videos"][1]["path"] == "videos/c0.mp4"


def test_in_memory_frames_are_written_as_png_files_and_columnar_files_refuse_videos(tmp_path):
    from mmalign.data.io import write_records

    frames = tuple(Image.new("RGB", (8, 8), c) for c in COLOURS[:3])
    record = PreferenceRecord(
        "m-1",
        video_prompt(),
        assistant("It turns green."),
        assistant("It stays red."),
        videos=[VideoRef(frames=frames)],
    )
    write_records(tmp_path / "out" / "pairs.jsonl", [record])
    (back,) = read_records(tmp_path / "out" / "pairs.jsonl")  # checked: the frame files exist and decode
    assert len(back.videos[0].frames) == 3 and all(f.endswith(".png") for f in back.videos[0].frames)
    loaded = load_video(back.videos[0], tmp_path / "out")
    assert [f.getpixel((0, 0)) for f in loaded] == COLOURS[:3]  # PNG: lossless, in order
    with pytest.raises(DataError, match="carry no videos yet") as err:
        write_records(tmp_path / "out" / "pairs.parquet", [record])
    assert err.value.field == "videos" and err.value.record_id == "m-1"
    assert not (tmp_path / "out" / "pairs.parquet").exists()
