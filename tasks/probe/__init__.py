"""Procedurally generated perception and reasoning probe items.

`generate_probe` draws the evaluation set, `generate_training_items` image training items that never
reuse an evaluation image, `generate_text_reasoning` text-only arithmetic problems, and
`write_probe_parquet` writes the evaluation set in the format lmms-eval loads.
"""

from .export import shipped_data_files, write_probe_parquet
from .generate import DEFAULT_N, EVAL_SEED, generate_probe, generate_training_items
from .items import PERCEPTION_CATEGORIES, REASONING_CATEGORIES, Item
from .text_reasoning import TextProblem, generate_text_reasoning

__all__ = [
    "DEFAULT_N",
    "EVAL_SEED",
    "PERCEPTION_CATEGORIES",
    "REASONING_CATEGORIES",
    "Item",
    "TextProblem",
    "generate_probe",
    "generate_text_reasoning",
    "generate_training_items",
    "shipped_data_files",
    "write_probe_parquet",
]
