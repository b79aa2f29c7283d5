"""J-HMDB-21 in its official layout: frame folders plus per-clip puppet masks.

    ROOT/Rename_Images/<class>/<clip>/00001.png ...
    ROOT/puppet_mask/<class>/<clip>/puppet_mask.mat      key 'part_mask', uint8 H x W x T, 1 = actor
    ROOT/splits/<class>_test_split<k>.txt                optional: "<clip>.avi 1|2" (1 train, 2 test)

Each clip has one actor: its mask becomes one Tube with per-frame masks and the
tight boxes around them; frames whose mask is empty are not part of the tube.
Video ids are ``<class>/<clip>``, as in ACT's ``JHMDB-GT.pkl``.

Classes: by default the 21 J-HMDB names in their usual order (so label indices
match other J-HMDB tools even when only some class folders are present); if a
folder is not one of them, the sorted folder names are used instead. Pass
``classes=`` to choose. Without a ``splits/`` folder every clip is in 'train'
and 'test' is empty.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from sparselabel.data.dataset import Dataset, Video, register_loader
from sparselabel.data.datasets.common import folder_info, log, mask_tube_parts, parallel_map
from sparselabel.data.tubes import Tube
from sparselabel.errors import AnnotationError

JHMDB_CLASSES = [
    "brush_hair", "catch", "clap", "climb_stairs", "golf", "jump", "kick_ball", "pick", "pour",
    "pullup", "push", "run", "shoot_ball", "shoot_bow", "shoot_gun", "sit", "stand",
    "swing_baseball", "throw", "walk", "wave",
]
MASK_FILE = "puppet_mask.mat"
MASK_KEY = "part_mask"
JHMDB_FPS = 30.0  # HMDB51 clips are 30 fps


@register_loader("jhmdb")
def load_jhmdb(
    path: Path,
    classes: list[str] | None = None,
    split: int = 1,
    fps: float = JHMDB_FPS,
    with_masks: bool = True,
    workers: int | None = None,
) -> Dataset:
    """Read the clips of every class folder of ``classes``; ``split`` is the official 1, 2 or 3."""
    images_root, masks_root = Path(path) / "Rename_Images", Path(path) / "puppet_mask"
    for folder in (images_root, masks_root):
        if not folder.is_dir():
            raise AnnotationError(f"{folder.name}/ not found: expected the official J-HMDB layout", path)
    folders = sorted(d.name for d in images_root.iterdir() if d.is_dir())
    classes = _choose_classes(folders, classes)
    clips = [f"{c}/{d.name}" for c in classes if (images_root / c).is_dir()
             for d in sorted((images_root / c).iterdir()) if d.is_dir()]
    if not clips:
        raise AnnotationError(f"no clip folders for classes {classes}", images_root)
    loaded = parallel_map(lambda vid: _load_clip(vid, images_root, masks_root, classes, fps, with_masks), clips, workers)
    videos = {v.id: v for v, _ in loaded}
    tubes = {v.id: t for v, t in loaded}
    splits = _splits(Path(path) / "splits", clips, split)
    return Dataset("jhmdb", classes, videos, tubes, splits, source=masks_root)


def _choose_classes(folders: list[str], classes: list[str] | None) -> list[str]:
    if classes is not None:
        ignored = sorted(set(folders) - set(classes))
        if ignored:
            log.info("jhmdb: ignoring class folders not in classes=: %s", ", ".join(ignored))
        return list(classes)
    return list(JHMDB_CLASSES) if set(folders) <= set(JHMDB_CLASSES) else folders


def _load_clip(
    vid: str, images_root: Path, masks_root: Path, classes: list[str], fps: float, with_masks: bool
) -> tuple[Video, list[Tube]]:
    """The Video of one clip and its single actor tube (none if the mask is empty throughout)."""
    info = folder_info(images_root / vid, fps)
    mat_path = masks_root / vid / MASK_FILE
    masks = read_puppet_mask(mat_path)
    if masks.shape[1:] != (info.height, info.width):
        raise AnnotationError(
            f"mask is {masks.shape[2]}x{masks.shape[1]} but the frames are {info.width}x{info.height}", mat_path
        )
    if len(masks) > info.num_frames:
        raise AnnotationError(f"mask has {len(masks)} frames but the clip has {info.num_frames}", mat_path)
    if len(masks) < info.num_frames:
        log.warning("%s: mask has %d frames, clip has %d; the rest are unannotated", mat_path, len(masks), info.num_frames)
    label = classes.index(vid.split("/")[0])
    video = Video(vid, images_root / vid, info.num_frames, fps, info.width, info.height, label)
    frames, boxes, kept = mask_tube_parts(masks)
    if len(frames) == 0:
        log.warning("%s: the actor mask is empty in every frame; no tube", mat_path)
        return video, []
    return video, [Tube(label, frames, boxes, kept if with_masks else None)]


def read_puppet_mask(mat_path: Path) -> np.ndarray:
    """The actor masks of a ``puppet_mask.mat`` as bool (T, H, W)."""
    if not mat_path.is_file():
        raise AnnotationError("puppet mask file not found", mat_path)
    try:
        mat = scipy.io.loadmat(str(mat_path), variable_names=[MASK_KEY])
        part_mask = mat.get(MASK_KEY)
    except NotImplementedError:  # scipy's answer to MATLAB v7.3 (HDF5) files
        part_mask = _read_v73(mat_path)
    except Exception as exc:  # scipy raises many types for a damaged file
        raise AnnotationError(f"cannot read MATLAB file ({type(exc).__name__}: {exc})", mat_path) from exc
    if part_mask is None:
        raise AnnotationError(f"no variable {MASK_KEY!r} in the MATLAB file", mat_path)
    part_mask = np.asarray(part_mask)
    if part_mask.ndim == 2:  # MATLAB drops a trailing singleton: a one-frame clip
        part_mask = part_mask[:, :, None]
    if part_mask.ndim != 3:
        raise AnnotationError(f"{MASK_KEY!r} has shape {part_mask.shape}, expected H x W x T", mat_path)
    return np.moveaxis(part_mask > 0, 2, 0)


def _read_v73(mat_path: Path) -> np.ndarray:
    """``part_mask`` from a v7.3 file via h5py (stored transposed: T x W x H), if h5py is installed."""
    try:
        import h5py
    except ImportError as exc:
        raise AnnotationError(
            "MATLAB v7.3 (HDF5) file: install h5py to read it, or re-save it in MATLAB with save(..., '-v7')",
            mat_path,
        ) from exc
    try:
        with h5py.File(mat_path, "r") as f:
            if MASK_KEY not in f:
                raise AnnotationError(f"no variable {MASK_KEY!r} in the MATLAB v7.3 file", mat_path)
            data = np.asarray(f[MASK_KEY])
    except (OSError, KeyError) as exc:
        raise AnnotationError(f"cannot read MATLAB v7.3 file ({exc})", mat_path) from exc
    return data.T  # HDF5 holds MATLAB's column-major H x W x T as T x W x H


def _splits(splits_dir: Path, clips: list[str], split: int) -> dict[str, list[str]]:
    """'train'/'test' from the official split files, or everything in 'train' without them."""
    if not splits_dir.is_dir():
        return {"train": list(clips), "test": []}
    membership: dict[str, str] = {}
    for cls in sorted({c.split("/")[0] for c in clips}):
        split_file = splits_dir / f"{cls}_test_split{split}.txt"
        membership.update({f"{cls}/{clip}": which for clip, which in _read_split_file(split_file)})
    unlisted = [c for c in clips if c not in membership]
    if unlisted:
        log.warning("jhmdb: %d clips are in no split file of split %d, e.g. %s", len(unlisted), split, unlisted[0])
    return {
        "train": [c for c in clips if membership.get(c) == "train"],
        "test": [c for c in clips if membership.get(c) == "test"],
    }


def _read_split_file(split_file: Path) -> list[tuple[str, str]]:
    """(clip, 'train'|'test') from lines ``<clip>.avi 1|2``."""
    try:
        lines = split_file.read_text().splitlines()
    except OSError as exc:
        raise AnnotationError(f"cannot read split file ({exc.strerror})", split_file) from exc
    out = []
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("1", "2"):
            raise AnnotationError(f"line {n}: expected '<clip>.avi 1|2', got {line!r}", split_file)
        out.append((fields[0].removesuffix(".avi"), "train" if fields[1] == "1" else "test"))
    return out
