"""Runs any mergekit 0.1.5 merge method on our tensors through its in-memory API.

Only imported for `method: mergekit.<name>`; mergekit itself is an optional dependency.
"""

from __future__ import annotations

import torch

from merge_models.methods.native import TensorParams


def _mergekit_methods():
    try:
        from mergekit import merge_methods
    except ImportError as exc:
        raise ImportError(
            "mergekit is not installed: pip install 'mergekit==0.1.5' (or the [test] extra)"
        ) from exc
    return merge_methods


def mergekit_method_names() -> list[str]:
    """Names of the methods mergekit registers."""
    return sorted(m.spec.name for m in _mergekit_methods().registered_methods())


def mergekit_parameter_names(name: str) -> set[str]:
    """The parameter names a mergekit method accepts."""
    return {p.name for p in _mergekit_methods().get(name).spec.parameters}


def mergekit_method_info(name: str):
    """A MethodInfo describing mergekit method `name`; KeyError when mergekit lacks it."""
    from merge_models.methods.registry import MethodInfo

    merge_methods = _mergekit_methods()
    if name not in mergekit_method_names():
        raise KeyError(f"mergekit.{name}")
    spec = merge_methods.get(name).spec
    params = {p.name: p for p in spec.parameters}
    normalize = params.get("normalize")
    return MethodInfo(
        name=f"mergekit.{name}",
        # A required mergekit base is the shared base LLM when the recipe names one, else the VLM.
        needs_base=False,
        uses_density="density" in params,
        default_normalize=bool(normalize.default) if normalize is not None else False,
        formula=f"mergekit's {spec.pretty_name or name}",
        impl=MergekitMethod(name, spec.contract.base.value, params),
    )


class MergekitMethod:
    """A mergekit method run on whole tensors (mergekit's methods may need the whole tensor)."""

    chunked = False
    fixed_tiles = False

    def __init__(self, name: str, base_policy: str, specs: dict) -> None:
        self.name, self.base_policy, self.specs = name, base_policy, specs

    def prepare(self, source, p: TensorParams) -> None:
        return None

    def any_order(self, state: None) -> bool:
        return False  # one tile: the whole tensor

    def combine(self, inputs: list[torch.Tensor], base: torch.Tensor | None, p: TensorParams, state: None,
                chunk: int) -> torch.Tensor:
        from mergekit.merge_methods.api import merge_tensors

        specs, base_policy = self.specs, self.base_policy
        per_input = {n for n, s in specs.items() if s.scope.value != "shared"}
        ids = [f"input{i}" for i in range(len(inputs))]
        tensors = list(inputs)
        base_index = None
        if base is not None and base_policy in ("required", "optional"):
            ids.append("base")
            tensors.append(base)
            base_index = len(tensors) - 1
        elif base_policy == "required":
            base_index = 0
        values = {"weight": p.weights, "density": p.densities}
        parameters: dict = {}
        for key in per_input:
            if key in values:
                parameters[key] = dict(zip(ids, values[key]))
        if "lambda" in specs:
            parameters["lambda"] = p.lam
        if "normalize" in specs:
            parameters["normalize"] = p.normalize
        parameters.update(p.extra)
        return merge_tensors(tensors, self.name, parameters=parameters, ids=ids, base_index=base_index,
                             name=p.name, dtype=torch.float32, out_dtype=torch.float32)
