"""The paper's Eq. 2-4 on hand-computed values, agreement with TFLite's stored INT8 weights, and the
TFLite / ONNX Runtime formats keeping the model contract."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tf_keras as keras

from conftest import random_faces
from lightfer_utils.training.evaluate import compare_formats
from lightfer_utils.training.export import export_onnx
from lightfer_utils.runtime.predictor import load_predictor
from lightfer_utils.training.quantize import (calibration_faces, compare_with_tflite, convert_tflite, onnx_fp16, onnx_int8, symmetric_quantize,
                                     tflite_int8_weights)


def test_eq_2_to_4_on_hand_computed_values():
    w = np.array([-1.0, 0.5, 0.25, 1.0, 0.0])
    q8 = symmetric_quantize(w, 8)  # S = 255 / 2 = 127.5; +-127.5 rounds out of range and is clipped
    assert float(q8.scale) == 127.5
    assert q8.values.tolist() == [-127, 64, 32, 127, 0] and q8.values.dtype == np.int8
    q4 = symmetric_quantize(w, 4)  # S = 7.5: [-7.5, 3.75, 1.875, 7.5] -> [-8, 4, 2, 8] -> clip 7
    assert float(q4.scale) == 7.5 and q4.values.tolist() == [-7, 4, 2, 7, 0]
    q16 = symmetric_quantize(w * 3, 16)  # M = 3, S = 65535 / 6
    assert float(q16.scale) == pytest.approx(65535 / 6) and q16.values.dtype == np.int16
    assert q16.values.tolist() == [-32767, 16384, 8192, 32767, 0]  # 1.5 S = 16383.75, 0.75 S = 8191.875
    np.testing.assert_allclose(q16.dequantize(), w * 3, atol=1 / q16.scale)


def test_per_channel_uses_each_channels_maximum():
    w = np.array([[0.1, -2.0], [-0.05, 1.0]])  # channels along the last axis: max 0.1 and 2.0
    q = symmetric_quantize(w, 8, axis=-1)
    np.testing.assert_allclose(q.scale.ravel(), [127.5 / 0.1, 127.5 / 2.0])
    assert q.values.tolist() == [[127, -127], [-64, 64]]  # -0.05 * 1275 = -63.75 -> -64
    per_tensor = symmetric_quantize(w, 8)
    assert per_tensor.values[:, 0].tolist() == [6, -3]  # the small channel loses its resolution


def test_quantisation_error_is_at_most_half_a_step():
    w = np.random.default_rng(0).normal(size=(3, 3, 8, 16))
    for bits in (4, 8, 16):
        q = symmetric_quantize(w, bits, axis=-1)
        error = np.abs(q.values / q.scale - w) * q.scale
        assert error.max() <= 0.5 + 1e-9


def test_zero_tensor_and_bad_bits():
    assert symmetric_quantize(np.zeros((2, 2)), 8).values.tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="bits"):
        symmetric_quantize(np.ones(2), 1)


@pytest.fixture(scope="module")
def small_model() -> keras.Model:
    """Conv (with bias, no batch norm, so TFLite stores its kernel unfused) and a dense head."""
    keras.utils.set_random_seed(0)
    face = keras.Input((48, 48, 1), name="face")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(face)
    x = keras.layers.Conv2D(6, 3, strides=2, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(7, activation="softmax", name="probabilities")(x)
    return keras.Model(face, out)


def test_eq_2_to_4_matches_tflite_int8_weights_within_one_step(small_model, tmp_path):
    path = tmp_path / "int8.tflite"
    path.write_bytes(convert_tflite(small_model, "int8", random_faces(32).astype(np.float32)))
    stored = {tuple(t["values"].shape): t for t in tflite_int8_weights(path)}
    # TFLite folds the input Rescaling (x / 127.5) into the first convolution's kernel; HWIO -> OHWI
    kernel = small_model.get_layer("conv").get_weights()[0] / 127.5
    conv = compare_with_tflite(np.transpose(kernel, (3, 0, 1, 2)), stored[(6, 3, 3, 1)])
    assert conv["per_channel"] and conv["max_difference_in_steps"] <= 1.0
    assert conv["same_integer_fraction"] > 0.5  # scales differ by 127.5 / 127: large integers shift by one
    dense = small_model.get_layer("probabilities").get_weights()[0].T  # (in, out) -> TFLite (out, in)
    head = compare_with_tflite(dense, stored[(7, 6)])
    assert head["max_difference_in_steps"] <= 1.0


def test_every_format_keeps_the_contract_and_agrees(small_model, tmp_path):
    faces = random_faces(40, seed=3).astype(np.float32)
    labels = np.arange(40) % 7
    files = {"keras_fp32": tmp_path / "m.keras", "onnx_fp32": tmp_path / "m.onnx"}
    small_model.save(files["keras_fp32"])
    export_onnx(small_model, files["onnx_fp32"])
    files["onnx_fp16"] = onnx_fp16(files["onnx_fp32"], tmp_path / "m_fp16.onnx")
    files["onnx_int8"] = onnx_int8(files["onnx_fp32"], tmp_path / "m_int8.onnx", faces[:20])
    for kind in ("fp32", "fp16", "dynamic", "int8"):
        files[f"tflite_{kind}"] = tmp_path / f"m_{kind}.tflite"
        files[f"tflite_{kind}"].write_bytes(convert_tflite(small_model, kind, faces[:20]))
    table = compare_formats(files, faces, labels, reference="keras_fp32", latency_iterations=5)
    assert list(table.index) == list(files)
    agreement = table["argmax_agreement_vs_keras_fp32"]
    assert agreement["onnx_fp32"] == 1.0 and agreement["tflite_fp32"] == 1.0
    assert table.loc[["onnx_fp32", "tflite_fp32"], "max_abs_dp"].max() < 1e-5
    assert table.loc[["onnx_fp16", "tflite_fp16"], "max_abs_dp"].max() < 1e-2
    assert table.loc[["onnx_int8", "tflite_int8"], "max_abs_dp"].max() < 0.1
    probabilities = load_predictor(files["tflite_int8"])(faces[:3])
    assert probabilities.shape == (3, 7) and probabilities.dtype == np.float32


def test_int8_needs_calibration_faces(small_model, tmp_path):
    with pytest.raises(ValueError, match="representative"):
        convert_tflite(small_model, "int8")
    with pytest.raises(ValueError, match="unknown TFLite kind"):
        convert_tflite(small_model, "int4")


def test_calibration_faces_come_from_training_only():
    from lightfer_utils.data import FerData

    usage = np.repeat([0, 1, 2], 10)
    images = np.repeat(np.array([10, 20, 30], dtype=np.uint8), 10)[:, None, None] * np.ones((1, 48, 48), np.uint8)
    data = FerData(images=images, labels=np.zeros(30, int), usage=usage, sources=np.array([str(i) for i in range(30)]),
                   csv_rows=np.arange(30), origin="generated", source_rows=30)
    faces = calibration_faces(data, 50, seed=0)
    assert len(faces) == 10 and (faces == 10).all()
    np.testing.assert_array_equal(calibration_faces(data, 4, seed=1), calibration_faces(data, 4, seed=1))


def test_targets_allow_each_precision_its_own_loss():
    from lightfer_utils.training.quantize import targets_table

    formats = pd.DataFrame({"accuracy": [0.700, 0.700, 0.697, 0.6965, 0.690, 0.689]},
                           index=["keras_fp32", "onnx_fp32", "onnx_fp16", "tflite_fp16", "onnx_int8", "tflite_dynamic"])
    targets = targets_table(formats)
    assert targets["allowed"].tolist() == [0.0, 0.0, 0.3, 0.3, 1.0, 1.0]
    assert targets["met"].tolist() == [True, True, True, False, True, False]


INT8_CONVERSION = """
import numpy as np
from lightfer_utils.cli import import_tensorflow_quietly
import_tensorflow_quietly()
import tf_keras as keras
from lightfer_utils.training.quantize import convert_tflite
model = keras.Sequential([keras.layers.Input((48, 48, 1)), keras.layers.Conv2D(2, 3),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(7)])
print(len(convert_tflite(model, "int8", np.random.default_rng(0).random((4, 48, 48, 1), dtype=np.float32))))
"""


@pytest.mark.parametrize("debug", [False, True])
def test_the_tflite_converter_s_own_lines_show_only_when_debugging(debug):
    """The converter's C++ side prints its settings to file descriptor 2, past capsys."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "LIGHTFER_DEBUG")}
    if debug:
        env["LIGHTFER_DEBUG"] = "1"
    result = subprocess.run([sys.executable, "-c", INT8_CONVERSION], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0 and int(result.stdout) > 0, result.stderr
    assert ("fully_quantize" in result.stderr) == debug, result.stderr
    if not debug:
        assert result.stderr == ""


def test_onnx_files_fit_the_nanos_tensorrt_8_2_the_paper_s_xception_too(small_model, tmp_path):
    """JetPack 4.6 (the last for the Nano) carries TensorRT 8.2: opset 13 at most, and only the
    operators its parser knows. Our models and the paper's Xception (in-graph resize) fit; an opset 17
    file and an unknown operator are named."""
    import onnx
    from onnx import helper

    from lightfer_utils.runtime.tensorrt_runtime import tensorrt_8_2_problems
    from lightfer_utils.training.models import build_model

    for name, model in (("small", small_model), ("xception", build_model("xception"))):
        path = export_onnx(model, tmp_path / f"{name}.onnx")
        onnx.checker.check_model(str(path))
        assert [o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")] == [13]
        assert tensorrt_8_2_problems(path) == [], name
    faces = helper.make_tensor_value_info("face", onnx.TensorProto.FLOAT, [1, 4])
    out = helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Xor", ["face", "face"], ["x"]), helper.make_node("Relu", ["x"], ["out"])],
                              "g", [faces], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "new.onnx"))
    assert tensorrt_8_2_problems(tmp_path / "new.onnx") == [
        "opset 17 (TensorRT 8.2 parses up to 13)", "operators TensorRT 8.2 cannot parse: Xor"]
