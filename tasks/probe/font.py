"""A 5x7 bitmap font for digits and capital letters, drawn by hand for the probe.

Glyphs come from this table rather than from a font file so that rendering does not depend on
FreeType, Pillow's bundled font or anything installed on the machine.
"""

from __future__ import annotations

import numpy as np

GLYPH_WIDTH = 5
GLYPH_HEIGHT = 7
GLYPH_SPACING = 1  # empty columns between two glyphs, in font units

_ROWS: dict[str, str] = {
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "###.. #..#. #...# #...# #...# #..#. ###..",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
}

GLYPHS: dict[str, np.ndarray] = {
    char: np.array([[c == "#" for c in row] for row in rows.split()], dtype=bool)
    for char, rows in _ROWS.items()
}


def text_bitmap(text: str, scale: int) -> np.ndarray:
    """Boolean ink mask of `text` in this font, each font unit drawn as a `scale` x `scale` block."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    unknown = sorted(set(text) - GLYPHS.keys())
    if unknown or not text:
        raise ValueError(f"cannot draw {text!r}: characters {unknown} are not in the font")
    gap = np.zeros((GLYPH_HEIGHT, GLYPH_SPACING), dtype=bool)
    parts: list[np.ndarray] = []
    for i, char in enumerate(text):
        if i:
            parts.append(gap)
        parts.append(GLYPHS[char])
    units = np.concatenate(parts, axis=1)
    return np.kron(units, np.ones((scale, scale), dtype=bool))


def text_size(text: str, scale: int) -> tuple[int, int]:
    """(width, height) in pixels of `text` drawn at `scale`."""
    units = len(text) * GLYPH_WIDTH + (len(text) - 1) * GLYPH_SPACING
    return units * scale, GLYPH_HEIGHT * scale
