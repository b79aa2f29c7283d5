"""``sparselabel experiment CONFIG.yaml``: a grid of loops, resumable, in parallel, summarised.

CONFIG.yaml::

    name: strategies                 # results go to experiments/<name>/ (or --out)
    settings:                        # config overrides shared by every run
      dataset.path: data/synthetic
      model.input_size: [64, 64]
    grid:                            # every combination is one workspace and one loop
      selection.strategy: [apu, random]
      train.loss: [mgw]
      seed: [0, 1, 2]
    workers: 2                       # loops run side by side (each gets cores / workers threads)

Each run lives in ``<out>/runs/<key=value,...>/`` and is a normal workspace, so a
killed experiment continues where each loop stopped. Runs that differ only in how
frames are selected train cycle 0 once (the others copy its model). The summary groups runs that
differ only in ``seed`` and reports, per cycle, the mean and standard deviation of
the annotated percentage, f-mAP@0.5, v-mAP@0.5 and dense-label recovery.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sparselabel.config import load_config
from sparselabel.errors import SparseLabelError
from sparselabel.loop.cycle import loop_started, share_first_model
from sparselabel.loop.workspace import LEDGER_FILE, Workspace
from sparselabel.train.trainer import FINAL


@dataclass
class Experiment:
    name: str
    settings: dict[str, Any]
    grid: dict[str, list[Any]]
    workers: int = 1
    runs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Experiment:
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise SparseLabelError(f"cannot read experiment ({exc})", path) from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("grid"), dict) or not doc["grid"]:
            raise SparseLabelError("an experiment needs a non-empty 'grid' mapping", path)
        unknown = set(doc) - {"name", "settings", "grid", "workers"}
        if unknown:
            raise SparseLabelError(f"unknown keys {sorted(unknown)} (known: name, settings, grid, workers)", path)
        return cls.create(str(doc.get("name", Path(path).stem)), dict(doc.get("settings") or {}), doc["grid"],
                          int(doc.get("workers", 1)))

    @classmethod
    def create(cls, name: str, settings: dict[str, Any], grid: dict[str, Any], workers: int = 1) -> Experiment:
        """Every combination of ``grid``, each checked as a valid config before anything runs."""
        grid = {k: v if isinstance(v, list) else [v] for k, v in grid.items()}
        exp = cls(name, settings, grid, workers)
        exp.runs = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
        for run in exp.runs:
            load_config(None, exp.overrides(run))
        return exp

    def overrides(self, run: dict[str, Any]) -> list[str]:
        return [f"{k}={_yaml_value(v)}" for k, v in {**self.settings, **run}.items()]


def _yaml_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def run_name(run: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in run.items()).replace("/", "_")


def run_experiment(exp: Experiment, out: Path) -> dict:
    """Create every run's workspace, run (or resume) their loops, and summarise."""
    out.mkdir(parents=True, exist_ok=True)
    roots = [_prepare(exp, run, out / "runs" / run_name(run)) for run in exp.runs]
    threads = max(1, (os.cpu_count() or 1) // max(1, exp.workers))
    with ThreadPoolExecutor(max_workers=max(1, exp.workers)) as pool:
        failures = [f for f in pool.map(lambda root: _run_loop(root, threads, roots), roots) if f]
    if failures:
        raise SparseLabelError("; ".join(failures), out)
    summary = summarise(exp, roots)
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    (out / "results.md").write_text(format_summary(summary))
    return summary


def _prepare(exp: Experiment, run: dict[str, Any], root: Path) -> Path:
    if not (root / LEDGER_FILE).exists():
        Workspace.create(root, load_config(None, exp.overrides(run))).close()
    return root


def _run_loop(root: Path, threads: int, siblings: Sequence[Path] = ()) -> str | None:
    """Run one loop in its own process (its own torch threads, killed cleanly on Ctrl-C).

    Runs that differ only in how frames are selected train the same cycle-0 model: one
    trained by a sibling run already is copied instead (``share_first_model``).
    """
    with Workspace.open(root) as _ws:
        started = loop_started(_ws)
        for sibling in siblings:
            if sibling != root and (sibling / "runs" / "cycle-000" / FINAL).exists():
                with Workspace.open(sibling) as trained:
                    if share_first_model(trained, _ws):
                        break
    args = [sys.executable, "-m", "sparselabel", "loop", str(root)] + (["--resume"] if started else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    (root / "loop.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        return f"{root.name}: exit {done.returncode}: {done.stderr.strip().splitlines()[-1] if done.stderr else ''}"
    return None


def summarise(exp: Experiment, roots: Sequence[Path]) -> dict:
    """Mean and std over seeds, per group of runs that differ only in seed, per cycle."""
    from sparselabel.loop.history import history

    groups: dict[str, list[list]] = {}
    for run, root in zip(exp.runs, roots, strict=True):
        key = run_name({k: v for k, v in run.items() if k != "seed"}) or "all"
        with Workspace.open(root) as ws:
            groups.setdefault(key, []).append(history(ws).records)
    out = {}
    for key, runs in groups.items():
        cycles = min(len(r) for r in runs)
        out[key] = [_stats([r[c] for r in runs]) | {"cycle": c, "seeds": len(runs)} for c in range(cycles)]
    return {"name": exp.name, "grid": exp.grid, "groups": out}


def _stats(records: list) -> dict:
    def mean_std(values: list[float | None]) -> list[float | None]:
        values = [v for v in values if v is not None]
        return [float(np.mean(values)), float(np.std(values))] if values else [None, None]

    return {"percent": mean_std([r.percent for r in records]),
            "f_map": mean_std([r.f_map for r in records]),
            "v_map": mean_std([r.v_map for r in records]),
            "pool_model": mean_std([(r.recovery or {}).get("model") for r in records]),
            "pool_interp": mean_std([(r.recovery or {}).get("interpolation") for r in records])}


def format_summary(summary: dict) -> str:
    def cell(ms: list) -> str:
        return "-" if ms[0] is None else f"{100 * ms[0]:.2f} ± {100 * ms[1]:.2f}"

    lines = [f"# {summary['name']}", "", "mean ± std over seeds, in %; f-mAP / v-mAP at IoU 0.5 on the test split",
             "(on the whole pool where a workspace has no test split); pool columns: f-mAP@0.5 on the",
             "pool's unannotated frames.", "",
             "| group | cycle | seeds | % frames | f-mAP | v-mAP | pool: model | pool: interpolation |",
             "|---|---|---|---|---|---|---|---|"]
    for key, rows in summary["groups"].items():
        for r in rows:
            lines.append(f"| {key} | {r['cycle']} | {r['seeds']} | {r['percent'][0]:.2f} | {cell(r['f_map'])} | "
                         f"{cell(r['v_map'])} | {cell(r['pool_model'])} | {cell(r['pool_interp'])} |")
    return "\n".join(lines) + "\n"
