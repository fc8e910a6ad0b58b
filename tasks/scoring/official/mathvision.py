"""MATH-V (MATH-Vision) as officially evaluated (mathllm/MATH-V `evaluation/evaluate.py`, `utils.py`).

The official evaluation is rules only, no GPT:

1. the model answer is cut out of the response: a trailing " C." / " (C)." or a leading "C\\n" /
   "(C)\\n" reads as the letter; a number after the last "is " is taken; without a \\boxed{}, the
   text after the last "the (final|correct) answer is" / "the answer should be" (first line, first
   sentence); with several \\boxed{}, the last one;
2. `find_math_answer`: lowercase, the content of the last \\boxed{...}, the part after the last "="
   and "\\approx", spaces and some LaTeX (\\text, \\left, degrees, units such as km or m^3) removed,
   then MATH's `_strip_string` normalisation ("0.5" becomes \\frac{1}{2}, "a/b" becomes \\frac{a}{b});
3. `is_equal` against the gold answer and, for multiple choice, against the gold option's text:
   equal after lowercasing, or equal tuples after evaluating their items, or equal values rounded
   to 2 decimals after latex2sympy and Python's eval with the `math` module's names.

This module reproduces those steps (latex2sympy2, the library the official code uses, reads the
LaTeX; its output is evaluated by a restricted arithmetic evaluator instead of Python's eval). Options
"(D) 2:3" and other answers the rules miss are scored wrong, as officially.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Mapping
from fractions import Fraction
from functools import lru_cache
from typing import Any

from .. import budget
from ..verdict import Verdict

_FLAGS = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")
_BOXED = re.compile(r"oxed{(.*)}", re.DOTALL)
_MATH_NAMES = {name for name in dir(math) if not name.startswith("_")}
_LETTER = re.compile(r"[A-Za-z]")
_LATEX = re.compile(r"[\\{}]")
_DECIMAL = re.compile(r"-?\d+(?:\.\d+)?")
MAX_LATEX_CHARS = 200  # longer texts are not evaluated (officially tried; none matched in the published runs)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _letter_shortcut(answer: str) -> str:
    for letter in "ABCDE":
        if (answer.endswith((f" {letter}.", f" ({letter}).")) or
                answer.startswith((f"{letter}\n", f"({letter})\n", f"({letter}) {letter}\n"))):
            answer = letter
    return answer


def _after_flags(answer: str) -> str:
    for flag in _FLAGS:
        for variant in (flag, flag.replace("the", "The")):
            if variant in answer:
                answer = answer.split(variant)[-1].strip().split("\n")[0].split(". ")[0]
            else:
                answer = answer.split(variant)[-1].strip()
    return answer


def model_answer(response: str) -> str:
    """The answer `evaluate.py` reads from a response (lowercased and normalised)."""
    answer = _letter_shortcut(str(response).strip())
    tail = answer.split("is ")[-1].rstrip(".")
    if _is_number(tail):
        answer = tail
    if "oxed{" not in answer:
        answer = _after_flags(answer)
    elif answer.count("oxed{") > 1:
        answer = "\\boxed{" + answer.split("oxed{")[-1]
    answer = find_math_answer(answer)
    for letter in "abcde":
        answer = answer.replace(f"({letter})", letter).replace(f"{{{letter}}}", letter)
    return answer.rstrip(".").lstrip(":").strip()


def find_math_answer(text: str) -> str:
    """`find_math_answer`: the boxed content (or the whole text), cleaned of LaTeX and units."""
    text = text.lower().replace("{}", "")
    boxed = _BOXED.findall(text)
    answer = boxed[-1] if boxed else text
    close, open_ = answer.find("}"), answer.find("{")
    if close != -1 and (open_ == -1 or close < open_):
        answer = answer.split("}")[0]
    answer = answer.split("=")[-1].split("\\approx")[-1]
    for old, new in ((" ", ""), ("\\,", ""), ("∞", "\\infty"), ("+\\infty", "\\infty"), ("\\\\", "\\"),
                     ("\n", ""), ("\\text", ""), ("\\mbox", ""), ("bmatrix", "pmatrix"), ("\\left", ""),
                     ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("{m}^3", ""), ("m^3", ""),
                     ("{units}", ""), ("units", ""), ("{km}", ""), ("km", "")):
        answer = answer.replace(old, new)
    return strip_string(answer)


def _fix_sqrt(text: str) -> str:
    parts = text.split("\\sqrt")
    out = parts[0]
    for part in parts[1:]:
        out += "\\sqrt{" + part[0] + "}" + part[1:] if part and part[0] != "{" else "\\sqrt" + part
    return out


def _fix_fracs(text: str) -> str:
    parts = text.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part and part[0] == "{":
            out += part
            continue
        if len(part) < 2:
            return text
        numerator, denominator, rest = part[0], part[1], part[2:]
        out += ("{" + numerator + "}{" + denominator + "}" + rest if denominator != "{"
                else "{" + numerator + "}" + denominator + rest)
    return out


def _fix_a_slash_b(text: str) -> str:
    parts = text.split("/")
    if len(parts) != 2:
        return text
    try:
        numerator, denominator = int(parts[0]), int(parts[1])
    except ValueError:
        return text
    return f"\\frac{{{numerator}}}{{{denominator}}}" if text == f"{numerator}/{denominator}" else text


def strip_string(text: str) -> str:
    """MATH's `_strip_string` as the MATH-V code has it (fractions fixed only next to a sqrt)."""
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"),
                     ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", ""), ("$", "")):
        text = text.replace(old, new)
    text = text.split("\\text{ ")[0].replace("\\%", "")
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    if not text:
        return text
    if text[0] == ".":
        text = "0" + text
    if len(text.split("=")) == 2:
        text = text.split("=")[-1]
    if len(text.split("\\approx")) == 2:
        text = text.split("\\approx")[-1]
    if "sqrt" in text:
        text = _fix_sqrt(text)
    text = text.replace(" ", "")
    if "sqrt" in text:
        text = _fix_fracs(text)
    if text == "0.5":
        text = "\\frac{1}{2}"
    return _fix_a_slash_b(text)


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_COUNTING = {"factorial", "comb", "perm"}  # their results grow faster than their arguments


def _evaluate(node: ast.AST) -> Any:
    """Python's eval of a sympy expression's text with `from math import *` in scope, restricted to
    numbers, arithmetic and the math module's names (anything else raises, as eval would); an
    integer beyond the scorer's budget raises BudgetExceeded before it is computed."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        value = node.value
    elif isinstance(node, ast.Name) and node.id in _MATH_NAMES:
        value = getattr(math, node.id)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        value = _UNARY[type(node.op)](_evaluate(node.operand))
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            budget.check_power(left, right)
        value = _BINARY[type(node.op)](left, right)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _MATH_NAMES:
        args = [_evaluate(arg) for arg in node.args]
        if node.func.id in _COUNTING:
            for arg in args:
                budget.check_count_argument(arg)
        value = getattr(math, node.func.id)(*args)
    else:
        raise ValueError(f"not evaluated: {ast.dump(node)[:60]}")
    budget.check_int(value)
    return value


@lru_cache(maxsize=4096)
def latex_value(text: str) -> int | float | None:
    """`eval(str(latex2sympy(text)))` as the official code computes it (int or float), or None where
    that raises (unknown names such as a, E, I or oo; LaTeX that latex2sympy cannot read).
    Raises BudgetExceeded for a number beyond the scorer's budget."""
    if len(text) > MAX_LATEX_CHARS or (_LETTER.search(text) and not _LATEX.search(text)):
        return None  # plain text with letters reads as a product of unknown symbols ("pi" is i*p): eval fails
    if _DECIMAL.fullmatch(text):  # what latex2sympy gives a plain number: an exact rational
        exact = Fraction(text)
        return exact.numerator if exact.denominator == 1 else exact.numerator / exact.denominator
    from latex2sympy2 import latex2sympy  # the LaTeX reader of the official code; slow to import

    try:
        expr = latex2sympy(text)
        value = _evaluate(ast.parse(str(expr), mode="eval"))
    except budget.BudgetExceeded:
        raise  # the sample is scored wrong with this reason (see `score`)
    except Exception:  # noqa: BLE001 (latex2sympy raises many error types; the official code catches all)
        return None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _tuple_text(text: str) -> str:
    """`eval_tuple`: "(a, b)" / "[a, b]" with each item evaluated and rounded to 2 decimals."""
    items = text[1:-1].split(",")
    if len(text) < 2 or len(items) < 2 or (text[0], text[-1]) not in (("(", ")"), ("[", "]")):
        return text
    values = []
    for item in items:
        if "infty" in item or item in ("a", "-a"):
            values.append(item)
            continue
        value = latex_value(item)
        if value is None:
            return text
        values.append(str(round(value, 2)))  # an int stays an int ("3"), as in the official code
    return text[0] + ",".join(values) + text[-1]


def is_equal(answer: str, gold: str) -> bool:
    """`is_equal`: the same text (case-insensitively), tuple, or value to 2 decimals."""
    answer, gold = answer.lower(), gold.lower()
    if not answer.replace(" ", "") or not gold.replace(" ", ""):
        return False
    if answer.strip() == gold.strip():
        return True
    if _tuple_text(answer) == _tuple_text(gold):
        return True
    g = latex_value(gold)
    a = latex_value(answer) if g is not None else None
    try:
        return a is not None and g is not None and round(a, 2) == round(g, 2)
    except (OverflowError, ValueError):  # round() of inf or nan
        return False


def score(doc: Mapping[str, Any], response: str) -> Verdict:
    """Official MATH-V verdict: the read answer equals the gold letter or the gold option's text; an
    answer with a number beyond the scoring budget is wrong (rule "over_budget", with the reason)."""
    answer = model_answer("" if response is None else str(response))
    gold = str(doc.get("answer", ""))
    options = list(doc.get("options") or [])
    gold_text = ""
    if options and len(gold) == 1 and 0 <= ord(gold) - ord("A") < len(options):
        gold_text = str(options[ord(gold) - ord("A")])
    try:
        correct = is_equal(gold, answer) or is_equal(gold_text, answer)
    except budget.BudgetExceeded as exc:
        return Verdict(answer or None, False, "over_budget", reason=str(exc))
    return Verdict(answer or None, correct, "official_rules")
