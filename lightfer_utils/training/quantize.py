"""Post-training quantisation: the paper's Eq. 2-4, and the TFLite and ONNX Runtime formats.

Eq. 2-4 (Pascual et al. 2022): M_w = max|W|, S_b = (2^b - 1) / (2 M_w),
W_b = round(S_b W) bounded by +-(2^b - 1)/2. Integers inside that bound are +-(2^(b-1) - 1), so
the weight of largest magnitude (S_b M_w = 127.5 for b = 8) is clipped to 127: half a step of
error that TFLite avoids by using S = 127 / M_w. The two scales differ by 0.4 %, so the
dequantised weights agree within one quantisation step (tested).

Every converted file keeps the package's model contract: float32 [N, 48, 48, 1] raw faces in,
7 float32 probabilities out; integer formats quantise and dequantise at their edges.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from lightfer_utils.training.export import export_onnx, precision_of
from lightfer_utils.runtime.quiet import native_stderr_hidden

TFLITE_KINDS = ("fp32", "fp16", "dynamic", "int8")
FORMAT_FILES = {"keras_fp32": "model.keras", "onnx_fp32": "model.onnx", "onnx_fp16": "model_fp16.onnx",
                "onnx_int8": "model_int8.onnx", **{f"tflite_{kind}": f"model_{kind}.tflite" for kind in TFLITE_KINDS}}


@dataclass
class QuantizedTensor:
    values: np.ndarray  # integers in [-(2^(b-1) - 1), 2^(b-1) - 1]
    scale: np.ndarray  # S_b, broadcastable against values
    bits: int

    def dequantize(self) -> np.ndarray:
        return (self.values / self.scale).astype(np.float32)

    @property
    def step(self) -> np.ndarray:
        """The quantisation step 1 / S_b (per channel when per-channel)."""
        return 1.0 / self.scale


def symmetric_quantize(weights: np.ndarray, bits: int, axis: int | None = None) -> QuantizedTensor:
    """Eq. 2-4, per tensor (axis=None) or per channel (one M_w for each index along `axis`)."""
    if not 2 <= bits <= 32:
        raise ValueError(f"bits must be in 2..32, got {bits}")
    w = np.asarray(weights, dtype=np.float64)
    if axis is None:
        max_abs = np.abs(w).max(initial=0.0)
    else:
        others = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
        max_abs = np.abs(w).max(axis=others, keepdims=True, initial=0.0)
    half_range = (2.0 ** bits - 1) / 2
    scale = np.where(max_abs > 0, half_range / np.where(max_abs > 0, max_abs, 1.0), 1.0)  # all-zero tensor: S = 1
    limit = np.floor(half_range)
    values = np.clip(np.rint(w * scale), -limit, limit)
    dtype = np.int8 if bits <= 8 else np.int16 if bits <= 16 else np.int32
    return QuantizedTensor(values=values.astype(dtype), scale=np.asarray(scale), bits=bits)


# --------------------------------------------------------------------------- TFLite


def convert_tflite(model, kind: str, representative_faces: np.ndarray | None = None) -> bytes:
    """FP32, FP16 (float16 weights), dynamic-range (int8 weights) or full-integer INT8 TFLite.

    INT8 calibrates activation ranges on `representative_faces`, which must come from Training.
    """
    import tensorflow as tf

    if kind not in TFLITE_KINDS:
        raise ValueError(f"unknown TFLite kind {kind!r}; expected one of {', '.join(TFLITE_KINDS)}")
    tf.get_logger().setLevel("ERROR")  # the converter logs its temporary SavedModel paths
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if kind == "int8":
        if representative_faces is None or len(representative_faces) == 0:
            raise ValueError("INT8 conversion needs representative faces (from Training)")
        faces = np.asarray(representative_faces, dtype=np.float32).reshape(-1, 1, 48, 48, 1)

        def representative() -> Iterator[list[np.ndarray]]:
            for face in faces:
                yield [face]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # The converter's C++ side prints its settings and MLIR passes; with float input and output the
    # INT8 model quantizes in its graph, so it needs none of the input statistics it warns about.
    with native_stderr_hidden(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected", UserWarning)
        return converter.convert()


def tflite_int8_weights(path: str | os.PathLike[str]) -> list[dict]:
    """The int8 constant tensors a TFLite file stores, with their scales and quantised axis."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    found = []
    for detail in interpreter.get_tensor_details():
        quant = detail["quantization_parameters"]
        if detail["dtype"] != np.int8 or len(detail["shape"]) < 2 or not len(quant["scales"]):
            continue
        try:
            values = interpreter.get_tensor(detail["index"])
        except ValueError:  # activations have no data outside an invocation
            continue
        found.append({"name": detail["name"], "values": values.copy(), "scales": quant["scales"].copy(),
                      "axis": int(quant["quantized_dimension"])})
    return found


def compare_with_tflite(weights: np.ndarray, stored: dict, bits: int = 8) -> dict[str, float]:
    """Eq. 2-4 applied to `weights` (already in TFLite's layout) vs the int8 tensor TFLite stored.

    Returns the largest difference of the dequantised values in units of TFLite's step.
    """
    per_channel = len(stored["scales"]) > 1
    ours = symmetric_quantize(weights, bits, axis=stored["axis"] if per_channel else None)
    shape = [1] * weights.ndim
    if per_channel:
        shape[stored["axis"]] = -1
    tflite_scale = stored["scales"].reshape(shape)
    theirs = stored["values"] * tflite_scale
    difference = np.abs(ours.dequantize() - theirs) / tflite_scale
    return {"max_difference_in_steps": float(difference.max()),
            "same_integer_fraction": float((ours.values == stored["values"]).mean()),
            "per_channel": per_channel}


# --------------------------------------------------------------------------- ONNX Runtime


def onnx_fp16(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """FP16 weights and compute; float32 input and output kept (keep_io_types)."""
    import onnx
    from onnxconverter_common import float16

    with warnings.catch_warnings():  # one per weight under 1e-7, set to 1e-7: the FP16 parity check measures that
        warnings.filterwarnings("ignore", "the float32 number .* will be truncated to", UserWarning)
        model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return Path(target)


class _FaceReader:
    """onnxruntime.quantization CalibrationDataReader over calibration faces, one at a time."""

    def __init__(self, input_name: str, faces: np.ndarray):
        self.batches = iter(np.asarray(faces, dtype=np.float32).reshape(-1, 1, 48, 48, 1))
        self.input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        face = next(self.batches, None)
        return None if face is None else {self.input_name: face}


def onnx_int8(source: str | os.PathLike[str], target: str | os.PathLike[str], calibration_faces: np.ndarray) -> Path:
    """Static INT8 in QDQ format: uint8 activations calibrated on Training faces, per-channel int8
    weights with `reduce_range` (7-bit), which ONNX Runtime recommends on CPUs without VNNI, like
    this one (AVX2 only). Without it the shipped model's argmax agreed with FP32 on only 79-81 %
    of PrivateTest faces here (S8S8 or U8S8); with it, 98.3 % (1,500 PrivateTest faces)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration_faces) == 0:
        raise ValueError("INT8 calibration needs faces (from Training)")
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        input_name = onnx.load(str(prepared)).graph.input[0].name
        quantize_static(str(prepared), str(target), _FaceReader(input_name, calibration_faces),
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return Path(target)


# --------------------------------------------------------------------------- the notebook's steps


def equation_error_table(model, bit_widths: tuple[int, ...] = (4, 8, 16)) -> "pd.DataFrame":
    """Eq. 2-4 on every convolution and dense kernel of `model`: the mean and largest error of the
    dequantised weights relative to each tensor's max |W|, per tensor and per output channel."""
    import pandas as pd

    rows = []
    for layer in model.layers:
        if not hasattr(layer, "kernel"):
            continue
        kernel = layer.get_weights()[0]
        for bits in bit_widths:
            for mode, axis in (("per-tensor", None), ("per-channel", -1)):
                q = symmetric_quantize(kernel, bits, axis=axis)
                error = np.abs(q.dequantize() - kernel) / max(float(np.abs(kernel).max()), 1e-12)
                rows.append({"layer": layer.name, "bits": bits, "mode": mode, "weights": kernel.size,
                             "mean_relative_error": float(error.mean()), "max_relative_error": float(error.max())})
    table = pd.DataFrame(rows)
    summary = table.groupby(["bits", "mode"]).apply(
        lambda g: pd.Series({"layers": len(g), "weights": int(g["weights"].sum()),
                             "mean_relative_error": float(np.average(g["mean_relative_error"], weights=g["weights"])),
                             "max_relative_error": float(g["max_relative_error"].max())}), include_groups=False)
    return summary


def export_formats(model, out_dir: str | os.PathLike[str], calibration_faces: np.ndarray) -> dict[str, Path]:
    """Keras FP32, ONNX FP32/FP16/INT8 and TFLite FP32/FP16/dynamic/INT8 files of `model`.

    Refuses to replace files from an earlier run in `out_dir`.
    """

    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    files = {name: target / filename for name, filename in FORMAT_FILES.items()}
    existing = [p.name for p in files.values() if p.exists()]
    if existing:
        raise FileExistsError(f"{target} already holds {', '.join(existing)}; use a new run directory")
    model.save(files["keras_fp32"])
    export_onnx(model, files["onnx_fp32"])
    onnx_fp16(files["onnx_fp32"], files["onnx_fp16"])
    onnx_int8(files["onnx_fp32"], files["onnx_int8"], calibration_faces)
    for kind in TFLITE_KINDS:
        files[f"tflite_{kind}"].write_bytes(convert_tflite(model, kind, calibration_faces))
    return files


ALLOWED_POINTS_LOST = {"fp16": 0.3, "int8": 1.0, "dynamic": 1.0}  # issue targets; FP32 formats: none


def targets_table(formats: "pd.DataFrame", reference: str = "keras_fp32") -> "pd.DataFrame":
    """Accuracy points each format loses against `reference`, the loss allowed for its precision
    and whether it stays within it."""

    lost = ((formats.loc[reference, "accuracy"] - formats["accuracy"]) * 100).round(2)
    allowed = [ALLOWED_POINTS_LOST.get(precision_of(name), 0.0) for name in formats.index]
    targets = formats[["accuracy"]].assign(points_lost=lost, allowed=allowed)
    targets["met"] = targets["points_lost"] <= targets["allowed"]
    return targets


def head_vs_tflite(model, tflite_int8: str | os.PathLike[str], layer: str = "probabilities") -> dict[str, float]:
    """Eq. 2-4 on the dense head (which TFLite stores unfused) vs the INT8 file's weights."""
    kernel = model.get_layer(layer).get_weights()[0].T  # Keras (in, out) -> TFLite (out, in)
    candidates = [t for t in tflite_int8_weights(tflite_int8) if t["values"].shape == kernel.shape]
    if len(candidates) != 1:
        raise ValueError(f"expected one int8 tensor of shape {kernel.shape} in {tflite_int8}, found {len(candidates)}")
    return compare_with_tflite(kernel, candidates[0])


def calibration_faces(data, count: int, seed: int) -> np.ndarray:
    """`count` faces drawn at random from the Training split only (never the test splits)."""
    from lightfer_utils.data import SPLITS

    training = data.images[data.usage == SPLITS.index("Training")]
    if len(training) == 0:
        raise ValueError("no Training faces to calibrate on")
    chosen = np.random.default_rng(seed).choice(len(training), size=min(count, len(training)), replace=False)
    return training[np.sort(chosen)].astype(np.float32)


def quantize_chosen_variant(
    run_dir: str | os.PathLike[str], calibration: np.ndarray, test, latency_iterations: int, enabled: bool = True
) -> tuple["pd.DataFrame | None", str]:
    """04 for the structured variant 03 chose (RunDir.pruning_choice): every format written to
    quantized_structured/ and compared with its own Keras FP32 on `test` (tables
    quantization_formats_structured and quantization_targets_structured); None and the reason
    when 03 chose none (or `enabled` is False)."""
    import json

    from lightfer_utils.artifacts import save_table
    from lightfer_utils.runtime.rundir import RunDir
    from lightfer_utils.training.evaluate import compare_formats
    from lightfer_utils.training.train import load_trained

    run = RunDir(run_dir)
    if not enabled:
        return None, "structured=False: only the dense model is quantized"
    if not run.pruning_choice.exists():
        return None, "03 chose no structured variant (none met its latency goal): nothing more to quantize"
    choice = json.loads(run.pruning_choice.read_text())
    pruned = load_trained(run.pruned / choice["file"])
    files = export_formats(pruned, run.quantized_structured, calibration)
    formats = compare_formats(files, test.images, test.labels, reference="keras_fp32", latency_iterations=latency_iterations)
    save_table(formats, run_dir, "quantization_formats_structured")
    save_table(targets_table(formats), run_dir, "quantization_targets_structured")
    return formats, f"{choice['variant']}: {pruned.count_params():,} parameters"
