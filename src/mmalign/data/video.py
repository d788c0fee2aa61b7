"""Videos: reading a file (or an ordered list of frame images) into frames, sampling which frames, writing clips.

Decoding and encoding go through PyAV (``av``, FFmpeg's libraries); nothing here parses a container or a codec
by hand. A video path is checked like an image path (:mod:`mmalign.data.images`): relative to a data root, no
``..`` out of it, no symlink out of it, present and non-empty. Before any frame is decoded, the header must
show a video stream within the limits of :mod:`mmalign.data.limits` (pixels per frame as for images, frames and
seconds per video); frames are counted again while decoding, so a header that lies cannot exceed them.

Frame sampling (:class:`Sampling`, :func:`sample_indices`) follows LLaVA-Video's ``load_video`` (LLaVA-NeXT,
the same code as lmms-eval's ``models/llava_vid.py``):

- ``uniform``: ``num_frames`` indices spread evenly with the first and last frame included,
  ``np.linspace(0, n - 1, num_frames, dtype=int)``; asking for as many frames as the video has, or more,
  gives every frame once (never a repeated frame, where ``linspace`` would repeat);
- ``fps``: every ``round(video_fps / fps)``-th frame from frame 0 (``range(0, n, step)``, step at least 1);
- ``max_frames``: a cap; over it, the frames are drawn again uniformly, ``max_frames`` of them (as LLaVA-Video
  does when ``fps`` gives more than ``max_frames_num``).

Every failure is a :class:`DataError` naming the file, with ``field`` set (``videos[0]``) when given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mmalign.data.images import resolve_image
from mmalign.data.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_VIDEO_FRAMES, DEFAULT_MAX_VIDEO_SECONDS
from mmalign.data.parse import check_image_path
from mmalign.errors import DataError

SAMPLING_MODES = ("uniform", "fps")

ENCODER = {"codec": "libx264rgb", "pix_fmt": "rgb24", "options": {"qp": "0"}}
"""How :func:`write_video` encodes: H.264 in RGB at quantiser 0 (lossless: decoded pixels equal the frames
written exactly), one thread (the same bytes on every run)."""


@dataclass(frozen=True)
class Sampling:
    """Which frames of a video to keep (see the module docstring for the rules and their source)."""

    mode: str = "uniform"
    num_frames: int | None = 8
    """``uniform``: how many frames (at most the video's)."""
    fps: float | None = None
    """``fps``: the rate to sample at, frames per second."""
    max_frames: int | None = None
    """Cap on the frames kept, either mode."""

    def __post_init__(self) -> None:
        if self.mode not in SAMPLING_MODES:
            raise DataError(f"unknown sampling mode {self.mode!r}; expected one of {list(SAMPLING_MODES)}")
        for key in ("num_frames", "max_frames"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise DataError(f"sampling {key} must be an integer >= 1, got {value!r}")
        if self.fps is not None and (
            isinstance(self.fps, bool) or not isinstance(self.fps, int | float) or not 0 < self.fps < float("inf")
        ):
            raise DataError(f"sampling fps must be a number > 0, got {self.fps!r}")
        if self.mode == "uniform" and self.num_frames is None:
            raise DataError("uniform sampling needs num_frames")
        if self.mode == "fps" and self.fps is None:
            raise DataError("fps sampling needs fps")

    @classmethod
    def from_dict(cls, value: Any, field: str | None = None) -> Sampling:
        """A sampling from its JSON form ``{"mode": "uniform", "num_frames": 8, "fps": 2.0, "max_frames": 16}``;
        missing keys take the defaults, unknown keys are an error."""
        if not isinstance(value, dict):
            raise DataError(f"sampling must be a mapping, got {type(value).__name__}", field=field)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise DataError(f"unknown sampling keys {unknown}; expected some of {sorted(known)}", field=field)
        try:
            return cls(**value)
        except DataError as err:
            raise DataError(err.message, field=field) from None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def sample_indices(n_frames: int, sampling: Sampling | None, video_fps: float | None = None) -> list[int]:
    """Indices (increasing, distinct) of the frames ``sampling`` keeps of ``n_frames``; ``None`` keeps all."""
    if n_frames < 1:
        raise DataError(f"cannot sample frames of a video with {n_frames} frames")
    if sampling is None:
        return list(range(n_frames))
    if sampling.mode == "uniform":
        assert sampling.num_frames is not None
        indices = _uniform(n_frames, sampling.num_frames)
    else:
        if not video_fps or video_fps <= 0:
            raise DataError("fps sampling needs the video's frame rate, which is unknown")
        assert sampling.fps is not None
        step = max(1, round(video_fps / sampling.fps))  # LLaVA-Video: fps = round(vr.get_avg_fps() / fps)
        indices = list(range(0, n_frames, step))
    if sampling.max_frames is not None and len(indices) > sampling.max_frames:
        indices = _uniform(n_frames, sampling.max_frames)
    return indices


def _uniform(n_frames: int, k: int) -> list[int]:
    if k >= n_frames:
        return list(range(n_frames))
    # LLaVA-Video / lmms-eval llava_vid: np.linspace(0, total_frame_num - 1, max_frames_num, dtype=int)
    return [int(i) for i in np.linspace(0, n_frames - 1, k, dtype=int)]


@dataclass
class Video:
    """Frames read from a video: the kept frames (RGB), their indices in the video, its length and rate."""

    frames: list[Image.Image]
    indices: list[int]
    n_frames: int
    """Frames in the whole video (or frame list)."""
    fps: float | None
    """The video's frame rate (``None``: unknown, as for a frame list without one)."""

    @property
    def times(self) -> list[float] | None:
        """Seconds from the start of each kept frame (``None`` when the rate is unknown)."""
        return None if not self.fps else [i / self.fps for i in self.indices]


# ------------------------------------------------------------------------------------------------ paths


def check_video_path(path: str, field: str | None = None, what: str = "video") -> None:
    """Lexical check: a relative path that stays under the data root (as image paths; symlinks checked on open)."""
    check_image_path(path, field, what)


def resolve_video(root: str | Path, path: str, field: str | None = None) -> Path:
    """The real file behind ``path`` under ``root``: inside the root (after symlinks), present, non-empty."""
    return resolve_image(root, path, field, what="video")


# ---------------------------------------------------------------------------------------------- reading


def open_video(
    root: str | Path,
    path: str,
    sampling: Sampling | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_VIDEO_FRAMES,
    max_seconds: float = DEFAULT_MAX_VIDEO_SECONDS,
    field: str | None = None,
) -> Video:
    """Resolve ``path`` under ``root`` safely, then :func:`decode_video` it."""
    real = resolve_video(root, path, field)
    return decode_video(
        real,
        sampling,
        max_pixels=max_pixels,
        max_frames=max_frames,
        max_seconds=max_seconds,
        field=field,
        name=f"video {str(Path(root) / path)!r}",
    )


def decode_video(
    path: str | Path,
    sampling: Sampling | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_VIDEO_FRAMES,
    max_seconds: float = DEFAULT_MAX_VIDEO_SECONDS,
    field: str | None = None,
    name: str | None = None,
) -> Video:
    """The frames ``sampling`` keeps of the video file ``path`` (its first video stream), as RGB images."""
    label = name or f"video {str(path)!r}"

    def fail(message: str) -> DataError:
        return DataError(f"{label} {message}", field=field)

    header = _probe(path, fail)
    width, height, fps, seconds, n_header = header
    if width * height > max_pixels:
        raise fail(f"has {width}x{height} frames, over the limit of {max_pixels} pixels")
    if seconds is not None and seconds > max_seconds:
        raise fail(f"lasts {seconds:.1f} s, over the limit of {max_seconds:g} s")
    if n_header > max_frames:
        raise fail(f"has {n_header} frames, over the limit of {max_frames}")
    n = n_header
    if n == 0:  # the header does not say: count by decoding
        n = _decode(path, set(), max_frames, max_pixels, fail)[1]
    wanted = sample_indices(n, sampling, fps) if n else []
    kept, count = _decode(path, set(wanted), max_frames, max_pixels, fail)
    if count == 0:
        raise fail("has no frames")
    if count != n:  # the header's frame count was wrong: sample again from the true count
        wanted = sample_indices(count, sampling, fps)
        kept, count = _decode(path, set(wanted), max_frames, max_pixels, fail)
    if fps and count / fps > max_seconds:
        raise fail(f"lasts {count / fps:.1f} s, over the limit of {max_seconds:g} s")
    return Video([kept[i] for i in wanted], wanted, count, fps)


def _probe(path: str | Path, fail: Any) -> tuple[int, int, float | None, float | None, int]:
    """(width, height, fps, seconds, frames) from the header; frames 0 when the header does not say."""
    import av

    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise fail("has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if stream.duration is not None and stream.time_base is not None:
                seconds: float | None = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / av.time_base
            else:
                seconds = None
            width, height = stream.codec_context.width, stream.codec_context.height
            return width, height, float(rate) if rate else None, seconds, max(0, stream.frames or 0)
    except av.FFmpegError as err:
        raise fail(f"could not be decoded: {err}") from None


def _decode(
    path: str | Path, keep: set[int], max_frames: int, max_pixels: int, fail: Any
) -> tuple[dict[int, Image.Image], int]:
    """One decoding pass: the frames whose index is in ``keep`` (RGB), and how many frames were decoded."""
    import av

    kept: dict[int, Image.Image] = {}
    count = 0
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise fail("has no video stream")
            stream = container.streams.video[0]
            for i, frame in enumerate(container.decode(stream)):
                if i >= max_frames:
                    raise fail(f"has more than {max_frames} frames, over the limit")
                if frame.width * frame.height > max_pixels:
                    raise fail(f"has a {frame.width}x{frame.height} frame, over the limit of {max_pixels} pixels")
                if i in keep:
                    kept[i] = frame.to_image().convert("RGB")
                count += 1
    except av.FFmpegError as err:
        raise fail(f"could not be decoded: {err}") from None
    return kept, count


def open_frames(
    root: str | Path,
    paths: list[str],
    sampling: Sampling | None = None,
    *,
    fps: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_VIDEO_FRAMES,
    field: str | None = None,
) -> Video:
    """An ordered list of frame images under ``root`` as a video (``fps``: its rate, if known; needed for ``fps``
    sampling). Only the sampled frames are opened; each through :func:`mmalign.data.images.open_image` (path
    safety and the pixel limit as for any image)."""
    from mmalign.data.images import open_image

    if not isinstance(paths, list) or not paths:
        raise DataError("a frame list must be a non-empty list of image paths", field=field)
    if len(paths) > max_frames:
        raise DataError(f"a frame list of {len(paths)} frames is over the limit of {max_frames}", field=field)
    for i, path in enumerate(paths):
        check_video_path(path, f"{field or 'frames'}[{i}]", what="frame")
    wanted = sample_indices(len(paths), sampling, fps)
    frames = [open_image(root, paths[i], max_pixels=max_pixels, field=f"{field or 'frames'}[{i}]") for i in wanted]
    return Video(frames, wanted, len(paths), fps)


# ---------------------------------------------------------------------------------------------- writing


def write_video(path: str | Path, frames: list[Image.Image], fps: float) -> None:
    """Encode ``frames`` (same size, RGB) as an mp4 at ``fps`` (:data:`ENCODER`: lossless H.264); writes ``path``
    directly (callers write into a staging folder or through :func:`mmalign.files.atomic_path`)."""
    import av

    if not frames:
        raise DataError(f"no frames to write to {str(path)!r}")
    width, height = frames[0].size
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(ENCODER["codec"], rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = width, height
        stream.pix_fmt = ENCODER["pix_fmt"]
        stream.options = dict(ENCODER["options"])
        stream.codec_context.thread_count = 1
        for image in frames:
            if image.size != (width, height):
                raise DataError(f"frames of {str(path)!r} differ in size: {image.size} after {(width, height)}")
            frame = av.VideoFrame.from_ndarray(np.asarray(image.convert("RGB")), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
