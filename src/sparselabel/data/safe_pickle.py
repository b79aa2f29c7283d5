"""A restricted unpickler: numpy arrays/scalars and builtins, nothing else.

A pickle is a program; ``pickle.load`` runs whatever it names. Annotation files
and weight files come from the internet, so we only admit the handful of
callables numpy needs to rebuild arrays, plus plain containers.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from sparselabel.errors import UnsafePickleError

_NUMPY = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}
# What annotation pickles need (containers rebuilt by REDUCE in old protocols, scalars).
# Not range, bytearray, slice or complex: nothing needs them, and ``list(range(10**9))`` or
# ``bytearray(10**9)`` in a 30-byte pickle would allocate gigabytes before anything is checked.
_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "int", "float", "bool"}
# Python 2 pickles of numpy arrays encode raw bytes through _codecs.encode.
_CODECS = {("_codecs", "encode")}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str):
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY or (module, name) in _CODECS:
            return super().find_class(module, name)
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return _without_counts(super().find_class("builtins", name), self._source)
        if module.startswith("numpy") and name.startswith("dtype") or (
            module == "numpy.dtypes" and name.endswith("DType")
        ):
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to unpickle '{module}.{name}': only numpy arrays and builtins are allowed",
            self._source,
        )


def _without_counts(build: Any, source: str) -> Any:
    """``build`` refusing an integer argument: ``bytes(n)`` makes n bytes, a size the
    pickle chose; rebuilding a container or scalar from a value never needs that form."""
    if build in (int, float, bool, str):
        return build

    def guarded(*args: Any) -> Any:
        if any(isinstance(a, int) for a in args):
            raise UnsafePickleError(f"refusing {build.__name__}() of an integer: a size chosen by the file", source)
        return build(*args)

    return guarded


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` admitting only numpy arrays/scalars and builtin containers."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or not a pickle at all
        raise UnsafePickleError(f"not a readable pickle ({exc})", source) from exc


def safe_load(path: str | Path) -> Any:
    """Unpickle the file at ``path`` with :func:`safe_loads`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnsafePickleError(f"cannot read ({exc.strerror})", path) from exc
    return safe_loads(data, str(path))


def as_int(value: Any) -> int:
    """Cast a numpy uint8/uint16 scalar (as stored by older annotation pickles) to int."""
    return int(np.asarray(value).astype(np.int64))
