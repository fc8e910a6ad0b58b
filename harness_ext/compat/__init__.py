"""The one seam between merged-vlm and the internals of the harnesses and of transformers.

Everything this project patches or calls that an upstream does not publish as API lives in one module
per upstream: `compat.lmms_eval`, `compat.lm_eval`, `compat.transformers`. Each names the upstream
version its patches were written for (`UPSTREAM`) and the internals it relies on (`TARGETS`); a target
that has gone, or whose parameters changed, stops the patch with one line naming the upstream, its
installed and expected versions, and the module to update (tests/test_compat.py checks every target).
This module imports no upstream: the lm-eval `.pth` hook imports it at every interpreter start.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from merge_models.errors import MergeError


class CompatError(MergeError):
    """An upstream changed under a patch of this project: an environment problem (status 1)."""

    exit_code = 1


@dataclass(frozen=True)
class Upstream:
    """A distribution whose internals a compat module patches, and the version the patches were written for."""

    distribution: str
    written_for: str
    compat_module: str

    def installed(self) -> str:
        """The installed version, or 'not installed'."""
        try:
            return version(self.distribution)
        except PackageNotFoundError:
            return "not installed"

    def error(self, problem: str) -> CompatError:
        """One line: what changed, the versions, and the fix."""
        return CompatError(f"{self.distribution} {self.installed()}: {problem} (merged-vlm's patch was written for "
                           f"{self.distribution} {self.written_for}); install {self.distribution}=="
                           f"{self.written_for} as requirements.lock pins it, or update {self.compat_module}")


@dataclass(frozen=True)
class Target:
    """An upstream internal a patch relies on: `module:qualname`, with the parameters it is called or
    wrapped with (in order, from the first)."""

    upstream: Upstream
    module: str
    qualname: str
    params: tuple[str, ...] = ()

    def resolve(self) -> Any:
        """The object, checked: present and taking `params`; else the upstream's CompatError."""
        try:
            value: Any = importlib.import_module(self.module)
            for part in self.qualname.split("."):
                value = getattr(value, part)
        except (ImportError, AttributeError):
            raise self.upstream.error(f"{self.module}.{self.qualname} is gone") from None
        if self.params:
            try:
                have = tuple(inspect.signature(value).parameters)[:len(self.params)]
            except (TypeError, ValueError):
                have = ()
            if have != self.params:
                raise self.upstream.error(f"{self.module}.{self.qualname} takes ({', '.join(have)}), "
                                          f"not ({', '.join(self.params)})")
        return value
