"""Write-then-rename: a file is either absent or whole, whatever kills the process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def replaced(path: str | Path) -> Iterator[BinaryIO]:
    """A binary handle on ``path``'s temporary sibling, renamed onto ``path`` when the block
    ends without an error (removed when it raises). Readers never see a half-written file,
    and a process killed mid-write leaves at most a ``.tmp`` that the next write replaces."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
