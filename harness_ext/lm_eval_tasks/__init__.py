"""lm-eval tasks of this project (text-only probe); pass this folder to lm_eval --include_path."""
