"""Which lmms-eval tasks and groups this project defines, and which published dataset each task reads.

The task and group YAMLs under `tasks/suite/` are the source of truth for lmms-eval; this table
mirrors them for the code that runs without lmms-eval (`merged-vlm data prepare`, error messages).
A test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import DataError

# Real benchmark tasks -> the Source (specs.SOURCES key) they read.
REAL_TASKS: dict[str, str] = {
    "mvlm_ocrbench": "ocrbench",
    "mvlm_mmstar_perception": "mmstar",
    "mvlm_mathvista_general": "mathvista",
    "mvlm_mathvista_math": "mathvista",
    "mvlm_mathvision": "mathvision",
    "mvlm_mathverse": "mathverse",
    "mvlm_dynamath": "dynamath",
    "mvlm_mmstar_reasoning": "mmstar",
}
PROBE_TASKS = ("mvlm_probe_perception", "mvlm_probe_reasoning")

# Groups -> members (tasks or groups). Split averages are unweighted means over the member tasks.
GROUPS: dict[str, tuple[str, ...]] = {
    "mvlm_perception": ("mvlm_ocrbench", "mvlm_mmstar_perception", "mvlm_mathvista_general"),
    "mvlm_reasoning": ("mvlm_mathvista_math", "mvlm_mathvision", "mvlm_mathverse", "mvlm_dynamath",
                       "mvlm_mmstar_reasoning"),
    "mvlm_all": ("mvlm_perception", "mvlm_reasoning"),
    "mvlm_probe": PROBE_TASKS,
}


def is_known(name: str) -> bool:
    """Whether `name` is one of this project's tasks or groups."""
    return name in GROUPS or name in REAL_TASKS or name in PROBE_TASKS


def leaf_tasks(name: str) -> list[str]:
    """The tasks a task or group name stands for, in order."""
    if name in GROUPS:
        return [task for member in GROUPS[name] for task in leaf_tasks(member)]
    if is_known(name):
        return [name]
    known = ", ".join([*GROUPS, *REAL_TASKS, *PROBE_TASKS])
    raise DataError(f"unknown task or group {name!r}; known: {known}")


def sources_for(names: Iterable[str]) -> list[str]:
    """The Sources the real tasks among `names` (tasks or groups) read, without repeats, in order."""
    found: list[str] = []
    for name in names:
        for task in leaf_tasks(name):
            source = REAL_TASKS.get(task)
            if source is not None and source not in found:
                found.append(source)
    return found

