"""Turn the LaTeX (and Unicode math) that models write into plain infix text.

The output is meant both for reading numbers out of a sentence and for the
small expression parser in :mod:`expr_parser`: ``\\frac{a}{b}`` becomes
``a/b`` (parenthesised when needed), ``\\sqrt{x}`` becomes ``sqrt(x)``,
``\\cdot``/``\\times`` become ``*``, ``^\\circ`` becomes ``°`` and text
wrappers such as ``\\text{cm}`` or ``\\boxed{..}`` are unwrapped.
"""

from __future__ import annotations

import re

MAX_DEPTH = 60

# fmt: off
_FRACS = {"frac", "dfrac", "tfrac", "cfrac"}
_UNWRAP = {
    "text", "textbf", "textit", "textrm", "texttt", "textnormal", "mathrm", "mathbf", "mathit", "mathsf",
    "mathtt", "mathcal", "boldsymbol", "bm", "operatorname", "boxed", "fbox", "mbox", "hbox", "emph",
    "underline", "overline", "bar", "hat", "vec", "overrightarrow", "widehat",
}
_REPLACE = {
    "cdot": "*", "times": "*", "ast": "*", "div": "/", "infty": "oo", "infin": "oo", "circ": "°",
    "degree": "°", "%": "%", "$": "$", "#": "#", "&": "&", "_": "_", ",": " ", ";": " ", ":": " ", "!": "",
    " ": " ", "quad": " ", "qquad": " ", "enspace": " ", "left": "", "right": "", "big": "", "Big": "",
    "bigg": "", "Bigg": "", "bigl": "", "bigr": "", "displaystyle": "", "textstyle": "", "limits": "",
    "nolimits": "", "le": "<=", "leq": "<=", "leqslant": "<=", "ge": ">=", "geq": ">=", "geqslant": ">=",
    "ne": "!=", "neq": "!=", "lt": "<", "gt": ">", "approx": "≈", "sim": "~", "simeq": "≈", "pm": "±",
    "mp": "∓", "cdots": "...", "ldots": "...", "dots": "...", "{": "{", "}": "}", "lbrace": "{",
    "rbrace": "}", "langle": "(", "rangle": ")", "lvert": "|", "rvert": "|", "vert": "|", "mid": "|",
    "angle": "∠", "triangle": "△", "parallel": "∥", "perp": "⊥", "rightarrow": "->", "to": "->",
    "Rightarrow": "=>", "implies": "=>", "therefore": "∴", "cup": "∪", "cap": "∩", "in": "∈", "emptyset": "∅",
    "varnothing": "∅", "prime": "'",
}
_UNICODE = {
    "−": "-", "–": "-", "—": "-", "×": "*", "·": "*", "⋅": "*", "÷": "/", "π": "pi", "∞": "oo", "√": "sqrt",
    "²": "^2", "³": "^3", "⁻¹": "^(-1)", "¹": "^1", "⁰": "^0", "½": "(1/2)", "¼": "(1/4)", "¾": "(3/4)",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "＄": "$", "（": "(", "）": ")", "，": ",", "：": ":", "＝": "=",
    "．": ".", "º": "°", "˚": "°",
}
# fmt: on
_UNICODE_RE = re.compile("|".join(re.escape(k) for k in sorted(_UNICODE, key=len, reverse=True)))
_SIMPLE_ATOM = re.compile(r"-?[A-Za-z0-9.]+|\(.*\)")


class LatexError(ValueError):
    """Raised when LaTeX nests deeper than the converter accepts."""


def replace_unicode_math(text: str) -> str:
    """Map Unicode math symbols (−, ×, π, √, ², full-width punctuation) to ASCII text."""
    return _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], text)


def _wrap(text: str) -> str:
    text = text.strip()
    if _SIMPLE_ATOM.fullmatch(text) and (not text.startswith("(") or _balanced_outer(text)):
        return text
    return f"({text})"


def _balanced_outer(text: str) -> bool:
    """True when the first '(' closes at the very end (so '(a)+(b)' is not one atom)."""
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(text) - 1:
            return False
    return depth == 0


class _Converter:
    def __init__(self, src: str) -> None:
        self.s = src
        self.n = len(src)

    def group(self, i: int, depth: int, closer: str | None) -> tuple[str, int]:
        """Convert from i until `closer` (or the end); return text and index after the closer."""
        if depth > MAX_DEPTH:
            raise LatexError("LaTeX nested too deeply")
        out: list[str] = []
        s, n = self.s, self.n
        while i < n:
            ch = s[i]
            if closer is not None and ch == closer:
                return "".join(out), i + 1
            if ch == "\\":
                text, i = self.command(i, depth)
                out.append(text)
            elif ch == "{":
                inner, i = self.group(i + 1, depth + 1, "}")
                out.append("," if inner.strip() == "," else _wrap(inner) if inner.strip() else "")
            elif ch == "}":
                i += 1
            elif ch == "^" and i + 1 < n and s[i + 1] in "{\\":
                arg, i = self.argument(i + 1, depth)
                out.append("°" if arg.strip() in ("°", "(°)") else "^" + _wrap(arg) if arg.strip() else "")
            elif ch == "_" and i + 1 < n and s[i + 1] == "{":
                arg, i = self.argument(i + 1, depth)
                sub = re.sub(r"[^A-Za-z0-9]", "", arg)
                out.append("_" + sub if sub else "")
            elif ch == "$":
                i += 1
            else:
                out.append(ch)
                i += 1
        return "".join(out), i

    def argument(self, i: int, depth: int) -> tuple[str, int]:
        """Read one macro argument: a braced group, a command, or a single character."""
        s, n = self.s, self.n
        while i < n and s[i] == " ":
            i += 1
        if i >= n:
            return "", i
        if s[i] == "{":
            return self.group(i + 1, depth + 1, "}")
        if s[i] == "\\":
            return self.command(i, depth)
        return s[i], i + 1

    def command(self, i: int, depth: int) -> tuple[str, int]:
        """Convert the command starting at the backslash at index i."""
        s, n = self.s, self.n
        j = i + 1
        while j < n and s[j].isalpha():
            j += 1
        if j == i + 1:  # a one-character command such as \, or \%
            name = s[j] if j < n else ""
            j = min(j + 1, n)
        else:
            name = s[i + 1 : j]
        if name in _FRACS:
            num, j = self.argument(j, depth + 1)
            den, j = self.argument(j, depth + 1)
            return f"{_wrap(num)}/{_wrap(den)}", j
        if name == "sqrt":
            index = ""
            k = j
            while k < n and s[k] == " ":
                k += 1
            if k < n and s[k] == "[":
                index, j = self.group(k + 1, depth + 1, "]")
            radicand, j = self.argument(j, depth + 1)
            if index.strip():
                return f"({_wrap(radicand)}^(1/{_wrap(index)}))", j
            return f"sqrt({radicand})", j
        if name in _UNWRAP:
            inner, j = self.argument(j, depth + 1)
            return inner, j
        if name in _REPLACE:
            return _REPLACE[name], j
        if name in ("(", ")", "[", "]"):
            return "", j
        return f" {name} " if name.isalpha() else name, j


def to_plain(text: str) -> str:
    """Convert LaTeX and Unicode math in `text` to plain infix text (raises LatexError if too deep)."""
    text = replace_unicode_math(text)
    if "\\" not in text and "{" not in text and "$" not in text:
        return text
    plain, _ = _Converter(text).group(0, 0, None)
    return re.sub(r"[ \t]{2,}", " ", plain)


def _brace_pairs(text: str) -> dict[int, int]:
    """Map the index of every matched '{' to the index of its '}' (one linear pass)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            pairs[stack.pop()] = i
    return pairs


def braced_contents(text: str, macro: str) -> list[tuple[int, str]]:
    """Every `\\macro{...}` in text as (start index, raw content), braces matched."""
    token = "\\" + macro
    if token not in text:
        return []
    pairs = _brace_pairs(text)
    found: list[tuple[int, str]] = []
    for m in re.finditer(re.escape(token) + r"\s*\{", text):
        open_at = m.end() - 1
        if open_at in pairs:
            found.append((m.start(), text[open_at + 1 : pairs[open_at]]))
    return found
