"""Which lmms-eval tasks and groups this project defines, and which published dataset each task reads.

The task and group YAMLs under `tasks/suite/` are the source of truth for lmms-eval; this table
mirrors them for the code that runs without lmms-eval (`merged-vlm data prepare`, error messages).
A test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import DataError

COT = "_cot"  # suffix of the variant of a real task that uses the project's chain-of-thought prompt

# Real benchmark tasks (official prompts) -> the Source (specs.SOURCES key) they read.
_OFFICIAL_TASKS: dict[str, str] = {
    "mvlm_ocrbench": "ocrbench",
    "mvlm_mmstar_perception": "mmstar",
    "mvlm_mathvista_general": "mathvista",
    "mvlm_mathvista_math": "mathvista",
    "mvlm_mathvision": "mathvision",
    "mvlm_mathvision_test": "mathvision_test",
    "mvlm_mathverse": "mathverse",
    "mvlm_dynamath": "dynamath",
    "mvlm_mmstar_reasoning": "mmstar",
}
# ... and each one's `_cot` variant, which reads the same data.
REAL_TASKS: dict[str, str] = {
    **_OFFICIAL_TASKS,
    **{task + COT: source for task, source in _OFFICIAL_TASKS.items()},
}
PROBE_TASKS = ("mvlm_probe_perception", "mvlm_probe_reasoning")

_PERCEPTION = ("mvlm_ocrbench", "mvlm_mmstar_perception", "mvlm_mathvista_general")
_REASONING = ("mvlm_mathvista_math", "mvlm_mathvision", "mvlm_mathverse", "mvlm_dynamath", "mvlm_mmstar_reasoning")

# Groups -> members (tasks or groups). Split averages are unweighted means over the member tasks.
# MATH-V `test` (mvlm_mathvision_test) is in no group: the paper's split uses testmini.
GROUPS: dict[str, tuple[str, ...]] = {
    "mvlm_perception": _PERCEPTION,
    "mvlm_reasoning": _REASONING,
    "mvlm_all": ("mvlm_perception", "mvlm_reasoning"),
    "mvlm_perception_cot": tuple(task + COT for task in _PERCEPTION),
    "mvlm_reasoning_cot": tuple(task + COT for task in _REASONING),
    "mvlm_all_cot": ("mvlm_perception_cot", "mvlm_reasoning_cot"),
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

