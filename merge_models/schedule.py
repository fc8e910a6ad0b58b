"""Per-tensor parameter values: scalars, gradients over depth, and module filter rules.

A parameter in a recipe is one of
  * a number: the same everywhere;
  * a list of numbers: a gradient, linearly interpolated over the language model's depth
    (anchors evenly spaced from the first layer to the last, as mergekit's gradients are);
  * a list of ``{filter: SUBSTRING, value: NUMBER | [NUMBERS]}`` rules: the first rule whose
    filter is a substring of the tensor's name wins; a rule without ``filter`` matches all.
"""

from __future__ import annotations

from typing import Union

import numpy as np
from pydantic import BaseModel, ConfigDict

Scalar = float
Gradient = list[float]


class FilterRule(BaseModel):
    """One module-filter rule: applies `value` to tensors whose name contains `filter`."""

    model_config = ConfigDict(extra="forbid")
    filter: str | None = None
    value: Union[float, list[float]]


ParamValue = Union[float, list[float], list[FilterRule]]


def depth_position(layer: int | None, num_layers: int, name: str) -> float:
    """Position of a tensor in [0, 1] along the depth of the language model.

    Layer tensors sit at layer / (num_layers - 1); the final norm and the output head at 1;
    token embeddings at 0.
    """
    if layer is not None:
        return layer / max(num_layers - 1, 1)
    return 0.0 if "embed_tokens" in name else 1.0


def interpolate(gradient: list[float], position: float) -> float:
    """Value of a gradient at `position` in [0, 1]."""
    if len(gradient) == 1:
        return float(gradient[0])
    anchors = np.linspace(0.0, 1.0, num=len(gradient))
    return float(np.interp(position, anchors, gradient))


def resolve(value: ParamValue | None, name: str, layer: int | None, num_layers: int) -> float | None:
    """The number a parameter takes for one tensor, or None when no rule matches."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if value and isinstance(value[0], FilterRule):
        for rule in value:
            if rule.filter is None or rule.filter in name:
                return resolve(rule.value, name, layer, num_layers)
        return None
    return interpolate([float(v) for v in value], depth_position(layer, num_layers, name))


def all_numbers(value: ParamValue | None) -> list[float]:
    """Every number a parameter value mentions (for range validation)."""
    if value is None:
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    numbers: list[float] = []
    for item in value:
        if isinstance(item, FilterRule):
            numbers.extend(all_numbers(item.value))
        else:
            numbers.append(float(item))
    return numbers


def has_default_rule(value: ParamValue | None) -> bool:
    """True unless `value` is a rule list in which every rule has a filter."""
    if value is None or isinstance(value, (int, float)):
        return True
    if value and isinstance(value[0], FilterRule):
        return any(rule.filter is None for rule in value)
    return True


def to_plain(value: ParamValue | None) -> object:
    """A JSON-ready form of a parameter value (rules become dicts)."""
    if isinstance(value, list):
        return [item.model_dump(exclude_none=True) if isinstance(item, FilterRule) else float(item) for item in value]
    return None if value is None else float(value)
