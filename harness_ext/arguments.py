"""`k=v,k=v` argument strings (`--model_args`), split as lmms-eval splits them: a comma inside brackets
or braces belongs to the value (`modules=[q_proj,k_proj]`)."""

from __future__ import annotations


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
