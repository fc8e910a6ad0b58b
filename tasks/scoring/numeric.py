"""Read a numeric answer written the way models write it, and compare two of them.

Handles thousands separators, currency signs, trailing units, percent, plain
fractions, scientific notation (``1.5e-3``, ``1.5 \\times 10^{-3}``) and small
closed forms (``\\frac{\\sqrt{3}}{2}``, ``2\\pi``) through the guarded parser.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from .expr_parser import parse_expression
from .latex import to_plain

MAX_NUMBER_TEXT = 300
MAX_DIGITS = 60
# What reading a number can raise (sympy's evalf raises ArithmeticError subclasses too).
_PARSE_FAILURES = (ArithmeticError, ValueError, TypeError, NotImplementedError, RecursionError)

_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)"
_SCI = r"(?:[eE](?P<e1>[-+]?\d{1,4})|\s*[*x]\s*10\s*\^\s*\(?\s*(?P<e2>[-+]?\d{1,4})\s*\)?)"
_PLAIN = re.compile(
    rf"(?P<sign>[-+]?)\s*(?P<num>{_NUM})(?:\s*/\s*(?P<den>{_NUM}))?{_SCI}?\s*(?P<pct>%|percent\b)?(?P<rest>.*)",
    re.DOTALL,
)
# Words that, written after a number, belong to the value rather than being a unit.
_NOT_UNIT = re.compile(r"pi|sqrt|e|i|x|y|z|n|k|a|b|c|r|t|log|ln|sin|cos|tan|times|oo")
_UNIT_TAIL = re.compile(r"[A-Za-z°'\"][A-Za-z°'\". /]*(?:\^?[23])?[A-Za-z. ]*")
_MIXED = re.compile(r"(?P<sign>[-+]?)(?P<whole>\d+)\s+(?P<num>\d+)\s*/\s*(?P<den>\d+)(?P<rest>.*)", re.DOTALL)
# fmt: off
_SMALL = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)
# fmt: on
_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_WORD_NUMBER = re.compile(
    rf"\b(?:({'|'.join(_TENS)})(?:[- ]({'|'.join(_SMALL[1:10])}))?|({'|'.join(_SMALL)}))\b", re.IGNORECASE
)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DROP = re.compile(
    r"[$€£¥₹]|\\\$|≈|~|\b(?:approximately|approx\.?|about|around|roughly|nearly)\b", re.IGNORECASE
)


@dataclass(frozen=True)
class Number:
    """A parsed numeric answer."""

    value: float
    exact: Fraction | None  # set for plain decimals, fractions and scientific notation
    decimals: int | None  # digits after the point when written as a plain decimal
    percent: bool
    text: str  # the number as written, without units, currency or filler words


def _is_unit_tail(rest: str) -> bool:
    rest = rest.strip().rstrip(".")
    if not rest:
        return True
    first = re.match(r"[A-Za-z°'\"]*", rest).group(0).lower()
    return not _NOT_UNIT.fullmatch(first) and _UNIT_TAIL.fullmatch(rest) is not None


def _clean(text: str) -> str:
    plain = to_plain(text)
    plain = _DROP.sub("", plain)
    plain = _THOUSANDS.sub("", plain)
    plain = plain.strip().strip("*").strip()
    plain = re.sub(r"^(?:[A-Za-z]\w*\s*=\s*)", "", plain)  # "x = 5" -> "5"
    return plain.rstrip(".").strip()


def parse_number(text: object) -> Number | None:
    """Parse a short numeric answer text; None when it is not a single finite real number."""
    if not isinstance(text, (str, int, float)) or isinstance(text, bool):
        return None
    text = str(text)
    if not text.strip() or len(text) > MAX_NUMBER_TEXT:
        return None
    try:
        return _parse(_clean(text))
    except _PARSE_FAILURES:
        return None


def _parse(plain: str) -> Number | None:
    m = _PLAIN.fullmatch(plain)
    if m and _is_unit_tail(m.group("rest")):
        return _from_match(m)
    mixed = _MIXED.fullmatch(plain)
    if mixed and _is_unit_tail(mixed.group("rest")) and int(mixed.group("den")) != 0:
        exact = int(mixed.group("whole")) + Fraction(int(mixed.group("num")), int(mixed.group("den")))
        exact = -exact if mixed.group("sign") == "-" else exact
        return Number(float(exact), exact, None, False, f"{exact.numerator}/{exact.denominator}")
    return _from_expression(plain)


def numbers_in_words(text: str) -> list[tuple[int, str]]:
    """(position, digits) of every number written in words (zero to ninety-nine) in text."""
    found = []
    for m in _WORD_NUMBER.finditer(text):
        tens, unit, small = (g.lower() if g else None for g in m.groups())
        value = _SMALL.index(small) if small is not None else 20 + 10 * _TENS.index(tens) + (
            _SMALL.index(unit) if unit else 0)
        found.append((m.start(), str(value)))
    return found


def number_from_words(text: str) -> str | None:
    """The last number written in words (zero to ninety-nine) in text, as digits; None if none."""
    found = numbers_in_words(text)
    return found[-1][1] if found else None


def _from_match(m: re.Match[str]) -> Number | None:
    if len(m.group("num")) > MAX_DIGITS or len(m.group("den") or "") > MAX_DIGITS:
        return None
    exact = Fraction(m.group("num"))
    if m.group("den") is not None:
        den = Fraction(m.group("den"))
        if den == 0:
            return None
        exact /= den
    exponent = m.group("e1") or m.group("e2")
    if exponent is not None:
        exact *= Fraction(10) ** int(exponent)
    if m.group("sign") == "-":
        exact = -exact
    decimals = None
    if m.group("den") is None and exponent is None:
        decimals = len(m.group("num").split(".")[1]) if "." in m.group("num") else 0
    text = m.string[: m.start("rest")].strip()
    text = re.sub(r"\s+", "", text) if m.group("pct") != "percent" else re.sub(r"\s*percent$", "%", text)
    return Number(float(exact), exact, decimals, m.group("pct") is not None, text)


def _from_expression(plain: str) -> Number | None:
    percent = plain.endswith("%")
    body = plain.rstrip("%").strip()
    tail = re.search(r"\s+([A-Za-z°][A-Za-z°. ]*)$", body)
    if tail and _is_unit_tail(tail.group(1)):
        body = body[: tail.start()]
    if "=" in body or "," in body:
        return None
    try:
        expr = parse_expression(body)
        if expr.free_symbols:
            return None
        value = complex(expr.evalf(30))
    except _PARSE_FAILURES:
        return None
    if abs(value.imag) > 1e-12 * max(1.0, abs(value.real)) or not math.isfinite(value.real):
        return None
    return Number(value.real, None, None, percent, re.sub(r"\s+", "", body) + ("%" if percent else ""))


def _close(p: float, g: float, rel_tol: float) -> bool:
    if p == g:
        return True
    return abs(p - g) <= rel_tol * max(abs(p), abs(g)) if rel_tol > 0 else False


def _matches(p: Number, pv: float, g: Number, gv: float, precision: int | None, rel_tol: float) -> bool:
    if precision is not None:
        return abs(round(pv, precision) - round(gv, precision)) < 0.5 * 10.0 ** (-precision - 2)
    if p.exact is not None and not p.percent and not g.percent and p.exact == g.exact:
        return True
    # A plain decimal with >= 2 places matches an exact value (1/3, sqrt 2, pi) rounded to those places.
    if g.decimals is None and p.decimals is not None and p.decimals >= 2 and pv != 0:
        return abs(round(gv, p.decimals) - pv) < 0.5 * 10.0 ** (-p.decimals - 2)
    if p.decimals is None and g.decimals is not None and g.decimals >= 2 and gv != 0:
        return abs(round(pv, g.decimals) - gv) < 0.5 * 10.0 ** (-g.decimals - 2)
    return _close(pv, gv, rel_tol)


def numbers_equal(pred: str, gold: str, precision: int | None = None, rel_tol: float = 1e-6) -> bool:
    """True when pred and gold denote the same number.

    `precision` (decimal places, as in MathVista) compares both values rounded to that
    many places; otherwise values must agree within `rel_tol` (``rel_tol=0`` means exactly).
    A percent on either side also matches the value divided by 100 ("25%" == "0.25").
    """
    try:
        p, g = parse_number(pred), parse_number(gold)
        if p is None or g is None:
            return False
        if precision is not None:
            precision = int(precision)
        p_values = [p.value] + ([p.value / 100] if p.percent else [])
        g_values = [g.value] + ([g.value / 100] if g.percent else [])
        return any(_matches(p, pv, g, gv, precision, rel_tol) for pv in p_values for gv in g_values)
    except _PARSE_FAILURES:
        return False
