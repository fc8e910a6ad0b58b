"""Names of local files and folders that hold on any machine, for everything written for others
(merge records, results, model cards, bundles): never this machine's absolute path.

A shipped file (a recipe, the tiny-world family) is named as it is shipped (`models/tiny-world/vlm`, see
merge_models.shipped), whether from a checkout or an installed wheel. Any other local path is named
relative to the git repository that holds it (the folder with `.git`), else relative to a folder the caller names (the recipe's), else by its last component. Names
that are already relative, and Hub ids, are left as they are.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from merge_models.shipped import shipped_name


def is_absolute(name: str) -> bool:
    """Whether `name` is an absolute path of some machine (POSIX, `~`, or a Windows drive)."""
    return name.startswith(("/", "~")) or PureWindowsPath(name).is_absolute()


def repository_root(path: Path) -> Path | None:
    """The nearest folder at or above `path` that holds `.git` (a folder, or a worktree's file)."""
    for folder in (path, *path.parents):
        if (folder / ".git").exists():
            return folder
    return None


def portable_name(name: str | Path, relative_to: Path | None = None) -> str:
    """`name` without this machine's absolute path (see the module docstring)."""
    text = str(name)
    if not is_absolute(text):
        return text
    path = Path(text).expanduser()
    if path.exists():
        path = path.resolve()
        shipped = shipped_name(path)
        if shipped is not None:
            return shipped
        root = repository_root(path)
        if root is not None:
            return path.relative_to(root).as_posix() or "."
    if relative_to is not None:
        return Path(os.path.relpath(path, relative_to.resolve())).as_posix()
    windows = PureWindowsPath(text)
    return (windows.name if windows.drive else PurePosixPath(path.as_posix()).name) or "."


def relative_to_folder(path: Path, folder: Path) -> str:
    """`path` relative to `folder`, written so a recipe in `folder` reads it as a local path (`./x`, `../x`)."""
    relative = Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
    return relative if relative.startswith(".") else f"./{relative}"


ABSOLUTE_PATH = re.compile(r"""(?<![\w.~/-])(?:~/|[A-Za-z]:\\|/)(?=[\w.~-])[^\s,;'"()\[\]{}]*""")


def portable_text(text: str, relative_to: Path | None = None) -> str:
    """`text` (a `k=v,...` argument string, a message) with every absolute path in it named portably."""
    return ABSOLUTE_PATH.sub(lambda match: portable_name(match.group(0), relative_to), text)


def portable_data(value: Any, relative_to: Path | None = None) -> Any:
    """A JSON-like value with every absolute path in its strings named portably."""
    if isinstance(value, str):
        return portable_text(value, relative_to)
    if isinstance(value, dict):
        return {key: portable_data(item, relative_to) for key, item in value.items()}
    if isinstance(value, list):
        return [portable_data(item, relative_to) for item in value]
    return value
