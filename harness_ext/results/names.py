"""Names that become parts of file paths: task, run and variant names read from records or recipes.

Records are committed, so a pull request can plant any text in them; a name is used in a path only
when it is one plain path component (no separator, no "..", not absolute, no control character).
"""

from __future__ import annotations

import re

from harness_ext.results.errors import ResultsError

_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]|\.\.|^[A-Za-z]:|^\s*$")


def unsafe_name(value: object) -> bool:
    """True when `value` is not a string usable as one file name component."""
    return not isinstance(value, str) or _UNSAFE.search(value) is not None


def checked_name(value: str, field: str) -> str:
    """`value` when it is a safe file name component; else a ResultsError naming `field` and the fix."""
    if unsafe_name(value):
        raise ResultsError(f"{field} {value!r} cannot name a file (no '/', '\\', '..', drive or control "
                           "characters); rename it in the record")
    return value
