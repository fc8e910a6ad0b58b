"""Error types whose messages are shown to users as a single line."""

from __future__ import annotations


class MergeError(Exception):
    """Base class: a problem the user can fix; the CLI prints it and exits with status 2."""

    exit_code = 2


class RecipeError(MergeError):
    """The recipe is malformed or asks for something impossible.

    The message names the offending field and says how to fix it.
    """

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        text = f"recipe field '{field}': {problem}"
        if fix:
            text += f"; {fix}"
        super().__init__(text)


class CheckpointError(MergeError):
    """An input checkpoint is missing, corrupt, refused or incompatible."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        text = f"{field}: {problem}"
        if fix:
            text += f"; {fix}"
        super().__init__(text)


class StorageError(MergeError):
    """The machine cannot hold what is being written (full disk, read-only or unwritable folder): exit status 1."""

    exit_code = 1
