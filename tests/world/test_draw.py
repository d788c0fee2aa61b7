"""Rendering: each object's colour is at its centre, empty cells are plain background, bytes are stable."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest

from mmalign.objects.shapes import BACKGROUND, RGB, SHAPES
from mmalign.world.config import WorldConfig
from mmalign.world.draw import OUTLINES, object_box, object_geometry, render, save_png
from mmalign.world.scene import Scene, SceneObject, sample_scene


def _cell_pixels(pixels: np.ndarray, scene: Scene, row: int, col: int) -> np.ndarray:
    size = pixels.shape[0]
    y0, y1 = row * size // scene.rows, (row + 1) * size // scene.rows
    x0, x1 = col * size // scene.cols, (col + 1) * size // scene.cols
    return pixels[y0:y1, x0:x1].reshape(-1, 3)


@pytest.mark.parametrize("size", [48, 64, 336])
def test_object_colour_at_its_centre_and_empty_cells_are_background(size):
    cfg = WorldConfig(n_colours=8, n_shapes=8, max_objects=6)
    rng = random.Random(size)
    for _ in range(20):
        scene = sample_scene(rng, cfg)
        pixels = np.asarray(render(scene, size)).astype(int)
        assert pixels.shape == (size, size, 3)
        for obj in scene.objects:
            cx, cy, _ = object_geometry(scene, obj, size)
            centre = pixels[int(cy), int(cx)]
            assert np.abs(centre - RGB[obj.colour]).max() <= 12, (obj, centre)
            # A good part of its cell is its own colour, and every pixel there is a blend of that colour and
            # the background (anti-aliased edges): nothing else is drawn in the cell.
            cell = _cell_pixels(pixels, scene, obj.row, obj.col)
            own = (np.abs(cell - RGB[obj.colour]).max(axis=1) <= 12).mean()
            assert own > (0.03 if obj.size == "small" else 0.12), obj
            direction = np.array(RGB[obj.colour]) - BACKGROUND
            t = np.clip((cell - BACKGROUND) @ direction / (direction @ direction), 0, 1)
            blend = BACKGROUND + t[:, None] * direction
            assert np.abs(cell - blend).max() <= 4, obj
        taken = {(o.row, o.col) for o in scene.objects}
        for row in range(scene.rows):
            for col in range(scene.cols):
                if (row, col) not in taken:
                    assert (_cell_pixels(pixels, scene, row, col) == BACKGROUND).all()


def test_every_shape_is_drawn_distinctly():
    masks = {}
    for shape in SHAPES:
        scene = Scene("s", 1, 1, (SceneObject("white", shape, "large", 0, 0),))
        masks[shape] = (np.asarray(render(scene, 64)).astype(int) - BACKGROUND).any(axis=2)
        assert 0.15 < masks[shape].mean() < 0.75, shape
    assert set(OUTLINES) | {"circle"} == set(SHAPES)
    for a in SHAPES:
        for b in SHAPES:
            if a < b:
                assert (masks[a] != masks[b]).mean() > 0.03, (a, b)


def _coverage(scene: Scene, size: int) -> float:
    """Area drawn, in pixels: the blend fraction of each pixel between background and the object's colour."""
    pixels = np.asarray(render(scene, size)).astype(float)
    direction = np.array(RGB[scene.objects[0].colour]) - BACKGROUND
    return float(((pixels - BACKGROUND) @ direction / (direction @ direction)).sum())


def test_drawn_area_and_box_match_the_geometry():
    large = Scene("s", 3, 3, (SceneObject("red", "square", "large", 1, 1),))
    small = Scene("s", 3, 3, (SceneObject("red", "square", "small", 1, 1),))
    circle = Scene("s", 3, 3, (SceneObject("red", "circle", "large", 1, 1),))
    # 96 px, 3 cells: 32 px a cell. A large square's half-extent is 0.85 * 32 / 2, its half-side 0.85 of that:
    # side 0.85 * 0.85 * 32 = 23.12 px, area 534.5; small: 0.85 * 0.5 * 32 = 13.6 px, area 185.0;
    # large circle: radius 0.85 * 32 / 2 = 13.6 px, area pi * 13.6^2 = 581.1.
    assert _coverage(large, 96) == pytest.approx(534.5, rel=0.02)
    assert _coverage(small, 96) == pytest.approx(185.0, rel=0.03)
    assert _coverage(circle, 96) == pytest.approx(581.1, rel=0.02)
    margin = (1 - 0.85) / 3 / 2
    expected = [1 / 3 + margin, 1 / 3 + margin, 2 / 3 - margin, 2 / 3 - margin]
    assert object_box(large, large.objects[0]) == pytest.approx(expected, abs=1e-4)


def test_png_bytes_are_deterministic(tmp_path):
    scene = sample_scene(random.Random(0), WorldConfig())
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    save_png(render(scene, 64), a)
    save_png(render(scene, 64), b)
    assert a.read_bytes() == b.read_bytes()
    buf = io.BytesIO(a.read_bytes())
    from PIL import Image

    assert Image.open(buf).size == (64, 64)
