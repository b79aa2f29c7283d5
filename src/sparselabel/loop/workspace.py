"""A workspace: one labeling project on disk.

    WORKSPACE/config.yaml     the full config it was created with
    WORKSPACE/ledger.sqlite   every video, annotation, selection and cycle step

Creation is resumable: the initial random labels are recorded as cycle 0's
``init`` step, and a workspace whose creation was killed finishes it on open.

The pool can grow later (``loop.grow``): the ledger lists the further datasets
whose videos joined, and ``Workspace.dataset`` is the union, on every open.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sparselabel.atomic import staged_folder
from sparselabel.config import Config, LabelsConfig, load_config, save_config
from sparselabel.data.dataset import Dataset, load_dataset
from sparselabel.data.datasets.raw import MANIFEST, write_manifest
from sparselabel.data.merge import merge, select_videos
from sparselabel.errors import SparseLabelError, VideoDecodeError
from sparselabel.labels.ledger import ADDED, CycleStatus, Ledger, Source
from sparselabel.loop.oracle import reveal
from sparselabel.selection.budget import percent_of

CONFIG_FILE = "config.yaml"
LEDGER_FILE = "ledger.sqlite"
POOL, TEST = "pool", "test"
RAW_KIND = "videos"  # a folder of unlabeled videos (data/datasets/raw.py)


@dataclass
class Workspace:
    root: Path
    config: Config
    ledger: Ledger
    _dataset: Dataset | None = field(default=None, repr=False)  # the dataset it was created from
    _merged: tuple[tuple[int, ...], Dataset] | None = field(default=None, repr=False)

    @property
    def dataset(self) -> Dataset:
        """The created-from dataset plus the videos of every source that joined the pool since.

        Checked against the ledger on each access (one small query), so a loop that
        adds videos between cycles, or another process's ``add-videos``, is seen at once.
        """
        if self._dataset is None:
            d = self.config.dataset
            self._dataset = load_dataset(d.kind, d.path, **d.options)
        added = self.ledger.sources(ADDED)
        if not added:
            return self._dataset
        key = tuple(s.id for s in added)
        if self._merged is None or self._merged[0] != key:
            classes = self.ledger.classes
            self._merged = key, merge(self._dataset, [load_source(s, classes) for s in added])
        return self._merged[1]

    @classmethod
    def create(cls, root: str | Path, config: Config, verify_videos: bool = True) -> Workspace:
        """Make a new workspace for ``config.dataset`` and give it its initial random labels.

        Built in a hidden sibling folder and renamed into place when complete: a failed or
        killed ``init`` leaves no workspace behind, so it can simply be run again.
        """
        root = Path(root)
        if (root / LEDGER_FILE).exists():
            raise SparseLabelError("already a workspace (ledger.sqlite exists); use another folder", root)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise SparseLabelError("exists and is not an empty folder; init needs a new or empty folder", root)
        config.dataset.path = str(Path(config.dataset.path).resolve())
        raw = config.dataset.kind == RAW_KIND
        if raw and config.labels.oracle == "simulated":
            raise SparseLabelError("raw videos have no ground truth for a simulated oracle; use labels.oracle=none")
        dataset = load_dataset(config.dataset.kind, config.dataset.path, **config.dataset.options)
        pool = dataset.split(config.dataset.pool_split)
        test = dataset.split(config.dataset.test_split) if config.dataset.test_split in dataset.splits else []
        if not pool:
            raise SparseLabelError(f"split {config.dataset.pool_split!r} has no videos", dataset.source)
        if verify_videos and not raw:  # raw videos were decoded when they were scanned
            check_decodable(dataset, pool + test)
        with staged_folder(root, "init") as building:  # root is absent or an empty folder
            if raw:  # probed once: later opens read the manifest, never the folder again
                write_manifest(dataset, building / MANIFEST)
                config.dataset.path, config.dataset.options = str(root.resolve() / MANIFEST), {}
            save_config(config, building / CONFIG_FILE)
            with Ledger(building / LEDGER_FILE, create=True) as ledger:
                ledger.set_classes(dataset.classes)
                ledger.set_meta(dataset=dataset.name)
                ledger.add_videos([dataset.videos[v] for v in pool], POOL)
                ledger.add_videos([dataset.videos[v] for v in test], TEST)
                cls(building, config, ledger, dataset).ensure_initial_labels()
        return cls(root, config, Ledger(root / LEDGER_FILE), dataset)

    @classmethod
    def open(cls, root: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Workspace:
        """Reopen a workspace; ``overrides`` change its config for this process only."""
        root = Path(root)
        if not (root / LEDGER_FILE).exists():
            raise SparseLabelError("not a workspace (no ledger.sqlite); create one with `sparselabel init`", root)
        workspace = cls(root, load_config(root / CONFIG_FILE, overrides), Ledger(root / LEDGER_FILE))
        workspace.ensure_initial_labels()
        return workspace

    def ensure_initial_labels(self) -> None:
        """Cycle 0: I% random frames per pool video, selected then answered (resumes if interrupted)."""
        if self.ledger.step_done(0, "init"):
            return
        self.ledger.start_step(0, "init")
        picks = [(vid, frame) for _, _, vid, frame, _ in self.ledger.selections(cycle=0)]
        if not picks:
            picks = initial_picks(self.ledger.videos(POOL), self.config)
            self.ledger.record_selection(0, initial_strategy(self.config), picks)
        if self.config.labels.oracle == "simulated":
            self.annotate(picks, cycle=0, source="initial")
        self.ledger.finish_step(0, "init", detail=f"{len(picks)} frames")

    def annotate(self, picks: list[tuple[str, int]], cycle: int, source: str = "oracle") -> int:
        """Have the simulated oracle answer the picks not yet annotated; returns frames written."""
        done = {v: set(frames.tolist()) for v, frames in self.ledger.annotated_frames().items()}
        todo = [(v, f) for v, f in picks if f not in done[v]]
        labels = self.config.labels
        answers = reveal(self.dataset, todo, with_masks=labels.annotation == "mask")
        return self.ledger.record_annotations(answers, source=source, cycle=cycle,
                                              clicks_per_actor=oracle_clicks(labels))

    def status(self) -> list[CycleStatus]:
        return self.ledger.status(POOL)

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def oracle_clicks(labels: LabelsConfig) -> int:
    """What one actor of an answered frame costs: a box, or a mask with ``labels.annotation=mask``."""
    return labels.clicks_per_mask if labels.annotation == "mask" else labels.clicks_per_box


def load_source(source: Source, classes: list[str]) -> Dataset:
    """The videos a recorded source put into the pool, labelled with the workspace's ``classes``."""
    return select_videos(load_dataset(source.kind, source.path, **source.options), list(source.video_ids), classes)


def initial_strategy(config: Config) -> str:
    """The name the initial picks are recorded under: initial-random or initial-equidistant."""
    return f"initial-{config.labels.initial_strategy}"


def initial_picks(videos: dict, config: Config) -> list[tuple[str, int]]:
    """I% of each video's frames (at least ``min_initial_frames``), chosen without a model:
    at random, seeded per video id, or equidistant (``labels.initial_strategy``)."""
    picks = []
    for vid in sorted(videos):
        n_frames = videos[vid].num_frames
        count = min(n_frames, max(config.labels.min_initial_frames,
                                  percent_of(config.labels.initial_percent, n_frames)))
        if config.labels.initial_strategy == "equidistant":  # the centres of count equal stretches
            frames = np.unique(((np.arange(count) + 0.5) * n_frames / count).astype(np.int64))
        else:  # seeded from (seed, video id) so adding a video never changes another video's picks
            rng = np.random.default_rng([config.seed, zlib.crc32(vid.encode())])
            frames = np.sort(rng.choice(n_frames, size=count, replace=False))
        picks.extend((vid, int(f)) for f in frames)
    return picks


def check_decodable(dataset: Dataset, video_ids: list[str]) -> None:
    """Decode every video file once, a frame at a time, so a corrupt or truncated file is
    reported now, by name (a file listed under several ids is decoded once)."""
    from sparselabel.data.video import check_video

    files = sorted({(str(v.path), v.num_frames, v.width, v.height) for v in map(dataset.videos.get, video_ids)})
    for path, num_frames, width, height in tqdm(files, desc="checking videos", unit="video", leave=False,
                                                disable=None):
        # Fewer frames than declared is an error; more are ignored (frames past num_frames are
        # never read), as annotation files often stop before the video does.
        _, found_w, found_h = check_video(path, expected_frames=num_frames)
        if (found_w, found_h) != (width, height):
            raise VideoDecodeError(f"declared {width}x{height}, but the video decodes to {found_w}x{found_h} "
                                   "(boxes would be checked against the wrong size)", path)


def format_status(rows: list[CycleStatus], pending: Sequence[Source] = ()) -> str:
    """The status table; '% frames' is of the pool of that cycle ('videos', 'pool frames')."""
    lines = [f"{'cycle':>5} {'selected':>8} {'new frames':>10} {'frames':>7} {'% frames':>8} {'new clicks':>10} "
             f"{'clicks':>7} {'videos':>6} {'pool frames':>11}"]
    lines += [
        f"{r.cycle:>5} {r.selected:>8} {r.new_frames:>10} {r.frames:>7} {r.percent:>8.2f} {r.new_clicks:>10} "
        f"{r.clicks:>7} {r.pool_videos:>6} {r.pool_frames:>11}"
        for r in rows
    ]
    lines += [f"pending: {len(s.video_ids)} videos of {s.path} join the pool when the loop starts cycle {s.cycle}"
              for s in pending]
    return "\n".join(lines)
