"""The restricted unpickler admits numpy arrays and builtins, and nothing that can run code."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from sparselabel.data.safe_pickle import as_int, safe_load, safe_loads
from sparselabel.errors import UnsafePickleError


class Custom:
    """Any class outside numpy/builtins must be refused, however harmless it looks."""

    def __init__(self) -> None:
        self.x = 1


class RunsCommand:
    """Unpickling this with plain pickle would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write(tmp_path: Path, obj: object, protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    path = tmp_path / "thing.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def test_os_system_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _write(tmp_path, {"a": RunsCommand(marker)})
    with pytest.raises(UnsafePickleError) as info:
        safe_load(path)
    assert str(path) in str(info.value)
    assert "system" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("obj", [collections.OrderedDict(a=1), Custom()], ids=["OrderedDict", "custom"])
def test_non_builtin_classes_are_refused(tmp_path: Path, obj: object) -> None:
    path = _write(tmp_path, obj)
    with pytest.raises(UnsafePickleError, match="refusing to unpickle") as info:
        safe_load(path)
    assert info.value.path == path


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_and_builtins_round_trip(tmp_path: Path, protocol: int) -> None:
    doc = {
        "boxes": np.arange(12, dtype=np.uint8).reshape(3, 4),
        "floats": np.linspace(0, 1, 5),
        "numf": np.uint16(300),
        "names": ["a", "b"],
        "pair": (1, 2.5),
        "set": {1, 2},
        "raw": b"\x00\xff",
        "nested": {"x": [np.int64(7), None, True]},
    }
    loaded = safe_load(_write(tmp_path, doc, protocol))
    assert loaded.keys() == doc.keys()
    np.testing.assert_array_equal(loaded["boxes"], doc["boxes"])
    assert loaded["boxes"].dtype == np.uint8
    np.testing.assert_array_equal(loaded["floats"], doc["floats"])
    assert as_int(loaded["numf"]) == 300
    assert loaded["names"] == ["a", "b"] and loaded["pair"] == (1, 2.5) and loaded["set"] == {1, 2}
    assert loaded["raw"] == b"\x00\xff"
    assert loaded["nested"]["x"][0] == 7


def test_truncated_pickle_is_a_clear_error(tmp_path: Path) -> None:
    path = _write(tmp_path, {"boxes": np.zeros((50, 4))})
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(UnsafePickleError, match="not a readable pickle") as info:
        safe_load(path)
    assert str(path) in str(info.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(UnsafePickleError, match="cannot read") as info:
        safe_load(tmp_path / "absent.pkl")
    assert "absent.pkl" in str(info.value)


def test_as_int_avoids_uint8_overflow() -> None:
    x, w = np.uint8(200), np.uint8(100)
    assert as_int(x) + as_int(w) == 300


def test_safe_loads_names_its_source() -> None:
    with pytest.raises(UnsafePickleError, match="memory"):
        safe_loads(b"not a pickle", source="memory")


@pytest.mark.parametrize("program", [
    b"c__builtin__\nbytearray\nJ\x00\xca\x9a;\x85R.",  # bytearray(10**9): 30 bytes asking for 1 GB
    b"c__builtin__\nbytes\nJ\x00\xca\x9a;\x85R.",  # bytes(10**9)
    b"c__builtin__\nlist\nc__builtin__\nrange\nJ\x00\xca\x9a;\x85R\x85R.",  # list(range(10**9))
])
def test_a_tiny_pickle_cannot_make_the_loader_allocate_gigabytes(program):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UnsafePickleError, match="refusing"):
        safe_loads(program, "bomb.pkl")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KB: nothing big was made


def test_containers_and_sets_of_old_protocols_still_load():
    value = {"labels": ["a", "b"], "nframes": {"v": 3}, "set": {1, 2}, "frozen": frozenset({"x"}), "b": b"\x00\x01"}
    for protocol in (0, 1, 2, 4):
        assert safe_loads(pickle.dumps(value, protocol=protocol)) == value
