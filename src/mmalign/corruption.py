"""Corrupted images: a random crop resized back to full size, or a random mask, and offline degradations.

A core module, below both of its users: mDPO's loss (:mod:`mmalign.losses.mdpo`) corrupts images on the fly,
the ``corrupt-image`` pair builder (:mod:`mmalign.pairs.corrupt_image`) degrades them offline.

mDPO (Wang et al., 2024) contrasts the chosen response given the real image with the same response given a
corrupted one; the authors' code keeps a random 1–20 % of the image area (any aspect ratio between 3:4 and
4:3) and resizes it back to full size. :func:`random_mask` is the other corruption offered: it keeps a random
fraction of the cells of a grid and fills the rest.

Image DPO and the rejected images of mDPO / POVID are also made offline with the degradations
:func:`gaussian_blur`, :func:`pixelate` and :func:`gaussian_noise`; :func:`degrade` applies any of the five by
one ``severity`` in [0, 1] (0 = the image unchanged, 1 = as strong as that degradation goes here), so
severities are comparable and monotone: more severity is always more blur, bigger blocks, more noise, a
smaller kept area.

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
from PIL import Image, ImageFilter

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


# ------------------------------------------------------------------------------- blur, pixelate, noise


def gaussian_blur(image: ImageLike, sigma: float) -> ImageLike:
    """Gaussian blur with standard deviation ``sigma`` pixels (0 = unchanged).

    PIL images use ``ImageFilter.GaussianBlur`` (whose radius is the standard deviation); tensors are
    convolved with a separable kernel of half-width ``ceil(3 sigma)``, edges replicated.
    """
    if not isinstance(sigma, int | float) or isinstance(sigma, bool) or sigma < 0:
        raise ConfigError(f"blur sigma must be a number >= 0, got {sigma!r}")
    if sigma == 0:
        return image.copy() if isinstance(image, Image.Image) else image.clone()
    if isinstance(image, Image.Image):
        return image.filter(ImageFilter.GaussianBlur(radius=sigma))
    half = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-half, half + 1, dtype=torch.float64)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).float()
    height, width = _size(image)
    flat = image.reshape(-1, 1, height, width)
    work = flat if flat.is_floating_point() else flat.float()
    work = F.pad(work, (half, half, 0, 0), mode="replicate")
    work = F.conv2d(work, kernel.view(1, 1, 1, -1).to(work))
    work = F.pad(work, (0, 0, half, half), mode="replicate")
    work = F.conv2d(work, kernel.view(1, 1, -1, 1).to(work))
    return _back_to(work, image)


def pixelate(image: ImageLike, block: int) -> ImageLike:
    """Replace each ``block`` × ``block`` cell (aligned to the top left; the last row and column of cells are
    narrower when ``block`` does not divide the side) by its mean colour. ``block=1`` leaves the image as it is."""
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ConfigError(f"pixelate block must be a positive integer, got {block!r}")
    if isinstance(image, Image.Image):
        pixels = np.asarray(image, dtype=np.float64)
        means = _block_means(np.moveaxis(pixels, -1, 0) if pixels.ndim == 3 else pixels, block)
        out = np.moveaxis(means, 0, -1) if pixels.ndim == 3 else means
        return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), image.mode)
    means = torch.from_numpy(_block_means(image.detach().cpu().double().numpy(), block)).to(image.device)
    return _back_to(means, image)


def _block_means(pixels: np.ndarray, block: int) -> np.ndarray:
    """Each aligned ``block`` × ``block`` cell of the last two axes replaced by its mean."""
    height, width = pixels.shape[-2:]
    rows, cols = np.arange(0, height, block), np.arange(0, width, block)
    sums = np.add.reduceat(np.add.reduceat(pixels, rows, axis=-2), cols, axis=-1)
    counts = np.outer(np.diff(np.append(rows, height)), np.diff(np.append(cols, width)))
    means = sums / counts
    return np.repeat(
        np.repeat(means, np.diff(np.append(rows, height)), axis=-2), np.diff(np.append(cols, width)), axis=-1
    )


def gaussian_noise(image: ImageLike, rng: Rng, sigma: float) -> ImageLike:
    """Add zero-mean Gaussian noise of standard deviation ``sigma`` (in pixel units: 0-255 for PIL and
    integer tensors, the tensor's own scale for float tensors), clipped to the valid range for PIL/integers."""
    if not isinstance(sigma, int | float) or isinstance(sigma, bool) or sigma < 0:
        raise ConfigError(f"noise sigma must be a number >= 0, got {sigma!r}")
    gen = _generator(rng)
    if isinstance(image, Image.Image):
        pixels = np.asarray(image, dtype=np.float64)
        noise = _normal(gen, pixels.shape)
        return Image.fromarray(np.clip(np.rint(pixels + sigma * noise), 0, 255).astype(np.uint8), image.mode)
    noise = torch.from_numpy(_normal(gen, tuple(image.shape))).to(image.device)
    if image.is_floating_point():
        return image + (sigma * noise).to(image.dtype)
    info = torch.iinfo(image.dtype)
    return (image.double() + sigma * noise).round().clamp(info.min, info.max).to(image.dtype)


def _normal(rng: torch.Generator | np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(rng, torch.Generator):
        return torch.randn(shape, generator=rng, dtype=torch.float64).numpy()
    return rng.standard_normal(shape)


def _back_to(work: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    out = work.reshape(like.shape)
    if not like.is_floating_point():
        info = torch.iinfo(like.dtype)
        out = out.round().clamp(info.min, info.max)
    return out.to(like.dtype)


# ---------------------------------------------------------------------------------------------- severity

MAX_BLUR = 1 / 8
"""Blur sigma at severity 1, as a fraction of the shorter side (6 px on a 48 px image)."""
MAX_BLOCK = 1 / 4
"""Pixelate block at severity 1, as a fraction of the shorter side (a 4 × 4 mosaic)."""
MAX_NOISE = 128.0
"""Noise sigma at severity 1, in 0-255 pixel units."""
MIN_KEEP = 0.05
"""Kept area fraction at severity 1 for crop and mask (severity s keeps 1 - s·(1 - MIN_KEEP))."""

DEGRADATIONS: tuple[str, ...] = ("blur", "pixelate", "noise", "mask", "crop")
"""What :func:`degrade` can do."""


def degradation_params(mode: str, severity: float, height: int, width: int) -> dict[str, float | int]:
    """The parameters ``severity`` maps to for ``mode`` on an image of this size (what :func:`degrade` uses)."""
    if mode not in DEGRADATIONS:
        raise ConfigError(f"unknown image degradation {mode!r}; choose one of {', '.join(DEGRADATIONS)}")
    if not isinstance(severity, int | float) or isinstance(severity, bool) or not 0 <= severity <= 1:
        raise ConfigError(f"severity must be a number between 0 and 1, got {severity!r}")
    side = min(height, width)
    if mode == "blur":
        return {"sigma": round(severity * MAX_BLUR * side, 4)}
    if mode == "pixelate":
        return {"block": max(1, round(1 + severity * (MAX_BLOCK * side - 1)))}
    if mode == "noise":
        return {"sigma": round(severity * MAX_NOISE, 4)}
    return {"keep": round(1 - severity * (1 - MIN_KEEP), 6)}


def degrade(image: ImageLike, mode: str, severity: float, rng: Rng) -> tuple[ImageLike, dict[str, float | int]]:
    """Degrade ``image`` by ``mode`` (one of :data:`DEGRADATIONS`) at ``severity`` in [0, 1].

    Returns the new image and the parameters used (:func:`degradation_params`). Crop and mask keep a fixed
    fraction of the area (``keep_min = keep_max``), so for one seed a higher severity keeps a subset.
    """
    height, width = _size(image)
    params = degradation_params(mode, severity, height, width)
    if mode == "blur":
        return gaussian_blur(image, float(params["sigma"])), params
    if mode == "pixelate":
        return pixelate(image, int(params["block"])), params
    if mode == "noise":
        return gaussian_noise(image, rng, float(params["sigma"])), params
    keep = float(params["keep"])
    return CORRUPTIONS[mode](image, rng, keep, keep), params  # type: ignore[return-value]
