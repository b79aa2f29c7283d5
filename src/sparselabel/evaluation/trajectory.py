"""Video classes from how the detected actors move: a classifier of linked tubes' trajectories.

The network's classifier reads the class from an 8-frame clip's features, which also hold
the actors' colours and textures; with a pool of a hundred videos it learns those (what
each pool video looks like) rather than the action (benchmarks/RESULTS.md, issue 12). A
linked tube holds what the action is made of over its whole length: where the box goes,
how fast, whether it grows, shrinks or turns. This module describes each tube by a few
scale-free kinematic statistics of its boxes (``tube_features``), fits a multinomial
logistic regression on the pool's tubes, whose video-level classes the user gave, and
scores every video by the length-and-score-weighted mean of its tubes' class
probabilities. The video's class scores become the normalised product of the network's
and the trajectory's (two independent experts: appearance and motion).

Pure numpy and deterministic: full-batch gradient descent from zero weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

LAGS = (1, 4, 8)  # frames between the boxes compared: steps, then the motion over longer spans


def tube_features(tube: np.ndarray) -> np.ndarray:
    """Kinematic statistics of a tube (n, 6: frame, x1, y1, x2, y2, score), free of its size.

    Per lag k: mean |displacement| in x and in y, |net displacement| per step in x and in y
    (in units of the box's mean size), mean |change| of log size and of log aspect; then the
    spread of log size and log aspect, the extent of the path in x and y, and log length.
    """
    cx, cy = (tube[:, 1] + tube[:, 3]) / 2, (tube[:, 2] + tube[:, 4]) / 2
    w = np.maximum(tube[:, 3] - tube[:, 1], 1e-3)
    h = np.maximum(tube[:, 4] - tube[:, 2], 1e-3)
    log_size, log_aspect = 0.5 * np.log(w * h), 0.5 * np.log(w / h)
    scale = float(np.exp(log_size).mean())
    features: list[float] = []
    for lag in LAGS:
        lag = min(lag, len(tube) - 1)
        dx, dy = (cx[lag:] - cx[:-lag]) / scale, (cy[lag:] - cy[:-lag]) / scale
        features += [np.abs(dx).mean(), np.abs(dy).mean(), abs(dx.mean()), abs(dy.mean()),
                     np.abs(log_size[lag:] - log_size[:-lag]).mean(), np.abs(log_aspect[lag:] - log_aspect[:-lag]).mean()]
    features += [log_size.std(), log_aspect.std(), np.ptp(cx) / scale, np.ptp(cy) / scale, np.log(len(tube))]
    return np.asarray(features, dtype=np.float64)


@dataclass
class TrajectoryClassifier:
    """Standardised tube features -> softmax(x W + b) over the classes."""

    mean: list[float]
    std: list[float]
    weights: list[list[float]]  # (features, classes)
    bias: list[float]

    def proba(self, features: np.ndarray) -> np.ndarray:
        x = (np.atleast_2d(features) - np.asarray(self.mean)) / np.asarray(self.std)
        return _softmax(x @ np.asarray(self.weights) + np.asarray(self.bias))

    def video_scores(self, tubes: Sequence[np.ndarray]) -> np.ndarray | None:
        """Class probabilities of a video: its tubes' probabilities weighted by length x mean
        score (a long, confident tube says more than a flicker); None without a tube."""
        if not tubes:
            return None
        weight = np.array([len(t) * t[:, 5].mean() for t in tubes])
        probs = self.proba(np.stack([tube_features(t) for t in tubes]))
        return (weight[:, None] * probs).sum(0) / max(weight.sum(), 1e-9)

    def to_json(self) -> dict:
        return asdict(self)


def fit_trajectory_classifier(features: np.ndarray, labels: np.ndarray, num_classes: int, l2: float = 1e-2,
                              steps: int = 2000, lr: float = 0.5) -> TrajectoryClassifier:
    """Multinomial logistic regression (L2 on the weights) by full-batch gradient descent."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    x = (features - mean) / std
    target = np.eye(num_classes)[labels]
    weights, bias = np.zeros((x.shape[1], num_classes)), np.zeros(num_classes)
    for _ in range(steps):
        grad = (_softmax(x @ weights + bias) - target) / len(x)
        weights -= lr * (x.T @ grad + l2 * weights)
        bias -= lr * grad.sum(0)
    return TrajectoryClassifier(mean.tolist(), std.tolist(), weights.tolist(), bias.tolist())


def combined_scores(network: np.ndarray, trajectory: np.ndarray | None, with_network: bool = True) -> np.ndarray:
    """The normalised product of the network's and the trajectory's class probabilities; the
    trajectory's alone without ``with_network``; the network's where there is no tube."""
    if trajectory is None:
        return network
    if not with_network:
        return trajectory.astype(network.dtype)
    product = np.clip(network, 1e-6, None) * np.clip(trajectory, 1e-6, None)
    return (product / product.sum()).astype(network.dtype)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
