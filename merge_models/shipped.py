"""Where the things merged-vlm ships live: the recipes (`recipes/`) and the tiny-world family
(`models/tiny-world/`), under one folder in both layouts.

An installed wheel carries them as package data, `merge_models/shipped/{recipes,models}` (setup.py
copies them there when it builds); a checkout (the editable install) has them at its root. Every lookup
of a shipped file goes through here; names of shipped files in records are relative to this folder
(`models/tiny-world/vlm`), so they read the same in both layouts and on every machine.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

PACKAGE_FOLDER = "shipped"  # inside merge_models, in a wheel
CONTENTS = ("recipes", "models/tiny-world")  # relative to root(), in both layouts


@cache
def root() -> Path:
    """The folder that holds `recipes/` and `models/`: the package data when installed, else the checkout."""
    packaged = Path(str(files("merge_models") / PACKAGE_FOLDER))
    if (packaged / "recipes").is_dir():
        return packaged
    return Path(__file__).resolve().parents[1]


def checkout() -> Path | None:
    """The checkout merged-vlm runs from (an editable install), or None for an installed wheel."""
    folder = root()
    return folder if folder.name != PACKAGE_FOLDER and (folder / "pyproject.toml").is_file() else None


def recipes_dir() -> Path:
    """The shipped recipes."""
    return root() / "recipes"


def recipe(name: str) -> Path:
    """The shipped recipe `name` (`tiny-world`)."""
    return recipes_dir() / f"{name}.yaml"


def tiny_world() -> Path:
    """The tiny-world family: base/, reasoning/, vlm/ and their card."""
    return root() / "models" / "tiny-world"


def shipped_name(path: Path) -> str | None:
    """`path` relative to the shipped folder (`models/tiny-world/vlm`) when it is a shipped file, else None."""
    try:
        relative = path.resolve().relative_to(root().resolve())
    except ValueError:
        return None
    first = relative.parts[0] if relative.parts else ""
    return relative.as_posix() if first in {c.split("/")[0] for c in CONTENTS} else None
