"""Synthetic action-detection videos: the embedded default dataset (no download).

The dataset exists to exercise a detector that has to use *motion*, so its
construction guarantees that a single frame cannot tell the classes apart:

- Every actor, whatever its class, draws its appearance (shape, size, aspect,
  colours, texture, orientation) from one distribution.
- A class is only a *displacement pattern* over time (``MOTIONS``): a slide, a
  circle, a hop, a spin, a zoom pulse... The actor's state (centre, log size,
  angle) is that displacement added to a starting state and folded back into
  the stage (the stage has walls: every motion reflects off them). The
  starting state is drawn uniformly over one whole folding period, so at ANY
  fixed frame the state is exactly uniform on the same box for every class:
  position, size and orientation marginals on one frame do not depend on the
  class. Only how the state changes between frames does. (With ``actor_gap`` a
  second actor is redrawn until it keeps clear of the first, which makes the two
  actors' positions depend on each other; a single actor's stay uniform.)

Around the actors, the nuisances of real footage: a textured background larger
than the frame, a camera that pans and zooms, moving distractors that look like
actors (same appearance distribution) but drift at random instead of doing a
class motion, and occluders (posts) that pass in front of the actors.

Annotation conventions (written with ``write_native``):

- 1 to 3 actors per video, all of the video's class (one label per video, as
  in UCF101-24). Each actor is one tube over consecutive frames that starts
  after the first frame and ends before the last; outside its tube the actor
  is absent (not drawn), so nothing unannotated ever looks like an actor doing
  the action.
- Boxes are the actor's exact full extent (analytic, float, exclusive right and
  bottom edges) clipped to the frame, whether or not something hides part of
  it, as box annotators draw occluded people. The actor's centre always stays
  inside the frame (the config is checked for this), so boxes are never empty
  and tubes never need splitting.
- Masks are the VISIBLE pixels: pixels whose centre lies inside the actor and
  that no later layer (another actor, a distractor, an occluder) covers. A
  fully hidden actor has an empty mask but still a box.

Everything is drawn from ``np.random.default_rng([seed, video_index, 1])`` (and
generators ``[seed, 0, *]`` for labels and splits), so the same seed gives
the same frames, annotations and masks, byte for byte, and video ``i`` does
not depend on how many videos are generated after it. The encoded mp4 files
are byte-identical too (``write_video`` turns off libx264's mb-tree, which is
not run-to-run deterministic on small frames).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sparselabel.data.datasets.native import ANNOTATION_FILE, write_native
from sparselabel.data.tubes import Tube
from sparselabel.errors import SparseLabelError

GENERATOR = "sparselabel-synthetic/1"
MARKER_FILE = "synth.json"  # provenance; also marks a folder we may regenerate into

# ---------------------------------------------------------------------------
# Motions: what makes the classes. Amplitudes are fractions of S = min(w, h),
# speeds are per frame. Each returns displacements from the starting state.
# ---------------------------------------------------------------------------


class Displacement(NamedTuple):
    """Per-frame offsets from an actor's starting state over its tube."""

    dx: np.ndarray  # stage pixels
    dy: np.ndarray  # stage pixels, y down
    dlog_size: np.ndarray  # natural log of the size factor
    dtheta: np.ndarray  # radians


SLIDE_SPEED = (0.009, 0.016)
CIRCLE_RADIUS, CIRCLE_PERIOD = (0.07, 0.12), (20.0, 36.0)
BOUNCE_HEIGHT, BOUNCE_PERIOD = (0.10, 0.18), (14.0, 24.0)
ZIGZAG_AMPLITUDE, ZIGZAG_PERIOD = (0.05, 0.09), (10.0, 18.0)
SPIN_SPEED = (0.08, 0.16)
PULSE_AMPLITUDE, PULSE_PERIOD = (0.22, 0.32), (16.0, 28.0)


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _still(n: int) -> Displacement:
    zero = np.zeros(n)
    return Displacement(zero, zero.copy(), zero.copy(), zero.copy())


def _slide_horizontal(rng: np.random.Generator, n: int, s: float) -> Displacement:
    v = _sign(rng) * rng.uniform(*SLIDE_SPEED) * s
    return _still(n)._replace(dx=v * np.arange(n))


def _slide_vertical(rng: np.random.Generator, n: int, s: float) -> Displacement:
    v = _sign(rng) * rng.uniform(*SLIDE_SPEED) * s
    return _still(n)._replace(dy=v * np.arange(n))


def _slide_diagonal(rng: np.random.Generator, n: int, s: float) -> Displacement:
    v = rng.uniform(*SLIDE_SPEED) * s / math.sqrt(2.0)
    t = np.arange(n)
    return _still(n)._replace(dx=_sign(rng) * v * t, dy=_sign(rng) * v * t)


def _circle(rng: np.random.Generator, n: int, s: float) -> Displacement:
    radius = rng.uniform(*CIRCLE_RADIUS) * s
    phase = _sign(rng) * 2 * np.pi * np.arange(n) / rng.uniform(*CIRCLE_PERIOD) + rng.uniform(
        0, 2 * np.pi
    )
    return _still(n)._replace(dx=radius * np.cos(phase), dy=radius * np.sin(phase))


def _bounce(rng: np.random.Generator, n: int, s: float) -> Displacement:
    """Hops: up and down with a sharp turn at the ground (|sin|), no sideways motion."""
    height = rng.uniform(*BOUNCE_HEIGHT) * s
    phase = np.pi * np.arange(n) / rng.uniform(*BOUNCE_PERIOD) + rng.uniform(0, np.pi)
    return _still(n)._replace(dy=-height * np.abs(np.sin(phase)))


def _zigzag(rng: np.random.Generator, n: int, s: float) -> Displacement:
    """Steady horizontal progress with a fast up-down triangle wave."""
    v = _sign(rng) * rng.uniform(*SLIDE_SPEED) * s
    cycles = np.arange(n) / rng.uniform(*ZIGZAG_PERIOD) + rng.random()
    triangle = 2 * np.abs(2 * (cycles % 1.0) - 1) - 1
    return _still(n)._replace(dx=v * np.arange(n), dy=rng.uniform(*ZIGZAG_AMPLITUDE) * s * triangle)


def _spin(rng: np.random.Generator, n: int, s: float) -> Displacement:
    return _still(n)._replace(dtheta=_sign(rng) * rng.uniform(*SPIN_SPEED) * np.arange(n))


def _pulse(rng: np.random.Generator, n: int, s: float) -> Displacement:
    """Grow and shrink in place (a zoom pulse), sinusoidal in log size."""
    phase = 2 * np.pi * np.arange(n) / rng.uniform(*PULSE_PERIOD) + rng.uniform(0, 2 * np.pi)
    return _still(n)._replace(dlog_size=rng.uniform(*PULSE_AMPLITUDE) * np.sin(phase))


Motion = Callable[[np.random.Generator, int, float], Displacement]
MOTIONS: dict[str, Motion] = {
    "slide_horizontal": _slide_horizontal,
    "slide_vertical": _slide_vertical,
    "slide_diagonal": _slide_diagonal,
    "circle": _circle,
    "bounce": _bounce,
    "zigzag": _zigzag,
    "spin": _spin,
    "pulse": _pulse,
}

SHAPES = ("ellipse", "rectangle", "diamond", "triangle", "cross")
TEXTURES = ("shaded", "stripes", "checker", "rings", "dots")
CROSS_ARM = 0.38  # half-thickness of the cross's arms, in shape units


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator. Fractions of a size are of S = min(width, height)."""

    width: int = 96
    height: int = 96
    min_frames: int = 48
    max_frames: int = 64
    fps: float = 25.0
    classes: tuple[str, ...] = tuple(MOTIONS)
    actors: tuple[int, int] = (1, 3)  # actors per video, inclusive range
    tube_fraction: tuple[float, float] = (0.45, 0.85)  # tube length / clip length
    actor_scale: tuple[float, float] = (0.10, 0.20)  # geometric-mean half extent / S (actors 20-40% of the frame, as in UCF101-24)
    actor_aspect: tuple[float, float] = (1.4, 2.4)  # elongated, so a spin shows in the box
    distractors: tuple[int, int] = (0, 2)  # per video, inclusive range
    occluders: tuple[int, int] = (0, 2)  # per video, inclusive range
    stage_margin: float = 0.2  # actor centres stay in [margin, 1 - margin] of the stage
    camera_pan: float = 0.06  # max camera offset, fraction of width / height
    camera_zoom: tuple[float, float] = (0.9, 1.15)
    test_fraction: float = 0.25
    # Class motions' amplitudes and speeds are multiplied by this (bigger: easier to tell apart).
    motion_scale: float = 1.0
    # Tempo changes: an actor's motion runs on a clock whose speed varies smoothly (log-normal
    # with this std around 1), so some stretches pause and others rush: frames are not equal,
    # and interpolating between two labelled frames is wrong where the tempo changed. 0: off.
    tempo_variation: float = 0.0
    # drift: distractors wander at random (only motion tells them from actors); still: they
    # stand still in the scene (they move with the camera only), as bystanders do.
    distractor_motion: str = "drift"
    # None: actors may overlap. A number: on every frame they share, two actors' boxes stay at
    # least this fraction of S apart (a later actor is redrawn until it keeps clear of the
    # earlier ones, up to ACTOR_TRIES times), so that touching actors never merge into one
    # box when maps are decoded.
    actor_gap: float | None = None
    # How fast an occluder (a post) sweeps across, fraction of S per frame: with slow posts an
    # actor stays half hidden for most of its tube; fast ones hide a stretch of it.
    occluder_speed: tuple[float, float] = (0.01, 0.025)
    name: str = "synthetic"
    codec: str = "libx264"

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        problem = self._problem()
        if problem:
            raise SparseLabelError(f"synthetic config: {problem}")

    def _problem(self) -> str | None:
        """The first inconsistent knob, or None; checked early so rendering never fails midway."""
        unknown = [c for c in self.classes if c not in MOTIONS]
        if not self.classes or unknown or len(set(self.classes)) != len(self.classes):
            return f"classes must be distinct names from {list(MOTIONS)}, got {list(self.classes)}"
        if min(self.width, self.height) < 16:
            return f"frame {self.width}x{self.height} is smaller than 16 px"
        if not 8 <= self.min_frames <= self.max_frames:
            return f"need 8 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}"
        if self.fps <= 0:
            return f"fps must be positive, got {self.fps}"
        for name in ("actors", "distractors", "occluders"):
            lo, hi = getattr(self, name)
            if not (0 <= lo <= hi and (name != "actors" or lo >= 1)):
                return f"{name} range {(lo, hi)} is not a valid inclusive range"
        for name in ("tube_fraction", "actor_scale", "actor_aspect", "camera_zoom", "occluder_speed"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                return f"{name} range {(lo, hi)} must have 0 < low <= high"
        if self.tube_fraction[1] > 1 or self.actor_aspect[0] < 1 or self.actor_scale[1] > 0.4:
            return "need tube_fraction <= 1, actor_aspect >= 1, actor_scale <= 0.4"
        if not (self.motion_scale > 0 and self.tempo_variation >= 0 and self.distractor_motion in ("drift", "still")):
            return (f"need motion_scale > 0, tempo_variation >= 0 and distractor_motion drift or still, got "
                    f"{self.motion_scale}, {self.tempo_variation}, {self.distractor_motion!r}")
        if self.actor_gap is not None and not 0 <= self.actor_gap < 0.5:
            return f"actor_gap must be None or in [0, 0.5), got {self.actor_gap}"
        if not 0 <= self.test_fraction < 1:
            return f"test_fraction must be in [0, 1), got {self.test_fraction}"
        # An actor's centre must stay inside the frame under any camera: then a box is never empty.
        reach = (0.5 - self.stage_margin) * self.camera_zoom[1] + self.camera_pan
        if not (0 <= self.stage_margin < 0.5 and self.camera_pan >= 0 and reach < 0.49):
            return (
                f"stage_margin {self.stage_margin}, camera_pan {self.camera_pan} and max zoom "
                f"{self.camera_zoom[1]} can carry an actor's centre out of the frame"
            )
        return None

    @property
    def scale(self) -> float:
        return float(min(self.width, self.height))


# Difficulty presets (``sparselabel synth --difficulty``): changes to SynthConfig's defaults.
# Chosen by measurement (benchmarks/RESULTS.md, "A detector that learns"); see the knobs'
# comments above. "hard" is the default above. Decoding foreground maps into boxes cannot
# separate actors that touch, so the share of frames where actors overlap caps f-mAP even
# for perfect maps (benchmarks/learning_curve.py prints that ceiling, on the test videos):
# 55% f-mAP / 33% v-mAP@0.5 for "hard" at 64 x 64, 99.6% / 98% for "medium", whose 1-2
# actors keep apart (actor_gap), 100% with one actor. Posts that sweep slowly hide most of
# an actor's tube; "medium"'s fast ones hide a stretch (test f-mAP 35 -> 51, one seed).
DIFFICULTIES: dict[str, dict] = {
    "easy": {"width": 64, "height": 64, "min_frames": 32, "max_frames": 48,
             "classes": ("slide_horizontal", "circle", "spin", "pulse"),
             "actors": (1, 1), "distractors": (0, 0), "occluders": (0, 0), "camera_pan": 0.0,
             "camera_zoom": (1.0, 1.0), "motion_scale": 1.5},
    "medium": {"width": 64, "height": 64, "min_frames": 32, "max_frames": 48,
               "classes": ("slide_horizontal", "circle", "spin", "pulse"),
               "actors": (1, 2), "actor_scale": (0.08, 0.14), "distractors": (0, 1), "distractor_motion": "still",
               "occluders": (0, 1), "occluder_speed": (0.03, 0.05), "motion_scale": 1.5, "tempo_variation": 0.5,
               "actor_gap": 0.05},
    "hard": {},
}


def synth_config(difficulty: str = "hard", **changes: object) -> SynthConfig:
    """The generator's config at a named difficulty (see ``DIFFICULTIES``), with ``changes`` on top."""
    if difficulty not in DIFFICULTIES:
        raise SparseLabelError(f"unknown difficulty {difficulty!r}; choose one of {', '.join(DIFFICULTIES)}")
    return SynthConfig(**{**DIFFICULTIES[difficulty], **changes})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Objects and camera
# ---------------------------------------------------------------------------


@dataclass
class Appearance:
    """How an object looks; actors and distractors draw it from one distribution."""

    shape: str
    aspect: float
    color1: np.ndarray  # RGB in [0, 1]
    color2: np.ndarray
    texture: str
    frequency: float  # texture cycles across the shape
    texture_angle: float


@dataclass
class Track:
    """An object's state in stage coordinates over frames ``start .. start + len - 1``."""

    start: int
    cx: np.ndarray
    cy: np.ndarray
    size: np.ndarray  # geometric-mean half extent, stage pixels
    theta: np.ndarray
    look: Appearance

    @property
    def frames(self) -> np.ndarray:
        return np.arange(self.start, self.start + len(self.cx))

    @property
    def half_axes(self) -> tuple[np.ndarray, np.ndarray]:
        root = math.sqrt(self.look.aspect)
        return self.size * root, self.size / root


@dataclass
class Camera:
    """Per-frame zoom about the frame centre and pan: frame = (stage - c) * zoom + c + pan."""

    zoom: np.ndarray
    pan_x: np.ndarray
    pan_y: np.ndarray


@dataclass
class SynthVideo:
    """One rendered video with its ground truth and the hidden state that produced it."""

    id: str
    label: int
    frames: np.ndarray  # uint8 (T, H, W, 3)
    tubes: list[Tube]
    actors: list[Track]
    camera: Camera


def _fold(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect ``x`` into [lo, hi] (walls that bounce)."""
    span = hi - lo
    r = np.mod(x - lo, 2 * span)
    return lo + np.where(r > span, 2 * span - r, r)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = np.mod(np.array([5.0, 3.0, 1.0]) + h * 6, 6)
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def _appearance(rng: np.random.Generator, cfg: SynthConfig) -> Appearance:
    hue = rng.random()
    color1 = _hsv_to_rgb(hue, rng.uniform(0.45, 1.0), rng.uniform(0.55, 1.0))
    color2 = _hsv_to_rgb(
        (hue + rng.uniform(0.08, 0.5)) % 1.0, rng.uniform(0.3, 1.0), rng.uniform(0.2, 0.9)
    )
    return Appearance(
        shape=SHAPES[rng.integers(len(SHAPES))],
        aspect=float(rng.uniform(*cfg.actor_aspect)),
        color1=color1,
        color2=color2,
        texture=TEXTURES[rng.integers(len(TEXTURES))],
        frequency=float(rng.uniform(1.5, 3.5)),
        texture_angle=float(rng.uniform(0, np.pi)),
    )


def _stage_box(cfg: SynthConfig) -> tuple[float, float, float, float]:
    m = cfg.stage_margin
    return m * cfg.width, (1 - m) * cfg.width, m * cfg.height, (1 - m) * cfg.height


def sample_actor_track(
    rng: np.random.Generator, cfg: SynthConfig, motion: str, start: int, num_frames: int
) -> Track:
    """An actor doing ``motion`` (a key of MOTIONS) over ``num_frames`` frames from ``start``.

    Exposed so that tests and analyses can study trajectories without rendering.
    """
    return _actor_track(rng, cfg, MOTIONS[motion], start, num_frames)


def _actor_track(
    rng: np.random.Generator, cfg: SynthConfig, motion: Motion, start: int, n: int
) -> Track:
    """Starting state uniform over a whole folding period, so every frame's state is uniform."""
    look = _appearance(rng, cfg)
    x0, x1, y0, y1 = _stage_box(cfg)
    s0, s1 = np.log(np.asarray(cfg.actor_scale) * cfg.scale)
    move = _with_tempo(rng, motion, n, cfg)
    ux = x0 + rng.uniform(0, 2 * (x1 - x0))
    uy = y0 + rng.uniform(0, 2 * (y1 - y0))
    us = s0 + rng.uniform(0, 2 * (s1 - s0))
    theta = rng.uniform(0, 2 * np.pi) + move.dtheta
    log_size = _fold(us + move.dlog_size, s0, s1) if s1 > s0 else np.full(n, s0)
    return Track(
        start,
        _fold(ux + move.dx, x0, x1),
        _fold(uy + move.dy, y0, y1),
        np.exp(log_size),
        theta,
        look,
    )


def _with_tempo(rng: np.random.Generator, motion: Motion, n: int, cfg: SynthConfig) -> Displacement:
    """``motion`` over ``n`` frames, scaled by ``cfg.motion_scale`` and run on a varying clock.

    With ``tempo_variation`` 0 this draws exactly what ``motion`` alone draws (same bytes as
    before the knob existed). Otherwise the clock's speed is log-normal at knots every 12
    frames, interpolated and normalised to a mean of 1, and the motion is sampled at the
    warped times by linear interpolation of its values on whole frames.
    """
    if cfg.tempo_variation <= 0:
        return motion(rng, n, cfg.scale * cfg.motion_scale)
    knots = n // 12 + 2
    speed = np.interp(np.linspace(0, knots - 1, n), np.arange(knots),
                      np.exp(rng.normal(0.0, cfg.tempo_variation, size=knots)))
    clock = np.concatenate([[0.0], np.cumsum(speed[:-1] / speed.mean())])
    whole = motion(rng, int(np.ceil(clock[-1])) + 2, cfg.scale * cfg.motion_scale)
    grid = np.arange(len(whole.dx))
    return Displacement(*(np.interp(clock, grid, part) for part in whole))


def _distractor_track(rng: np.random.Generator, cfg: SynthConfig, num_frames: int) -> Track:
    """An actor look-alike that drifts at random (a smooth random walk), never doing a class motion."""
    track = _actor_track(rng, cfg, lambda r, n, s: _still(n), 0, num_frames)
    n = int(round(rng.uniform(0.5, 1.0) * num_frames))
    start = int(rng.integers(0, num_frames - n + 1))
    velocity = np.zeros((n, 2))
    step = rng.normal(0, 0.004 * cfg.scale, size=(n, 2))
    for k in range(1, n):  # Ornstein-Uhlenbeck velocity: drifts, turns, never periodic
        velocity[k] = 0.92 * velocity[k - 1] + step[k]
    if cfg.distractor_motion == "still":  # drawn all the same: the other objects stay as they were
        velocity[:] = 0.0
    x0, x1, y0, y1 = _stage_box(cfg)
    path = np.cumsum(velocity, axis=0)
    track.start = start
    track.cx = _fold(track.cx[0] + path[:, 0], x0, x1)
    track.cy = _fold(track.cy[0] + path[:, 1], y0, y1)
    track.size, track.theta = track.size[:n], track.theta[:n]
    return track


def _occluder_track(
    rng: np.random.Generator, cfg: SynthConfig, target: Track, num_frames: int
) -> Track:
    """A post sweeping sideways at constant speed, crossing ``target`` in the middle of its tube.

    Posts look unlike actors (grey, long and thin), as occluders in footage do.
    """
    half_long = rng.uniform(0.35, 0.6) * cfg.height
    half_thick = rng.uniform(0.04, 0.08) * cfg.scale
    gray, tint = rng.uniform(0.15, 0.6), rng.uniform(-0.08, 0.08, size=3)
    look = Appearance(
        shape="rectangle",
        aspect=half_long / half_thick,
        color1=np.clip(gray + tint, 0, 1),
        color2=np.clip(gray * rng.uniform(0.6, 0.9) + tint, 0, 1),
        texture=("shaded", "stripes")[rng.integers(2)],
        frequency=float(rng.uniform(3, 8)),
        texture_angle=0.0,
    )
    k = int(rng.integers(len(target.cx) // 4, 3 * len(target.cx) // 4 + 1))
    speed = _sign(rng) * rng.uniform(*cfg.occluder_speed) * cfg.scale
    return Track(
        start=0,
        cx=target.cx[k] + speed * (np.arange(num_frames) - (target.start + k)),
        cy=np.full(num_frames, target.cy[k] + rng.uniform(-0.2, 0.2) * cfg.height),
        size=np.full(num_frames, math.sqrt(half_long * half_thick)),
        theta=np.full(num_frames, np.pi / 2 + rng.uniform(-0.2, 0.2)),
        look=look,
    )


def _camera(rng: np.random.Generator, cfg: SynthConfig, num_frames: int) -> Camera:
    """A steady pan and a smooth zoom between random start and end settings."""
    t = np.linspace(0.0, 1.0, num_frames)
    ease = t * t * (3 - 2 * t)
    z0, z1 = rng.uniform(*cfg.camera_zoom, size=2)
    px = rng.uniform(-cfg.camera_pan, cfg.camera_pan, size=2) * cfg.width
    py = rng.uniform(-cfg.camera_pan, cfg.camera_pan, size=2) * cfg.height
    return Camera(
        zoom=z0 + (z1 - z0) * ease,
        pan_x=px[0] + (px[1] - px[0]) * t,
        pan_y=py[0] + (py[1] - py[0]) * t,
    )


# ---------------------------------------------------------------------------
# Rendering (vectorised over frames and pixels)
# ---------------------------------------------------------------------------


def _smooth_noise(
    rng: np.random.Generator,
    gy: np.ndarray,
    gx: np.ndarray,
    cycles: tuple[float, float],
    waves: int = 14,
) -> np.ndarray:
    """Sum of random plane waves, rescaled to [0, 1]: cheap smooth noise in pure numpy."""
    extent = max(gy.shape[0], gx.shape[1])
    freq = rng.uniform(*cycles, size=waves) / extent
    angle = rng.uniform(0, 2 * np.pi, size=waves)
    phase = rng.uniform(0, 2 * np.pi, size=waves)
    field_ = np.zeros((gy.shape[0], gx.shape[1]))
    for f, a, p in zip(freq, angle, phase, strict=True):
        field_ += np.cos(2 * np.pi * f * (gx * np.cos(a) + gy * np.sin(a)) + p) / (f * extent)
    return (field_ - field_.min()) / max(float(np.ptp(field_)), 1e-9)


def _background(rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, int, int]:
    """A textured canvas larger than the frame, and its (pad_y, pad_x) around the stage."""
    reach = (0.5 + cfg.camera_pan) / cfg.camera_zoom[
        0
    ] - 0.5  # how far past the stage the camera sees
    pad_y, pad_x = (int(math.ceil(max(reach, 0) * d)) + 2 for d in (cfg.height, cfg.width))
    gy = np.arange(cfg.height + 2 * pad_y, dtype=np.float64)[:, None]
    gx = np.arange(cfg.width + 2 * pad_x, dtype=np.float64)[None, :]
    hue = rng.random()
    dark = _hsv_to_rgb(hue, rng.uniform(0.05, 0.5), rng.uniform(0.15, 0.45))
    light = _hsv_to_rgb(
        (hue + rng.uniform(-0.15, 0.15)) % 1.0, rng.uniform(0.05, 0.5), rng.uniform(0.5, 0.85)
    )
    blend = _smooth_noise(rng, gy, gx, (0.7, 3.0))[..., None]
    canvas = dark + (light - dark) * blend
    pattern = int(rng.integers(4))
    if pattern == 1:  # stripes
        a, period = rng.uniform(0, np.pi), rng.uniform(6, 16)
        canvas += 0.08 * np.sin(2 * np.pi * (gx * np.cos(a) + gy * np.sin(a)) / period)[..., None]
    elif pattern == 2:  # tiles
        size = rng.uniform(8, 18)
        canvas += 0.06 * (((gx // size) + (gy // size)) % 2 - 0.5)[..., None]
    elif pattern == 3:  # blotches
        canvas += 0.12 * (_smooth_noise(rng, gy, gx, (4.0, 10.0)) > 0.55)[..., None]
    canvas += rng.normal(0, 0.025, size=canvas.shape)  # fine grain fixed to the world
    return np.clip(canvas, 0, 1).astype(np.float32), pad_y, pad_x


def _stage_grid(cfg: SynthConfig, camera: Camera, frames: slice) -> tuple[np.ndarray, np.ndarray]:
    """Stage coordinates of pixel centres: x as (n, 1, W), y as (n, H, 1)."""
    cx, cy = cfg.width / 2, cfg.height / 2
    z = camera.zoom[frames][:, None, None]
    xs = (np.arange(cfg.width) + 0.5)[None, None, :]
    ys = (np.arange(cfg.height) + 0.5)[None, :, None]
    qx = (xs - cx - camera.pan_x[frames][:, None, None]) / z + cx
    qy = (ys - cy - camera.pan_y[frames][:, None, None]) / z + cy
    return qx, qy


def _sample_background(
    canvas: np.ndarray, pad_y: int, pad_x: int, cfg: SynthConfig, camera: Camera
) -> np.ndarray:
    """Bilinear look-up of the canvas through the camera: (T, H, W, 3) float32.

    The camera only scales and shifts, so the look-up separates into rows then
    columns, frame by frame: several times faster than a 2-D gather.
    """
    qx, qy = _stage_grid(cfg, camera, slice(None))
    hc, wc = canvas.shape[:2]
    fx = np.clip(qx[:, 0, :] + pad_x - 0.5, 0, wc - 1.001)  # (T, W)
    fy = np.clip(qy[:, :, 0] + pad_y - 0.5, 0, hc - 1.001)  # (T, H)
    x0, y0 = fx.astype(np.int64), fy.astype(np.int64)
    wx, wy = (fx - x0).astype(np.float32), (fy - y0).astype(np.float32)
    out = np.empty((len(fx), cfg.height, cfg.width, 3), dtype=np.float32)
    for t in range(len(fx)):
        rows = canvas[y0[t]]
        rows = rows + (canvas[y0[t] + 1] - rows) * wy[t][:, None, None]
        left = rows[:, x0[t]]
        out[t] = left + (rows[:, x0[t] + 1] - left) * wx[t][None, :, None]
    return out


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership in the unit shape (half extents 1 along u and v)."""
    au, av = np.abs(u), np.abs(v)
    if shape == "ellipse":
        return u * u + v * v <= 1
    if shape == "rectangle":
        return (au <= 1) & (av <= 1)
    if shape == "diamond":
        return au + av <= 1
    if shape == "triangle":  # apex at u = 1, base at u = -1
        return (u >= -1) & (av <= (1 - u) / 2)
    if shape == "cross":
        return ((au <= 1) & (av <= CROSS_ARM)) | ((au <= CROSS_ARM) & (av <= 1))
    raise ValueError(f"unknown shape {shape!r}")


def _hull(shape: str) -> np.ndarray:
    """Vertices whose extent is the shape's extent (polygons only)."""
    a = CROSS_ARM
    return {
        "rectangle": [(1, 1), (1, -1), (-1, 1), (-1, -1)],
        "diamond": [(1, 0), (-1, 0), (0, 1), (0, -1)],
        "triangle": [(1, 0), (-1, 1), (-1, -1)],
        "cross": [(1, a), (1, -a), (-1, a), (-1, -a), (a, 1), (-a, 1), (a, -1), (-a, -1)],
    }[shape]


def _half_extents(track: Track) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact stage-space extent of the rotated shape around its centre: (left, right, top, bottom)."""
    a, b = track.half_axes
    cos, sin = np.cos(track.theta), np.sin(track.theta)
    if track.look.shape == "ellipse":
        hx = np.hypot(a * cos, b * sin)
        hy = np.hypot(a * sin, b * cos)
        return -hx, hx, -hy, hy
    hull = np.asarray(_hull(track.look.shape), dtype=np.float64)
    u, v = hull[:, 0][None, :], hull[:, 1][None, :]
    dx = a[:, None] * u * cos[:, None] - b[:, None] * v * sin[:, None]
    dy = a[:, None] * u * sin[:, None] + b[:, None] * v * cos[:, None]
    return dx.min(1), dx.max(1), dy.min(1), dy.max(1)


def _boxes(track: Track, camera: Camera, cfg: SynthConfig) -> np.ndarray:
    """Frame-space boxes (x1, y1, x2, y2) of the full extent, clipped to the frame."""
    f = track.frames
    z, cx, cy = camera.zoom[f], cfg.width / 2, cfg.height / 2
    left, right, top, bottom = _half_extents(track)
    x1 = (track.cx + left - cx) * z + cx + camera.pan_x[f]
    x2 = (track.cx + right - cx) * z + cx + camera.pan_x[f]
    y1 = (track.cy + top - cy) * z + cy + camera.pan_y[f]
    y2 = (track.cy + bottom - cy) * z + cy + camera.pan_y[f]
    return np.column_stack(
        [
            np.clip(x1, 0, cfg.width),
            np.clip(y1, 0, cfg.height),
            np.clip(x2, 0, cfg.width),
            np.clip(y2, 0, cfg.height),
        ]
    )


def _texture(look: Appearance, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """RGB of the covered pixels from their shape coordinates, so the texture moves with the object."""
    f, a = look.frequency, look.texture_angle
    if look.texture == "stripes":
        mix = (np.sin(np.pi * f * (u * np.cos(a) + v * np.sin(a))) > 0).astype(np.float64)
    elif look.texture == "checker":
        mix = (np.floor(f * u) + np.floor(f * v)) % 2
    elif look.texture == "rings":
        mix = (np.sin(np.pi * f * np.hypot(u, v)) > 0).astype(np.float64)
    elif look.texture == "dots":
        mix = (np.cos(np.pi * f * u) * np.cos(np.pi * f * v) > 0.3).astype(np.float64)
    else:  # shaded: a soft gradient across the body
        mix = 0.35 * (u + 1)
    rgb = look.color1 + (look.color2 - look.color1) * mix[:, None]
    return rgb * (0.88 + 0.12 * np.clip(-v, -1, 1))[:, None]


def _coverage(track: Track, camera: Camera, cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """Pixels whose centre lies inside the object, (n, H, W) bool, and their colours (k, 3)."""
    f = slice(track.start, track.start + len(track.cx))
    qx, qy = _stage_grid(cfg, camera, f)
    dx = qx - track.cx[:, None, None]
    dy = qy - track.cy[:, None, None]
    a, b = track.half_axes
    cos, sin = np.cos(track.theta)[:, None, None], np.sin(track.theta)[:, None, None]
    u = (dx * cos + dy * sin) / a[:, None, None]
    v = (dy * cos - dx * sin) / b[:, None, None]
    cover = _inside(track.look.shape, u, v)
    return cover, _texture(track.look, u[cover], v[cover]).astype(np.float32)


# ---------------------------------------------------------------------------
# A whole video
# ---------------------------------------------------------------------------


def video_id(index: int) -> str:
    return f"syn_{index:04d}"


def render_video(
    seed: int, index: int, label: int, config: SynthConfig | None = None
) -> SynthVideo:
    """Render video ``index`` of class ``config.classes[label]``; depends only on (seed, index, label, config)."""
    cfg = config or SynthConfig()
    rng = np.random.default_rng([seed, index, 1])
    num_frames = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
    camera = _camera(rng, cfg, num_frames)
    canvas, pad_y, pad_x = _background(rng, cfg)
    image = _sample_background(canvas, pad_y, pad_x, cfg, camera)

    motion = MOTIONS[cfg.classes[label]]
    actors = []
    for _ in range(int(rng.integers(cfg.actors[0], cfg.actors[1] + 1))):
        n = int(np.clip(round(rng.uniform(*cfg.tube_fraction) * num_frames), 2, num_frames - 2))
        start = int(rng.integers(1, num_frames - n))  # starts after frame 0, ends before the last
        actors.append(_placed_actor(rng, cfg, motion, start, n, actors))
    distractors = [
        _distractor_track(rng, cfg, num_frames)
        for _ in range(int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1)))
    ]
    occluders = [
        _occluder_track(rng, cfg, actors[int(rng.integers(len(actors)))], num_frames)
        for _ in range(int(rng.integers(cfg.occluders[0], cfg.occluders[1] + 1)))
    ]
    middle = [*actors, *distractors]
    layers = [middle[k] for k in rng.permutation(len(middle))] + occluders

    visible: dict[int, np.ndarray] = {}
    for track in layers:
        cover, colours = _coverage(track, camera, cfg)
        image[track.start : track.start + len(cover)][cover] = colours
        _hide_behind(visible, actors, track, cover)
        if any(track is a for a in actors):
            visible[id(track)] = cover.copy()

    frames = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    tubes = [Tube(label, a.frames, _boxes(a, camera, cfg), visible[id(a)]) for a in actors]
    return SynthVideo(video_id(index), label, frames, tubes, actors, camera)


ACTOR_TRIES = 100


def _placed_actor(rng: np.random.Generator, cfg: SynthConfig, motion: Motion, start: int, n: int,
                  others: list[Track]) -> Track:
    """An actor track that keeps ``cfg.actor_gap`` clear of ``others``; if no try of
    ACTOR_TRIES does (two wide circles in a short video), the try with the fewest frames
    too close."""
    if cfg.actor_gap is None:
        return _actor_track(rng, cfg, motion, start, n)
    best, fewest = None, math.inf
    for _ in range(ACTOR_TRIES):
        track = _actor_track(rng, cfg, motion, start, n)
        close = sum(int(_close_frames(track, other, cfg.actor_gap * cfg.scale).sum()) for other in others)
        if close < fewest:
            best, fewest = track, close
        if close == 0:
            break
    return best


def _close_frames(a: Track, b: Track, gap: float) -> np.ndarray:
    """Per frame both show, whether the stage-space boxes of ``a`` and ``b`` come within ``gap``."""
    lo, hi = max(a.start, b.start), min(a.start + len(a.cx), b.start + len(b.cx))
    if lo >= hi:
        return np.zeros(0, dtype=bool)
    (al, ar, at, ab), (bl, br, bt, bb) = _half_extents(a), _half_extents(b)
    ia, ib = slice(lo - a.start, hi - a.start), slice(lo - b.start, hi - b.start)
    apart_x = (a.cx[ia] + ar[ia] + gap <= b.cx[ib] + bl[ib]) | (b.cx[ib] + br[ib] + gap <= a.cx[ia] + al[ia])
    apart_y = (a.cy[ia] + ab[ia] + gap <= b.cy[ib] + bt[ib]) | (b.cy[ib] + bb[ib] + gap <= a.cy[ia] + at[ia])
    return ~(apart_x | apart_y)


def _hide_behind(
    visible: dict[int, np.ndarray], actors: list[Track], front: Track, cover: np.ndarray
) -> None:
    """Remove from every actor drawn so far the pixels that ``front`` now covers."""
    for actor in actors:
        mask = visible.get(id(actor))
        if mask is None:
            continue
        lo, hi = (
            max(actor.start, front.start),
            min(actor.start + len(mask), front.start + len(cover)),
        )
        if lo < hi:
            mask[lo - actor.start : hi - actor.start] &= ~cover[lo - front.start : hi - front.start]


# ---------------------------------------------------------------------------
# Labels, splits and the dataset folder
# ---------------------------------------------------------------------------


def assign_labels(num_videos: int, num_classes: int, seed: int) -> np.ndarray:
    """Class of each video: as balanced as possible, order shuffled by the seed."""
    rng = np.random.default_rng([seed, 0, 0])
    classes = rng.permutation(num_classes)  # which classes miss out when videos < classes
    return rng.permutation(classes[np.arange(num_videos) % num_classes])


def assign_splits(labels: np.ndarray, test_fraction: float, seed: int) -> list[str]:
    """'train'/'test' per video, stratified by class: evenly spaced picks along a class-sorted order.

    With two or more videos and a positive fraction at least one video is a
    test video and at least one a training video.
    """
    n = len(labels)
    rng = np.random.default_rng([seed, 0, 1])
    order = np.lexsort((rng.random(n), labels))
    n_test = int(round(n * test_fraction))
    if n >= 2 and test_fraction > 0:
        n_test = min(max(n_test, 1), n - 1)
    splits = ["train"] * n
    for k in range(n_test):
        splits[int(order[int((k + 0.5) * n / n_test)])] = "test"
    return splits


def generate(
    out_dir: str | Path, num_videos: int = 24, seed: int = 0, config: SynthConfig | None = None,
    prefix: str = "", repeat: int = 1,
) -> Path:
    """Write a synthetic dataset folder in the native format (``load_dataset("native", out_dir)``).

    ``out_dir`` must be new, empty, or hold an earlier synthetic dataset (which
    is replaced); any other non-empty folder is refused rather than mixed into.
    ``prefix`` goes before every video id (``b_syn_0000``): ids depend only on the
    index, so datasets of two seeds need different prefixes to join one pool.
    Without one the output is what it always was. ``repeat`` > 1 lists every video that
    many times (ids ``<id>_r001``...), each copy reading the same file with the same tubes:
    a pool of thousands of videos at the cost of generating a few (``sparselabel synth --repeat``).
    """
    cfg = config or SynthConfig()
    if not _is_int(num_videos) or num_videos < 1:
        raise SparseLabelError(f"number of videos must be a positive integer, got {num_videos!r}")
    if not _is_int(seed) or seed < 0:
        raise SparseLabelError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", prefix):
        raise SparseLabelError(f"video id prefix may hold only letters, digits, _ and -, got {prefix!r}")
    if not _is_int(repeat) or repeat < 1:
        raise SparseLabelError(f"repeat must be a positive integer, got {repeat!r}")
    num_videos, seed = int(num_videos), int(seed)
    root = _prepare(Path(out_dir))
    marker = {"generator": GENERATOR, "seed": seed, "num_videos": num_videos, "config": asdict(cfg)}
    if prefix:
        marker["prefix"] = prefix
    (root / MARKER_FILE).write_text(json.dumps(marker, indent=1, sort_keys=True))
    labels = assign_labels(num_videos, len(cfg.classes), seed)
    splits = assign_splits(labels, cfg.test_fraction, seed)
    tubes: dict[str, list[Tube]] = {}
    # write_native walks the videos once, writing each before the next; a generator keeps one
    # video's frames in memory at a time instead of the whole dataset's.
    videos = _video_entries(seed, labels, splits, cfg, tubes, prefix)
    write_native(root, cfg.name, list(cfg.classes), videos, tubes, codec=cfg.codec)  # type: ignore[arg-type]
    if repeat > 1:
        marker["repeat"] = int(repeat)
        (root / MARKER_FILE).write_text(json.dumps(marker, indent=1, sort_keys=True))
        _list_copies(root, int(repeat))
    return root


def _list_copies(root: Path, repeat: int) -> None:
    """Rewrite dataset.json with ``repeat`` entries per video; copies share the video file and
    link its masks (the loader finds masks by id)."""
    path = root / ANNOTATION_FILE
    doc = json.loads(path.read_text())
    copies = [f"_r{k:03d}" for k in range(1, repeat)]
    doc["videos"] += [{**v, "id": v["id"] + c} for v in list(doc["videos"]) for c in copies]
    doc["tubes"] += [{**t, "video": t["video"] + c} for t in list(doc["tubes"]) for c in copies]
    for masks in list((root / "masks").glob("*.npz")) if (root / "masks").is_dir() else []:
        for c in copies:
            os.link(masks, masks.with_name(masks.stem + c + ".npz"))
    path.write_text(json.dumps(doc))


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _video_entries(
    seed: int, labels: np.ndarray, splits: list[str], cfg: SynthConfig, tubes: dict[str, list[Tube]],
    prefix: str = "",
) -> Iterator[dict]:
    for index, label in enumerate(labels):
        video = render_video(seed, index, int(label), cfg)
        tubes[prefix + video.id] = video.tubes
        yield {
            "id": prefix + video.id,
            "frames": video.frames,
            "fps": cfg.fps,
            "label": video.label,
            "split": splits[index],
        }


def _prepare(root: Path) -> Path:
    """Make ``root`` ready: create it, or clear the files of an earlier synthetic dataset in it."""
    if root.exists() and not root.is_dir():
        raise SparseLabelError("exists and is not a folder", root)
    if root.is_dir() and any(root.iterdir()):
        if not (root / MARKER_FILE).is_file():
            raise SparseLabelError(
                "folder is not empty and holds no synthetic dataset; choose a new or empty folder",
                root,
            )
        for stale in [
            root / ANNOTATION_FILE,
            root / MARKER_FILE,
            *root.glob("videos/*syn_*.mp4"),  # with or without an id prefix
            *root.glob("masks/*syn_*.npz"),
        ]:
            stale.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    return root
