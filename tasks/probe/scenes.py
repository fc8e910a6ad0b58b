"""Random scene layouts: what to draw where, with mild seeded variation in position, size and colour."""

from __future__ import annotations

from .font import text_size
from .render import RGB, SHAPE_KINDS, Scene, ShapeMark, TextMark
from .rng import Rng

IMAGE_SIZE = 112
MARGIN = 4
NUMBER_RANGE = (0, 99)
COUNT_RANGE = (1, 9)

# Base colours far enough apart that +-COLOUR_JITTER per channel never makes one look like another.
SHAPE_COLOURS: dict[str, RGB] = {
    "red": (210, 40, 40),
    "orange": (240, 140, 20),
    "yellow": (230, 200, 30),
    "green": (40, 160, 60),
    "blue": (40, 80, 210),
    "purple": (130, 50, 170),
}
COLOUR_JITTER = 16

WORDS = (
    "CAT", "DOG", "SUN", "BOX", "CUP", "HAT", "KEY", "MAP", "PEN", "BUS", "EGG", "FOX", "ICE", "JAM",
    "OWL", "ZIP", "VAN", "BIRD", "FISH", "TREE", "BOOK", "LAMP", "MILK", "RAIN", "SHIP", "STAR", "WOLF",
    "CAKE", "DOOR", "KITE", "MOON", "QUIZ", "JUMP", "APPLE", "BREAD", "CHAIR", "HOUSE", "LIGHT", "PLANT",
    "RIVER", "STONE", "TRAIN", "WATER", "ZEBRA", "GLOVE", "QUEEN", "YACHT",
)  # fmt: skip

_GRID = 4  # count scenes place shapes in distinct cells of a _GRID x _GRID grid
_CELL = IMAGE_SIZE // _GRID
_CELL_PAD = 2  # min px between a shape and its cell's border, so shapes never touch


def _background(rng: Rng) -> RGB:
    base = rng.randint(226, 248)
    return (base + rng.randint(-6, 6), base + rng.randint(-6, 6), base + rng.randint(-6, 6))


def _ink(rng: Rng) -> RGB:
    return (rng.randint(0, 80), rng.randint(0, 80), rng.randint(0, 80))


def _shape_colour(rng: Rng, name: str) -> RGB:
    r, g, b = (min(255, max(0, c + rng.randint(-COLOUR_JITTER, COLOUR_JITTER))) for c in SHAPE_COLOURS[name])
    return (r, g, b)


def _text_at(rng: Rng, text: str, scale: int, left: int, right: int, ink: RGB) -> TextMark:
    """`text` placed at a random position with its x extent inside [left, right)."""
    width, height = text_size(text, scale)
    x = rng.randint(left, right - width)
    y = rng.randint(MARGIN, IMAGE_SIZE - MARGIN - height)
    return TextMark(text=text, x=x, y=y, scale=scale, colour=ink)


def _fitting_scales(text: str, scales: tuple[int, ...], room: int) -> list[int]:
    return [s for s in scales if text_size(text, s)[0] <= room]


def text_scene(rng: Rng, text: str) -> Scene:
    """One number or word, at scale 3 to 5 (as large as fits)."""
    scales = _fitting_scales(text, (3, 4, 5), IMAGE_SIZE - 2 * MARGIN)
    mark = _text_at(rng, text, rng.choice(scales), MARGIN, IMAGE_SIZE - MARGIN, _ink(rng))
    return Scene(size=IMAGE_SIZE, background=_background(rng), marks=(mark,))


def pair_scene(rng: Rng, left: int, right: int) -> Scene:
    """Two numbers, one in each half, at least 6 font units apart."""
    half_gap = 9
    ink = _ink(rng)
    marks = (
        _text_at(rng, str(left), 3, MARGIN, IMAGE_SIZE // 2 - half_gap, ink),
        _text_at(rng, str(right), 3, IMAGE_SIZE // 2 + half_gap, IMAGE_SIZE - MARGIN, ink),
    )
    return Scene(size=IMAGE_SIZE, background=_background(rng), marks=marks)


def shape_scene(rng: Rng, colour: str, kind: str) -> Scene:
    """One large filled shape."""
    radius = rng.randint(18, 32)
    low, high = MARGIN + radius, IMAGE_SIZE - MARGIN - radius - 1
    mark = ShapeMark(kind, rng.randint(low, high), rng.randint(low, high), radius, _shape_colour(rng, colour))
    return Scene(size=IMAGE_SIZE, background=_background(rng), marks=(mark,))


def shapes_scene(rng: Rng, count: int, colour: str, kind: str) -> Scene:
    """`count` small shapes of one kind and colour, each in its own grid cell, none touching."""
    fill = _shape_colour(rng, colour)
    marks: list[ShapeMark] = []
    for cell in sorted(rng.sample(range(_GRID * _GRID), count)):
        x0, y0 = (cell % _GRID) * _CELL, (cell // _GRID) * _CELL
        radius = rng.randint(6, 9)
        low, high = _CELL_PAD + radius, _CELL - 1 - _CELL_PAD - radius
        marks.append(ShapeMark(kind, x0 + rng.randint(low, high), y0 + rng.randint(low, high), radius, fill))
    return Scene(size=IMAGE_SIZE, background=_background(rng), marks=tuple(marks))


def random_shape(rng: Rng) -> tuple[str, str]:
    """A (colour name, shape kind) pair."""
    return rng.choice(tuple(SHAPE_COLOURS)), rng.choice(SHAPE_KINDS)
