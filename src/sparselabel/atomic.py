"""Write-then-rename: a file or folder is either absent or whole, whatever kills the process."""

from __future__ import annotations

import os
import shutil
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


@contextmanager
def staged_folder(target: str | Path, tag: str) -> Iterator[Path]:
    """A hidden folder beside ``target`` (``.NAME.TAG-PID``) to build into, put in ``target``'s
    place when the block succeeds (an earlier ``target`` is removed only then) and removed
    when it raises. Folders that killed processes left for the same target are removed first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target, tag)
    build = target.parent / f".{target.name}.{tag}-{os.getpid()}"
    old = target.parent / f".{target.name}.replaced-{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir()
    try:
        yield build
        if target.exists():
            os.replace(target, old)
        os.replace(build, target)
    finally:
        shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _remove_abandoned(target: Path, tag: str) -> None:
    for folder in target.parent.glob(f".{target.name}.{tag}-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
