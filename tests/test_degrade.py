"""Offline degradations for image-side pairs (mmalign.corruption: blur, pixelate, noise, degrade)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from PIL import Image

from mmalign.corruption import (
    DEGRADATIONS,
    MAX_BLUR,
    MIN_KEEP,
    corrupt_image,
    degradation_params,
    degrade,
    gaussian_blur,
    gaussian_noise,
    pixelate,
)
from mmalign.errors import ConfigError


def _checker(size: int = 48, cell: int = 3) -> Image.Image:
    """A fine checkerboard: almost all of its energy is at high frequency."""
    grid = (np.indices((size, size)).sum(0) // cell) % 2
    return Image.fromarray(np.repeat((grid * 255).astype(np.uint8)[..., None], 3, axis=-1))


def _high_frequency_energy(image: Image.Image) -> float:
    """Mean squared difference between neighbouring pixels (grey levels)."""
    a = np.asarray(image, dtype=np.float64).mean(-1)
    return float((np.diff(a, axis=0) ** 2).mean() + (np.diff(a, axis=1) ** 2).mean())


def _noise_image(size: int = 48) -> Image.Image:
    """Uniform noise: energy at every frequency, and (almost surely) a different colour per pixel."""
    return Image.fromarray((np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8))


SEVERITIES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def test_more_blur_and_bigger_blocks_lower_high_frequency_energy():
    image = _noise_image()
    for mode in ("blur", "pixelate"):
        energy = [_high_frequency_energy(degrade(image, mode, s, 0)[0]) for s in SEVERITIES]
        assert energy[0] == pytest.approx(_high_frequency_energy(image))  # severity 0: unchanged
        assert all(a > b for a, b in itertools.pairwise(energy)), (mode, energy)
        assert energy[-1] < 0.01 * energy[0]


def test_pixelate_leaves_one_colour_per_cell():
    image = _noise_image()
    for s in SEVERITIES:
        block = int(degradation_params("pixelate", s, 48, 48)["block"])
        colours = np.unique(np.asarray(degrade(image, "pixelate", s, 0)[0]).reshape(-1, 3), axis=0)
        assert len(colours) == math.ceil(48 / block) ** 2  # blocks 1, 3, 5, 8, 10, 12: 2304 ... 16 cells


def test_more_noise_moves_pixels_further_by_sigma():
    grey = Image.new("RGB", (64, 64), (128, 128, 128))  # mid-grey: noise up to ~128 rarely clips
    spread = [np.asarray(degrade(grey, "noise", s, 5)[0], dtype=np.float64).std() for s in SEVERITIES]
    assert spread[0] == 0
    assert all(a < b for a, b in itertools.pairwise(spread))
    # severity 0.4 → sigma 0.4 * 128 = 51.2; the sample std of 12 288 draws is within a few percent
    assert spread[2] == pytest.approx(51.2, rel=0.05)


def test_mask_and_crop_keep_less_with_severity():
    image = _checker()
    blank = [float((np.asarray(degrade(image, "mask", s, 7)[0]) == 0).all(-1).mean()) for s in SEVERITIES]
    assert blank[0] < 0.6  # the checkerboard itself is half black
    assert all(a <= b for a, b in itertools.pairwise(blank)) and blank[-1] > 0.9
    # crop keeps 1 - s * (1 - MIN_KEEP) of the area: 0.05 at severity 1
    assert degradation_params("crop", 1.0, 48, 48) == {"keep": MIN_KEEP}
    assert degradation_params("mask", 0.5, 48, 48) == {"keep": 0.525}


def test_params_scale_with_image_size():
    assert degradation_params("blur", 1.0, 48, 64) == {"sigma": MAX_BLUR * 48}  # 6 px on the shorter side
    assert degradation_params("pixelate", 1.0, 48, 48) == {"block": 12}  # a 4 x 4 mosaic
    assert degradation_params("pixelate", 0.0, 48, 48) == {"block": 1}
    assert degradation_params("noise", 0.5, 10, 10) == {"sigma": 64.0}


def test_pixelate_replaces_aligned_cells_by_their_mean():
    pixels = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    out = np.asarray(pixelate(Image.fromarray(pixels), 3), dtype=np.float64)
    assert np.allclose(out[0, 0], pixels[:3, :3].reshape(-1, 3).mean(0), atol=0.5)
    assert np.allclose(out[4, 6], pixels[3:, 6:].reshape(-1, 3).mean(0), atol=0.5)  # the narrow last cell
    tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1)
    assert np.array_equal(
        pixelate(tensor, 3).permute(1, 2, 0).numpy(), np.asarray(pixelate(Image.fromarray(pixels), 3))
    )


def test_tensor_blur_is_a_normalised_gaussian():
    x = torch.zeros(1, 21, 21)
    x[0, 10, 10] = 1.0
    out = gaussian_blur(x, 2.0)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5)
    # the impulse response is the kernel: value at distance 2 over value at 0 = exp(-4 / (2 * 4))
    assert (out[0, 10, 12] / out[0, 10, 10]).item() == pytest.approx(np.exp(-0.5), rel=1e-4)
    assert gaussian_blur(torch.full((3, 8, 8), 200, dtype=torch.uint8), 1.5).unique().tolist() == [200]


def test_degrade_is_deterministic_per_seed_and_returns_same_kind():
    image = _checker(32)
    for mode in DEGRADATIONS:
        a, params = degrade(image, mode, 0.7, 11)
        b, _ = degrade(image, mode, 0.7, np.random.default_rng(11))
        assert isinstance(a, Image.Image) and a.size == image.size
        assert np.array_equal(np.asarray(a), np.asarray(b)), mode
        assert params == degradation_params(mode, 0.7, 32, 32)
    noisy = gaussian_noise(torch.zeros(2, 3), torch.Generator().manual_seed(0), 1.0)
    assert torch.equal(noisy, gaussian_noise(torch.zeros(2, 3), torch.Generator().manual_seed(0), 1.0))


def test_bad_degradations_are_config_errors_and_mdpo_modes_are_unchanged():
    with pytest.raises(ConfigError, match="unknown image degradation 'sepia'"):
        degrade(_checker(), "sepia", 0.5, 0)
    with pytest.raises(ConfigError, match="severity must be a number between 0 and 1"):
        degrade(_checker(), "blur", 1.5, 0)
    with pytest.raises(ConfigError, match="pixelate block"):
        pixelate(_checker(), 0)
    with pytest.raises(ConfigError, match="unknown image corruption 'blur'"):
        corrupt_image(_checker(), "blur", 0)  # the mDPO loss still offers only crop and mask
