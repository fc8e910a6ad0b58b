"""Decide whether two math answers are the same, through sympy, in bounded time.

Both sides go through :func:`latex.to_plain` and the guarded parser, then are
compared numerically: closed forms directly, expressions with symbols at a few
fixed random points. Equations, tuples/lists and "y = ..." against "..." are
compared part by part. A worker thread enforces the time limit, so a caller
never waits longer than `timeout_s` even if sympy is slow.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable

import sympy

from .expr_parser import parse_expression
from .latex import to_plain
from .numeric import parse_number

MAX_ANSWER_CHARS = 400
_REL_TOL = 1e-6
_UNITS = re.compile(
    r"(?:°|\b(?:degrees?|deg|radians?|rad|units?|sq\.?|square|cubic|cm|mm|km|m|ft|feet|in|inches|"
    r"yd|yards|meters?|metres?|miles)\b(?:\^?[23])?)",
    re.IGNORECASE,
)
_BRACKETS = {"(": ")", "[": "]", "{": "}"}


def _canon_text(text: str) -> str:
    return re.sub(r"\s+|\\[,;!]|\$|\\left|\\right", "", text).lower().rstrip(".")


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` where it is not inside (), [] or {}."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _strip_outer(text: str) -> str | None:
    """Contents of a bracketed sequence like '(1, 2)' or '[a, b]'; None if not one."""
    text = text.strip()
    if len(text) >= 2 and text[0] in _BRACKETS and text[-1] in ")]}":
        inner = text[1:-1]
        depth = 0
        for ch in inner:
            depth += ch in "([{"
            depth -= ch in ")]}"
            if depth < 0:
                return None
        return inner if depth == 0 else None
    return None


def _parse(text: str) -> sympy.Expr:
    return parse_expression(_UNITS.sub(" ", text).strip())


def _values(expr: sympy.Expr, points: list[dict[sympy.Symbol, sympy.Rational]]) -> list[complex | None]:
    out: list[complex | None] = []
    for subs in points:
        try:
            value = complex(expr.evalf(20, subs=subs))
        except (ArithmeticError, TypeError, ValueError):
            value = None
        out.append(value)
    return out


def _close(a: complex, b: complex) -> bool:
    return abs(a - b) <= _REL_TOL * max(abs(a), abs(b), 1e-12) or abs(a - b) < 1e-12


def _points(symbols: set[sympy.Symbol], seed_text: str) -> list[dict[sympy.Symbol, sympy.Rational]]:
    rng = random.Random(seed_text)
    ordered = sorted(symbols, key=lambda s: s.name)
    return [{s: sympy.Rational(rng.randint(1, 997), 389) + k for s in ordered} for k in range(4)]


def _exprs_equal(a: sympy.Expr, b: sympy.Expr) -> bool:
    if a == b:
        return True
    symbols = a.free_symbols | b.free_symbols
    points = _points(symbols, str(sorted(s.name for s in symbols))) if symbols else [{}]
    checked = 0
    for va, vb in zip(_values(a, points), _values(b, points)):
        if va is None or vb is None:
            if (va is None) != (vb is None):
                return False
            continue
        if not _close(va, vb):
            return False
        checked += 1
    return checked > 0


def _proportional(a: sympy.Expr, b: sympy.Expr) -> bool:
    """a == k*b for a nonzero constant k (two equations written with sides scaled or swapped)."""
    symbols = a.free_symbols | b.free_symbols
    if not symbols:
        return False
    ratios = []
    for va, vb in zip(_values(a, _points(symbols, "eq")), _values(b, _points(symbols, "eq"))):
        if va is None or vb is None or abs(vb) < 1e-12:
            return False
        ratios.append(va / vb)
    return abs(ratios[0]) > 1e-12 and all(_close(r, ratios[0]) for r in ratios)


def _single_equivalent(pred: str, gold: str) -> bool:
    p_sides, g_sides = _split_top(pred, "="), _split_top(gold, "=")
    if len(p_sides) > 2 or len(g_sides) > 2:
        return False
    if len(p_sides) == 2 and len(g_sides) == 2:
        pl, pr = (_parse(s) for s in p_sides)
        gl, gr = (_parse(s) for s in g_sides)
        if (_exprs_equal(pl, gl) and _exprs_equal(pr, gr)) or (_exprs_equal(pl, gr) and _exprs_equal(pr, gl)):
            return True
        return _proportional(sympy.Add(pl, -pr), sympy.Add(gl, -gr))
    # "y = 2x + 1" against "2x + 1", or "AB = 5" against "5": compare with the right-hand side.
    return _exprs_equal(_parse(p_sides[-1]), _parse(g_sides[-1]))


def _equivalent(pred: str, gold: str) -> bool:
    pred, gold = to_plain(pred).strip().rstrip("."), to_plain(gold).strip().rstrip(".")
    if _canon_text(pred) == _canon_text(gold):
        return True
    p_inner, g_inner = _strip_outer(pred), _strip_outer(gold)
    if p_inner is not None and g_inner is not None and ("," in p_inner or "," in g_inner):
        p_items, g_items = _split_top(p_inner, ","), _split_top(g_inner, ",")
        return len(p_items) == len(g_items) and all(map(_equivalent, p_items, g_items))
    if len(_split_top(pred, ",")) > 1 or len(_split_top(gold, ",")) > 1:
        return False
    p_num, g_num = parse_number(pred), parse_number(gold)
    if p_num is not None and g_num is not None:
        if p_num.exact is not None and g_num.exact is not None:
            return p_num.exact == g_num.exact
        return _close(complex(p_num.value), complex(g_num.value))
    return _single_equivalent(pred, gold)


def run_bounded(fn: Callable[[], bool], timeout_s: float) -> bool:
    """Run fn in a daemon thread; False if it raises or has not finished within timeout_s."""
    result = [False]

    def target() -> None:
        try:
            result[0] = bool(fn())
        except Exception:  # noqa: BLE001 (sympy raises many error types; any of them means "not shown equal")
            result[0] = False

    worker = threading.Thread(target=target, daemon=True, name="mvlm-sympy-equivalence")
    worker.start()
    worker.join(max(timeout_s, 0.0))
    return False if worker.is_alive() else result[0]


def expressions_equivalent(pred: str, gold: str, timeout_s: float = 1.0) -> bool:
    """True when two math answers (LaTeX or plain) denote the same value, expression or equation.

    Never raises; returns False when either side cannot be parsed safely or the
    comparison does not finish within `timeout_s` seconds.
    """
    if not isinstance(pred, str) or not isinstance(gold, str):
        return False
    if not pred.strip() or not gold.strip():
        return False
    if _canon_text(pred) == _canon_text(gold):
        return True
    if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return False
    return run_bounded(lambda: _equivalent(pred, gold), timeout_s)
