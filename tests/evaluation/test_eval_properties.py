"""Property tests (hypothesis) of frame_map and video_map, in both conventions.

Skipped when hypothesis is not installed; the seeded tests in
test_eval_frame_map.py / test_eval_video_map.py check the same properties on
fixed random cases.
"""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")
from hypothesis import given, settings  # noqa: E402

from sparselabel.evaluation import frame_map, video_map  # noqa: E402

CONVENTIONS = ("act", "voc")
VIDEOS = ["a", "b", "c"]
SETTINGS = settings(max_examples=40, deadline=None)

coord = st.integers(0, 40)
box = st.tuples(coord, coord, st.integers(1, 30), st.integers(1, 30)).map(lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3]))
gt_box = st.tuples(st.integers(0, 2), st.integers(1, 4), st.integers(0, 2), box)  # video, frame, label, box


@st.composite
def frame_case(draw):
    gts = draw(st.lists(gt_box, min_size=1, max_size=12, unique=True))
    noise = draw(st.lists(gt_box, max_size=12))
    gttubes = {v: {} for v in VIDEOS}
    for vi, frame, label, b in gts:
        gttubes[VIDEOS[vi]].setdefault(label, []).append(np.array([[frame, *b]], dtype=float))
    rows = [[vi, f, lab, 0.0, *b] for vi, f, lab, b in gts + noise]
    scores = draw(st.lists(st.floats(0, 1), min_size=len(rows), max_size=len(rows), unique=True))
    dets = np.array(rows, dtype=float)
    dets[:, 3] = scores
    return gttubes, dets, len(gts)


@given(frame_case(), st.sampled_from(CONVENTIONS))
@SETTINGS
def test_frame_perfect_detections_give_one(case, conv):
    gttubes, dets, n_true = case
    assert frame_map(gttubes, dets[:n_true], VIDEOS, 0.5, conv)[0] == 1.0


@given(frame_case(), st.sampled_from(CONVENTIONS), st.integers(0, 2**32 - 1), st.sampled_from([0.3, 0.5, 0.7]))
@SETTINGS
def test_frame_shuffle_invariance(case, conv, seed, th):
    gttubes, dets, _ = case
    perm = np.random.default_rng(seed).permutation(len(dets))
    assert frame_map(gttubes, dets[perm], VIDEOS, th, conv) == frame_map(gttubes, dets, VIDEOS, th, conv)


@given(frame_case(), st.sampled_from(CONVENTIONS), gt_box)
@SETTINGS
def test_frame_low_false_positive_never_raises_ap(case, conv, extra):
    gttubes, dets, _ = case
    vi, f, lab, b = extra
    _, before = frame_map(gttubes, dets, VIDEOS, 0.5, conv)
    more = np.vstack([dets, [[vi, f, lab, -1.0, *b]]])
    _, after = frame_map(gttubes, more, VIDEOS, 0.5, conv)
    assert all(after[k] <= before[k] + 1e-12 for k in before)


@given(frame_case(), st.sampled_from([0.5, 2.0, 3.0, 7.5]))
@SETTINGS
def test_frame_voc_scale_invariance(case, factor):
    gttubes, dets, _ = case
    scaled_gt = {v: {lab: [np.column_stack([t[:, :1], t[:, 1:] * factor]) for t in ts] for lab, ts in per.items()} for v, per in gttubes.items()}
    scaled = dets.copy()
    scaled[:, 4:] *= factor
    _, p1 = frame_map(gttubes, dets, VIDEOS, 0.5, "voc")
    _, p2 = frame_map(scaled_gt, scaled, VIDEOS, 0.5, "voc")
    assert p1 == pytest.approx(p2)


@st.composite
def tube(draw):
    start = draw(st.integers(1, 10))
    n = draw(st.integers(1, 8))
    b = np.array(draw(box), dtype=float)
    drift = np.array(draw(st.lists(st.integers(-2, 2), min_size=2, max_size=2)), dtype=float)
    rows = [[start + k, *(b + np.r_[drift, drift] * k)] for k in range(n)]
    return np.array(rows)


@st.composite
def video_case(draw):
    gts = draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), tube()), min_size=1, max_size=6))
    noise = draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), tube()), max_size=6))
    # no two identical ground-truth tubes of one class in one video (voc would count the twin's detection as a FP)
    seen, unique_gts = set(), []
    for vi, lab, t in gts:
        key = (vi, lab, t.tobytes())
        if key not in seen:
            seen.add(key)
            unique_gts.append((vi, lab, t))
    gttubes = {v: {} for v in VIDEOS}
    for vi, lab, t in unique_gts:
        gttubes[VIDEOS[vi]].setdefault(lab, []).append(t)
    items = unique_gts + noise
    scores = draw(st.lists(st.floats(0, 1), min_size=len(items), max_size=len(items), unique=True))
    dets = {}
    for (vi, lab, t), s in zip(items, scores, strict=True):
        dets.setdefault(lab, []).append((VIDEOS[vi], s, np.column_stack([t, np.ones(len(t))])))
    perfect = {}
    for (vi, lab, t), s in zip(unique_gts, scores, strict=False):
        perfect.setdefault(lab, []).append((VIDEOS[vi], s, np.column_stack([t, np.ones(len(t))])))
    return gttubes, dets, perfect


@given(video_case(), st.sampled_from(CONVENTIONS))
@SETTINGS
def test_video_perfect_detections_give_one(case, conv):
    gttubes, _, perfect = case
    for th in (0.2, 0.5, 0.9):
        assert video_map(gttubes, perfect, th, conv)[0] == 1.0


@given(video_case(), st.sampled_from(CONVENTIONS), st.integers(0, 2**32 - 1))
@SETTINGS
def test_video_shuffle_invariance(case, conv, seed):
    gttubes, dets, _ = case
    rng = np.random.default_rng(seed)
    shuffled = {k: [v[i] for i in rng.permutation(len(v))] for k, v in reversed(list(dets.items()))}
    assert video_map(gttubes, shuffled, 0.3, conv) == video_map(gttubes, dets, 0.3, conv)


@given(video_case(), st.sampled_from(CONVENTIONS), st.integers(0, 2), st.integers(0, 2), tube())
@SETTINGS
def test_video_low_false_positive_never_raises_ap(case, conv, vi, lab, extra):
    gttubes, dets, _ = case
    _, before = video_map(gttubes, dets, 0.3, conv)
    more = {k: list(v) for k, v in dets.items()}
    more.setdefault(lab, []).append((VIDEOS[vi], -1.0, np.column_stack([extra, np.ones(len(extra))])))
    _, after = video_map(gttubes, more, 0.3, conv)
    assert all(after[k] <= before[k] + 1e-12 for k in before)


@given(video_case(), st.sampled_from([0.5, 2.0, 3.0, 7.5]))
@SETTINGS
def test_video_voc_scale_invariance(case, factor):
    gttubes, dets, _ = case

    def scale(t):
        out = np.array(t, dtype=float)
        out[:, 1:5] *= factor
        return out

    sgt = {v: {lab: [scale(t) for t in ts] for lab, ts in per.items()} for v, per in gttubes.items()}
    sdets = {k: [(v, s, scale(t)) for v, s, t in ds] for k, ds in dets.items()}
    assert video_map(gttubes, dets, 0.3, "voc")[1] == pytest.approx(video_map(sgt, sdets, 0.3, "voc")[1])
