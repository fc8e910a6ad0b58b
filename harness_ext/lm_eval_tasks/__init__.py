"""lm-eval tasks of this project (text-only probe); pass this folder to lm_eval --include_path
(`python -m harness_ext.lm_eval_tasks` prints it)."""
