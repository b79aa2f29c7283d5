"""The feature cache of a frozen encoder (``model.freeze_encoder=true``).

With the encoder frozen, ``Detector.encode`` is a pure function of (encoder weights,
clip spec, input size, video), so it runs once per inference window of a video and
training, prediction and MC-dropout scoring all read the stored maps instead of
decoding and encoding the video again. Only ``decode_head`` (the head, with both
dropouts) runs per step or per pass.

Layout, under the workspace:

    features/<key>/key.json          what the key stands for (encoder, clip spec, size)
    features/<key>/<video>/fine.npy  (W, C1, T1, H1, W1) float16, one row per window
                          mid.npy    (W, C2, ...)        float16
                          deep.npy   (W, C3, ...)        float16
                          windows.npy (W, clip_length)   frame indices (``video_windows``)

``key`` hashes the encoder's name and every weight, the clip length and stride and
the input size, so changing any of them computes new features; folders of other
keys are removed when a new key is first written, so one workspace holds one set.
A video's folder is written under a temporary name and renamed into place, so a
killed run leaves either the whole video or nothing, and a rerun computes only the
videos that are missing. Maps are read memory-mapped: a window costs its own bytes,
never the whole cache. Under torchrun each process computes its own share of the
videos (rank, rank + world, ...) and all meet at a barrier before reading.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np
import torch
import torch.distributed as dist

from sparselabel.data.dataset import Video
from sparselabel.data.windows import ClipSpec, video_windows, window_batches
from sparselabel.errors import SparseLabelError
from sparselabel.faults import fault_point
from sparselabel.models.detector import Detector, EncodedClip

CACHE_DIR = "features"
MAPS = ("fine", "mid", "deep")
FORMAT = "sparselabel-features/1"


@functools.lru_cache(maxsize=256)
def _open_video(folder: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A cached video's windows and memory-mapped maps, opened once per folder, not per item.

    Safe to keep open: a video's folder never changes once renamed into place (another key
    is another folder), and the bound keeps the open maps few.
    """
    return (np.load(folder / "windows.npy"),
            {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in MAPS})


def cache_key(model: Detector, encoder: str, spec: ClipSpec) -> tuple[str, dict]:
    """(short hex key, what it stands for) of ``model``'s encoder on clips cut by ``spec``."""
    about = {"format": FORMAT, "encoder": encoder, "clip_length": spec.length, "clip_stride": spec.stride,
             "input_size": list(spec.size)}
    digest = hashlib.sha256(json.dumps(about, sort_keys=True).encode())
    for name, tensor in sorted(model.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16], about


class FeatureCache:
    """Encoder maps of every inference window of a workspace's videos, on disk (see module doc)."""

    def __init__(self, root: str | Path, model: Detector, encoder: str, spec: ClipSpec, max_gb: float = 20.0):
        self.model, self.spec, self.max_gb = model, spec, max_gb
        self.key, self.about = cache_key(model, encoder, spec)
        self.base = Path(root) / CACHE_DIR
        self.folder = self.base / self.key

    def video_folder(self, video_id: str) -> Path:
        return self.folder / quote(video_id, safe="")

    def has(self, video_id: str) -> bool:
        return (self.video_folder(video_id) / "windows.npy").is_file()

    def ensure(self, videos: Sequence[Video], device: torch.device, batch_size: int = 8,
               rank: int = 0, world: int = 1) -> int:
        """Compute the missing videos of this process's share; returns how many it computed."""
        self._start()
        todo = [v for v in list(videos)[rank::world] if not self.has(v.id)]
        self._check_size(todo)
        for video in todo:
            self._write(video, device, batch_size)
        if world > 1:
            dist.barrier()
        return len(todo)

    def windows(self, video_id: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(windows (W, L), {map name: memory-mapped (W, ...) float16}) of one cached video."""
        folder = self.video_folder(video_id)
        if not self.has(video_id):
            raise SparseLabelError("no cached features for this video; they are computed before "
                                   "training, prediction and scoring", folder)
        return _open_video(folder)

    def batches(self, video: Video, device: torch.device, batch_size: int = 8,
                ) -> Iterator[tuple[EncodedClip, list[np.ndarray]]]:
        """The video's windows as encoded batches, in ``video_windows`` order."""
        windows, maps = self.windows(video.id)
        size = (self.spec.length, *self.spec.size)
        for start in range(0, len(windows), batch_size):
            part = slice(start, start + batch_size)
            tensors = [torch.from_numpy(np.array(maps[n][part])).to(device).float() for n in MAPS]
            yield EncodedClip(*tensors, size), list(windows[part])

    # -- writing ----------------------------------------------------------------------------

    def _start(self) -> None:
        """Create this key's folder; the first writer of a new key removes the other keys' folders."""
        if (self.folder / "key.json").is_file():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.base.iterdir():
            if stale.is_dir() and stale != self.folder:
                shutil.rmtree(stale, ignore_errors=True)
        tmp = self.folder / f"key.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(self.about, indent=1, sort_keys=True))
        os.replace(tmp, self.folder / "key.json")

    def _check_size(self, todo: Sequence[Video]) -> None:
        """Refuse, before computing anything, a cache that would outgrow ``max_gb``."""
        if not todo:
            return
        probe = self.model.encode(torch.zeros(1, 3, self.spec.length, *self.spec.size,
                                              device=next(self.model.parameters()).device))
        per_window = 2 * sum(getattr(probe, n)[0].numel() for n in MAPS)  # float16
        windows = sum(len(list(video_windows(v.num_frames, self.spec))) for v in todo)
        need = per_window * windows / 2**30
        if need > self.max_gb:
            raise SparseLabelError(f"the feature cache would need {need:.1f} GB for {len(todo)} videos, over "
                                   f"model.feature_cache_gb={self.max_gb:g}; raise it, or use a smaller "
                                   f"model.input_size", self.folder)

    @torch.no_grad()
    def _write(self, video: Video, device: torch.device, batch_size: int) -> None:
        maps: dict[str, list[np.ndarray]] = {n: [] for n in MAPS}
        windows: list[np.ndarray] = []
        self.model.eval()
        for clips, chunk in window_batches(video, self.spec, batch_size):
            encoded = self.model.encode(clips.to(device))
            for name in MAPS:
                maps[name].append(getattr(encoded, name).to(torch.float16).cpu().numpy())
            windows.extend(chunk)
        final = self.video_folder(video.id)
        tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in MAPS:
            np.save(tmp / f"{name}.npy", np.concatenate(maps[name]))
        np.save(tmp / "windows.npy", np.stack(windows).astype(np.int64))
        fault_point("features:written")  # a kill here leaves only the temporary folder
        if final.exists():  # a concurrent writer finished first: its files are the same
            shutil.rmtree(tmp)
            return
        os.replace(tmp, final)
