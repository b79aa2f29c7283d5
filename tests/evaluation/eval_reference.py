"""Slow, obviously-correct loop implementations of the metrics, for cross-checks.

Written from the definitions in docs/evaluation.md, one detection at a time,
the way ACT.py and MultiSports' evaluation loop over detections.
"""

import numpy as np


def box_iou(a, b, conv):
    plus = 1.0 if conv == "act" else 0.0
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + plus)
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + plus)
    inter = w * h
    area_a = (a[2] - a[0] + plus) * (a[3] - a[1] + plus)
    area_b = (b[2] - b[0] + plus) * (b[3] - b[1] + plus)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def tube_iou(t1, t2, conv):
    plus = 1.0 if conv == "act" else 0.0
    tmin, tmax = max(t1[0, 0], t2[0, 0]), min(t1[-1, 0], t2[-1, 0])
    if tmax < tmin:
        return 0.0
    union = max(t1[-1, 0], t2[-1, 0]) - min(t1[0, 0], t2[0, 0]) + plus
    tiou = 1.0 if union == 0 else (tmax - tmin + plus) / union
    b1 = {int(r[0]): r[1:5] for r in t1}
    b2 = {int(r[0]): r[1:5] for r in t2}
    shared = [f for f in b1 if f in b2 and tmin <= f <= tmax]
    if not shared:
        return 0.0
    return tiou * float(np.mean([box_iou(b1[f], b2[f], conv) for f in shared]))


def ap_from_flags(flags, num_gt, conv):
    tp = fp = 0
    prec, rec = [], []
    for f in flags:
        tp += f
        fp += not f
        prec.append(tp / (tp + fp))
        rec.append(tp / num_gt)
    if conv == "act":
        p, r = [1.0, *prec], [0.0, *rec]
        return sum((r[i] - r[i - 1]) * (p[i] + p[i - 1]) / 2 for i in range(1, len(p)))
    p, r = [0.0, *prec, 0.0], [0.0, *rec, 1.0]
    for i in range(len(p) - 2, -1, -1):
        p[i] = max(p[i], p[i + 1])
    return sum((r[i] - r[i - 1]) * p[i] for i in range(1, len(r)) if r[i] != r[i - 1])


def match(candidates, ious, used, th, conv):
    """Index of the matched ground truth or None (candidates: indices into used)."""
    if not candidates:
        return None
    if conv == "act":
        free = [c for c in candidates if not used[c]]
        if not free:
            return None
        best = max(free, key=lambda c: (ious[c], -c))
        return best if ious[best] >= th else None
    best = max(candidates, key=lambda c: (ious[c], -c))
    return best if ious[best] >= th and not used[best] else None


def frame_ap(gttubes, dets, videos, th, conv):
    out = {}
    labels = sorted({lab for v in videos for lab, tubes in gttubes[v].items() if sum(len(t) for t in tubes)})
    for c in labels:
        gt = {}
        for vi, v in enumerate(videos):
            for t in gttubes[v].get(c, []):
                for row in t:
                    gt.setdefault((vi, int(row[0])), []).append(row[1:5])
        num_gt = sum(len(g) for g in gt.values())
        used = {k: [False] * len(g) for k, g in gt.items()}
        mine = [d for d in dets if int(d[2]) == c]
        mine.sort(key=lambda d: -d[3])
        flags = []
        for d in mine:
            k = (int(d[0]), int(d[1]))
            if k not in gt:
                flags.append(False)
                continue
            ious = [box_iou(g, d[4:8], conv) for g in gt[k]]
            j = match(list(range(len(ious))), ious, used[k], th, conv)
            if j is not None:
                used[k][j] = True
            flags.append(j is not None)
        out[c] = ap_from_flags(flags, num_gt, conv)
    return out


def video_ap(gttubes, tube_dets, th, conv):
    out = {}
    labels = sorted({lab for per in gttubes.values() for lab, tubes in per.items() if tubes})
    for c in labels:
        gt = {v: list(per.get(c, [])) for v, per in gttubes.items() if per.get(c)}
        num_gt = sum(len(g) for g in gt.values())
        used = {v: [False] * len(g) for v, g in gt.items()}
        mine = sorted(tube_dets.get(c, []), key=lambda d: -d[1])
        flags = []
        for v, _, t in mine:
            if v not in gt:
                flags.append(False)
                continue
            ious = [tube_iou(g, t, conv) for g in gt[v]]
            j = match(list(range(len(ious))), ious, used[v], th, conv)
            if j is not None:
                used[v][j] = True
            flags.append(j is not None)
        out[c] = ap_from_flags(flags, num_gt, conv)
    return out
