"""Merge methods by name: what each needs, its defaults, and the function that runs it."""

from __future__ import annotations

from dataclasses import dataclass
from merge_models.methods.native import Linear, Method, TaskVectorMethod

MERGEKIT_PREFIX = "mergekit."


@dataclass(frozen=True)
class MethodInfo:
    """What a method needs from a recipe and how it runs."""

    name: str
    needs_base: bool
    uses_density: bool
    default_normalize: bool
    formula: str
    impl: Method


_NATIVE = [
    MethodInfo("linear", False, False, True,
               "vlm + lambda*(sum_i w_i*theta_i / sum_i w_i - vlm)", Linear()),
    MethodInfo("task_arithmetic", True, False, False,
               "base + lambda*sum_i w_i*tau_i", TaskVectorMethod(None, False)),
    MethodInfo("ties", True, True, True,
               "base + lambda*elect_sign(w_i*topk(tau_i, density_i)) / sum(w_i agreeing)",
               TaskVectorMethod("magnitude", True)),
    MethodInfo("dare_linear", True, True, False,
               "base + lambda*sum_i w_i*drop(tau_i, density_i)/density_i", TaskVectorMethod("dare", False)),
    MethodInfo("dare_ties", True, True, False,
               "base + lambda*elect_sign(w_i*drop(tau_i, density_i)/density_i)", TaskVectorMethod("dare", True)),
    MethodInfo("breadcrumbs", True, True, False,
               "base + lambda*sum_i w_i*band(tau_i, density_i, gamma)", TaskVectorMethod("band", False)),
    MethodInfo("breadcrumbs_ties", True, True, False,
               "base + lambda*elect_sign(w_i*band(tau_i, density_i, gamma))", TaskVectorMethod("band", True)),
]
NATIVE_METHODS: dict[str, MethodInfo] = {m.name: m for m in _NATIVE}
LAYER_SWAP = "layer_swap"


def is_mergekit(name: str) -> bool:
    """True for `mergekit.<name>` methods, which run through mergekit's in-memory API."""
    return name.startswith(MERGEKIT_PREFIX)


def method_info(name: str) -> MethodInfo:
    """The MethodInfo for a native method or a `mergekit.<name>` method.

    Raises KeyError for unknown names and ImportError when mergekit is needed but missing.
    """
    if name in NATIVE_METHODS:
        return NATIVE_METHODS[name]
    if is_mergekit(name):
        from merge_models.methods.mergekit_bridge import mergekit_method_info

        return mergekit_method_info(name[len(MERGEKIT_PREFIX):])
    raise KeyError(name)
