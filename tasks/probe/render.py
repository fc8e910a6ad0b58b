"""Scene description and rasterisation: a scene is plain data, rendering it is a pure function.

Everything is integer arithmetic on a numpy array (no anti-aliasing, no fonts, no Pillow drawing
primitives), so the same scene gives the same pixels with any Pillow or numpy version.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .font import text_bitmap

RGB = tuple[int, int, int]
SHAPE_KINDS = ("circle", "square", "triangle")


@dataclass(frozen=True)
class TextMark:
    """`text` drawn in the bitmap font with its top-left corner at (x, y)."""

    text: str
    x: int
    y: int
    scale: int
    colour: RGB


@dataclass(frozen=True)
class ShapeMark:
    """A filled circle, square or upward triangle centred at (cx, cy), `radius` px from centre to edge."""

    kind: str
    cx: int
    cy: int
    radius: int
    colour: RGB


Mark = TextMark | ShapeMark


@dataclass(frozen=True)
class Scene:
    """A square RGB image: a flat background and marks painted in order."""

    size: int
    background: RGB
    marks: tuple[Mark, ...]


def _shape_mask(mark: ShapeMark, size: int) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size]
    dx, dy, r = xs - mark.cx, ys - mark.cy, mark.radius
    if mark.kind == "circle":
        return dx * dx + dy * dy <= r * r
    if mark.kind == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if mark.kind == "triangle":
        return (dy >= -r) & (dy <= r) & (2 * np.abs(dx) <= dy + r)
    raise ValueError(f"unknown shape kind {mark.kind!r}; expected one of {SHAPE_KINDS}")


def _check_inside(left: int, top: int, right: int, bottom: int, size: int, mark: Mark) -> None:
    if left < 0 or top < 0 or right > size or bottom > size:
        raise ValueError(f"{mark} does not fit in a {size}x{size} image")


def render(scene: Scene) -> Image.Image:
    """Rasterise `scene` into an RGB image."""
    pixels = np.empty((scene.size, scene.size, 3), dtype=np.uint8)
    pixels[:, :] = scene.background
    for mark in scene.marks:
        if isinstance(mark, TextMark):
            ink = text_bitmap(mark.text, mark.scale)
            height, width = ink.shape
            _check_inside(mark.x, mark.y, mark.x + width, mark.y + height, scene.size, mark)
            pixels[mark.y : mark.y + height, mark.x : mark.x + width][ink] = mark.colour
        else:
            r = mark.radius
            _check_inside(mark.cx - r, mark.cy - r, mark.cx + r + 1, mark.cy + r + 1, scene.size, mark)
            pixels[_shape_mask(mark, scene.size)] = mark.colour
    return Image.fromarray(pixels)
