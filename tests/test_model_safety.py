"""Model files never run code: hostile files of every known form are refused before anything
is deserialised. Each hostile file is first shown to be live (a plain tf_keras load, in a
subprocess, writes a marker file), then shown to be refused by every entry point with the
marker never written."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tf_keras as keras

from lightfer_utils.runtime import safe_keras
from lightfer_utils.cli import main as lightfer
from lightfer_utils.runtime.errors import ModelLoadError
from lightfer_utils.training.models import BUILDERS, build_model
from lightfer_utils.runtime.predictor import load_predictor
from lightfer_utils.runtime.provenance import PROJECT_ROOT
from lightfer_utils.training.train import load_trained


def marker_lambda(marker: Path):
    """A lambda whose stored bytecode writes `marker` when it runs."""
    namespace: dict = {}
    exec(f"f = lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]", namespace)
    return namespace["f"]


def h5_with_lambda(path: Path, marker: Path, nested: bool) -> Path:
    inputs = keras.Input((48, 48, 1))
    if nested:
        inner_in = keras.Input((48, 48, 1))
        inner = keras.Model(inner_in, keras.layers.Lambda(marker_lambda(marker))(inner_in), name="inner")
        x = inner(inputs)
    else:
        x = keras.layers.Lambda(marker_lambda(marker))(inputs)
    outputs = keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(x))
    keras.Model(inputs, outputs).save(path)
    marker.unlink(missing_ok=True)  # building the model ran the lambda once
    return path


def keras_file_with(path: Path, replace_dense_with: dict) -> Path:
    """A valid small .keras file whose Dense layer is swapped for `replace_dense_with` in config.json."""
    inputs = keras.Input((48, 48, 1))
    keras.Model(inputs, keras.layers.Dense(7, name="head")(keras.layers.Flatten()(inputs))).save(path)
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    for index, layer in enumerate(config["config"]["layers"]):
        if layer["class_name"] == "Dense":
            config["config"]["layers"][index] = {**layer, **replace_dense_with}
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def pipepager_lambda(marker: Path) -> dict:
    """A Lambda naming an importable module function: pydoc.pipepager runs `cmd` in a shell."""
    return {"class_name": "Lambda", "module": "keras.layers", "registered_name": None,
            "config": {"name": "head", "trainable": True, "dtype": "float32",
                       "function": {"module": "pydoc", "class_name": "function", "config": "pipepager",
                                    "registered_name": "function"},
                       "function_type": "function", "module": "pydoc", "output_shape": None,
                       "output_shape_type": "raw", "output_shape_module": None, "arguments": {"cmd": f"touch {marker}"}}}


def plain_load_runs_code(path: Path, marker: Path) -> bool:
    """Load with plain tf_keras (safe_mode=True) in a subprocess: does the marker appear?"""
    code = ("import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'\nimport tf_keras as k\n"
            f"try:\n    k.models.load_model({str(path)!r}, compile=False, safe_mode=True)\nexcept Exception:\n    pass\n")
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    for _ in range(20):  # a shell command started by the load may finish just after it
        if marker.exists():
            return True
        time.sleep(0.1)
    return False


def assert_refused_everywhere(path: Path, marker: Path, match: str) -> None:
    with pytest.raises(safe_keras.UnsafeModelError, match=match):
        safe_keras.load_keras_model(path)
    with pytest.raises(ModelLoadError, match=match):
        load_predictor(path)  # predict, evaluate, bench, 05
    with pytest.raises(ModelLoadError, match=match):
        load_trained(path)  # train --teacher / --init-from, prune, 03, 04
    assert lightfer(["predict", "--model", str(path), str(path)]) != 0  # the model loads before any input
    time.sleep(0.3)
    assert not marker.exists(), "the model file ran code"


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "code_ran.txt"


@pytest.mark.parametrize("nested", [False, True], ids=["top_level", "nested_sub_model"])
def test_h5_with_a_lambda_is_refused_and_runs_nothing(tmp_path, marker, nested):
    path = h5_with_lambda(tmp_path / "hostile.h5", marker, nested)
    assert plain_load_runs_code(path, marker), "the hostile file should be live under a plain load"
    marker.unlink()
    assert_refused_everywhere(path, marker, "inner/lambda" if nested else "refusing layer 'lambda'")


def test_keras_lambda_naming_a_module_function_is_refused_and_runs_nothing(tmp_path, marker):
    path = keras_file_with(tmp_path / "hostile.keras", pipepager_lambda(marker))
    assert plain_load_runs_code(path, marker), "the hostile file should be live under a plain safe_mode load"
    marker.unlink()
    assert_refused_everywhere(path, marker, "refusing layer 'head' \\(Lambda\\)")


def test_keras_object_from_a_module_outside_keras_is_refused(tmp_path, marker):
    path = keras_file_with(tmp_path / "module.keras", {"module": "pydoc"})
    assert_refused_everywhere(path, marker, "module 'pydoc'")


def test_keras_layer_outside_the_allow_list_is_refused(tmp_path, marker):
    path = keras_file_with(tmp_path / "custom.keras", {"class_name": "TotallyCustom", "module": None})
    assert_refused_everywhere(path, marker, "class 'TotallyCustom'")


def test_keras_registered_name_outside_keras_is_refused(tmp_path, marker):
    path = keras_file_with(tmp_path / "registered.keras", {"registered_name": "evil>Dense"})
    assert_refused_everywhere(path, marker, "registered as 'evil>Dense'")


def test_a_weights_only_h5_is_refused_clearly(tmp_path):
    path = tmp_path / "weights.h5"
    build_model("simple_cnn").save_weights(path)
    with pytest.raises(ModelLoadError, match="no model_config"):
        load_predictor(path)


def test_onnx_external_data_outside_the_model_folder_is_refused(tmp_path):
    import onnx
    from onnx import helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((1,), np.float32), name="w")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 48, 48, 1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 48, 48, 1])], [weights])
    model = helper.make_model(graph)
    (tmp_path / "secret.bin").write_bytes(np.ones((1,), np.float32).tobytes())
    folder = tmp_path / "models"
    folder.mkdir()
    onnx.external_data_helper.set_external_data(model.graph.initializer[0], location="../secret.bin")
    model.graph.initializer[0].ClearField("raw_data")
    onnx.save(model, str(folder / "outside.onnx"))
    with pytest.raises(safe_keras.UnsafeModelError, match=r"external data outside the model's folder: \.\./secret\.bin"):
        load_predictor(folder / "outside.onnx")


def test_every_builder_and_every_shipped_keras_file_passes_the_check():
    for name in BUILDERS:
        safe_keras.check_architecture(json.loads(build_model(name).to_json()), name)
    shipped = sorted((PROJECT_ROOT / "models").glob("*.keras"))
    assert shipped
    for path in shipped:
        safe_keras.check_architecture(safe_keras.architecture_config(path), path)


def test_models_that_ask_for_gigabytes_or_hang_are_refused_before_they_do(tmp_path, monkeypatch):
    """Made here: a 13 kB-class .keras of Resizing(12000, 12000), a .keras zip whose members
    declare 3 GiB, a model file over the size limit, and a probe that never returns."""
    import json
    import zipfile

    import tf_keras as keras

    from lightfer_utils.runtime import predictor as predictor_module
    from lightfer_utils.runtime.errors import ModelLoadError
    from lightfer_utils.runtime.predictor import load_predictor

    raw = keras.Input((48, 48, 1))
    big = keras.Model(raw, keras.layers.Resizing(12000, 12000, name="huge")(raw))
    big.save(tmp_path / "big.keras")
    with pytest.raises(ModelLoadError, match=r"refusing layer .huge. \(Resizing\): its output of 12000x12000 pixels is "
                                             r"over the limit of 16,777,216"):
        load_predictor(tmp_path / "big.keras")
    with zipfile.ZipFile(tmp_path / "big.keras") as archive:
        config = archive.read("config.json")
    with zipfile.ZipFile(tmp_path / "bomb.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", config)
        archive.writestr("model.weights.h5", b"\0" * (1 << 20))
    monkeypatch.setattr("lightfer_utils.runtime.safe_keras.MAX_KERAS_UNCOMPRESSED", 1 << 19)  # 1 MiB of zeros: ~1 kB zipped
    with pytest.raises(ModelLoadError, match=r"its zip members would inflate to 1,0\d\d,\d\d\d bytes .* over the limit of 524,288"):
        load_predictor(tmp_path / "bomb.keras")
    monkeypatch.setattr(predictor_module, "MAX_MODEL_BYTES", 1024)
    with pytest.raises(ModelLoadError, match=r"over the limit of 0 MiB \(LIGHTFER_MAX_MODEL_MB raises it\)"):
        load_predictor(tmp_path / "big.keras")
    with pytest.raises(ModelLoadError, match="a test call on 2 faces took over 0.2 s"):
        predictor_module._within(0.2, lambda: __import__("time").sleep(5), "a test call on 2 faces took over 0.2 s")
    assert predictor_module._within(5, lambda: json.loads("[1]"), "never") == [1]


def test_a_large_batch_reaches_the_runtime_in_chunks(monkeypatch):
    """TFLite and ONNX Runtime allocate activations for the whole batch: a split goes in CHUNK faces
    at a time, and the answers come back in order."""
    from lightfer_utils.runtime import predictor as predictors
    from lightfer_utils.runtime.shipped_models import model_file

    model = load_predictor(model_file("mini_xception"))
    seen = []
    original = model._predict
    monkeypatch.setattr(model, "_predict", lambda faces: seen.append(len(faces)) or original(faces))
    faces = np.random.default_rng(0).integers(0, 256, (2 * predictors.CHUNK + 5, 48, 48)).astype(np.float32)
    whole = model(faces)
    assert seen == [predictors.CHUNK, predictors.CHUNK, 5]
    assert np.allclose(whole[-5:], original(faces[-5:, ..., None]), atol=1e-5)


def test_a_keras_config_nested_beyond_the_parser_and_an_onnx_file_without_external_data_are_handled(tmp_path):
    """Made here: a .keras whose config.json nests 100,000 lists (one line, exit 2, not a crash
    of the parser) and an ONNX model whose weights are inline (checked without importing onnx's
    helpers: the word "location" never occurs)."""
    from lightfer_utils.runtime.safe_keras import _mentions, check_onnx_external_data

    with zipfile.ZipFile(tmp_path / "deep.keras", "w") as archive:
        archive.writestr("config.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelLoadError, match="deep.keras: its config.json is nested too deeply"):
        load_predictor(tmp_path / "deep.keras")
    inline = tmp_path / "inline.onnx"
    inline.write_bytes(b"\x08\x07" + b"\0" * 64)
    assert not _mentions(inline, b"location")
    check_onnx_external_data(inline)  # nothing to check: no external data is possible
    assert _mentions(tmp_path / "deep.keras", b"config.json")
