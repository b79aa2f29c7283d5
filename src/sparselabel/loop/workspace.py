"""A workspace: one labeling project on disk.

    WORKSPACE/config.yaml     the full config it was created with
    WORKSPACE/ledger.sqlite   every video, annotation, selection and cycle step

Creation is resumable: the initial random labels are recorded as cycle 0's
``init`` step, and a workspace whose creation was killed finishes it on open.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sparselabel.config import Config, load_config, save_config
from sparselabel.data.dataset import Dataset, load_dataset
from sparselabel.errors import SparseLabelError
from sparselabel.labels.ledger import CycleStatus, Ledger
from sparselabel.loop.oracle import reveal

CONFIG_FILE = "config.yaml"
LEDGER_FILE = "ledger.sqlite"
POOL, TEST = "pool", "test"
INITIAL_STRATEGY = "initial-random"


@dataclass
class Workspace:
    root: Path
    config: Config
    ledger: Ledger
    _dataset: Dataset | None = field(default=None, repr=False)

    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            d = self.config.dataset
            self._dataset = load_dataset(d.kind, d.path, **d.options)
        return self._dataset

    @classmethod
    def create(cls, root: str | Path, config: Config, verify_videos: bool = True) -> Workspace:
        """Make a new workspace for ``config.dataset`` and give it its initial random labels."""
        root = Path(root)
        if (root / LEDGER_FILE).exists():
            raise SparseLabelError("already a workspace (ledger.sqlite exists); use another folder", root)
        config.dataset.path = str(Path(config.dataset.path).resolve())
        dataset = load_dataset(config.dataset.kind, config.dataset.path, **config.dataset.options)
        pool = dataset.split(config.dataset.pool_split)
        test = dataset.split(config.dataset.test_split) if config.dataset.test_split in dataset.splits else []
        if not pool:
            raise SparseLabelError(f"split {config.dataset.pool_split!r} has no videos", dataset.source)
        if verify_videos:
            check_decodable(dataset, pool + test)
        root.mkdir(parents=True, exist_ok=True)
        save_config(config, root / CONFIG_FILE)
        ledger = Ledger(root / LEDGER_FILE)
        ledger.set_meta(classes="\n".join(dataset.classes), dataset=dataset.name)
        ledger.add_videos([dataset.videos[v] for v in pool], POOL)
        ledger.add_videos([dataset.videos[v] for v in test], TEST)
        workspace = cls(root, config, ledger, dataset)
        workspace.ensure_initial_labels()
        return workspace

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
            self.ledger.record_selection(0, INITIAL_STRATEGY, picks)
        if self.config.labels.oracle == "simulated":
            self.annotate(picks, cycle=0, source="initial")
        self.ledger.finish_step(0, "init", detail=f"{len(picks)} frames")

    def annotate(self, picks: list[tuple[str, int]], cycle: int, source: str = "oracle") -> int:
        """Have the simulated oracle answer the picks not yet annotated; returns frames written."""
        done = {v: set(frames.tolist()) for v, frames in self.ledger.annotated_frames().items()}
        todo = [(v, f) for v, f in picks if f not in done[v]]
        labels = self.config.labels
        with_masks = labels.annotation == "mask"
        clicks = labels.clicks_per_mask if with_masks else labels.clicks_per_box
        answers = reveal(self.dataset, todo, with_masks=with_masks)
        return self.ledger.record_annotations(answers, source=source, cycle=cycle, clicks_per_actor=clicks)

    def status(self) -> list[CycleStatus]:
        return self.ledger.status(POOL)

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def initial_picks(videos: dict, config: Config) -> list[tuple[str, int]]:
    """I% of each video's frames at random (at least ``min_initial_frames``), seeded per video id."""
    picks = []
    for vid in sorted(videos):
        n_frames = videos[vid].num_frames
        count = max(config.labels.min_initial_frames, round(n_frames * config.labels.initial_percent / 100))
        # Seed from (seed, video id) so adding a video never changes another video's picks.
        rng = np.random.default_rng([config.seed, zlib.crc32(vid.encode())])
        frames = np.sort(rng.choice(n_frames, size=min(count, n_frames), replace=False))
        picks.extend((vid, int(f)) for f in frames)
    return picks


def check_decodable(dataset: Dataset, video_ids: list[str]) -> None:
    """Decode every video once so a corrupt or truncated file is reported now, by name."""
    from sparselabel.data.video import read_video

    for vid in tqdm(video_ids, desc="checking videos", unit="video", leave=False, disable=None):
        video = dataset.videos[vid]
        read_video(video.path, expected_frames=video.num_frames)


def format_status(rows: list[CycleStatus]) -> str:
    lines = [f"{'cycle':>5} {'selected':>8} {'new frames':>10} {'frames':>7} {'% frames':>8} {'new clicks':>10} {'clicks':>7}"]
    lines += [
        f"{r.cycle:>5} {r.selected:>8} {r.new_frames:>10} {r.frames:>7} {r.percent:>8.2f} {r.new_clicks:>10} {r.clicks:>7}"
        for r in rows
    ]
    return "\n".join(lines)
