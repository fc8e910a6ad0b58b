"""Probe answers and text twins agree with what is actually drawn, read back from the pixels."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from mvlm_tasks.probe.font import GLYPH_HEIGHT, GLYPHS
from mvlm_tasks.probe.generate import generate_probe
from mvlm_tasks.probe.items import Item
from mvlm_tasks.probe.scenes import SHAPE_COLOURS


def _trim(mask: np.ndarray) -> np.ndarray:
    cols = np.flatnonzero(mask.any(axis=0))
    return mask[:, cols[0] : cols[-1] + 1]


_CHAR_BY_BITMAP = {(_trim(g).shape, _trim(g).tobytes()): c for c, g in GLYPHS.items()}


def _ink(item: Item) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.asarray(item.image)
    background = pixels[0, 0]
    return pixels, (pixels != background).any(axis=2)


def read_text(item: Item) -> list[str]:
    """Words/numbers drawn in the image, left to right, by matching ink columns against the font."""
    _, ink = _ink(item)
    inked_cols = ink.any(axis=0)
    runs, start = [], None
    for x, on in enumerate([*inked_cols, False]):
        if on and start is None:
            start = x
        elif not on and start is not None:
            runs.append((start, x))
            start = None
    tokens: list[str] = []
    previous_end = None
    for x0, x1 in runs:
        rows = np.flatnonzero(ink[:, x0:x1].any(axis=1))
        height = rows[-1] - rows[0] + 1
        assert height % GLYPH_HEIGHT == 0, f"{item.id}: ink run of height {height} is not a glyph"
        scale = height // GLYPH_HEIGHT
        block = ink[rows[0] : rows[-1] + 1, x0:x1]
        units = block[::scale, ::scale]
        assert (np.kron(units, np.ones((scale, scale), dtype=bool)) == block).all(), (
            f"{item.id}: blurred glyph"
        )
        char = _CHAR_BY_BITMAP.get((units.shape, units.tobytes()))
        assert char is not None, f"{item.id}: unreadable glyph at x={x0}"
        if previous_end is None or x0 - previous_end >= 5 * scale:
            tokens.append(char)
        else:
            tokens[-1] += char
        previous_end = x1
    return tokens


def read_shapes(item: Item) -> list[tuple[str, str]]:
    """(colour name, kind) of each separate blob of ink, found by flood fill."""
    pixels, ink = _ink(item)
    seen = np.zeros_like(ink)
    shapes = []
    for y0, x0 in zip(*np.nonzero(ink)):
        if seen[y0, x0]:
            continue
        stack, blob = [(y0, x0)], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            blob.append((y, x))
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < ink.shape[0] and 0 <= nx < ink.shape[1] and ink[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        ys, xs = np.array(blob).T
        fill = len(blob) / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))
        kind = "square" if fill > 0.95 else "circle" if fill > 0.6 else "triangle"
        rgb = Counter(map(tuple, pixels[ys, xs].tolist())).most_common(1)[0][0]
        colour = min(
            SHAPE_COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(rgb, SHAPE_COLOURS[name]))
        )
        shapes.append((colour, kind))
    return shapes


ALL_ITEMS = generate_probe("perception") + generate_probe("reasoning")


def _expected_answer(item: Item) -> str:
    """The answer re-derived from the pixels and the question only."""
    if item.category in ("read_word", "read_number", "sum", "difference", "larger"):
        tokens = read_text(item)
        if item.category == "read_word":
            return tokens[0] if len(tokens) == 1 else f"unreadable {tokens}"
        numbers = [int(t) for t in tokens]
        if item.category == "read_number":
            if len(numbers) == 1:
                return str(numbers[0])
            return str(numbers[0] if "left" in item.question else numbers[1])
        assert len(numbers) == 2, f"{item.id}: expected two numbers, read {tokens}"
        left, right = numbers
        return str(
            {"sum": left + right, "difference": abs(left - right), "larger": max(left, right)}[item.category]
        )
    shapes = read_shapes(item)
    if item.category == "colour":
        assert len(shapes) == 1, f"{item.id}: expected one shape, found {len(shapes)}"
        return "ABCD"[item.choices.index(shapes[0][0])]
    if item.category == "count":
        return str(len(shapes))
    multiplier = int(re.search(r"multiply the count by (\d+)", item.question).group(1))
    return str(len(shapes) * multiplier)


@pytest.mark.parametrize("category", sorted({item.category for item in ALL_ITEMS}))
def test_answers_match_what_is_drawn(category: str) -> None:
    items = [item for item in ALL_ITEMS if item.category == category]
    wrong = [
        (item.id, item.answer, _expected_answer(item))
        for item in items
        if item.answer != _expected_answer(item)
    ]
    assert not wrong


def _described(item: Item) -> str:
    assert item.text_question.endswith(" " + item.question)
    return item.text_question[: -len(item.question) - 1]


def test_text_question_states_what_is_drawn() -> None:
    for item in ALL_ITEMS:
        description = _described(item)
        if item.category in ("count", "count_times", "colour"):
            shapes = read_shapes(item)
            ((colour, kind),) = set(shapes)
            count = len(shapes)
            expected = f"a {colour} {kind}" if item.category == "colour" else f"{count} {colour} {kind}"
            assert f"The image shows {expected}" in description, (item.id, description, shapes)
        else:
            tokens = read_text(item)
            assert re.findall(r"\b[A-Z0-9]+\b", description.replace("The image shows", "")) == tokens, (
                item.id,
                description,
                tokens,
            )


def test_every_item_has_a_well_formed_answer() -> None:
    for item in ALL_ITEMS:
        if item.answer_type == "integer":
            assert re.fullmatch(r"\d+", item.answer), item.id
        elif item.answer_type == "multiple_choice":
            assert len(item.choices) == 4 and len(set(item.choices)) == 4, item.id
            assert item.answer in "ABCD" and all(
                f"{l}. {c}" in item.question for l, c in zip("ABCD", item.choices)
            )
        else:
            assert item.answer_type == "text" and item.answer.isalpha() and not item.choices, item.id
