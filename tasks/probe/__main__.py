"""Regenerate the evaluation parquet files: `python -m mvlm_tasks.probe [OUT_DIR]` (default: shipped data)."""

from __future__ import annotations

import sys

from .export import DATA_DIR, write_probe_parquet

if __name__ == "__main__":
    for split, path in write_probe_parquet(sys.argv[1] if len(sys.argv) > 1 else DATA_DIR).items():
        print(f"{split}: {path}")
