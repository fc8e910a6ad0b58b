"""Task names checked before anything is merged, evaluated or written, with "did you mean".

This project's tasks and groups are read from their YAML files (instantly); any other name is looked up
in lmms-eval's task index (slow to build, so only when a name is not one of ours).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from merge_models.errors import MergeError

PROJECT_PREFIX = "mvlm_"


class UnknownTaskError(MergeError):
    """A task or group name lmms-eval does not know (exit 2)."""


def project_tasks() -> list[str]:
    """This project's task and group names (`tasks/suite/mvlm_*.yaml`, one name per file)."""
    import mvlm_tasks

    return sorted(path.stem for path in (Path(mvlm_tasks.__file__).parent / "suite").glob(f"{PROJECT_PREFIX}*.yaml"))


def unknown_task_message(unknown: Sequence[str], known: Iterable[str]) -> str:
    """One line naming the unknown tasks, each with the closest known names."""
    known = list(known)
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        parts.append(f"{name!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    return (f"--tasks: unknown task {', '.join(parts)}; `lmms_eval --tasks list` lists every task and group")


def _plain(name: str) -> bool:
    """Whether lmms-eval reads `name` as a task name (not a wildcard or a YAML file)."""
    return "*" not in name and not name.endswith((".yaml", ".yml"))


def check_project_tasks(names: Sequence[str]) -> None:
    """Raise UnknownTaskError for a name in this project's namespace (`mvlm_...`) that is none of its tasks."""
    ours = project_tasks()
    unknown = [n for n in names if _plain(n) and n.startswith(PROJECT_PREFIX) and n not in ours]
    if unknown:
        raise UnknownTaskError(unknown_task_message(unknown, ours))


def check_tasks(names: Sequence[str]) -> None:
    """Raise UnknownTaskError for any name that is no task or group of this project or of lmms-eval."""
    if not names:
        raise UnknownTaskError("--tasks: no task given; name one or more tasks, comma-separated")
    check_project_tasks(names)
    ours = set(project_tasks())
    others = [n for n in names if _plain(n) and n not in ours]
    if not others:
        return
    from harness_ext.evaluate import task_manager

    known = task_manager().all_tasks
    unknown = [n for n in others if n not in known]
    if unknown:
        raise UnknownTaskError(unknown_task_message(unknown, known))


_NOT_FOUND = re.compile(r"^Tasks not found: (.+?)\. Try ")


def lmms_eval_unknown_tasks(exc: BaseException) -> str | None:
    """The one-line message for lmms-eval's "Tasks not found" error (with the closest names), else None."""
    found = _NOT_FOUND.match(str(exc)) if isinstance(exc, ValueError) else None
    if found is None:
        return None
    from harness_ext.evaluate import task_manager

    return unknown_task_message([n.strip() for n in found.group(1).split(",")], task_manager().all_tasks)
