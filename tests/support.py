"""Helpers shared by the tests: where the real data lives, a tiny dataset on disk, an in-memory video.

Imported as ``from support import ...`` (not from conftest: test folders have their own
conftest.py files, which would shadow one another under the one module name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SPARSELABEL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason if it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (tests read ../shared/data)")
    return path


def make_tiny_dataset(root: Path, num_videos: int = 4, num_frames: int = 20, size: tuple[int, int] = (48, 64)) -> Path:
    """A small real dataset on disk (encoded videos, one tube per video) in sparselabel's format."""
    import numpy as np

    from sparselabel.data.datasets.native import write_native
    from sparselabel.data.tubes import Tube

    height, width = size
    rng = np.random.default_rng(0)
    videos, tubes = [], {}
    for i in range(num_videos):
        vid = f"vid{i}"
        frames = rng.integers(0, 255, (num_frames, height, width, 3), dtype=np.uint8)
        start, end = 2 + i % 3, num_frames - 3
        span = np.arange(start, end)
        boxes = np.stack([span % 10, span % 5 + 2, span % 10 + 20, span % 5 + 30], axis=1).astype(float)
        masks = np.zeros((len(span), height, width), dtype=bool)
        for k, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
            masks[k, y1:y2, x1:x2] = True
        tubes[vid] = [Tube(i % 2, span, boxes, masks)]
        videos.append({"id": vid, "frames": frames, "fps": 25.0, "label": i % 2,
                       "split": "test" if i == num_videos - 1 else "train"})
    return write_native(root, "tiny", ["left", "right"], videos, tubes)



def make_tiny_workspace(base: Path, overrides: list[str], num_videos: int = 3, num_frames: int = 20) -> Path:
    """A workspace at ``base/fresh`` over a tiny dataset at ``base/data``, created with ``overrides``."""
    from sparselabel.config import load_config
    from sparselabel.loop.workspace import Workspace

    data = make_tiny_dataset(base / "data", num_videos=num_videos, num_frames=num_frames)
    root = base / "fresh"
    Workspace.create(root, load_config(None, [f"dataset.path={data}", *overrides])).close()
    return root

@dataclass
class ArrayVideo:
    """Just what predicting and scoring read of a ``Video``: an id, a length and the frames."""

    id: str
    data: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.data)

    @property
    def height(self) -> int:
        return self.data.shape[1]

    @property
    def width(self) -> int:
        return self.data.shape[2]

    def frames(self, indices=None) -> np.ndarray:
        return self.data if indices is None else self.data[np.asarray(indices, dtype=np.int64)]
