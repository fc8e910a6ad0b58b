"""The merge cache: one verified checkpoint directory per recipe hash, published atomically."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch
from filelock import FileLock

from merge_models.errors import StorageError
from merge_models.output import verify_checkpoint, write_checkpoint
from merge_models.plan import MergePlan
from merge_models.settings import cache_root

TEMP_PREFIX = ".tmp-"
logger = logging.getLogger("merged_vlm")


def publish(target: Path, build: Callable[[Path], None], replace: bool = False) -> None:
    """Build into a temporary sibling of `target`, then rename it into place.

    A crash, kill or power loss at any point leaves either nothing or the complete directory at `target`:
    its files and the folder are flushed to disk before the rename, and the parent after it.
    """
    target = target.absolute()
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f"{TEMP_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
        temp.mkdir()
        try:
            build(temp)
            sync_tree(temp)
            if target.exists() and replace:
                old = target.parent / f"{TEMP_PREFIX}{target.name}-old-{uuid.uuid4().hex[:8]}"
                target.rename(old)
                temp.rename(target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                temp.rename(target)
            _fsync(target.parent)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise


@contextmanager
def writing(place: Path) -> Iterator[None]:
    """An OSError while writing at `place` (full disk, read-only or unwritable folder) becomes one line, exit 1."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        fix = "free disk space there" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
        raise StorageError(f"could not write the merged checkpoint at {place}: {reason}; {fix}, or write "
                           "elsewhere (MERGED_VLM_CACHE=DIR for the merge cache, --out DIR for `merge`)") from None


def sync_tree(folder: Path) -> None:
    """Flush every file under `folder`, then each folder, to disk."""
    for path in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
        if path.is_file() and not path.is_symlink() or path.is_dir():
            _fsync(path)
    _fsync(folder)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cached_checkpoint(plan: MergePlan, quiet: bool = True, device: torch.device | str = "cpu") -> tuple[Path, bool]:
    """The cache entry for a plan, merging it first (on `device`) unless a verified entry exists.

    Returns (directory, hit). A hit reads every byte of the entry to check it against the digests recorded
    when it was written; a damaged entry is merged again, with a warning. An inter-process lock makes
    concurrent callers merge once: the others wait and then find the entry. Leftovers of killed merges
    are removed under the lock.
    """
    root = cache_root()
    entry = root / plan.recipe_hash
    with writing(root):
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(root / f"{plan.recipe_hash}.lock")):
            for stale in root.glob(f"{TEMP_PREFIX}{plan.recipe_hash}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            if entry.is_dir():
                problem = verify_checkpoint(entry, plan.recipe_hash)
                if problem is None:
                    return entry, True
                logger.warning("merge cache: entry %s is damaged (%s); merging it again", plan.recipe_hash, problem)
                shutil.rmtree(entry)
            publish(entry, lambda temp: write_checkpoint(plan, temp, quiet, device))
    return entry, False
