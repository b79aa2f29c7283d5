"""Datasets that grow: some videos of one dataset, relabelled to another's class list, and unions.

A workspace's pool can take in videos from further datasets after it was created
(``sparselabel add-videos``). Each of those datasets may list its classes in
another order, or only some of them; its class indices are mapped by name onto
the workspace's list, so a label means the same class everywhere.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from sparselabel.data.dataset import Dataset
from sparselabel.data.tubes import Tube
from sparselabel.errors import SparseLabelError


def class_map(names: list[str], classes: list[str], where: str | Path | None) -> np.ndarray:
    """Index in ``classes`` of each of ``names``; a name ``classes`` lacks is an error naming ``where``."""
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise SparseLabelError(f"class {unknown[0]!r} is not one of the workspace's classes "
                               f"({', '.join(classes)})", where)
    return np.array([classes.index(n) for n in names], dtype=np.int64)


def select_videos(dataset: Dataset, ids: list[str], classes: list[str], split: str = "pool") -> Dataset:
    """Videos ``ids`` of ``dataset`` (and their tubes) with labels mapped onto ``classes``."""
    where = dataset.source
    missing = [v for v in ids if v not in dataset.videos]
    if missing:
        raise SparseLabelError(f"video {missing[0]!r} is not in the dataset any more", where)
    mapping = class_map(dataset.classes, classes, where)

    def relabel(label: int) -> int:
        return -1 if label < 0 else int(mapping[label])

    videos = {v: dataclasses.replace(dataset.videos[v], label=relabel(dataset.videos[v].label)) for v in ids}
    tubes = {v: [Tube(relabel(t.label), t.frames, t.boxes, t.masks) for t in dataset.tubes.get(v, [])] for v in ids}
    return Dataset(dataset.name, list(classes), videos, tubes, {split: list(ids)}, source=where)


def merge(base: Dataset, parts: list[Dataset]) -> Dataset:
    """``base`` with the videos and tubes of ``parts`` (same class list); an id in two of them is an error."""
    videos, tubes = dict(base.videos), dict(base.tubes)
    for part in parts:
        clash = sorted(set(part.videos) & set(videos))
        if clash:
            raise SparseLabelError(f"video id {clash[0]!r} is also in another dataset of the workspace", part.source)
        videos.update(part.videos)
        tubes.update(part.tubes)
    return Dataset(base.name, list(base.classes), videos, tubes, dict(base.splits), source=base.source)
