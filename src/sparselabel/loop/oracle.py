"""The simulated oracle: answers a selected frame from the dataset's full ground truth.

For experiments on fully annotated datasets. It reveals every actor visible in
the asked frame and nothing else; the training code only ever sees what the
oracle wrote into the ledger.
"""

from __future__ import annotations

from collections.abc import Iterable

from sparselabel.data.dataset import Dataset
from sparselabel.labels.ledger import ActorLabel, FrameAnnotation


def reveal(dataset: Dataset, picks: Iterable[tuple[str, int]], with_masks: bool = False) -> list[FrameAnnotation]:
    """The ground-truth answer (all actors, their boxes and optionally masks) of each picked frame."""
    answers = []
    for video_id, frame in picks:
        actors = []
        for k, tube in dataset.actors_at(video_id, frame):
            box = tube.box_at(frame)
            mask = tube.mask_at(frame) if with_masks else None
            actors.append(ActorLabel(k, tube.label, None if box is None else tuple(box), mask))
        answers.append(FrameAnnotation(video_id, int(frame), actors))
    return answers
