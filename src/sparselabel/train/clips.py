"""Training clips from sparse labels: frames, pseudo-label targets and frame weights.

Only what the ledger holds is read here (``FrameAnnotation`` answers), never a
dataset's ground-truth tubes, so a model cannot learn from frames nobody
annotated. Each actor's answers become a pseudo-label tube (boxes interpolated,
masks from the nearest answer, ``labels.pseudo``); the foreground target of a
frame is the union of its actors, and each frame's loss weight is ``mgw``,
``mask`` or ``interp`` (DESIGN section 3).

Every random choice of item ``i`` in epoch ``e`` comes from
``default_rng([seed, e, i])``, so a resumed run or another DDP rank draws
exactly the same clips.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sparselabel.data.dataset import Video
from sparselabel.data.video import DEFAULT_CACHE, FrameCache
from sparselabel.data.windows import ClipSpec
from sparselabel.labels.ledger import FrameAnnotation
from sparselabel.labels.pseudo import (
    frame_weights,
    nearest_annotated,
    pseudo_boxes,
    pseudo_mask_indices,
)


@dataclass
class ActorTrack:
    """One actor's pseudo-label tube: the frames it is present on, with a box per frame or,
    for masks, the index of the answered mask each frame takes (kept once, not per frame)."""

    frames: np.ndarray  # sorted frame indices
    boxes: np.ndarray | None  # (len(frames), 4) float64, or None with masks
    masks: np.ndarray | None  # answered masks (K, H, W) bool
    mask_of: np.ndarray | None  # (len(frames),) index into masks


@dataclass
class VideoLabels:
    """Pseudo-labels of one video: per-frame weights (T,) and the actors' tubes, from which
    ``target`` paints the foreground maps of just the frames a clip needs. Nothing here
    grows with the video's resolution times its length, so a pool of any size fits."""

    video: Video
    tracks: list[ActorTrack]
    weights: np.ndarray  # float64
    annotated: np.ndarray  # sorted frame indices
    present: np.ndarray  # (T,) bool: the pseudo-labels show an actor (on answered frames: the answer does)

    def target(self, frames: Sequence[int] | np.ndarray) -> np.ndarray:
        """Foreground maps (len(frames), H, W) float32 in [0, 1] at the video's resolution:
        the union of the actors present on each frame."""
        frames = np.asarray(frames, dtype=np.int64)
        maps = np.zeros((len(frames), self.video.height, self.video.width), dtype=np.float32)
        for track in self.tracks:
            at = np.searchsorted(track.frames, frames).clip(max=len(track.frames) - 1)
            for row in np.flatnonzero(track.frames[at] == frames):
                if track.boxes is not None:
                    paint_box(maps[row], track.boxes[at[row]])
                else:
                    np.maximum(maps[row], track.masks[track.mask_of[at[row]]], out=maps[row])
        return maps


def video_labels(
    video: Video, answers: Sequence[FrameAnnotation], loss: str = "mgw", sigma: float = 1.3
) -> VideoLabels:
    """Pseudo-label tubes and weights of ``video`` from its answered frames."""
    annotated = np.array(sorted(a.frame for a in answers), dtype=np.int64)
    tracks = []
    for frames, boxes, masks in _actor_tracks(answers):
        if masks is not None:
            present, mask_of = pseudo_mask_indices(video.num_frames, annotated, frames)
            tracks.append(ActorTrack(present, None, masks[np.argsort(frames)], mask_of))
        else:
            present, track_boxes = pseudo_boxes(video.num_frames, annotated, frames, boxes)
            tracks.append(ActorTrack(present, track_boxes, None, None))
    tracks = [t for t in tracks if len(t.frames)]
    shown = np.zeros(video.num_frames, dtype=bool)
    for track in tracks:
        shown[track.frames] = True
    weights = frame_weights(video.num_frames, annotated, loss, sigma)
    return VideoLabels(video, tracks, weights, annotated, shown)


def _actor_tracks(answers: Sequence[FrameAnnotation]):
    """(frames, boxes, masks-or-None) per actor id, from the answered frames that show it."""
    tracks: dict[int, list[tuple[int, object, object]]] = defaultdict(list)
    for ans in answers:
        for a in ans.actors:
            tracks[a.actor].append((ans.frame, a.box, a.mask))
    for rows in tracks.values():
        frames = np.array([f for f, _, _ in rows])
        has_masks = all(m is not None for _, _, m in rows)
        masks = np.stack([m for _, _, m in rows]).astype(bool) if has_masks else None
        boxes = None if has_masks else np.array([b for _, b, _ in rows], dtype=np.float64)
        yield frames, boxes, masks


def paint_box(canvas: np.ndarray, box: Sequence[float]) -> None:
    """Fill a box (x1, y1, x2, y2; exclusive right/bottom) into a 2D map, rounding to pixels."""
    height, width = canvas.shape
    x1, y1, x2, y2 = np.round(np.asarray(box)).astype(int)
    canvas[max(y1, 0) : min(y2, height), max(x1, 0) : min(x2, width)] = 1.0


def clip_frames(start: int, spec: ClipSpec, num_frames: int) -> np.ndarray:
    """Frame indices of a clip starting at ``start``; past the end the last frame repeats."""
    return np.minimum(start + spec.stride * np.arange(spec.length), num_frames - 1)


class SparseClipDataset(torch.utils.data.Dataset):
    """Clips sampled around annotated frames, with targets and weights, augmented alike.

    Item ``i`` is a clip of pool video ``i % n_videos``; it holds an annotated frame
    (its anchor, drawn by ``_anchor``). An item holds ``clip``
    (3, T, H, W), ``target`` (T, H, W), ``weight`` (T,), ``annotated`` (T,) bool (the
    frame has an answer) and ``label`` (the video's class). ``colour`` adds ``colour_jitter``
    (drawn after the crop and flip, so without it every item is as it always was).
    """

    def __init__(
        self,
        labels: Sequence[VideoLabels],
        spec: ClipSpec,
        clips_per_video: int = 1,
        seed: int = 0,
        augment: bool = True,
        cache: FrameCache = DEFAULT_CACHE,
        colour: bool = False,
        balance_anchors: bool = False,
    ):
        self.labels = [lab for lab in labels if lab.annotated.size]
        self.spec, self.seed, self.augment, self.cache = spec, seed, augment, cache
        self.balance_anchors = balance_anchors
        self.colour = colour and augment
        self.clips_per_video = clips_per_video
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels) * self.clips_per_video

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Item ``key``: an index (in the current epoch) or an explicit (epoch, index)."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        rng = np.random.default_rng([self.seed, epoch, index])
        lab = self.labels[index % len(self.labels)]
        frames_idx = clip_frames(self._start(lab, rng), self.spec, lab.video.num_frames)
        clip = clip_tensor(lab.video.frames(frames_idx, cache=self.cache))
        target = torch.from_numpy(lab.target(frames_idx))
        crop, flip = random_crop_flip(rng, self.spec, lab.video, self.augment)
        clip = resize_clip(clip, crop, flip, self.spec.size)
        return {
            "clip": colour_jitter(clip, rng) if self.colour else clip,
            "target": resize_target(target, crop, flip, self.spec.size),
            "weight": torch.from_numpy(lab.weights[frames_idx]).float(),
            # Frames with an answer; the consistency loss works on the others only.
            "annotated": torch.from_numpy(np.isin(frames_idx, lab.annotated)),
            "label": torch.tensor(lab.video.label, dtype=torch.long),
        }

    def _start(self, lab: VideoLabels, rng: np.random.Generator) -> int:
        """A start such that an annotated frame (the anchor) is sampled frame k of the clip.

        k is drawn among positions that keep the clip inside the video; a video
        shorter than the clip's span starts at 0 and repeats its last frame.
        """
        anchor = self._anchor(lab, rng)
        starts = anchor - self.spec.stride * np.arange(self.spec.length)
        inside = starts[(starts >= 0) & (starts + self.spec.span <= lab.video.num_frames)]
        if inside.size == 0:
            inside = np.array([max(0, min(anchor, lab.video.num_frames - self.spec.span))])
        return int(rng.choice(inside))

    def _anchor(self, lab: VideoLabels, rng: np.random.Generator) -> int:
        """An annotated frame: any alike, or with ``balance_anchors`` the one nearest a frame
        drawn uniformly that agrees with it (both show an actor, or both show none).

        Why balance: a strategy's picks are no sample of the video (APU, unsure where nobody
        acts, picks mostly frames that show nobody), and anchoring on them alike lets the
        selector, not the video, set training's mix of action and background clips. Balanced,
        clips show an actor as often as the video's pseudo-labels do; with every frame
        annotated the anchor is the drawn frame, the same draw as ``choice(annotated)``.
        """
        if not self.balance_anchors:
            return int(rng.choice(lab.annotated))
        frame = int(rng.integers(lab.video.num_frames))
        agree = lab.annotated[lab.present[lab.annotated] == lab.present[frame]]
        pool = agree if agree.size else lab.annotated
        return int(pool[nearest_annotated(pool, np.array([frame]))[0]])


def colour_jitter(clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The same random colour change on every frame of a (3, T, H, W) clip in [-1, 1].

    Channels permuted, each scaled (0.6-1.4) and shifted (+-0.3), and half the time the
    whole clip negated. Colours then tell nothing about the class, which a detector
    trained on few videos otherwise learns (each video's look is unique) instead of the
    motion; how things move is untouched.
    """
    gain = torch.from_numpy(rng.uniform(0.6, 1.4, size=3)).float()[:, None, None, None]
    shift = torch.from_numpy(rng.uniform(-0.3, 0.3, size=3)).float()[:, None, None, None]
    sign = -1.0 if rng.random() < 0.5 else 1.0
    return (sign * (clip[torch.from_numpy(rng.permutation(3))] * gain + shift)).clamp(-1.0, 1.0)


def clip_tensor(frames: np.ndarray) -> torch.Tensor:
    """Decoded uint8 frames (T, H, W, 3) as the model's (3, T, H, W) float input in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 127.5 - 1.0


def random_crop_flip(
    rng: np.random.Generator, spec: ClipSpec, video: Video, augment: bool = True
) -> tuple[tuple[int, int, int, int], bool]:
    """A random crop (top, left, h, w) keeping >= ``spec.min_crop`` of each side, and a flip.

    Without ``augment`` the whole frame, unflipped, and no draw from ``rng``.
    """
    if not augment:
        return (0, 0, video.height, video.width), False
    scale = rng.uniform(spec.min_crop, 1.0, size=2)
    h, w = max(1, int(video.height * scale[0])), max(1, int(video.width * scale[1]))
    top = int(rng.integers(0, video.height - h + 1))
    left = int(rng.integers(0, video.width - w + 1))
    return (top, left, h, w), bool(spec.flip and rng.random() < 0.5)


def resize_clip(clip: torch.Tensor, crop: tuple[int, int, int, int], flip: bool, size: tuple[int, int]) -> torch.Tensor:
    """Crop (top, left, h, w), optionally flip, and resize a (3, T, H, W) clip to ``size``."""
    top, left, h, w = crop
    clip = clip[:, :, top : top + h, left : left + w]
    if flip:
        clip = clip.flip(-1)
    return F.interpolate(clip.transpose(0, 1), size=size, mode="bilinear", align_corners=False).transpose(0, 1)


def resize_target(target: torch.Tensor, crop: tuple[int, int, int, int], flip: bool, size: tuple[int, int]) -> torch.Tensor:
    """The same crop/flip/resize for a (T, H, W) foreground map (bilinear: soft edges stay in [0, 1])."""
    top, left, h, w = crop
    target = target[:, top : top + h, left : left + w]
    if flip:
        target = target.flip(-1)
    return F.interpolate(target[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


class CachedWindowDataset(torch.utils.data.Dataset):
    """Training items of a frozen encoder: cached inference windows with targets and weights.

    The encoder's maps come from a ``FeatureCache``, so an item is one of the fixed
    ``video_windows`` (not a clip drawn at random) and is not cropped or flipped: the
    stored maps are of the whole, unflipped frames. Only windows that hold a frame
    of positive weight are items. An item holds ``fine``, ``mid``, ``deep`` (float32
    maps of one window), ``target`` (T, H, W) at the model's input size, ``weight``,
    ``annotated`` and ``label``, as ``SparseClipDataset`` does.
    """

    def __init__(self, labels: Sequence[VideoLabels], cache, spec: ClipSpec):
        self.labels = {lab.video.id: lab for lab in labels if lab.annotated.size}
        self.cache, self.spec = cache, spec
        self.items: list[tuple[str, int]] = []
        for vid, lab in self.labels.items():
            windows, _ = cache.windows(vid)
            self.items += [(vid, k) for k, w in enumerate(windows) if lab.weights[w].max() > 0]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        vid, k = self.items[key[1] if isinstance(key, tuple) else key]
        lab = self.labels[vid]
        windows, maps = self.cache.windows(vid)
        frames_idx = windows[k]
        target = torch.from_numpy(lab.target(frames_idx))
        full = (0, 0, lab.video.height, lab.video.width)
        return {
            **{name: torch.from_numpy(np.asarray(m[k], dtype=np.float32)) for name, m in maps.items()},
            "target": resize_target(target, full, False, self.spec.size),
            "weight": torch.from_numpy(lab.weights[frames_idx]).float(),
            "annotated": torch.from_numpy(np.isin(frames_idx, lab.annotated)),
            "label": torch.tensor(lab.video.label, dtype=torch.long),
        }
