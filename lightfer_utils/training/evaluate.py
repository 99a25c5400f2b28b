"""Evaluation shared by every notebook: accuracy, per-class recall, the paper's Table 1 confusion
layout, macro-F1, expected calibration error; flip test-time augmentation kept separate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lightfer_utils import CLASS_NAMES, NUM_CLASSES
from lightfer_utils.runtime.predictor import model_input

Predictor = Callable[[np.ndarray], np.ndarray]  # float32 [N, 48, 48, 1] faces (0..255) -> [N, 7]


@dataclass
class Evaluation:
    accuracy: float
    macro_f1: float
    ece: float
    per_class_recall: dict[str, float]
    confusion: pd.DataFrame  # rows: true class, columns: predicted, each row sums to 1
    count: int

    def summary(self) -> dict[str, float | int]:
        return {"accuracy": round(self.accuracy, 4), "macro_f1": round(self.macro_f1, 4),
                "ece": round(self.ece, 4), "count": self.count,
                **{f"recall_{k}": round(v, 4) for k, v in self.per_class_recall.items()}}


def flip_tta(predict: Predictor) -> Predictor:
    """Average of the predictions for each face and its mirror image."""
    def predict_tta(faces: np.ndarray) -> np.ndarray:
        faces = model_input(faces)
        return (predict(faces) + predict(faces[:, :, ::-1, :])) / 2

    return predict_tta


def mean_predictor(members: list[Predictor]) -> Predictor:
    """The mean probability of several models (an ensemble, e.g. a distillation teacher)."""
    if not members:
        raise ValueError("an ensemble needs at least one model")

    def predict(faces: np.ndarray) -> np.ndarray:
        return sum(member(faces) for member in members) / len(members)

    return predict


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def evaluate_probabilities(probabilities: np.ndarray, labels: np.ndarray) -> Evaluation:
    if len(probabilities) != len(labels):
        raise ValueError(f"{len(probabilities)} predictions for {len(labels)} labels")
    predicted = probabilities.argmax(axis=1)
    counts = confusion_matrix(labels, predicted)
    support = counts.sum(axis=1)
    recall = np.divide(np.diag(counts), support, out=np.zeros(NUM_CLASSES), where=support > 0)
    predicted_counts = counts.sum(axis=0)
    precision = np.divide(np.diag(counts), predicted_counts, out=np.zeros(NUM_CLASSES), where=predicted_counts > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(NUM_CLASSES), where=(precision + recall) > 0)
    present = support > 0
    normalised = np.divide(counts, support[:, None], out=np.zeros_like(counts, dtype=float), where=support[:, None] > 0)
    table = pd.DataFrame(normalised.round(3), index=pd.Index(CLASS_NAMES, name="true"),
                         columns=pd.Index(CLASS_NAMES, name="predicted"))
    return Evaluation(
        accuracy=float((predicted == labels).mean()),
        macro_f1=float(f1[present].mean()),
        ece=expected_calibration_error(probabilities, labels),
        per_class_recall={name: float(r) for name, r in zip(CLASS_NAMES, recall)},
        confusion=table,
        count=len(labels),
    )


def evaluate(predict: Predictor, faces: np.ndarray, labels: np.ndarray) -> Evaluation:
    return evaluate_probabilities(predict(faces), labels)


def count_parameters(model) -> dict[str, int]:
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(sum(np.prod(w.shape) for w in model.weights))
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


def count_flops(model) -> int:
    """Floating-point operations of one forward pass on one face (a multiply-add counts 2),
    from TensorFlow's profiler on the frozen inference graph."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    tf.get_logger().setLevel("ERROR")  # the v1 profiler logs deprecation warnings
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    profile = tf.compat.v1.profiler.profile(graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options)
    return int(profile.total_float_ops)


def parity_table(predictors: dict, faces: np.ndarray, labels: np.ndarray, reference: str) -> tuple[pd.DataFrame, dict]:
    """Per predictor: accuracy, argmax agreement with the `reference` predictor, largest
    probability difference. Returns the table and the probabilities."""
    if reference not in predictors:
        raise ValueError(f"reference format {reference!r} is not among {sorted(predictors)}")
    probabilities = {name: predict(faces) for name, predict in predictors.items()}
    base = probabilities[reference]
    rows = [{"format": name, "runtime": predictors[name].runtime,
             "accuracy": round(evaluate_probabilities(p, labels).accuracy, 4),
             f"argmax_agreement_vs_{reference}": round(float((p.argmax(1) == base.argmax(1)).mean()), 4),
             "max_abs_dp": float(np.abs(p - base).max())} for name, p in probabilities.items()]
    return pd.DataFrame(rows).set_index("format"), probabilities


def compare_formats(
    files: dict[str, Path],
    faces: np.ndarray,
    labels: np.ndarray,
    reference: str,
    latency_iterations: int = 200,
    throughput_batch: int = 64,
    rounds: int = 3,
) -> pd.DataFrame:
    """One row per model file: size, parity with the `reference` format (see `parity_table`),
    batch-1 latency (ms, p50) and batch-N throughput (faces/s), every file timed together
    (`benchmark.interleaved_timings`, median of `rounds`)."""
    from lightfer_utils.runtime.benchmark import interleaved_timings
    from lightfer_utils.runtime.predictor import load_predictor

    predictors = {name: load_predictor(path) for name, path in files.items()}
    table, _ = parity_table(predictors, faces, labels, reference)
    del predictors  # timing loads each file again, one at a time
    table.insert(1, "file", [Path(files[n]).name for n in table.index])
    table.insert(2, "size_kb", [round(Path(files[n]).stat().st_size / 1024, 1) for n in table.index])
    loaders = {name: (lambda path=path: load_predictor(path)) for name, path in files.items()}
    timings = interleaved_timings(loaders, faces, (1, throughput_batch), iterations=latency_iterations, rounds=rounds)
    for name, timing in timings.items():
        table.loc[name, "latency_b1_p50_ms"] = round(timing[1]["latency_p50_ms"], 3)
        table.loc[name, f"throughput_b{throughput_batch}_faces_per_s"] = round(timing[throughput_batch]["faces_per_second"], 1)
    return table
