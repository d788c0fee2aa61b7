"""Videos as model inputs: a video becomes its frames, the family decides how the model sees them.

Two ways, chosen from the processor (:func:`native_video`):

- **Frames as images** (LLaVA and every family without a video path of its own): the ``{"type": "video"}`` part
  becomes one ``{"type": "image"}`` part per frame, in order, and the frames join the record's images at that
  place, so each frame gets the family's image tokens. This is LLaVA-NeXT-Interleave's treatment of video (Li et
  al., 2024: video as a multi-image sequence; in ``transformers``' video-text-to-text guide for
  ``llava-interleave-qwen``, the prompt is ``"<image>" * num_frames`` with no separator between frames). No
  separator is added here either: the frames' image tokens follow each other, as in that recipe.
- **Native video** (the Qwen2-VL family): the part becomes ``<|vision_start|><|video_pad|><|vision_end|>`` and
  the processor expands ``<|video_pad|>`` into t x h x w / merge² tokens, with ``pixel_values_videos`` and
  ``video_grid_thw`` beside them; the model numbers those tokens with M-RoPE (``get_rope_index`` with
  ``video_grid_thw``). Where ``transformers``' video processor cannot be built (it needs ``torchvision``),
  :class:`FrameVideoProcessor` makes the same inputs from the image processor (:func:`qwen_video_patches`).

Frames are never cut through: a prompt is never truncated (see :mod:`mmalign.models.collate`), and a video too long
for ``max_length`` is either refused (``video_overflow: error``) or thinned by whole frames (``thin``,
:func:`thin_frames`): every video of the record keeps at most k frames, spread uniformly over the clip, k the
largest that fits (even, and at least 2, for a temporal patch of 2); the frames dropped are counted and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mmalign.data.limits import DEFAULT_MAX_PIXELS
from mmalign.data.video_refs import load_videos
from mmalign.errors import DataError
from mmalign.models.examples import Example

logger = logging.getLogger(__name__)

VISION_WRAP = ("<|vision_start|>", "<|vision_end|>")
"""What the Qwen2-VL chat template puts around a video's ``<|video_pad|>`` token."""


def native_video(processor: Any) -> bool:
    """True when ``processor`` takes ``videos=`` itself (a video token and a video processor)."""
    video_processor = getattr(processor, "video_processor", None)
    return getattr(processor, "video_token", None) is not None and video_processor is not None


def temporal_patch(processor: Any) -> int:
    """Frames the vision tower folds into one temporal patch (2 for Qwen2-VL's native video; 1 for frames)."""
    if not native_video(processor):
        return 1
    return int(getattr(processor.video_processor, "temporal_patch_size", 1) or 1)


def video_placeholder(processor: Any) -> str:
    """The text a native video's prompt part becomes (``<|vision_start|><|video_pad|><|vision_end|>``)."""
    token = processor.video_token
    vocab = getattr(getattr(processor, "tokenizer", processor), "get_vocab", dict)()
    start, end = VISION_WRAP
    return f"{start}{token}{end}" if start in vocab and end in vocab else token


def thin_frames(frames: list[Any], keep: int) -> list[Any]:
    """``keep`` of ``frames``, in order, at the centres of ``keep`` equal segments of the clip."""
    n = len(frames)
    if keep >= n:
        return list(frames)
    return [frames[min(n - 1, int((i + 0.5) * n / keep))] for i in range(keep)]


def open_video_frames(example: Example, root: str | Path | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Example:
    """``example`` with its videos opened (``video_frames``: one list of RGB frames per video)."""
    if not example.videos or example.video_frames is not None:
        return example
    frames = load_videos(example.videos, root, record_id=example.id, field=example.videos_field, max_pixels=max_pixels)
    return replace(example, video_frames=frames)


def resolve_videos(example: Example, processor: Any, cap: int | None = None) -> Example:
    """``example`` ready for the processor: each video's (opened) frames, at most ``cap`` per video (thinned by
    :func:`thin_frames`), either spliced in as images (frames as images) or kept as ``video_frames`` with the
    prompt part turned into the family's video placeholder text (native video)."""
    if not example.videos:
        return example
    assert example.video_frames is not None, "open_video_frames first"
    videos = [thin_frames(f, cap) if cap is not None else list(f) for f in example.video_frames]
    native = native_video(processor)
    images = iter(example.images)
    frames = iter(videos)
    placeholder = video_placeholder(processor) if native else ""
    out_images: list[Any] = []
    prompt = []
    for message in example.prompt:
        content = []
        for part in message["content"]:
            kind = part.get("type")
            if kind == "image":
                out_images.append(next(images))
                content.append(part)
            elif kind == "video":
                video = next(frames)
                if native:
                    content.append({"type": "text", "text": placeholder})
                else:
                    out_images.extend(video)
                    content.extend({"type": "image"} for _ in video)
            else:
                content.append(part)
        prompt.append({**message, "content": content})
    return replace(
        example,
        prompt=prompt,
        images=out_images,
        videos=[],
        video_frames=videos if native else None,
    )


def frame_cap_steps(frames: list[Any], processor: Any) -> list[int]:
    """The frame caps to try for a video of ``frames``, largest first: every count from its length down to the
    minimum (2 for a temporal patch of 2, else 1), in the processor's temporal steps."""
    step = temporal_patch(processor)
    longest = len(frames)
    top = longest - longest % step if longest >= step else longest
    return list(range(top, step - 1, -step)) or [longest]


def thin_to_fit(
    unit: list[Example], processor: Any, prompt_lengths: Callable[[list[Example]], list[int]], room: int
) -> tuple[list[Example], int] | None:
    """``unit`` (a record's opened sequences) resolved with every video cut to the largest frame cap whose prompts
    all fit ``room`` tokens (``prompt_lengths`` encodes a trial), whole frames spread uniformly (:func:`thin_frames`),
    and the frames dropped; the smallest cap when none fits; None when no video can lose a frame.

    Fewer frames give a shorter prompt, so the cap is found by binary search over :func:`frame_cap_steps`."""
    frames = [f for e in unit for f in e.video_frames or []]
    longest = max((len(f) for f in frames), default=0)
    caps = [c for c in frame_cap_steps(max(frames, key=len), processor) if c < longest] if frames else []
    if not caps:
        return None

    def trial(cap: int) -> list[Example]:
        return [resolve_videos(e, processor, cap) for e in unit]

    lo, hi = 0, len(caps) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if max(prompt_lengths(trial(caps[mid]))) <= room else (mid + 1, hi)
    cap = caps[lo]
    dropped = sum(len(f) - min(len(f), cap) for f in frames)
    log_thinned(unit[0].id, cap, longest, dropped)
    return trial(cap), dropped


def log_thinned(record_id: str, cap: int, longest: int, dropped: int) -> None:
    """Say that a record's videos were thinned (``video_overflow: thin``)."""
    logger.warning(
        "record %r: videos thinned to fit max_length: at most %d of %d frames per video, spread uniformly "
        "(%d frames dropped over its sequences; video_overflow=thin)",
        record_id,
        cap,
        longest,
        dropped,
    )


# ---------------------------------------------------------------------------------- Qwen2-VL without torchvision


def qwen_video_patches(image_processor: Any, video: list[Image.Image]) -> tuple[np.ndarray, list[int]]:
    """``pixel_values_videos`` rows and ``[t, h, w]`` of one video for the Qwen2-VL family, from its image processor.

    The image processor resizes (``smart_resize``), rescales and normalises each frame exactly as for an image and
    lays out its patches as (h/m, w/m, m, m) x (C, temporal, p, p), repeating the frame along the temporal axis.
    ``Qwen2VLVideoProcessor.patchify`` (transformers 5.23) lays out a video as (t, h/m, w/m, m, m) x (C, temporal,
    p, p), frames 2t and 2t + 1 on the temporal axis, after padding the clip to a multiple of the temporal patch by
    repeating its last frame. So a video row is the image rows of its two frames, one per temporal slot."""
    encoded = image_processor(images=video, return_tensors="np")
    pixels, grids = np.asarray(encoded["pixel_values"]), np.asarray(encoded["image_grid_thw"])
    if len({tuple(g) for g in grids.tolist()}) != 1:
        raise DataError("the frames of a video must all have the same size")
    _, h, w = (int(x) for x in grids[0])
    temporal = int(image_processor.temporal_patch_size)
    patch = int(image_processor.patch_size)
    channels = pixels.shape[-1] // (temporal * patch * patch)
    frames = pixels.reshape(len(video), h * w, channels, temporal, patch, patch)[:, :, :, 0]  # (F, S, C, p, p)
    if pad := -len(video) % temporal:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
    t = frames.shape[0] // temporal
    grouped = frames.reshape(t, temporal, h * w, channels, patch, patch).transpose(0, 2, 3, 1, 4, 5)
    return grouped.reshape(t * h * w, channels * temporal * patch * patch), [t, h, w]


class FrameVideoProcessor:
    """A stand-in for ``Qwen2VLVideoProcessor`` built on the image processor (no ``torchvision``): takes videos as
    lists of PIL frames, already sampled, and returns ``pixel_values_videos`` and ``video_grid_thw``."""

    def __init__(self, image_processor: Any) -> None:
        self.image_processor = image_processor
        self.merge_size = int(image_processor.merge_size)
        self.temporal_patch_size = int(image_processor.temporal_patch_size)
        self.patch_size = int(image_processor.patch_size)

    def __call__(self, videos: Any, **_: Any) -> Any:
        import torch
        from transformers import BatchFeature
        from transformers.video_utils import VideoMetadata

        rows, grids = [], []
        for video in videos:
            patches, grid = qwen_video_patches(self.image_processor, list(video))
            rows.append(patches)
            grids.append(grid)
        return BatchFeature(
            {
                "pixel_values_videos": torch.from_numpy(np.ascontiguousarray(np.concatenate(rows))),
                "video_grid_thw": torch.tensor(grids, dtype=torch.long),
                # frames come already sampled, with no frame rate: transformers' default for such videos (24 fps)
                "video_metadata": [VideoMetadata(total_num_frames=len(video)) for video in videos],
            }
        )
