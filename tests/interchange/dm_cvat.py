"""Run by test_ix_datumaro.py under a Python that has datumaro (not a sparselabel dependency).

    python dm_cvat.py read FOLDER          datumaro reads FOLDER as CVAT; prints its items as JSON
    python dm_cvat.py write SPEC.json OUT  datumaro writes SPEC's tracks as CVAT for video (use_track)

Items are printed / given as {"frame": int, "boxes": [{"track", "label", "box": [x1, y1, x2, y2],
"keyframe", "outside"}]}; SPEC is {"subset", "labels", "width", "height", "items": [...]}.
Imports nothing from sparselabel: it runs in another virtual environment.
"""

from __future__ import annotations

import json
import sys

import datumaro as dm
import numpy as np
from datumaro.components.annotation import AnnotationType, Bbox


def read(folder: str) -> list[dict]:
    dataset = dm.Dataset.import_from(folder, "cvat")
    names = [c.name for c in dataset.categories()[AnnotationType.label]]
    items = []
    for item in dataset:
        boxes = [{"track": int(a.attributes["track_id"]), "label": names[a.label],
                  "box": [a.x, a.y, a.x + a.w, a.y + a.h], "keyframe": bool(a.attributes.get("keyframe")),
                  "outside": bool(a.attributes.get("outside"))}
                 for a in item.annotations if a.type == AnnotationType.bbox]
        items.append({"frame": int(item.attributes["frame"]), "boxes": boxes})
    return sorted(items, key=lambda i: i["frame"])


def write(spec: dict, out: str) -> None:
    labels, height, width = spec["labels"], spec["height"], spec["width"]
    items = []
    for entry in spec["items"]:
        annotations = [Bbox(x1, y1, x2 - x1, y2 - y1, label=labels.index(b["label"]),
                            attributes={"track_id": b["track"], "keyframe": b["keyframe"], "outside": b["outside"],
                                        "occluded": False})
                       for b in entry["boxes"] for x1, y1, x2, y2 in [b["box"]]]
        items.append(dm.DatasetItem(id=f"frame_{entry['frame']:06d}", subset=spec["subset"],
                                    media=dm.Image.from_numpy(np.zeros((height, width, 3), np.uint8)),
                                    attributes={"frame": entry["frame"]}, annotations=annotations))
    dataset = dm.Dataset.from_iterable(items, categories=labels)
    dataset.export(out, "cvat", use_track=True, save_media=False)


if __name__ == "__main__":
    if sys.argv[1] == "read":
        print(json.dumps(read(sys.argv[2])))
    else:
        with open(sys.argv[2]) as fh:
            write(json.load(fh), sys.argv[3])
