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

Files (``path``) are decoded by :func:`read_video_file`, a small PyAV reader kept here until
``mmalign.data.video`` (the project's decoder and sampler) is merged, which replaces it.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from mmalign.data.images import ImageChecker, load_image, resolve_image
from mmalign.data.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_VIDEO_SECONDS
from mmalign.data.records import Record, Sampling, VideoRef
from mmalign.errors import DataError

# ------------------------------------------------------------------------------------------------ opening


def sample_indices(n_frames: int, source_fps: float | None, sampling: Sampling) -> list[int]:
    """Which of a file's ``n_frames`` frames ``sampling`` keeps, in order: ``uniform`` takes ``num_frames`` at
    the centres of equal segments of the clip; ``fps`` one every ``source_fps / fps`` frames; both at most
    ``max_frames`` (thinned uniformly) and never more than the clip has."""
    if n_frames < 1:
        return []
    if sampling.mode == "fps":
        if not source_fps or source_fps <= 0:
            raise DataError("fps sampling needs the video's frame rate, which its header does not give")
        assert sampling.fps is not None
        want = max(1, int(n_frames * sampling.fps / source_fps))
    else:
        want = sampling.num_frames or n_frames
    want = min(want, sampling.max_frames, n_frames)
    return [min(n_frames - 1, int((i + 0.5) * n_frames / want)) for i in range(want)]


def read_video_file(
    real: Path,
    sampling: Sampling,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_seconds: float = DEFAULT_MAX_VIDEO_SECONDS,
    name: str = "video",
) -> list[Image.Image]:
    """The sampled frames of a video file as RGB images, decoded with PyAV (FFmpeg).

    TO BE REPLACED by ``mmalign.data.video.read_video`` at merge; kept minimal on purpose. Size and duration are
    checked from the stream's header before any frame is decoded."""
    import av

    try:
        with av.open(str(real)) as container:
            if not container.streams.video:
                raise DataError(f"{name} has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > max_pixels:
                raise DataError(f"{name} is {width}x{height}, over the limit of {max_pixels} pixels per frame")
            seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
            if seconds is None and container.duration:
                seconds = container.duration / 1_000_000
            if seconds is not None and seconds > max_seconds:
                raise DataError(f"{name} lasts {seconds:.1f} s, over the limit of {max_seconds:g} s")
            fps = float(stream.average_rate) if stream.average_rate else None
            frames = [frame.to_image().convert("RGB") for frame in container.decode(stream)]
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise DataError(f"{name} cannot be decoded: {err}") from None
    if not frames:
        raise DataError(f"{name} has no frames")
    return [frames[i] for i in sample_indices(len(frames), fps, sampling)]


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
