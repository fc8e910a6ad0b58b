"""Registers `merged_lm` with lm-eval 0.4.13, which has no plugin discovery of its own.

`merged_vlm_lm_eval.pth` (installed into site-packages) imports this module at interpreter
start. It only adds an import hook: once `lm_eval.models` has registered lm-eval's own models,
`merged_lm` is added as a lazy "module:Class" path, so nothing of ours loads unless used.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

TARGET = "lm_eval.models"
MODEL = ("merged_lm", "harness_ext.lm_eval_model:MergedLM")


def register(models_module) -> None:
    """Add merged_lm to lm-eval's model registry (idempotent)."""
    from lm_eval.api.registry import model_registry

    name, path = MODEL
    if name not in model_registry:
        model_registry.register(name, target=path)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `register` right after lm_eval.models executes."""

    busy = False

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET or self.busy:
            return None
        self.busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.busy = False
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            register(module)

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    """Install the hook once; register at once if lm_eval.models is already imported."""
    if TARGET in sys.modules:
        register(sys.modules[TARGET])
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
