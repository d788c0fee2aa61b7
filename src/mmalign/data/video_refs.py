"""Videos in records: parsing ``videos`` entries, checking them, and opening them as frames.

A record's ``videos`` is a list; each entry is either a file read with a frame sampling,
``{"path": "videos/x.mp4", "sampling": {"mode": "uniform", "num_frames": 8, "max_frames": 16}}``, or an ordered
list of frames, ``{"frames": ["f/000.png", "f/001.png", ...]}`` (each frame any image reference: a path under the
data root, a PIL image, an embedded blob). The prompt marks where each video goes with a ``{"type": "video"}``
content part (the ``<video>`` placeholder), as ``{"type": "image"}`` does for images; the counts must match.

Parsing (pure, no file access) is :func:`mmalign.data.parse.parse_videos`. Checks are those of images: paths
are relative and stay inside the data root (symlinks resolved), files exist and
are not empty, each frame is within the pixel limit, and a video brings at most ``max_frames`` frames
(:data:`mmalign.data.limits.DEFAULT_MAX_FRAMES`). Every failure is a :class:`DataError` naming the field
(``videos[0].frames[3]``); the readers add the file, line and record id.

Files (``path``) are decoded and sampled by :mod:`mmalign.data.video` (PyAV; LLaVA-Video's sampling rule).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from mmalign.data import video
from mmalign.data.images import ImageChecker, load_image, resolve_image
from mmalign.data.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_VIDEO_SECONDS
from mmalign.data.records import Record, Sampling, VideoRef
from mmalign.errors import DataError

# ------------------------------------------------------------------------------------------------ opening


def as_video_sampling(sampling: Sampling) -> video.Sampling:
    """A record's sampling as the reader's (:class:`mmalign.data.video.Sampling`: the same four fields)."""
    return video.Sampling(sampling.mode, sampling.num_frames, sampling.fps, sampling.max_frames)


def sample_indices(n_frames: int, source_fps: float | None, sampling: Sampling) -> list[int]:
    """Which of a file's ``n_frames`` frames ``sampling`` keeps, in order: the reader's rule
    (:func:`mmalign.data.video.sample_indices`, LLaVA-Video's: ``uniform`` spreads ``num_frames`` evenly with the
    first and last included, ``fps`` takes every ``round(source_fps / fps)``-th frame, ``max_frames`` caps both)."""
    return video.sample_indices(n_frames, as_video_sampling(sampling), source_fps)


def read_video_file(
    real: Path,
    sampling: Sampling,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_seconds: float = DEFAULT_MAX_VIDEO_SECONDS,
    name: str = "video",
) -> list[Image.Image]:
    """The sampled frames of a video file as RGB images (:func:`mmalign.data.video.decode_video`: PyAV, limits
    checked from the header before any frame is decoded)."""
    decoded = video.decode_video(
        real, as_video_sampling(sampling), max_pixels=max_pixels, max_seconds=max_seconds, name=name
    )
    return decoded.frames


def load_video(
    ref: VideoRef, root: str | Path | None, *, max_pixels: int = DEFAULT_MAX_PIXELS, field: str = "videos[0]"
) -> list[Image.Image]:
    """The frames of one video as RGB images, in order (paths opened safely under ``root``)."""
    if ref.frames is not None:
        return [load_image(frame, root, max_pixels, field=f"{field}.frames[{i}]") for i, frame in enumerate(ref.frames)]
    assert ref.path is not None
    if root is None:
        raise DataError(f"video path {ref.path!r} needs a data root to be opened", field=f"{field}.path")
    try:
        real = resolve_image(root, ref.path, f"{field}.path")
        name = f"video {str(Path(root) / ref.path)!r}"
        return read_video_file(real, ref.sampling or Sampling(), max_pixels=max_pixels, name=name)
    except DataError as err:
        raise DataError(err.message, field=f"{field}.path") from None


def load_videos(
    refs: list[VideoRef],
    root: str | Path | None,
    *,
    record_id: str | None = None,
    field: str = "videos",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[list[Image.Image]]:
    """:func:`load_video` for each of a record's videos; errors name the record and ``field[i]``."""
    try:
        return [load_video(ref, root, max_pixels=max_pixels, field=f"{field}[{i}]") for i, ref in enumerate(refs)]
    except DataError as err:
        raise err.located(record_id=record_id) from None


def check_record_videos(checker: ImageChecker, record: Record) -> None:
    """The image checks of ``checker`` applied to every video of ``record``: each frame of a frame list goes
    through :meth:`ImageChecker.check` (cached per file, as images are); a file is resolved safely under the root
    (``exists``) and its sampled frames decoded (``decode``). Without a root, paths are left alone."""
    if checker.mode == "none":
        return
    for key, videos in record.video_lists().items():
        for i, ref in enumerate(videos):
            where = f"{key}[{i}]"
            if ref.frames is not None:
                for j, frame in enumerate(ref.frames):
                    if checker.root is not None or not isinstance(frame, str):
                        checker.check(frame, f"{where}.frames[{j}]")
            elif checker.root is not None:
                assert ref.path is not None
                if checker.mode == "decode":
                    load_video(ref, checker.root, max_pixels=checker.max_pixels, field=where)
                else:
                    resolve_image(checker.root, ref.path, f"{where}.path")
