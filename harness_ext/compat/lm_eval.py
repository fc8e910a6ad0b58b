"""Every lm-eval internal merged-vlm patches or relies on, written for lm-eval 0.4.13.

- Registration: lm-eval finds models only in its own registry (no plugin discovery), so
  `merged_vlm_lm_eval.pth` calls `install()` at interpreter start; it adds an import hook that registers
  `merged_lm` as a lazy "module:Class" path right after `lm_eval.models` has registered lm-eval's own.
  Nothing here imports lm-eval before lm-eval is imported.
- The output folder: lm-eval builds the model before it logs the experiment's arguments, so the tracker
  step that picks the folder name is wrapped to name it after the merge.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import sys
from typing import Any

from harness_ext.compat import Target, Upstream

UPSTREAM = Upstream("lm_eval", "0.4.13", "harness_ext/compat/lm_eval.py")
MODELS_MODULE = "lm_eval.models"
MODEL = ("merged_lm", "harness_ext.lm_eval_model:MergedLM")
REGISTRY = Target(UPSTREAM, "lm_eval.api.registry", "model_registry")
LOG_EXPERIMENT_ARGS = Target(UPSTREAM, "lm_eval.loggers.evaluation_tracker", "GeneralConfigTracker.log_experiment_args",
                             ("self", "model_source"))
SANITIZE = Target(UPSTREAM, "lm_eval.loggers.evaluation_tracker", "sanitize_model_name", ("model_name",))
TARGETS = (REGISTRY, LOG_EXPERIMENT_ARGS, SANITIZE)

_folder: dict[str, str] = {}  # the output folder name of the merged_lm this process evaluates


def register(models_module: Any = None) -> None:
    """Add merged_lm to lm-eval's model registry (idempotent)."""
    registry = REGISTRY.resolve()
    name, path = MODEL
    if name not in registry:
        registry.register(name, target=path)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `register` right after lm_eval.models executes."""

    busy = False

    def find_spec(self, fullname, path, target=None):
        if fullname != MODELS_MODULE or self.busy:
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
    if MODELS_MODULE in sys.modules:
        register(sys.modules[MODELS_MODULE])
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())


def name_output_folder(name: str) -> None:
    """Make lm-eval's output folder of a `merged_lm` run `name` (sanitised as lm-eval sanitises); the
    tracker step is wrapped once per process."""
    _folder["name"] = name
    log_experiment_args = LOG_EXPERIMENT_ARGS.resolve()
    if getattr(log_experiment_args, "_merged_vlm", False):
        return
    sanitize = SANITIZE.resolve()
    import lm_eval.loggers.evaluation_tracker as tracker_module

    @functools.wraps(log_experiment_args)
    def log_with_merge_name(self, *args: Any, **kwargs: Any) -> None:
        log_experiment_args(self, *args, **kwargs)
        if kwargs.get("model_source", args[0] if args else None) == MODEL[0]:
            self.model_name = _folder["name"]
            self.model_name_sanitized = sanitize(_folder["name"])

    log_with_merge_name._merged_vlm = True  # type: ignore[attr-defined]
    tracker_module.GeneralConfigTracker.log_experiment_args = log_with_merge_name
