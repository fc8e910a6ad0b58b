"""The one error type of the data layer, shown to users as a single line."""

from __future__ import annotations

from merge_models.errors import MergeError


class DataError(MergeError):
    """Benchmark data is missing, unreachable, malformed, or was asked for by an unknown name."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """`Type: first line of the message`, cut to `limit` characters (for one-line messages)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
