"""An actor tube: one actor instance followed over consecutive frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Tube:
    """One actor instance of class ``label`` over ``frames`` (0-based, sorted, unique).

    ``boxes[k]`` is the box (x1, y1, x2, y2) in pixels of frame ``frames[k]``, with
    0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height (x2, y2 are exclusive edges).
    ``masks[k]`` is the actor's visible pixel mask of that frame (bool, H x W).
    At least one of the two is present.
    """

    label: int
    frames: np.ndarray
    boxes: np.ndarray | None = None
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, dtype=np.int64)
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
            if len(self.boxes) != len(self.frames):
                raise ValueError(f"tube has {len(self.frames)} frames but {len(self.boxes)} boxes")
        if self.masks is not None:
            self.masks = np.asarray(self.masks, dtype=bool)
            if len(self.masks) != len(self.frames):
                raise ValueError(f"tube has {len(self.frames)} frames but {len(self.masks)} masks")
        if self.boxes is None and self.masks is None:
            raise ValueError("a tube needs boxes, masks or both")

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
