"""`pip install .` is the runtime: the shipped models by name, `lightfer predict` without
TensorFlow, a wheel that carries the model files the runtime needs and nothing of training."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from lightfer_utils.runtime import shipped_models
from lightfer_utils.runtime.errors import ModelLoadError
from lightfer_utils.runtime.model_card import ModelCard

ROOT = Path(__file__).resolve().parent.parent
TRAINING_PACKAGES = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "tf2onnx", "papermill",
                     "pandas", "matplotlib", "skimage")
# Runs Python with the training packages made unimportable, as in a runtime-only install.
BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("blocked in this test: " + name, name=name)
sys.meta_path.insert(0, Block())
"""


def run_without_training_packages(code: str, cwd: Path) -> subprocess.CompletedProcess:
    script = BLOCKER.format(blocked=TRAINING_PACKAGES) + code
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_shipped_models_load_by_name_and_format_from_their_cards():
    assert shipped_models.DEFAULT_MODEL in shipped_models.names()
    default = shipped_models.model_file(shipped_models.DEFAULT_MODEL)
    assert default.suffix == ".onnx" and default.parent == shipped_models.models_dir()
    edge = shipped_models.card("light_fer_net_deep_edge")
    assert shipped_models.resolve("light_fer_net_deep_edge").name == edge["files"][edge["edge_format"]]["path"]
    assert shipped_models.resolve("light_fer_net_deep_edge:onnx_int8").name == "light_fer_net_deep_edge_int8.onnx"
    assert shipped_models.load("mini_xception")(__import__("numpy").zeros((2, 48, 48), "uint8")).shape == (2, 7)
    with pytest.raises(ModelLoadError, match="no shipped model named 'nosuch'"):
        shipped_models.card("nosuch")
    with pytest.raises(ModelLoadError, match="has no format 'fp64'"):
        shipped_models.model_file("mini_xception", "fp64")
    with pytest.raises(FileNotFoundError, match="neither a file nor a shipped model"):
        shipped_models.resolve("nosuch.onnx")


def test_a_changed_model_file_is_refused_by_its_card(tmp_path, monkeypatch):
    for name in ("mini_xception.card.json", "mini_xception.onnx"):
        shutil.copy(shipped_models.models_dir() / name, tmp_path / name)
    monkeypatch.setattr(shipped_models, "models_dir", lambda: tmp_path)
    assert shipped_models.model_file("mini_xception") == tmp_path / "mini_xception.onnx"
    with open(tmp_path / "mini_xception.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelLoadError, match="sha256 differs"):
        shipped_models.model_file("mini_xception")
    with pytest.raises(ModelLoadError, match="not part of this install"):
        shipped_models.model_file("mini_xception", "keras")


def test_the_runtime_dependencies_leave_training_to_the_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"]).lower()
    for package in ("tensorflow", "tf-keras", "tf2onnx", "papermill", "jupyterlab", "pandas", "matplotlib"):
        assert package not in runtime
        assert any(d.lower().startswith(package) for d in project["optional-dependencies"]["train"])


def test_every_runtime_module_imports_without_the_training_packages(tmp_path):
    modules = sorted(p.stem for p in (ROOT / "lightfer_utils" / "runtime").glob("*.py") if p.stem != "__init__")
    code = "import importlib\n" + "".join(f"importlib.import_module('lightfer_utils.runtime.{m}')\n" for m in modules)
    result = run_without_training_packages(code + "print('imported', len(%r))" % modules, tmp_path)
    assert result.returncode == 0 and "imported" in result.stdout, result.stderr[-2000:]


def test_predict_runs_on_the_default_model_without_the_training_packages(tmp_path):
    import cv2
    from skimage import data

    cv2.imwrite(str(tmp_path / "astronaut.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    code = ("import sys\nfrom lightfer_utils.cli import main\n"
            "sys.exit(main(['predict', 'astronaut.png', '--csv', 'faces.csv', '--workers', '1']) or "
            "main(['predict', 'astronaut.png', '--detector', 'blazeface', '--workers', '1']))\n")
    result = run_without_training_packages(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = (tmp_path / "faces.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("astronaut.png")
    trained = run_without_training_packages(
        "import sys\nfrom lightfer_utils.cli import main\nsys.exit(main(['train', '--out', 'x', '--data', 'y']))\n", tmp_path)
    assert trained.returncode == 1 and "pip install 'lightfer[train]'" in trained.stderr
    assert "Traceback" not in trained.stderr


def test_the_wheel_carries_the_runtime_files_and_nothing_of_training(tmp_path):
    source = tmp_path / "source"  # a copy of the tree, so the build writes nothing into the repository
    source.mkdir()
    for part in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / part, source / part)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "lightfer_utils", source / "lightfer_utils", ignore=skip)
    shutil.copytree(ROOT / "models", source / "models", ignore=skip)  # with the Keras files and training state
    for planted in ("light_fer_xception.onnx", "light_fer_xception_fp16.tflite"):  # the paper's model stays out
        (source / "models" / planted).write_bytes(b"x")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("lightfer-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    models = {n.split("/", 1)[1] for n in names if n.startswith("lightfer_models/")}
    for name in shipped_models.names():
        card = json.loads((ROOT / "models" / f"{name}.card.json").read_text())
        assert f"{name}.card.json" in models
        left_out = name.startswith("light_fer_xception")  # by size (pyproject): a checkout runs it by name
        assert (card["files"][ModelCard(card).default_format()]["path"] in models) != left_out
    assert not {"light_fer_xception.onnx", "light_fer_xception_fp16.tflite"} & models
    assert not [n for n in names if n.endswith((".keras", ".h5", ".index")) or "checkpoint" in n]
    assert "lightfer_utils/runtime/tagging.py" in names and "lightfer_utils/training/train.py" in names
    assert {"lightfer_utils/runtime/detectors/face_detection_full_range.tflite",
            "lightfer_utils/runtime/detectors/face_detection_short_range.tflite",
            "lightfer_utils/runtime/detectors/README.md"} <= set(names)  # the vendored face detector


def test_a_damaged_model_card_is_named_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped_models, "models_dir", lambda: tmp_path)
    (tmp_path / "nofiles.card.json").write_text(json.dumps({"name": "nofiles", "architecture": {}}))
    (tmp_path / "escape.card.json").write_text(json.dumps({"files": {"onnx": {"path": "../x.onnx", "sha256": "0"}}}))
    (tmp_path / "broken.card.json").write_text("{")
    for name in ("nofiles", "escape"):
        with pytest.raises(ModelLoadError, match=rf"{name}.card.json: not a model card \(it needs 'files'"):
            shipped_models.model_file(name)
    with pytest.raises(ModelLoadError, match=r"broken.card.json: not a model card \(not JSON"):
        shipped_models.load("broken")
