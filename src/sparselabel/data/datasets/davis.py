"""DAVIS (2016/2017) and YouTube-VOS: folders of JPEG frames and PNG object masks.

    ROOT/JPEGImages/480p/<seq>/00000.jpg ...       (YouTube-VOS: JPEGImages/<seq>/)
    ROOT/Annotations/480p/<seq>/00000.png ...      (YouTube-VOS: Annotations/<seq>/)
    ROOT/ImageSets/2016/{train,val}.txt            optional (or 2017): sequence names

Masks: DAVIS-2016 masks are grayscale 0/255 (one object); DAVIS-2017 and
YouTube-VOS masks are palette PNGs whose indices are object ids. They are read
with Pillow keeping the stored values (never converted to RGB, which would turn
ids into colours). A mask whose values are only 0 and 255 is a binary mask
(255 = object 1); otherwise every value > 0 is an object id, except 255, which
marks "void" pixels and is ignored. One Tube per object id; a mask PNG pairs
with the JPEG of the same name, so sparsely annotated sequences (YouTube-VOS
annotates every 5th frame) land on the right frames.

Classes: a single class 'object' (label 0) unless ``classes=`` and ``labels=``
({sequence: class name}) say otherwise. Splits: 'train' and 'test' (= val) from
ImageSets when present, else every sequence is in 'train'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from sparselabel.data.dataset import Dataset, Video, register_loader
from sparselabel.data.datasets.common import (
    folder_info,
    log,
    mask_tube_parts,
    parallel_map,
    read_split_names,
)
from sparselabel.data.tubes import Tube
from sparselabel.data.video import frame_files
from sparselabel.errors import AnnotationError

DAVIS_FPS = 24.0
VOID = 255
IMAGESET_YEARS = ("2016", "2017")


@register_loader("davis")
def load_davis(
    path: Path,
    resolution: str = "480p",
    classes: list[str] | None = None,
    labels: dict[str, str] | None = None,
    imageset: str | None = None,
    fps: float = DAVIS_FPS,
    with_masks: bool = True,
    workers: int | None = None,
) -> Dataset:
    """Read every sequence under JPEGImages with its masks under Annotations."""
    root = Path(path)
    images_root, masks_root = _layout(root, resolution)
    classes = list(classes) if classes is not None else ["object"]
    seqs = sorted(d.name for d in images_root.iterdir() if d.is_dir())
    if not seqs:
        raise AnnotationError("no sequence folders", images_root)
    seq_labels = {s: _sequence_label(s, classes, labels or {}, root) for s in seqs}
    loaded = parallel_map(
        lambda s: _load_sequence(s, images_root, masks_root, seq_labels[s], fps, with_masks), seqs, workers
    )
    videos = {v.id: v for v, _ in loaded}
    tubes = {v.id: t for v, t in loaded}
    return Dataset("davis", classes, videos, tubes, _splits(root, seqs, imageset), source=masks_root)


def _layout(root: Path, resolution: str) -> tuple[Path, Path]:
    """(images, masks) folders, with or without the resolution level."""
    images, masks = root / "JPEGImages", root / "Annotations"
    if not images.is_dir():
        raise AnnotationError("JPEGImages/ not found: expected a DAVIS or YouTube-VOS folder", root)
    if not masks.is_dir():
        raise AnnotationError("Annotations/ not found: expected a DAVIS or YouTube-VOS folder", root)
    if (images / resolution).is_dir():
        return images / resolution, masks / resolution
    return images, masks


def _sequence_label(seq: str, classes: list[str], labels: dict[str, str], root: Path) -> int:
    if seq not in labels:
        if len(classes) > 1:
            raise AnnotationError(f"sequence {seq!r} has no entry in labels= (needed with several classes)", root)
        return 0
    if labels[seq] not in classes:
        raise AnnotationError(f"sequence {seq!r}: class {labels[seq]!r} is not in classes={classes}", root)
    return classes.index(labels[seq])


def _load_sequence(
    seq: str, images_root: Path, masks_root: Path, label: int, fps: float, with_masks: bool
) -> tuple[Video, list[Tube]]:
    """The Video of one sequence and one tube per object id found in its masks."""
    info = folder_info(images_root / seq, fps)
    video = Video(seq, images_root / seq, info.num_frames, fps, info.width, info.height, label)
    mask_dir = masks_root / seq
    if not mask_dir.is_dir():
        log.warning("davis: %s has no mask folder; no tubes", mask_dir)
        return video, []
    frame_of = {p.stem: k for k, p in enumerate(frame_files(images_root / seq))}
    pngs = sorted(mask_dir.glob("*.png"))
    if not pngs:
        log.warning("davis: %s holds no mask PNGs; no tubes", mask_dir)
        return video, []
    indices = np.array([_frame_index(p, frame_of) for p in pngs], dtype=np.int64)
    ids = np.stack([read_mask_ids(p, (info.height, info.width)) for p in pngs])
    tubes = []
    for obj in np.unique(ids[(ids > 0) & (ids != VOID)]):
        positions, boxes, masks = mask_tube_parts(ids == obj)
        tubes.append(Tube(label, indices[positions], boxes, masks if with_masks else None))
    return video, tubes


def _frame_index(png: Path, frame_of: dict[str, int]) -> int:
    if png.stem not in frame_of:
        raise AnnotationError(f"mask has no frame {png.stem}.jpg in the sequence's image folder", png)
    return frame_of[png.stem]


def read_mask_ids(png: Path, size: tuple[int, int]) -> np.ndarray:
    """Object ids of a mask PNG as (H, W) uint16; binary 0/255 masks become 0/1."""
    try:
        with Image.open(png) as im:
            mode = im.mode
            ids = np.array(im)  # palette images give their indices, not colours
    except (OSError, UnidentifiedImageError) as exc:
        raise AnnotationError(f"cannot read mask ({exc})", png) from exc
    if ids.ndim == 3:  # RGB(A): accept only gray stored as colour
        if not np.all(ids[..., :3] == ids[..., :1]):
            raise AnnotationError(f"{mode} colour mask: expected a palette (P) or grayscale PNG of object ids", png)
        ids = ids[..., 0]
    if ids.shape != size:
        raise AnnotationError(f"mask is {ids.shape[1]}x{ids.shape[0]} but the frames are {size[1]}x{size[0]}", png)
    if ids.dtype.kind not in "ub" and (ids.min() < 0 or ids.max() > np.iinfo(np.uint16).max):
        raise AnnotationError(f"mask values {ids.min()}..{ids.max()} are not object ids", png)
    ids = ids.astype(np.uint16)
    if np.all((ids == 0) | (ids == VOID)):
        return (ids == VOID).astype(np.uint16)  # DAVIS-2016 binary mask: 255 = the object
    return ids


def _splits(root: Path, seqs: list[str], imageset: str | None) -> dict[str, list[str]]:
    """'train'/'test' from ImageSets/<year>/{train,val}.txt, else everything in 'train'."""
    years = [imageset] if imageset is not None else list(IMAGESET_YEARS)
    folder = next((root / "ImageSets" / y for y in years if (root / "ImageSets" / y).is_dir()), None)
    if folder is None:
        if imageset is not None:
            raise AnnotationError(f"ImageSets/{imageset}/ not found", root)
        return {"train": list(seqs), "test": []}
    listed = {name: _sequence_names(folder / f"{name}.txt") for name in ("train", "val")}
    return {"train": [s for s in seqs if s in listed["train"]], "test": [s for s in seqs if s in listed["val"]]}


def _sequence_names(split_file: Path) -> set[str]:
    """Sequence names of a split file; also accepts the 'JPEGImages/480p/<seq>/00000.jpg' style."""
    if not split_file.is_file():
        return set()
    return {Path(n).parent.name if "/" in n else n for n in read_split_names(split_file)}
