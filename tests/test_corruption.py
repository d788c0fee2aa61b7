"""On-the-fly corrupted images for mDPO (mmalign.corruption)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from mmalign.corruption import ASPECT_RATIOS, corrupt_image, crop_box, mask_cells, random_crop, random_mask
from mmalign.errors import ConfigError


def _gradient_image(height: int = 60, width: int = 80) -> Image.Image:
    """Red = column, green = row: every pixel says where it came from."""
    cols = np.tile(np.arange(width, dtype=np.uint8), (height, 1))
    rows = np.tile(np.arange(height, dtype=np.uint8)[:, None], (1, width))
    return Image.fromarray(np.stack([cols, rows, np.full_like(cols, 9)], axis=-1))


def test_crop_box_keeps_the_asked_fraction_and_aspect():
    for seed in range(200):
        top, left, h, w = crop_box(300, 400, seed, keep_min=0.01, keep_max=0.2)
        assert top >= 0 and top + h <= 300 and left >= 0 and left + w <= 400
        # rounding to whole pixels moves the area by at most about one row and one column
        fraction = h * w / (300 * 400)
        slack = (h + w + 1) / (300 * 400)
        assert 0.01 - slack <= fraction <= 0.2 + slack
        assert ASPECT_RATIOS[0] * 0.9 <= w / h <= ASPECT_RATIOS[1] * 1.1


def test_crop_box_is_deterministic_per_generator_kind():
    assert crop_box(64, 64, 7) == crop_box(64, 64, 7)
    assert crop_box(64, 64, np.random.default_rng(7)) == crop_box(64, 64, 7)  # an int seeds numpy's generator
    a = crop_box(64, 64, torch.Generator().manual_seed(3))
    assert a == crop_box(64, 64, torch.Generator().manual_seed(3))
    assert len({crop_box(64, 64, s) for s in range(20)}) > 10


def test_crop_box_falls_back_on_tiny_images():
    # 1 % of 4×4 is 0.16 px, which rounds to a 0-pixel side: no draw fits, so a centred 1×1 box is used
    top, left, h, w = crop_box(4, 4, 0, keep_min=0.01, keep_max=0.01)
    assert (h, w) == (1, 1) and (top, left) == (1, 1)


def test_random_crop_on_pil_is_the_box_resized_back():
    image = _gradient_image()
    out = random_crop(image, 11, keep_min=0.1, keep_max=0.2)
    assert out.size == image.size and out.mode == "RGB"
    top, left, h, w = crop_box(60, 80, 11, keep_min=0.1, keep_max=0.2)
    expected = image.crop((left, top, left + w, top + h)).resize((80, 60), Image.Resampling.BILINEAR)
    assert np.array_equal(np.asarray(out), np.asarray(expected))
    # only pixels from inside the box survive
    pixels = np.asarray(out).astype(int)
    assert pixels[..., 0].min() >= left and pixels[..., 0].max() <= left + w - 1
    assert pixels[..., 1].min() >= top and pixels[..., 1].max() <= top + h - 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_random_crop_on_tensors(dtype):
    cols = torch.arange(80).repeat(3, 60, 1).to(dtype)  # (C, H, W), value = column
    before = cols.clone()
    out = random_crop(cols, torch.Generator().manual_seed(5), keep_min=0.1, keep_max=0.2)
    assert out.shape == cols.shape and out.dtype == dtype
    assert torch.equal(cols, before)  # the input is not modified
    _, left, _, w = crop_box(60, 80, torch.Generator().manual_seed(5), keep_min=0.1, keep_max=0.2)
    assert out.float().min() >= left and out.float().max() <= left + w - 1
    assert torch.equal(out[0], out[2])  # channels stay aligned


def test_mask_cells_count():
    cells = mask_cells(10, 10, 0, keep_min=0.3, keep_max=0.3)
    assert cells.shape == (10, 10) and cells.sum() == 30
    assert mask_cells(2, 2, 0, keep_min=0.01, keep_max=0.01).sum() == 1  # at least one cell survives


def test_random_mask_on_pil_and_tensor():
    image = Image.new("RGB", (50, 50), (200, 100, 50))
    out = np.asarray(random_mask(image, 4, keep_min=0.2, keep_max=0.2, grid=5))
    kept = (out == (200, 100, 50)).all(axis=-1)
    # 5 of 25 cells of 10×10 px kept: 500 of 2500 pixels; the rest is black
    assert kept.sum() == 500 and (out[~kept] == 0).all()
    tensor = torch.ones(2, 50, 50)
    masked = random_mask(tensor, torch.Generator().manual_seed(1), keep_min=0.5, keep_max=0.5, grid=5, fill=-1.0)
    # 0.5 · 25 = 12.5 cells, rounded half to even: 12 cells kept
    assert (masked == 1).float().mean().item() == pytest.approx(12 / 25)
    assert set(masked.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(masked[0], masked[1])


def test_random_mask_grid_larger_than_image():
    tensor = torch.ones(3, 3)
    out = random_mask(tensor, 0, keep_min=1.0, keep_max=1.0, grid=8)
    assert torch.equal(out, tensor)  # keeping everything keeps everything


def test_corrupt_image_dispatch_and_errors():
    image = _gradient_image()
    assert np.array_equal(np.asarray(corrupt_image(image, "crop", 3)), np.asarray(random_crop(image, 3)))
    assert np.array_equal(np.asarray(corrupt_image(image, "mask", 3)), np.asarray(random_mask(image, 3)))
    with pytest.raises(ConfigError, match="unknown image corruption 'blur'"):
        corrupt_image(image, "blur", 0)
    with pytest.raises(ConfigError, match="0 < min <= max <= 1"):
        random_crop(image, 0, keep_min=0.5, keep_max=0.2)
    with pytest.raises(ConfigError, match="grid must be a positive integer"):
        random_mask(image, 0, grid=0)
    with pytest.raises(TypeError, match="rng must be"):
        random_crop(image, "seed")  # type: ignore[arg-type]


def test_mean_kept_fraction_over_many_draws():
    # area fractions are uniform in [0.01, 0.2]: their mean is near 0.105
    fractions = [math.prod(crop_box(400, 400, s)[2:]) / 160000 for s in range(400)]
    assert abs(sum(fractions) / len(fractions) - 0.105) < 0.01
