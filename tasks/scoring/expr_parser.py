"""A small, guarded parser from plain infix math text to unevaluated sympy trees.

Model output never reaches ``eval``/``sympify``: this recursive-descent parser
accepts only numbers, a few named functions and constants, single-letter
(or Greek / subscripted) symbols, ``+ - * / ^ **``, implicit multiplication,
``%``, ``n!`` and ``|x|``. Trees are built with ``evaluate=False`` so nothing is
computed exactly at parse time, and inputs that could blow up later (long
text, huge literals, exponents above ``MAX_EXPONENT``, towers of powers,
deep nesting) raise :class:`ParseError` instead.
"""

from __future__ import annotations

import re

import sympy

MAX_TOKENS = 300
MAX_DIGITS = 40
MAX_EXPONENT = 1000
MAX_DEPTH = 40
MAX_POWER_NESTING = 2
MAX_SYMBOL_RUN = 3
MAX_FACTORIAL = 100

# fmt: off
_FUNCS = {
    "sqrt": lambda x: sympy.Pow(x, sympy.S.Half, evaluate=False),
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot, "sec": sympy.sec, "csc": sympy.csc,
    "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
    "asin": sympy.asin, "acos": sympy.acos, "atan": sympy.atan,
    "ln": sympy.log, "log": sympy.log, "exp": sympy.exp, "abs": sympy.Abs,
}
_CONSTS = {"pi": sympy.pi, "e": sympy.E, "oo": sympy.oo, "inf": sympy.oo, "infty": sympy.oo, "infinity": sympy.oo}
_GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
    "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega",
}
# Short words that are prose or units, never a product of one-letter symbols.
_PROSE = {
    "is", "are", "the", "and", "of", "to", "in", "so", "it", "be", "at", "as", "on", "or", "by", "an", "we", "if",
    "its", "was", "for", "has", "can", "not", "but", "all", "any", "get", "cm", "mm", "km", "ft", "yes", "no",
    "one", "two", "six", "ten", "per", "sq", "deg",
}
# fmt: on
_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+(?![A-Za-z]))?)"
    r"|(?P<name>[A-Za-z]+(?:_[A-Za-z0-9]+)?)"
    r"|(?P<op>\*\*|!(?!=)|[-+*/^()|%=,\[\]]))"
)


class ParseError(ValueError):
    """The text is not an expression this parser accepts (or would be unsafe to evaluate)."""


def tokenize(text: str) -> list[tuple[str, str]]:
    """Split text into (kind, value) tokens; raise ParseError on anything unexpected."""
    tokens: list[tuple[str, str]] = []
    pos, n = 0, len(text)
    while pos < n:
        if text[pos].isspace():
            pos += 1
            continue
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ParseError(f"unexpected character {text[pos]!r}")
        kind = m.lastgroup or "op"
        value = m.group(kind)
        if kind == "num" and len(re.sub(r"\D", "", value.split("e")[0].split("E")[0])) > MAX_DIGITS:
            raise ParseError("number literal too long")
        if kind == "name":
            tokens.extend(_split_name(value))
        else:
            tokens.append((kind, "^" if value == "**" else value))
        if len(tokens) > MAX_TOKENS:
            raise ParseError("expression too long")
        pos = m.end()
    return tokens


def _split_name(word: str) -> list[tuple[str, str]]:
    """Known words stay whole; short letter runs are products of one-letter symbols ('xy' -> x*y).

    Longer runs and capitalised words are prose ("The", "area"), not math: ParseError.
    """
    base = word.split("_")[0]
    lower = word.lower()
    if lower in _FUNCS or lower in _CONSTS or base.lower() in _GREEK or "_" in word or len(word) == 1:
        return [("name", word)]
    for prefix in sorted(_FUNCS, key=len, reverse=True):
        if lower.startswith(prefix) and len(word) > len(prefix):  # "sqrtx", "sinx"
            return [("name", prefix)] + _split_name(word[len(prefix) :])
    if len(word) > MAX_SYMBOL_RUN or lower in _PROSE or (word[0].isupper() and word[1:].islower()):
        raise ParseError(f"{word!r} reads as prose")
    return [("name", ch) for ch in word]


def _number(text: str) -> sympy.Expr:
    if "e" in text or "E" in text:
        mantissa, _, exponent = text.lower().partition("e")
        if abs(int(exponent)) > MAX_EXPONENT:
            raise ParseError("exponent too large")
        return sympy.Mul(
            sympy.Rational(mantissa), sympy.Pow(10, int(exponent), evaluate=False), evaluate=False
        )
    return sympy.Rational(text)


def _power_nesting(expr: sympy.Basic) -> int:
    """Length of the longest chain of powers nested inside exponents."""
    if isinstance(expr, sympy.Pow):
        return 1 + max(_power_nesting(expr.exp), 0)
    return max((_power_nesting(a) for a in expr.args), default=0)


def _check_exponent(exp: sympy.Expr) -> None:
    if _power_nesting(exp) >= MAX_POWER_NESTING:
        raise ParseError("tower of powers")
    if exp.free_symbols:
        return
    value = exp.evalf(15)
    if not value.is_number or value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        raise ParseError("exponent is not finite")
    if abs(complex(value)) > MAX_EXPONENT:
        raise ParseError("exponent too large")


def _check_factorial(arg: sympy.Expr) -> None:
    if arg.free_symbols:
        return
    value = arg.evalf(15)
    if not value.is_number or value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo) or abs(complex(value)) > MAX_FACTORIAL:
        raise ParseError("factorial too large")


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise ParseError(f"expected {value!r}")
        self.i += 1
        return tok

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("nested too deeply")

    def expr(self) -> sympy.Expr:
        self.enter()
        terms = [self.term()]
        while (tok := self.peek()) and tok[1] in "+-" and tok[0] == "op":
            self.take()
            rhs = self.term()
            terms.append(rhs if tok[1] == "+" else sympy.Mul(-1, rhs, evaluate=False))
        self.depth -= 1
        return terms[0] if len(terms) == 1 else sympy.Add(*terms, evaluate=False)

    def term(self) -> sympy.Expr:
        factors = [self.unary()]
        while (tok := self.peek()) is not None:
            if tok[1] in ("*", "/") and tok[0] == "op":
                self.take()
                rhs = self.unary()
                factors.append(sympy.Pow(rhs, -1, evaluate=False) if tok[1] == "/" else rhs)
            elif tok[0] == "name" or tok[1] == "(":
                factors.append(self.power())  # implicit multiplication
            else:
                break
        return factors[0] if len(factors) == 1 else sympy.Mul(*factors, evaluate=False)

    def unary(self) -> sympy.Expr:
        tok = self.peek()
        if tok and tok[0] == "op" and tok[1] in "+-":
            self.take()
            self.enter()
            operand = self.unary()
            self.depth -= 1
            return operand if tok[1] == "+" else sympy.Mul(-1, operand, evaluate=False)
        return self.power()

    def power(self) -> sympy.Expr:
        base = self.postfix()
        tok = self.peek()
        if tok and tok[1] == "^":
            self.take()
            self.enter()
            exp = self.unary()
            self.depth -= 1
            _check_exponent(exp)
            return sympy.Pow(base, exp, evaluate=False)
        return base

    def postfix(self) -> sympy.Expr:
        node = self.atom()
        while (tok := self.peek()) and tok[1] in ("%", "!"):
            self.take()
            if tok[1] == "%":
                node = sympy.Mul(node, sympy.Rational(1, 100), evaluate=False)
            else:
                _check_factorial(node)
                node = sympy.factorial(node, evaluate=False)
        return node

    def atom(self) -> sympy.Expr:
        tok = self.peek()
        if tok is None:
            raise ParseError("unexpected end")
        kind, value = tok
        if kind == "num":
            self.take()
            return _number(value)
        if value in ("(", "["):
            self.take()
            inner = self.expr()
            self.take(")" if value == "(" else "]")
            return inner
        if value == "|":
            self.take()
            inner = self.expr()
            self.take("|")
            return sympy.Abs(inner, evaluate=False)
        if kind == "name":
            self.take()
            lower = value.lower()
            if lower in _FUNCS:
                self.enter()
                power = None
                if (nxt := self.peek()) and nxt[1] == "^":  # sin^2 x means (sin x)^2
                    self.take()
                    power = self.atom()
                    _check_exponent(power)
                nxt = self.peek()
                arg = self.atom() if nxt and nxt[1] in ("(", "[") else self.power()
                self.depth -= 1
                node = _FUNCS[lower](arg) if lower == "sqrt" else _FUNCS[lower](arg, evaluate=False)
                return node if power is None else sympy.Pow(node, power, evaluate=False)
            if lower in _CONSTS:
                return _CONSTS[lower]
            return sympy.Symbol(value)
        raise ParseError(f"unexpected {value!r}")


def parse_expression(text: str) -> sympy.Expr:
    """Parse plain infix text (no '=' or top-level commas) into an unevaluated sympy expression."""
    tokens = tokenize(text)
    if not tokens:
        raise ParseError("empty expression")
    parser = _Parser(tokens)
    node = parser.expr()
    if parser.peek() is not None:
        raise ParseError(f"trailing {parser.peek()[1]!r}")
    return node
