"""Reading videos and frame lists with PyAV, frame sampling by hand, and every refusal (a DataError naming the file)."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from mmalign.data.video import Sampling, decode_video, open_frames, open_video, sample_indices, write_video
from mmalign.errors import DataError


def frames(n: int, size: tuple[int, int] = (16, 12)) -> list[Image.Image]:
    """Frame i is flat, red = 10 * i (so a decoded frame tells its index)."""
    return [Image.new("RGB", size, (10 * i, 50, 200)) for i in range(n)]


def red_values(video) -> list[int]:
    return [int(np.asarray(f)[0, 0, 0]) for f in video.frames]


# ------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(
    ("n", "num", "expected"),
    [
        # np.linspace(0, n - 1, num, dtype=int): first and last included, floored
        (10, 4, [0, 3, 6, 9]),  # 9/3 = 3 exactly
        (10, 3, [0, 4, 9]),  # 0, 4.5 -> 4, 9
        (8, 8, list(range(8))),  # as many as the video has: all
        (5, 8, [0, 1, 2, 3, 4]),  # more than the video has: all, once (no repeats)
        (16, 5, [0, 3, 7, 11, 15]),  # 15/4 = 3.75: 0, 3.75, 7.5, 11.25, 15
        (1, 3, [0]),
        (7, 1, [0]),  # linspace with one point: the start
        (100, 2, [0, 99]),
    ],
)
def test_uniform_sampling_by_hand(n, num, expected):
    assert sample_indices(n, Sampling("uniform", num_frames=num)) == expected
    if num < n:  # the same as the source's expression
        assert expected == np.linspace(0, n - 1, num, dtype=int).tolist()


@pytest.mark.parametrize(
    ("n", "video_fps", "fps", "max_frames", "expected"),
    [
        (30, 30.0, 1.0, None, [0]),  # step round(30 / 1) = 30
        (90, 30.0, 1.0, None, [0, 30, 60]),
        (10, 4.0, 2.0, None, [0, 2, 4, 6, 8]),  # step 2
        (10, 4.0, 4.0, None, list(range(10))),  # step 1
        (10, 4.0, 8.0, None, list(range(10))),  # round(0.5) = 0 -> at least 1
        (10, 5.0, 2.0, None, [0, 2, 4, 6, 8]),  # round(2.5) = 2 (Python rounds half to even, as the source)
        (10, 7.0, 2.0, None, [0, 4, 8]),  # round(3.5) = 4
        (90, 30.0, 2.0, 4, [0, 29, 59, 89]),  # 6 frames at step 15, over the cap: linspace(0, 89, 4)
        (90, 30.0, 2.0, 6, [0, 15, 30, 45, 60, 75]),  # exactly at the cap: kept
    ],
)
def test_fps_sampling_and_the_cap_by_hand(n, video_fps, fps, max_frames, expected):
    assert sample_indices(n, Sampling("fps", num_frames=None, fps=fps, max_frames=max_frames), video_fps) == expected


def test_max_frames_caps_uniform_and_none_keeps_everything():
    assert sample_indices(20, Sampling("uniform", num_frames=8, max_frames=3)) == [0, 9, 19]
    assert sample_indices(4, None) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"mode": "random"}, "unknown sampling mode 'random'"),
        ({"mode": "fps"}, "fps sampling needs fps"),
        ({"mode": "uniform", "num_frames": 0}, "num_frames must be an integer >= 1, got 0"),
        ({"num_frames": True}, "num_frames must be an integer >= 1, got True"),
        ({"mode": "fps", "fps": -1.0}, "fps must be a number > 0, got -1.0"),
        ({"max_frames": 2.5}, "max_frames must be an integer >= 1, got 2.5"),
        ({"frames": 8}, "unknown sampling keys ['frames']"),
        ([8], "sampling must be a mapping, got list"),
    ],
)
def test_bad_sampling_is_a_located_error(value, message):
    with pytest.raises(DataError, match=r"field 'videos\[0\]\.sampling'") as err:
        Sampling.from_dict(value, field="videos[0].sampling")
    assert message in str(err.value)


def test_sampling_round_trips_through_its_json_form():
    s = Sampling.from_dict({"mode": "fps", "fps": 2.0, "max_frames": 16})
    assert s == Sampling("fps", num_frames=8, fps=2.0, max_frames=16)
    assert Sampling.from_dict(s.to_dict()) == s


def test_fps_sampling_without_a_known_rate_is_refused():
    with pytest.raises(DataError, match="needs the video's frame rate"):
        sample_indices(10, Sampling("fps", fps=2.0), None)


# -------------------------------------------------------------------------------------------- reading


def test_a_written_video_reads_back_exactly_with_its_sampled_frames(tmp_path):
    write_video(tmp_path / "v.mp4", frames(10, (17, 11)), 4.0)  # odd sizes: RGB H.264 has no chroma subsampling
    video = open_video(tmp_path, "v.mp4", Sampling("uniform", num_frames=4))
    assert (video.n_frames, video.fps, video.indices) == (10, 4.0, [0, 3, 6, 9])
    assert video.times == [0.0, 0.75, 1.5, 2.25]
    assert red_values(video) == [0, 30, 60, 90]  # lossless: the exact pixels written
    assert video.frames[0].size == (17, 11) and video.frames[0].mode == "RGB"
    every = open_video(tmp_path, "v.mp4")
    assert every.indices == list(range(10)) and red_values(every) == [10 * i for i in range(10)]
    assert open_video(tmp_path, "v.mp4", Sampling("fps", fps=1.0)).indices == [0, 4, 8]


def test_a_frame_list_is_sampled_and_only_the_sampled_frames_are_opened(tmp_path):
    for i, image in enumerate(frames(6)):
        (tmp_path / "f").mkdir(exist_ok=True)
        image.save(tmp_path / "f" / f"{i:03d}.png")
    paths = [f"f/{i:03d}.png" for i in range(6)]
    (tmp_path / "f" / "003.png").write_bytes(b"not a png")  # never opened: not sampled
    video = open_frames(tmp_path, paths, Sampling("uniform", num_frames=3))
    assert (video.indices, red_values(video), video.fps, video.times) == ([0, 2, 5], [0, 20, 50], None, None)
    with pytest.raises(DataError, match=r"003\.png' is not a readable image") as err:
        open_frames(tmp_path, paths, Sampling("uniform", num_frames=6))
    assert err.value.field == "frames[3]"
    assert open_frames(tmp_path, paths, Sampling("fps", fps=1.0), fps=2.0).indices == [0, 2, 4]
    with pytest.raises(DataError, match="frame rate"):
        open_frames(tmp_path, paths, Sampling("fps", fps=1.0))
    with pytest.raises(DataError, match=r"frame path '\.\./x\.png' escapes the data root") as err:
        open_frames(tmp_path, ["f/000.png", "../x.png"], field="videos[1].frames")
    assert err.value.field == "videos[1].frames[1]"
    with pytest.raises(DataError, match="over the limit of 5"):
        open_frames(tmp_path, paths, max_frames=5)
    with pytest.raises(DataError, match="non-empty list"):
        open_frames(tmp_path, [])


# ------------------------------------------------------------------------------------------ refusals


def test_paths_outside_the_root_missing_or_empty_files_are_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    write_video(tmp_path / "outside.mp4", frames(2), 2.0)
    os.symlink(tmp_path / "outside.mp4", root / "link.mp4")
    (root / "empty.mp4").write_bytes(b"")
    cases = {
        "/etc/v.mp4": "is absolute",
        "../outside.mp4": "escapes the data root",
        "a/../../outside.mp4": "escapes the data root",
        "link.mp4": "escapes the data root .* through a symlink",
        "missing.mp4": "video file not found",
        "empty.mp4": "is empty \\(0 bytes\\)",
        "": "empty video path",
    }
    for path, message in cases.items():
        with pytest.raises(DataError, match=message) as err:
            open_video(root, path, field="videos[0]")
        assert err.value.field == "videos[0]", path


def test_a_file_that_is_not_a_video_is_refused_naming_it(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x01 certainly not a video " * 20)
    with pytest.raises(DataError, match=r"video '.*bad\.mp4' could not be decoded") as err:
        open_video(tmp_path, "bad.mp4", field="videos[0]")
    assert err.value.field == "videos[0]"


def test_a_file_without_a_video_stream_is_refused(tmp_path):
    path = tmp_path / "sound.wav"
    with av.open(str(path), mode="w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(DataError, match=r"sound\.wav' has no video stream"):
        open_video(tmp_path, "sound.wav")


def test_a_video_stream_without_frames_is_refused(tmp_path):
    path = tmp_path / "empty_stream.avi"  # an AVI header with a video stream and no frame (an empty mp4 has no stream)
    with av.open(str(path), mode="w", format="avi") as container:
        stream = container.add_stream("ffv1", rate=4)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "bgr0"
        container.start_encoding()
    with pytest.raises(DataError, match=r"empty_stream\.avi' has no frames"):
        open_video(tmp_path, "empty_stream.avi")


def test_limits_on_pixels_frames_and_seconds_are_enforced(tmp_path):
    write_video(tmp_path / "v.mp4", frames(12, (16, 12)), 4.0)  # 12 frames of 192 pixels, 3 s
    with pytest.raises(DataError, match="16x12 frames, over the limit of 191 pixels"):
        open_video(tmp_path, "v.mp4", max_pixels=191)
    with pytest.raises(DataError, match="12 frames, over the limit of 11"):
        open_video(tmp_path, "v.mp4", max_frames=11)
    with pytest.raises(DataError, match=r"lasts 3\.0 s, over the limit of 2\.5 s"):
        open_video(tmp_path, "v.mp4", max_seconds=2.5)
    assert open_video(tmp_path, "v.mp4", max_pixels=192, max_frames=12, max_seconds=3.0).n_frames == 12


def test_a_header_without_a_frame_count_is_counted_by_decoding(tmp_path, monkeypatch):
    from mmalign.data import video as video_module

    write_video(tmp_path / "v.mp4", frames(5), 2.0)
    real = video_module._probe

    def no_count(path: Path, fail):
        return (*real(path, fail)[:4], 0)

    monkeypatch.setattr(video_module, "_probe", no_count)
    video = decode_video(tmp_path / "v.mp4", Sampling("uniform", num_frames=2))
    assert (video.n_frames, video.indices, red_values(video)) == (5, [0, 4], [0, 40])
    with pytest.raises(DataError, match="more than 4 frames"):
        decode_video(tmp_path / "v.mp4", max_frames=4)
