import json
import pickle

import numpy as np

from sparselabel.cli import main
from sparselabel.data import load_dataset
from sparselabel.data.datasets.act_pkl import write_act_pkl


class Exploit:
    def __reduce__(self):
        return (print, ("owned",))


def test_cli_evaluates_external_pickles_and_refuses_unsafe_ones(tmp_path, tiny_dataset, capsys):
    dataset = load_dataset("native", tiny_dataset)
    gt = tmp_path / "tiny-GT.pkl"
    write_act_pkl(dataset, gt)
    test_videos = dataset.split("test")
    gttubes = dataset.act_gttubes(test_videos)
    rows = [[i, r[0], label, 0.9, *r[1:]] for i, v in enumerate(test_videos)
            for label, tubes in gttubes[v].items() for t in tubes for r in t]
    (tmp_path / "frame.pkl").write_bytes(pickle.dumps(np.array(rows, dtype=np.float64)))
    tubes = {label: [(v, 0.9, np.column_stack([t, np.ones(len(t))])) for v in test_videos
                     for t in gttubes[v].get(label, [])] for label in range(2)}
    (tmp_path / "tube.pkl").write_bytes(pickle.dumps(tubes))
    out = tmp_path / "results.json"
    code = main(["evaluate", "--gt", str(gt), "--frame-dets", str(tmp_path / "frame.pkl"),
                 "--tube-dets", str(tmp_path / "tube.pkl"), "--json", str(out)])
    assert code == 0
    assert "100.00" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["frame_map"]["0.5"]["mAP"] == 1.0 and results["video_map"]["0.75"]["mAP"] == 1.0

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Exploit()))
    assert main(["evaluate", "--gt", str(gt), "--frame-dets", str(tmp_path / "evil.pkl")]) == 1
    err = capsys.readouterr().err
    assert "evil.pkl" in err and "refusing" in err and "owned" not in err
