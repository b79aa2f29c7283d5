"""An actor tube: one actor instance followed over consecutive frames."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class MaskFile:
    """A tube's masks left on disk (member ``key`` of an .npz, of ``shape``), read when used,
    so a dataset of any size loads without its masks in memory."""

    path: Path
    key: str
    shape: tuple[int, ...]

    def load(self) -> np.ndarray:
        return _npz_member(str(self.path), self.key)


@functools.lru_cache(maxsize=64)
def _npz_member(path: str, key: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as npz:
        masks = npz[key].astype(bool)
    masks.setflags(write=False)
    return masks


@dataclass
class Tube:
    """One actor instance of class ``label`` over ``frames`` (0-based, sorted, unique).

    ``boxes[k]`` is the box (x1, y1, x2, y2) in pixels of frame ``frames[k]``, with
    0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height (x2, y2 are exclusive edges).
    ``masks[k]`` is the actor's visible pixel mask of that frame (bool, H x W); given as
    a ``MaskFile`` they stay on disk until read. At least one of the two is present.
    """

    label: int
    frames: np.ndarray
    boxes: np.ndarray | None = None
    masks: np.ndarray | None = None  # a property below: arrays, or a MaskFile read on use

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, dtype=np.int64)
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
            if len(self.boxes) != len(self.frames):
                raise ValueError(f"tube has {len(self.frames)} frames but {len(self.boxes)} boxes")
        if self.mask_shape is not None and self.mask_shape[0] != len(self.frames):
            raise ValueError(f"tube has {len(self.frames)} frames but {self.mask_shape[0]} masks")
        if self.boxes is None and self._masks is None:
            raise ValueError("a tube needs boxes, masks or both")

    @property
    def mask_shape(self) -> tuple[int, ...] | None:
        """(frames, H, W) of the masks, without reading them from disk."""
        stored = self._masks
        return None if stored is None else tuple(stored.shape)

    @property
    def start(self) -> int:
        return int(self.frames[0])

    @property
    def end(self) -> int:
        """Last frame, inclusive."""
        return int(self.frames[-1])

    def __len__(self) -> int:
        return len(self.frames)

    def index_of(self, frame: int) -> int | None:
        """Position of ``frame`` in this tube, or None if the actor is not in it."""
        k = int(np.searchsorted(self.frames, frame))
        return k if k < len(self.frames) and self.frames[k] == frame else None

    def box_at(self, frame: int) -> np.ndarray | None:
        k = self.index_of(frame)
        return None if k is None or self.boxes is None else self.boxes[k]

    def mask_at(self, frame: int) -> np.ndarray | None:
        k = self.index_of(frame)
        return None if k is None or self.masks is None else self.masks[k]


def _get_masks(tube: Tube) -> np.ndarray | None:
    stored = tube._masks
    return stored.load() if isinstance(stored, MaskFile) else stored


def _set_masks(tube: Tube, value: np.ndarray | MaskFile | None) -> None:
    tube._masks = value if value is None or isinstance(value, MaskFile) else np.asarray(value, dtype=bool)


# The dataclass's ``masks`` field becomes a property (its __init__ assigns through the setter).
Tube.masks = property(_get_masks, _set_masks)  # type: ignore[assignment]


def boxes_from_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tight boxes (x1, y1, x2, y2; exclusive right/bottom edges) of non-empty masks.

    Returns ``(keep, boxes)``: ``keep`` flags the masks that have any pixel, and
    ``boxes`` holds one row per kept mask.
    """
    masks = np.asarray(masks, dtype=bool)
    rows = masks.any(axis=2)
    cols = masks.any(axis=1)
    keep = rows.any(axis=1)
    boxes = np.zeros((int(keep.sum()), 4))
    for i, k in enumerate(np.flatnonzero(keep)):
        ys = np.flatnonzero(rows[k])
        xs = np.flatnonzero(cols[k])
        boxes[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return keep, boxes
