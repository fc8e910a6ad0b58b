"""Answer a yes/no comparison question ("Is the number of X less than the number of Y?") from a
statement that makes the comparison itself ("There are more Y than X")."""

from __future__ import annotations

import re

_MORE = {"more", "greater", "larger", "bigger", "higher", "longer", "taller", "heavier", "older", "wider"}
_LESS = {"less", "fewer", "smaller", "lower", "shorter", "lighter", "younger", "narrower"}
_COMPARISON = re.compile(rf"\b({'|'.join(sorted(_MORE | _LESS))})\b(.*?)\bthan\b(.*)", re.IGNORECASE | re.DOTALL)
_EQUAL = re.compile(r"\b(?:same\s+(?:as|number)|equal)\b", re.IGNORECASE)
_NEGATED = re.compile(r"\b(?:not|no)\s+(?:\w+\s+)?$|n't\s+(?:\w+\s+)?$", re.IGNORECASE)
_FILLER = {"the", "a", "an", "of", "number", "is", "are", "there", "in", "on", "that", "than", "it", "this",
           "image", "picture", "based", "which", "things", "objects", "object", "thing", "many", "amount"}


def _words(text: str) -> set[str]:
    """Content-word stems: lowercase, first five letters, filler words dropped."""
    return {w[:5] for w in re.findall(r"[a-z]+", text.lower()) if w not in _FILLER}


def _sides(text: str) -> tuple[int, set[str], set[str], bool] | None:
    """(direction: +1 more / -1 less, words before the comparative, words after "than", negated)."""
    m = _COMPARISON.search(text)
    if m is None:
        return None
    direction = 1 if m.group(1).lower() in _MORE else -1
    before = text[: m.start()]
    return direction, _words(before + " " + m.group(2)), _words(m.group(3)), bool(_NEGATED.search(before))


def comparison_answer(question: str, statement: str) -> bool | None:
    """True ("yes") / False ("no") when the statement settles the question's comparison, else None."""
    asked = _sides(question)
    if asked is None:
        return None
    if _EQUAL.search(statement) and _COMPARISON.search(statement) is None:
        return False
    stated = _sides(statement)
    if stated is None:
        return None
    q_dir, q_left, q_right, _ = asked
    s_dir, s_left, s_right, negated = stated
    same = len(s_left & q_left) + len(s_right & q_right)
    swapped = len(s_left & q_right) + len(s_right & q_left)
    if same == swapped:
        return None
    agrees = (s_dir == q_dir) == (same > swapped)
    return agrees != negated
