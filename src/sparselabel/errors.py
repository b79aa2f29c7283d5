"""One exception type for every problem a user can fix.

The CLI prints ``error: <message>`` and exits non-zero for these; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class SparseLabelError(Exception):
    """A problem with the user's input, named together with the file it is in."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class VideoDecodeError(SparseLabelError):
    """A video or frame file that cannot be decoded (corrupt, truncated, unknown format)."""


class AnnotationError(SparseLabelError):
    """An annotation that cannot be accepted (unknown video, bad frame, bad box...)."""


class UnsafePickleError(SparseLabelError):
    """A pickle that asks for something other than numpy arrays and builtins."""
