"""The per-sample budget of a scorer: how large a number a model's answer may make it compute.

A response is text a model wrote; evaluating it must neither stall a run nor raise out of it.
Integers are bounded to MAX_DIGITS digits, checked before a power, factorial or binomial is
computed (from the operands' sizes), so `((2^{4096})^{4096})^{4096}` is refused in microseconds
instead of taking minutes and gigabytes. A sample over the budget is scored wrong with the reason.
"""

from __future__ import annotations

import math

MAX_DIGITS = 4000  # below Python's 4300-digit limit on int -> str, so a bounded int can always be printed
MAX_INT_BITS = int(MAX_DIGITS * math.log2(10))
MAX_COUNT_ARGUMENT = 4096  # the largest n of n!, C(n, k), P(n, k) computed


class BudgetExceeded(ArithmeticError):
    """A number in a response is larger than the scorer's budget; the sample is scored wrong."""


def check_int(value: object) -> None:
    """Raise BudgetExceeded when `value` is an int with more than MAX_DIGITS digits."""
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise BudgetExceeded(f"an integer over {MAX_DIGITS} digits")


def check_power(base: object, exponent: object) -> None:
    """Raise BudgetExceeded when int `base` ** int `exponent` would exceed MAX_DIGITS digits
    (estimated from the operands' sizes, before anything is computed)."""
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0 or abs(base) <= 1:
        return  # floats overflow by themselves (OverflowError); a negative power is a float
    if exponent * (abs(base).bit_length() - 1) > MAX_INT_BITS:
        raise BudgetExceeded(f"a power over {MAX_DIGITS} digits")


def check_count_argument(value: object) -> None:
    """Raise BudgetExceeded when a factorial's (or binomial's) argument exceeds MAX_COUNT_ARGUMENT."""
    if isinstance(value, (int, float)) and abs(value) > MAX_COUNT_ARGUMENT:
        raise BudgetExceeded(f"a factorial of more than {MAX_COUNT_ARGUMENT}")
