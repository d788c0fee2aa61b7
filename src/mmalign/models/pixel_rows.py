"""Each row's share of a batch's image and video inputs, for the shared-prefix forward (:mod:`mmalign.models.prefix`).

A batch's pixel inputs come in row order (the collator encodes rows in order). LLaVA has one ``pixel_values`` entry
per image, each worth the same number of image tokens; Qwen2-VL / Qwen2.5-VL have ``t x h x w`` patch rows per image
or video (``image_grid_thw`` / ``video_grid_thw``), merged 2 x 2 into tokens; Idefics3 has one entry per row. Counting
each row's image (video) tokens finds its slice; what cannot be matched raises :class:`Unshareable`, and the
concatenated forward runs instead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mmalign.models.collate import PER_TOKEN, Batch

PIXEL_KEYS = ("pixel_values", "image_grid_thw", "pixel_attention_mask")
"""Image inputs this module knows how to split by row (LLaVA, Qwen2-VL / Qwen2.5-VL, Idefics3 / SmolVLM)."""
VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
"""Video inputs split by row the same way (Qwen2-VL / Qwen2.5-VL native video; the last one per video)."""
IMAGE_TOKEN_ATTRS = ("image_token_id", "image_token_index", "video_token_id")
"""Config attributes naming a family's image (and video) placeholder token."""


class Unshareable(Exception):
    """The batch or the model does not allow the shared path; the message says why."""


def image_token_ids(config: Any) -> list[int]:
    """The ids of ``config``'s image and video tokens (positions that hold pixels, never text)."""
    ids = {getattr(config, name, None) for name in IMAGE_TOKEN_ATTRS}
    return sorted(i for i in ids if isinstance(i, int))


def split_images(batch: Batch, config: Any) -> list[dict[str, Tensor]]:
    """Each row's slice of the image and video inputs. Images (and videos) come in row order (the collator encodes
    rows in order); a Qwen2-VL video (``pixel_values_videos``, ``video_grid_thw``) splits like an image."""
    n = len(batch)
    extras = {k: v for k, v in batch.extras.items() if k not in PER_TOKEN}
    if not extras:
        return [{} for _ in range(n)]
    unknown = sorted(set(extras) - set(PIXEL_KEYS) - set(VIDEO_KEYS))
    if unknown or not ({"pixel_values", "pixel_values_videos"} & set(extras)):
        raise Unshareable(f"model inputs {unknown or sorted(extras)} cannot be split by row")
    pixels = extras.get("pixel_values")
    if pixels is not None and pixels.dim() == 5:  # Idefics3: one entry per row (its images' tiles, padded)
        if pixels.shape[0] != n:
            raise Unshareable("pixel_values has a row count different from the batch")
        return [{k: v[i : i + 1] for k, v in extras.items()} for i in range(n)]
    out: list[dict[str, Tensor]] = [{} for _ in range(n)]
    video_id = getattr(config, "video_token_id", None)
    image_ids = [i for i in image_token_ids(config) if i != video_id]
    for keys, ids in ((PIXEL_KEYS[:2], image_ids), (VIDEO_KEYS, [video_id])):
        if keys[0] in extras:
            for row, part in zip(out, split_modality(batch, config, extras, keys, ids), strict=True):
                row.update(part)
    return out


def split_modality(
    batch: Batch, config: Any, extras: dict[str, Tensor], keys: tuple[str, ...], token_ids: list[Any]
) -> list[dict[str, Tensor]]:
    """Per row, its slice of one modality's pixels found by counting its tokens (``keys``: pixels, grid, then
    inputs with one entry per image or video)."""
    pixel_key, grid_key, *per_item = keys
    pixels = extras[pixel_key]
    ids = torch.tensor([i for i in token_ids if isinstance(i, int)], dtype=torch.long, device=batch.input_ids.device)
    row_tokens = torch.isin(batch.input_ids, ids).sum(-1).tolist()
    grid = extras.get(grid_key)
    if grid is not None:  # Qwen2-VL: t*h*w patch rows per image or video, merged 2x2 (spatial_merge_size) into tokens
        merge = int(config.vision_config.spatial_merge_size) ** 2
        image_rows = grid.prod(-1).tolist()
        image_tokens = [r // merge for r in image_rows]
    elif pixels.dim() == 4 and pixels.shape[0] > 0 and sum(row_tokens) % pixels.shape[0] == 0:  # LLaVA
        image_rows = [1] * pixels.shape[0]
        image_tokens = [sum(row_tokens) // pixels.shape[0]] * pixels.shape[0]
    else:
        raise Unshareable(f"{pixel_key} of shape {tuple(pixels.shape)} cannot be matched to rows")
    out, image, offset = [], 0, 0
    for need in row_tokens:
        first_image, first_offset = image, offset
        while need > 0 and image < len(image_tokens):
            need -= image_tokens[image]
            offset += image_rows[image]
            image += 1
        if need != 0:
            raise Unshareable("image tokens of a row do not match its images")
        row = {pixel_key: pixels[first_offset:offset]}
        if grid is not None:
            row[grid_key] = grid[first_image:image]
        row.update({key: extras[key][first_image:image] for key in per_item if key in extras})
        out.append(row)
    if image != len(image_tokens):
        raise Unshareable("more images than image tokens")
    return out


def same_images(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def gather_images(rows: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    keys = rows[0].keys() if rows else ()
    out = {k: torch.cat([r[k] for r in rows]) for k in keys}
    for pixel_key, *others in (PIXEL_KEYS, VIDEO_KEYS):  # a modality no prefix has is left out
        if pixel_key in out and out[pixel_key].shape[0] == 0:
            for key in (pixel_key, *others):
                out.pop(key, None)
    return out
