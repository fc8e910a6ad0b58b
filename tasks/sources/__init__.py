"""The real benchmarks' published datasets: specs, the task catalog, loading and local copies.

Real tasks read their data through `load_split`: from <MERGED_VLM_DATA>/<source>/<split>.parquet
when MERGED_VLM_DATA is set, else from the Hugging Face Hub. `prepare` writes that local layout.
"""

from .catalog import GROUPS, PROBE_TASKS, REAL_TASKS, is_known, leaf_tasks, sources_for
from .errors import DataError
from .load import DATA_ENV, check_available, data_root, load_split, local_file, prepare_command, read_hub
from .prepare import prepare
from .specs import SOURCES, Source

__all__ = [
    "DATA_ENV",
    "GROUPS",
    "PROBE_TASKS",
    "REAL_TASKS",
    "SOURCES",
    "DataError",
    "Source",
    "check_available",
    "data_root",
    "is_known",
    "leaf_tasks",
    "load_split",
    "local_file",
    "prepare",
    "prepare_command",
    "read_hub",
    "sources_for",
]
