"""Corrupted images made on the fly: a random crop resized back to full size, or a random mask.

mDPO (Wang et al., 2024) contrasts the chosen response given the real image with the same response given a
corrupted one; the authors' code keeps a random 1–20 % of the image area (any aspect ratio between 3:4 and
4:3) and resizes it back to full size. :func:`random_mask` is the other corruption offered: it keeps a random
fraction of the cells of a grid and fills the rest.

Every function is pure: it takes a PIL image or a tensor whose last two dimensions are height and width
(e.g. ``(C, H, W)``), returns a new one of the same kind and size, and draws its randomness only from the
generator it is given (``torch.Generator``, ``numpy.random.Generator`` or an int seed), so a seed gives the
same corruption every time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mmalign.errors import ConfigError

ImageLike = TypeVar("ImageLike", Image.Image, torch.Tensor)
Rng = torch.Generator | np.random.Generator | int

ASPECT_RATIOS = (3 / 4, 4 / 3)
"""Range of width/height ratios of a crop (sampled log-uniformly), as torchvision's RandomResizedCrop."""


def check_keep_range(keep_min: float, keep_max: float) -> None:
    """The kept fraction of the image area must satisfy 0 < keep_min <= keep_max <= 1."""
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (keep_min, keep_max))
    if not ok or not 0 < keep_min <= keep_max <= 1:
        raise ConfigError(f"kept image fraction must satisfy 0 < min <= max <= 1, got [{keep_min}, {keep_max}]")


# ------------------------------------------------------------------------------------------- randomness


def _generator(rng: Rng) -> torch.Generator | np.random.Generator:
    if isinstance(rng, torch.Generator | np.random.Generator):
        return rng
    if isinstance(rng, int) and not isinstance(rng, bool):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a torch.Generator, a numpy Generator or an int seed, got {type(rng).__name__}")


def _uniform(rng: torch.Generator | np.random.Generator, low: float, high: float) -> float:
    if isinstance(rng, torch.Generator):
        return low + (high - low) * float(torch.rand((), generator=rng, dtype=torch.float64))
    return float(rng.uniform(low, high))


def _below(rng: torch.Generator | np.random.Generator, n: int) -> int:
    """A uniform integer in [0, n)."""
    if isinstance(rng, torch.Generator):
        return int(torch.randint(n, (), generator=rng))
    return int(rng.integers(n))


def _permutation(rng: torch.Generator | np.random.Generator, n: int) -> np.ndarray:
    if isinstance(rng, torch.Generator):
        return torch.randperm(n, generator=rng).numpy()
    return rng.permutation(n)


# ----------------------------------------------------------------------------------------------- crop


def crop_box(
    height: int, width: int, rng: Rng, keep_min: float = 0.01, keep_max: float = 0.2, attempts: int = 10
) -> tuple[int, int, int, int]:
    """A random box ``(top, left, box_height, box_width)`` covering a fraction of the area in [keep_min, keep_max].

    The fraction is uniform in that range and the aspect ratio log-uniform in :data:`ASPECT_RATIOS`; a draw
    that does not fit is retried, and after ``attempts`` misses a centred box of the mean fraction is used.
    Rounding to whole pixels moves the fraction slightly on small images.
    """
    check_keep_range(keep_min, keep_max)
    gen = _generator(rng)
    area = height * width
    log_low, log_high = math.log(ASPECT_RATIOS[0]), math.log(ASPECT_RATIOS[1])
    for _ in range(attempts):
        target = area * _uniform(gen, keep_min, keep_max)
        ratio = math.exp(_uniform(gen, log_low, log_high))
        box_w, box_h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < box_w <= width and 0 < box_h <= height:
            return _below(gen, height - box_h + 1), _below(gen, width - box_w + 1), box_h, box_w
    target = area * (keep_min + keep_max) / 2
    box_h = min(height, max(1, round(math.sqrt(target * height / width))))
    box_w = min(width, max(1, round(target / box_h)))
    return (height - box_h) // 2, (width - box_w) // 2, box_h, box_w


def random_crop(image: ImageLike, rng: Rng, keep_min: float = 0.01, keep_max: float = 0.2) -> ImageLike:
    """Keep a random region of ``keep_min``–``keep_max`` of the area and resize it back (bilinear) to full size."""
    height, width = _size(image)
    top, left, box_h, box_w = crop_box(height, width, rng, keep_min, keep_max)
    if isinstance(image, Image.Image):
        region = image.crop((left, top, left + box_w, top + box_h))
        return region.resize((width, height), Image.Resampling.BILINEAR)
    region = image[..., top : top + box_h, left : left + box_w]
    return _resize_tensor(region, height, width)


def _resize_tensor(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    lead = x.shape[:-2]
    flat = x.reshape(1, -1, *x.shape[-2:])
    work = flat if flat.is_floating_point() else flat.float()
    out = F.interpolate(work, size=(height, width), mode="bilinear", align_corners=False)
    if not x.is_floating_point():
        info = torch.iinfo(x.dtype)
        out = out.round().clamp(info.min, info.max).to(x.dtype)
    return out.reshape(*lead, height, width)


# ----------------------------------------------------------------------------------------------- mask


def mask_cells(rows: int, cols: int, rng: Rng, keep_min: float = 0.01, keep_max: float = 0.2) -> np.ndarray:
    """(rows, cols) booleans, True where a grid cell is kept: a uniform fraction in [keep_min, keep_max] of cells
    (rounded, at least one), chosen at random."""
    check_keep_range(keep_min, keep_max)
    gen = _generator(rng)
    n_cells = rows * cols
    n_keep = min(n_cells, max(1, round(_uniform(gen, keep_min, keep_max) * n_cells)))
    kept = np.zeros(n_cells, dtype=bool)
    kept[_permutation(gen, n_cells)[:n_keep]] = True
    return kept.reshape(rows, cols)


def random_mask(
    image: ImageLike, rng: Rng, keep_min: float = 0.01, keep_max: float = 0.2, grid: int = 8, fill: float = 0
) -> ImageLike:
    """Split the image into a ``grid`` × ``grid`` array of cells, keep a random fraction of them, fill the rest.

    ``fill`` is the value written in every channel of a masked pixel (0 = black).
    """
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ConfigError(f"mask grid must be a positive integer, got {grid!r}")
    height, width = _size(image)
    rows, cols = min(grid, height), min(grid, width)
    cells = mask_cells(rows, cols, rng, keep_min, keep_max)
    row_of = (np.arange(height) * rows) // height  # which cell row each pixel row falls in
    col_of = (np.arange(width) * cols) // width
    keep = cells[row_of][:, col_of]  # (height, width)
    if isinstance(image, Image.Image):
        bands = len(image.getbands())
        blank = Image.new(image.mode, image.size, int(fill) if bands == 1 else (int(fill),) * bands)
        return Image.composite(image, blank, Image.fromarray(keep.astype(np.uint8) * 255))
    return image.masked_fill(~torch.from_numpy(keep).to(image.device), fill)


# ---------------------------------------------------------------------------------------------- dispatch

CORRUPTIONS: dict[str, Callable[..., Image.Image | torch.Tensor]] = {"crop": random_crop, "mask": random_mask}
"""Corruptions by name; each is ``fn(image, rng, keep_min, keep_max)``."""


def corrupt_image(image: ImageLike, mode: str, rng: Rng, keep_min: float = 0.01, keep_max: float = 0.2) -> ImageLike:
    """Apply the corruption called ``mode`` (one of :data:`CORRUPTIONS`) keeping ``keep_min``–``keep_max``."""
    if mode not in CORRUPTIONS:
        raise ConfigError(f"unknown image corruption {mode!r}; choose one of {sorted(CORRUPTIONS)}")
    return CORRUPTIONS[mode](image, rng, keep_min, keep_max)  # type: ignore[return-value]


def _size(image: Image.Image | torch.Tensor) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.height, image.width
    if isinstance(image, torch.Tensor) and image.dim() >= 2:
        return int(image.shape[-2]), int(image.shape[-1])
    raise TypeError(f"expected a PIL image or a tensor of shape (..., H, W), got {type(image).__name__}")
