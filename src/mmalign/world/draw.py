"""Drawing scenes with PIL: plain background, one filled shape per occupied cell, anti-aliased.

Shapes are drawn at 2-4× the output size and box-downsampled (``Image.reduce``), which is cheap and gives
clean edges. A large object fills 85% of its cell, a small one 50%; the jitter moves it inside the free
margin. Rendering is a pure function of the scene and the size, so it can run in worker processes and
give the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

from mmalign.objects.shapes import BACKGROUND, RGB
from mmalign.world.scene import Scene, SceneObject

EXTENT = {"large": 0.85, "small": 0.5}
"""Shape extent as a fraction of the cell side."""


def _regular(n: int, radius: float = 1.0, start: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [
        (radius * math.cos(start + 2 * math.pi * i / n), radius * math.sin(start + 2 * math.pi * i / n))
        for i in range(n)
    ]


def _star(points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    out = []
    for i in range(2 * points):
        radius = 1.0 if i % 2 == 0 else inner
        angle = -math.pi / 2 + math.pi * i / points
        out.append((radius * math.cos(angle), radius * math.sin(angle)))
    return out


def _cross(arm: float = 0.32) -> list[tuple[float, float]]:
    a = arm
    return [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)]


def _heart(n: int = 48) -> list[tuple[float, float]]:
    """The classic parametric heart, scaled to the unit box (image y points down)."""
    pts = []
    for i in range(n):
        t = 2 * math.pi * i / n
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((x, -y))
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    half = max(max(xs) - min(xs), max(ys) - min(ys)) / 2
    return [((x - cx) / half, (y - cy) / half) for x, y in pts]


OUTLINES: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)],
    "triangle": [(0.0, -1.0), (0.95, 0.8), (-0.95, 0.8)],
    "star": _star(),
    "diamond": [(0.0, -1.0), (0.75, 0.0), (0.0, 1.0), (-0.75, 0.0)],
    "cross": _cross(),
    "hexagon": _regular(6, start=0.0),
    "heart": _heart(),
}
"""Polygon outlines in a unit box centred on 0 (the circle is drawn as an ellipse). Each contains its centre."""


def supersample_factor(size: int) -> int:
    """Drawing scale before downsampling: 4× for small images, 2× for large ones."""
    return 4 if size <= 96 else (3 if size <= 192 else 2)


def object_geometry(scene: Scene, obj: SceneObject, size: float) -> tuple[float, float, float]:
    """Centre x, centre y and half-extent of ``obj`` in an image of side ``size`` (pixels, may be fractional)."""
    cell_w, cell_h = size / scene.cols, size / scene.rows
    extent = min(cell_w, cell_h) * EXTENT[obj.size]
    cx = (obj.col + 0.5) * cell_w + obj.dx * (cell_w - extent) / 2
    cy = (obj.row + 0.5) * cell_h + obj.dy * (cell_h - extent) / 2
    return cx, cy, extent / 2


def object_box(scene: Scene, obj: SceneObject) -> list[float]:
    """Bounding box ``[x0, y0, x1, y1]`` as fractions of the image side (for grounding)."""
    cx, cy, r = object_geometry(scene, obj, 1.0)
    return [round(v, 4) for v in (cx - r, cy - r, cx + r, cy + r)]


def render(scene: Scene, size: int, supersample: int | None = None) -> Image.Image:
    """The scene as an RGB image of ``size`` × ``size`` pixels."""
    scale = supersample or supersample_factor(size)
    canvas = size * scale
    image = Image.new("RGB", (canvas, canvas), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        cx, cy, r = object_geometry(scene, obj, canvas)
        r -= 0.5  # PIL fills boundary pixels inclusively: one extra canvas pixel across
        fill = RGB[obj.colour]
        if obj.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            draw.polygon([(cx + x * r, cy + y * r) for x, y in OUTLINES[obj.shape]], fill=fill)
    return image.reduce(scale) if scale > 1 else image


def save_png(image: Image.Image, path: str | Path) -> None:
    """PNG with fast compression (flat shapes compress well anyway); no timestamps, so bytes are stable."""
    image.save(path, format="PNG", compress_level=1)


def render_to_files(jobs: list[tuple[Scene, str]], size: int) -> int:
    """Render and save each (scene, path); returns how many were written. Runs in worker processes too."""
    for scene, path in jobs:
        save_png(render(scene, size), path)
    return len(jobs)
