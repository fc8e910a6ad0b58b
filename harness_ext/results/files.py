"""Atomic file and folder writes: readers see the old state or the new one, never a partial one.

What they write gets the permissions of a plainly created file or folder (0666 / 0777 less the umask,
so usually 0644 / 0755), not the private 0600 / 0700 of the temporary it is made in.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as sink:
            sink.write(data.encode() if isinstance(data, str) else data)
            sink.flush()
            os.fsync(sink.fileno())
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def publish_dir(target: Path, fill: Callable[[Path], None], replace: bool = False) -> None:
    """Fill a temporary sibling folder with `fill(folder)`, then move it to `target`.

    With replace=True an existing `target` is swapped out only after the new folder is complete.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fill(temp)
        os.chmod(temp, 0o777 & ~_umask())
        if target.exists() and replace:
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            old.rmdir()
            target.rename(old)
            temp.rename(target)
            shutil.rmtree(old)
        else:
            temp.rename(target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
