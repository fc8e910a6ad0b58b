"""The merge cache: one verified checkpoint directory per recipe hash, published atomically."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Callable

import torch
from filelock import FileLock

from merge_models.output import verify_checkpoint, write_checkpoint
from merge_models.plan import MergePlan
from merge_models.settings import cache_root

TEMP_PREFIX = ".tmp-"


def publish(target: Path, build: Callable[[Path], None], replace: bool = False) -> None:
    """Build into a temporary sibling of `target`, then rename it into place.

    A crash or kill at any point leaves either nothing or the complete directory at `target`.
    """
    target = target.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f"{TEMP_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    try:
        build(temp)
        if target.exists() and replace:
            old = target.parent / f"{TEMP_PREFIX}{target.name}-old-{uuid.uuid4().hex[:8]}"
            target.rename(old)
            temp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            temp.rename(target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def cached_checkpoint(plan: MergePlan, quiet: bool = True, device: torch.device | str = "cpu") -> tuple[Path, bool]:
    """The cache entry for a plan, merging it first (on `device`) unless a verified entry exists.

    Returns (directory, hit). An inter-process lock makes concurrent callers merge once: the
    others wait and then find the entry. Leftovers of killed merges are removed under the lock.
    """
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    entry = root / plan.recipe_hash
    with FileLock(str(root / f"{plan.recipe_hash}.lock")):
        for stale in root.glob(f"{TEMP_PREFIX}{plan.recipe_hash}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if entry.is_dir():
            if verify_checkpoint(entry, plan.recipe_hash) is None:
                return entry, True
            shutil.rmtree(entry)
        publish(entry, lambda temp: write_checkpoint(plan, temp, quiet, device))
    return entry, False
