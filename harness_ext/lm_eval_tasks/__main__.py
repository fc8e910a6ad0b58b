"""`python -m harness_ext.lm_eval_tasks`: print this folder, for `lm_eval --include_path` from any install."""

from pathlib import Path

print(Path(__file__).resolve().parent)
