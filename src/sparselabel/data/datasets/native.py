"""sparselabel's own dataset format (what ``sparselabel synth`` writes).

    DIR/dataset.json      annotations (schema below)
    DIR/videos/<id>.mp4   one video file per video (any format PyAV reads)
    DIR/masks/<id>.npz    optional: per-tube visible masks, key "tube_<k>",
                          bool (n_frames_of_tube, H, W)

dataset.json::

    {"format": "sparselabel-dataset/1", "name": str, "classes": [str],
     "videos": [{"id", "path" (relative to DIR), "num_frames", "fps",
                 "width", "height", "label" (class index), "split"}],
     "tubes":  [{"video", "label", "frames": [0-based ints],
                 "boxes": [[x1, y1, x2, y2], ...]}]}

Tubes are listed per video in a stable order; tube k of a video is the k-th
tube of that video in the list, and its masks are ``tube_<k>``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from sparselabel.data.dataset import Dataset, Video, register_loader
from sparselabel.data.tubes import MaskFile, Tube
from sparselabel.data.video import write_video
from sparselabel.errors import AnnotationError
from sparselabel.jsonio import finite_number, parse_json, whole_number

FORMAT = "sparselabel-dataset/1"
ANNOTATION_FILE = "dataset.json"


@register_loader("native")
def load_native(path: Path, with_masks: bool = True) -> Dataset:
    """Read a dataset folder (or its dataset.json) in sparselabel's own format."""
    if not path.is_dir() and path.name != ANNOTATION_FILE:
        raise AnnotationError(f"expected a dataset folder or its {ANNOTATION_FILE}", path)
    root = path if path.is_dir() else path.parent
    ann_path = root / ANNOTATION_FILE
    try:
        text = ann_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AnnotationError(f"cannot read ({exc.strerror})", ann_path) from exc
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"not UTF-8 text ({exc})", ann_path) from exc
    doc = parse_json(text, ann_path)
    if not isinstance(doc, dict):
        raise AnnotationError(f"expected a JSON object with {FORMAT!r} keys, found a {type(doc).__name__}", ann_path)
    if doc.get("format") != FORMAT:
        raise AnnotationError(f"format is {doc.get('format')!r}, expected {FORMAT!r}", ann_path)
    try:
        videos: dict[str, Video] = {}
        for k, v in enumerate(doc["videos"]):
            if not isinstance(v, dict):
                raise AnnotationError(f"videos[{k}] is not an object", ann_path)
            if v["id"] in videos:
                raise AnnotationError(f"video id {v['id']!r} is listed twice", ann_path)
            what = f"video {v['id']!r}"
            videos[v["id"]] = Video(
                id=v["id"], path=_inside(root, v["path"], what, ann_path),
                num_frames=whole_number(v["num_frames"], f"{what} num_frames", ann_path),
                fps=finite_number(v["fps"], f"{what} fps", ann_path),
                width=whole_number(v["width"], f"{what} width", ann_path),
                height=whole_number(v["height"], f"{what} height", ann_path),
                label=whole_number(v["label"], f"{what} label", ann_path))
        splits: dict[str, list[str]] = {}
        for v in doc["videos"]:
            splits.setdefault(v.get("split", "train"), []).append(v["id"])
        tubes: dict[str, list[Tube]] = {vid: [] for vid in videos}
        for t in doc["tubes"]:
            if t["video"] not in videos:
                raise AnnotationError(f"tube for unknown video {t['video']!r}", ann_path)
            tubes[t["video"]].append(Tube(int(t["label"]), np.array(t["frames"]), np.array(t["boxes"])))
    except (KeyError, TypeError, ValueError) as exc:
        raise AnnotationError(f"malformed annotation ({type(exc).__name__}: {exc})", ann_path) from exc
    if with_masks:
        _attach_masks(root, tubes)
    return Dataset(doc["name"], list(doc["classes"]), videos, tubes, splits, source=ann_path)


def _inside(root: Path, relative: object, what: str, ann_path: Path) -> Path:
    """A video's path, which must stay inside the dataset folder."""
    if not isinstance(relative, str) or not relative:
        raise AnnotationError(f"{what}: path must be a non-empty string", ann_path)
    path = root / relative
    if not path.resolve().is_relative_to(root.resolve()):
        raise AnnotationError(f"{what}: path {relative!r} leads outside the dataset folder", ann_path)
    return path


def _attach_masks(root: Path, tubes: dict[str, list[Tube]]) -> None:
    """Point each tube at its masks in ``masks/<id>.npz``; only the arrays' headers are read."""
    for vid, video_tubes in tubes.items():
        mask_path = root / "masks" / f"{vid}.npz"
        try:
            present = mask_path.is_file()
        except OSError:  # an id the file system cannot hold as a name: validate() names it
            present = False
        if not present:
            continue
        shapes = npz_shapes(mask_path)
        for k, tube in enumerate(video_tubes):
            if f"tube_{k}" in shapes:
                tube.masks = MaskFile(mask_path, f"tube_{k}", shapes[f"tube_{k}"])
                if shapes[f"tube_{k}"][0] != len(tube.frames):
                    raise AnnotationError(f"tube_{k} has {shapes[f'tube_{k}'][0]} masks for {len(tube.frames)} frames",
                                          mask_path)


HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """{name: shape} of the arrays of an .npz, from their .npy headers (nothing decompressed
    beyond them); an array that is not plain booleans or numbers is refused."""
    try:
        with zipfile.ZipFile(path) as archive:
            shapes = {}
            for member in archive.namelist():
                with archive.open(member) as f:
                    read_header = HEADER_READERS.get(np.lib.format.read_magic(f))
                    if read_header is None:
                        raise ValueError(f"{member}: unknown .npy version")
                    shape, _, dtype = read_header(f)  # the header only
                if dtype.hasobject or dtype.kind not in "biuf":
                    raise AnnotationError(f"{member}: masks must be booleans, not {dtype}", path)
                shapes[member.removesuffix(".npy")] = tuple(shape)
            return shapes
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise AnnotationError(f"not a readable .npz of masks ({exc})", path) from exc


def write_native(
    root: str | Path,
    name: str,
    classes: list[str],
    videos: list[dict],
    tubes: dict[str, list[Tube]],
    codec: str = "libx264",
) -> Path:
    """Write a dataset folder. Each entry of ``videos`` is {id, frames (T,H,W,3 uint8), fps, label, split}."""
    root = Path(root)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "name": name, "classes": list(classes), "videos": [], "tubes": []}
    for v in videos:
        frames = v["frames"]
        rel = f"videos/{v['id']}.mp4"
        write_video(root / rel, frames, fps=v["fps"], codec=codec)
        doc["videos"].append({
            "id": v["id"], "path": rel, "num_frames": int(len(frames)), "fps": float(v["fps"]),
            "width": int(frames.shape[2]), "height": int(frames.shape[1]),
            "label": int(v["label"]), "split": v.get("split", "train"),
        })
        video_tubes = tubes.get(v["id"], [])
        masks = {}
        for k, tube in enumerate(video_tubes):
            doc["tubes"].append({
                "video": v["id"], "label": int(tube.label), "frames": [int(f) for f in tube.frames],
                "boxes": [[round(float(c), 3) for c in box] for box in tube.boxes],
            })
            if tube.masks is not None:
                masks[f"tube_{k}"] = tube.masks
        if masks:
            (root / "masks").mkdir(exist_ok=True)
            _save_npz_deterministic(root / "masks" / f"{v['id']}.npz", masks)
    (root / ANNOTATION_FILE).write_text(json.dumps(doc, indent=1))
    return root


def _save_npz_deterministic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed stamps the current time into the zip; fix it so bytes depend only on data."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
