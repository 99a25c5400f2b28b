"""The user's model commands: `lightfer predict` (emotions of faces in photos, folders, videos,
a camera), `lightfer models` (what is shipped) and `lightfer evaluate` (accuracy on a split)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from lightfer_utils import CLASS_NAMES
from lightfer_utils.cli.common import command, labels_parent
from lightfer_utils.runtime.faces import ALIGNMENTS, DEFAULT_DETECTOR, DEFAULT_MIN_FACE, DEFAULT_MIN_SCORES, DETECTORS
from lightfer_utils.runtime.media import DEFAULT_MAX_PIXELS
from lightfer_utils.runtime.shipped_models import DEFAULT_MODEL

MAX_WORKERS = max(64, os.cpu_count() or 1)  # each worker holds its own face stage and model


def _predict(args: argparse.Namespace) -> int:
    from lightfer_utils.runtime import shipped_models
    from lightfer_utils.runtime.faces import FaceStage
    from lightfer_utils.runtime.safe_text import terminal_text
    from lightfer_utils.runtime.tagging import (STDOUT, ResultWriter, check_outputs, expand_inputs, face_table,
                                                no_face_hint, predict_files)

    if not args.paths and args.webcam is None:
        raise ValueError("give image, folder or video paths, or --webcam")
    if not (math.isfinite(args.max_megapixels) and args.max_megapixels > 0):
        raise ValueError(f"--max-megapixels must be a finite positive number, got {args.max_megapixels}")
    if not 1 <= args.workers <= MAX_WORKERS:
        raise ValueError(f"--workers must be between 1 and {MAX_WORKERS}, got {args.workers}")
    if not 1 <= args.every <= 1_000_000:
        raise ValueError(f"--every must be between 1 and 1,000,000 frames, got {args.every}")
    csv_path, json_path, annotate_dir = (Path(p) if p else None for p in (args.csv, args.json, args.annotate))
    inputs = expand_inputs(args.paths)
    check_outputs(csv_path, json_path, annotate_dir, inputs, force=args.force, resume=args.resume, make_dirs=args.mkdir)
    predictor = shipped_models.load(args.model)
    stage = FaceStage(min_face=args.min_face, full_detect_every=args.full_detect_every, detector=args.detector,
                      alignment=args.alignment, min_score=args.min_score)
    if args.webcam is not None:
        return _webcam(args.webcam, predictor, stage)
    writer = ResultWriter(csv_path, json_path, resume=args.resume)
    try:
        run = predict_files(inputs, predictor, stage, every=args.every, annotate_dir=annotate_dir, writer=writer,
                            crops=args.crops, max_pixels=int(args.max_megapixels * 1e6),
                            on_skip=lambda reason: print(f"skipped: {terminal_text(reason)}", file=sys.stderr),
                            workers=args.workers)
    finally:
        writer.close()
    to_stdout = STDOUT in (csv_path, json_path)  # the rows are on standard output: the table goes to stderr
    print(face_table(run.rows) if run.rows else "no faces found", file=sys.stderr if to_stdout else sys.stdout)
    for name in run.files_without_faces:
        print(f"no face: {terminal_text(name)}", file=sys.stderr)
    outputs = terminal_text(" and ".join("standard output" if p == STDOUT else str(p) for p in (csv_path, json_path)
                                         if p)) or "no file (pass --csv or --json to keep them)"
    resumed = f", {run.already_done} already in the outputs" if run.already_done else ""
    print(f"{len(run.rows)} faces with {predictor.runtime} ({predictor.path.name}) from {run.done} of {run.total} inputs"
          f"{resumed}; {len(run.problems)} skipped, {len(run.files_without_faces)} without a face; written to {outputs}",
          file=sys.stderr)
    if run.interrupted:
        print(f"lightfer: interrupted: the {run.done} finished inputs are kept in {outputs}; continue with the same "
              "command and --resume", file=sys.stderr)
        return 130
    hint = no_face_hint(run, args.min_face, args.crops)
    if hint:
        print(f"lightfer: {hint}", file=sys.stderr)
    return 1 if args.strict and (run.problems or run.files_without_faces) else 0


def _webcam(index: int, predictor, stage) -> int:
    import cv2

    from lightfer_utils.runtime.faces import classify_faces

    camera = cv2.VideoCapture(index)
    if not camera.isOpened():
        raise FileNotFoundError(f"no camera at index {index}")
    frame = 0
    try:
        while True:
            ok, image = camera.read()
            if not ok:
                break
            frame_rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # the detector takes colour (HOG makes it gray)
            for i, (face, p) in enumerate(classify_faces(stage, predictor, frame_rgb)):
                print(f"frame {frame} face {i} {face.box}: {CLASS_NAMES[int(p.argmax())]} {p.max():.2f}")
            frame += 1
    except KeyboardInterrupt:
        pass
    finally:
        camera.release()
    return 0


def _models(args: argparse.Namespace) -> int:
    from lightfer_utils.runtime import shipped_models

    print(f"{'model':<32} {'parameters':>10} {'PublicTest':>10} {'PrivateTest':>11}  default format (all formats)")
    for row in shipped_models.summary():
        accuracies = [f"{row[split] * 100:.2f} %" if row[split] is not None else "-" for split in ("PublicTest", "PrivateTest")]
        print(f"{row['name']:<32} {row['parameters']:>10,} {accuracies[0]:>10} {accuracies[1]:>11}  "
              f"{row['default_format']} ({row['formats']})")
    print(f"\nuse one with --model NAME[:FORMAT]; files and cards in {shipped_models.models_dir()}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from lightfer_utils.cli.common import load_labelled
    from lightfer_utils.runtime import shipped_models
    from lightfer_utils.training.evaluate import evaluate, flip_tta, mean_predictor
    from lightfer_utils.training.train import TrainingRunPredictor

    members = [TrainingRunPredictor(Path(model)) if Path(model).is_dir() else shipped_models.load(model)
               for model in args.models]
    predict = mean_predictor(members)
    split = load_labelled(args).split(args.split)
    if len(split) == 0:
        raise ValueError(f"the data holds no {args.split} faces: nothing to evaluate")
    result = evaluate(predict, split.images, split.labels)
    described = " + ".join(f"{member.path} ({member.runtime})" for member in members)
    ensemble = f"mean probability of {len(members)} models: " if len(members) > 1 else ""
    print(f"{ensemble}{described} on {args.split}, {result.count} faces:")
    print(json.dumps(result.summary(), indent=2))
    if args.tta:
        print(f"flip TTA accuracy: {evaluate(flip_tta(predict), split.images, split.labels).accuracy:.4f}")
    print(result.confusion.to_string())
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    predict = command(commands, "predict", "emotions of every face in images, folders (recursive) and videos",
                      ("lightfer predict photo.jpg",
                       "lightfer predict photos/ --csv faces.csv --annotate annotated/ --mkdir",
                       "lightfer predict clip.mp4 --every 5 --full-detect-every 10 --json faces.jsonl",
                       "lightfer predict party.jpg --min-score 0.7 --csv faces.csv   # fewer, surer faces",
                       "lightfer predict photo.jpg --detector hog   # the paper's detector",
                       "lightfer predict photos/ --csv - | grep happy",
                       "lightfer predict crops/ --crops --model light_fer_net_deep:tflite_int8"), _predict)
    predict.add_argument("paths", nargs="*", help="images, folders (searched recursively) and videos")
    predict.add_argument("--model", help="model file (.onnx, .tflite, .keras, .engine) or shipped model NAME[:FORMAT] "
                         f"(see `lightfer models`); default: {DEFAULT_MODEL}")
    predict.add_argument("--every", type=int, default=1, help="videos: classify every Nth frame")
    predict.add_argument("--min-face", type=int, default=DEFAULT_MIN_FACE, metavar="PX",
                         help=f"smallest face side searched for, in pixels (default {DEFAULT_MIN_FACE}: the detector's "
                         "window at full resolution; larger is faster, e.g. 160 for a webcam close-up; smaller finds "
                         "smaller faces, slower)")
    predict.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR,
                         help="the face detector: blazeface (MediaPipe's CNN: about 3x faster end to end, starts in a "
                         "fraction of the time, finds smaller faces) or hog (dlib's, the paper's; fewer false faces); "
                         "docs/predict.md compares them")
    predict.add_argument("--alignment", choices=ALIGNMENTS, help="the eye points that level the face: eyes "
                         "(BlazeFace's keypoints; its default) or dlib68 (dlib's 68-point predictor; hog's default)")
    predict.add_argument("--min-score", type=float, help="the detector's score threshold (default: its own, "
                         f"{', '.join(f'{d} {s:g}' for d, s in DEFAULT_MIN_SCORES.items())}); the score is a column "
                         "of --csv/--json")
    predict.add_argument("--crops", action="store_true",
                         help="the images already are face crops (e.g. FER2013's 48x48): classify each whole image, no detection")
    predict.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_PIXELS / 1e6,
                         help="refuse larger images and video frames before decoding them")
    predict.add_argument("--full-detect-every", type=int, default=0, metavar="K",
                         help="videos and webcam: search the whole frame only every K frames (and when a face is lost), "
                         "in between only around the last faces; 0 (default): the whole frame every time, as the paper")
    predict.add_argument("--csv", help="write one row per face here, as each input finishes ('-': standard output)")
    predict.add_argument("--json", help="write JSON Lines here, as each input finishes: one record per face, per "
                         "input without a face and per skipped input ('-': standard output)")
    predict.add_argument("--annotate", help="folder for annotated copies (box, emotion, probability); names keep "
                         "the path below the folder given")
    predict.add_argument("--force", action="store_true", help="replace existing --csv/--json files and annotated copies")
    predict.add_argument("--resume", action="store_true", help="continue --csv/--json: skip the inputs they already hold")
    predict.add_argument("--mkdir", action="store_true", help="create missing output folders")
    predict.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                         help=f"inputs processed at once, 1 to {MAX_WORKERS} (default: the CPU count, here %(default)s; "
                         "a single input runs without a pool); results keep the input order")
    predict.add_argument("--strict", action="store_true", help="exit 1 if any input was unreadable or had no face")
    predict.add_argument("--webcam", type=int, nargs="?", const=0, help="classify camera frames (index, default 0)")

    command(commands, "models", "the shipped models: name, parameters, accuracy, formats (from their cards)",
            ("lightfer models",), _models)

    score = command(commands, "evaluate", "accuracy of a model file (any format) or training run, or of several by "
                    "their mean probability, on a split",
                    ("lightfer evaluate light_fer_net_deep --data /path/to/fer2013",
                     "lightfer evaluate models/light_fer_net_deep_int8.tflite --split PublicTest --tta",
                     "lightfer evaluate light_fer_net_deep light_fer_net_v5 --data /path/to/fer2013   # their mean"),
                    _evaluate, tensorflow=True, parents=(labels_parent(),))
    score.add_argument("models", nargs="+", metavar="model", help="a shipped name, a model file or a training run directory")
    score.add_argument("--split", default="PrivateTest", choices=("Training", "PublicTest", "PrivateTest"),
                       help="the split scored")
    score.add_argument("--tta", action="store_true", help="also report horizontal-flip TTA, separately")
