"""Where merged-vlm keeps its state."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_root() -> Path:
    """$MERGED_VLM_CACHE, or merged-vlm's folder in the user cache directory."""
    root = os.environ.get("MERGED_VLM_CACHE") or platformdirs.user_cache_dir("merged-vlm")
    return Path(root).expanduser()
