"""`k=v,k=v` argument strings (`--model_args`), split as lmms-eval splits them: a comma inside brackets
or braces belongs to the value (`modules=[q_proj,k_proj]`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def join_arguments(arguments: Mapping[str, Any]) -> str:
    """`k=v,k=v` from a mapping: strings as they are, other values as JSON (lists and numbers as YAML reads
    them back)."""
    return ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in arguments.items())


def split_arguments(text: str) -> list[str]:
    """The `k=v` items of an argument string, blank ones left out."""
    parts: list[str] = []
    depth, current = 0, ""
    for char in text:
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [part for part in [*parts, current] if part.strip()]
