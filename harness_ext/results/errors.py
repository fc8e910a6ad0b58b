"""User errors of the results layer (one line each; the CLI prints them and exits with status 2)."""

from __future__ import annotations

from merge_models.errors import MergeError


class ResultsError(MergeError):
    """A results file, record, store or run reference the user can fix."""
