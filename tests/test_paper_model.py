"""The paper's Light-FER from a trained run: pruned once during fine-tuning, exported in FP32,
FP16 (the paper's) and INT8, every format measured and shipped with a card whose compression
section is the recipe. A tiny model stands in for the 20.8 M-parameter Xception."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lightfer_utils.data import FerData
from lightfer_utils.runtime import benchmark
from lightfer_utils.runtime.tensorrt_runtime import tensorrt_8_2_problems
from lightfer_utils.training.paper_model import PAPER_DERIVED, PAPER_SUFFIXES, Compression, ship_paper_model
from lightfer_utils.training.config import TrainConfig
from lightfer_utils.training.train import train
from test_training import tiny_split


def tiny_data() -> FerData:
    """Training, PublicTest and PrivateTest of generated faces."""
    parts = [tiny_split(64, 1, 0), tiny_split(21, 2, 1), tiny_split(21, 3, 2)]
    return FerData(images=np.concatenate([p.images for p in parts]), labels=np.concatenate([p.labels for p in parts]),
                   usage=np.concatenate([p.usage for p in parts]), sources=np.concatenate([p.sources for p in parts]),
                   csv_rows=np.concatenate([p.csv_rows for p in parts]), origin="generated",
                   source_rows=sum(len(p.labels) for p in parts))


COMPRESSION = Compression(sparsity=0.5, epochs=2, batch_size=16, calibration_size=20)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A tiny trained run and the paper model shipped from it: (tmp dir, data, card)."""
    tmp_path = tmp_path_factory.mktemp("paper")
    data = tiny_data()
    config = TrainConfig(model_config={"widths": (8, 8, 8, 8), "blocks": (0, 1, 1, 1), "dropout": 0.0}, epochs=1,
                         batch_size=16, patience=0, warmup_epochs=0)
    train(config, data.split("Training"), data.split("PublicTest"), tmp_path / "training", verbose=0)
    card = ship_paper_model(tmp_path / "training", data, "paper_tiny", tmp_path / "models", COMPRESSION, tmp_path / "work",
                            latency_iterations=3)
    return tmp_path, data, card


def test_the_paper_model_is_pruned_once_exported_measured_and_carded(shipped, capsys):
    tmp_path, data, card = shipped
    record, compression = tmp_path / "training", COMPRESSION
    for fmt, suffix in PAPER_SUFFIXES.items():
        assert (tmp_path / "models" / f"paper_tiny{suffix}").is_file()
        row = card["formats"][fmt]
        assert 0 <= row["PrivateTest_accuracy"] <= 1 and 0 <= row["PublicTest_accuracy"] <= 1
    assert card["formats"]["onnx_fp32"]["argmax_agreement_vs_keras_fp32"] == 1.0
    assert card["formats"]["tflite_fp16"]["max_abs_dp"] < 0.01
    assert 0.45 <= card["pruning"]["kernel_sparsity"] <= 0.55
    assert 1.8 <= card["pruning"]["eq1"]["R_weights"] <= 2.2  # Eq. 1: half the kernel weights remain
    assert card["architecture"]["nonzero_parameters"] < card["dense"]["nonzero_parameters"]
    assert card["compression"]["sparsity"] == 0.5 and card["compression"]["epochs"] == 2
    assert tensorrt_8_2_problems(tmp_path / "models" / "paper_tiny.onnx") == []
    assert json.loads((tmp_path / "models" / "paper_tiny.card.json").read_text()) == card
    assert {fmt for fmt, entry in card["files"].items() if "derived_from" in entry} == set(PAPER_DERIVED)
    assert set(PAPER_SUFFIXES) == set(benchmark.PAPER_MODEL_FORMATS)  # 06 times every shipped format
    with zipfile.ZipFile(tmp_path / "models" / "paper_tiny.keras") as keras_file:  # deflated: pruned zeros cost little
        assert {item.compress_type for item in keras_file.infolist()} == {zipfile.ZIP_DEFLATED}
    assert "R over weights" in (tmp_path / "models" / "paper_tiny.card.md").read_text()
    # shipping again reuses the pruned model; other settings in the same work directory are refused
    with pytest.raises(FileExistsError, match="exist; pass overwrite=True"):
        ship_paper_model(record, data, "paper_tiny", tmp_path / "models", compression, tmp_path / "work")
    capsys.readouterr()
    ship_paper_model(record, data, "paper_tiny", tmp_path / "models", compression, tmp_path / "work",
                     latency_iterations=3, overwrite=True)
    assert f"reusing {tmp_path / 'work' / 'pruned.keras'}" in capsys.readouterr().out
    assert not (tmp_path / "work" / "pruning").exists()  # the fine-tuning's checkpoints go once the model is made
    with pytest.raises(FileExistsError, match="was pruned with other settings"):
        ship_paper_model(record, data, "paper_tiny", tmp_path / "models", Compression(sparsity=0.75, epochs=1),
                         tmp_path / "work", overwrite=True)
    with pytest.raises(ValueError, match="compression setting sparsity=1.5 is out of range"):
        Compression(sparsity=1.5)


def test_a_run_that_has_not_finished_training_is_not_shipped_unless_asked_for_a_dry_run(shipped, tmp_path):
    import shutil

    source, data, _ = shipped
    record = tmp_path / "training"
    shutil.copytree(source / "training", record)
    state = json.loads((record / "state.json").read_text())
    (record / "state.json").write_text(json.dumps({**state, "epochs_done": 0, "stopped_early": False}))
    with pytest.raises(ValueError, match=r"has trained 0 of 1 epochs: finish it .* or pass --unfinished"):
        ship_paper_model(record, data, "paper_tiny", tmp_path / "models", COMPRESSION, source / "work")
    assert not (tmp_path / "models").exists()


@pytest.fixture
def zoo_of(shipped, monkeypatch):
    """The shipped models are the tiny paper model's folder."""
    from lightfer_utils.runtime import shipped_models

    monkeypatch.setattr(shipped_models, "models_dir", lambda: shipped[0] / "models")
    return shipped


def test_02_measures_the_shipped_paper_model_from_its_fp16_file_or_says_why_not(zoo_of):
    from lightfer_utils import PAPER_MODEL_LABEL
    from lightfer_utils.training import zoo

    _, data, card = zoo_of
    row = zoo.paper_model_table("paper_tiny", data)
    assert list(row.index) == [PAPER_MODEL_LABEL] and row.loc[PAPER_MODEL_LABEL, "format"] == "onnx_fp16"
    assert row.loc[PAPER_MODEL_LABEL, "test_acc"] == pytest.approx(card["formats"]["onnx_fp16"]["PrivateTest_accuracy"] * 100,
                                                                   abs=0.01)
    assert row.loc[PAPER_MODEL_LABEL, "nonzero_parameters"] == card["architecture"]["nonzero_parameters"]
    assert zoo.paper_model_table("", data) == "paper model not measured: no paper_model named"
    assert zoo.paper_model_table("light_fer_xception", data).startswith(
        "paper model not measured: no shipped model named 'light_fer_xception'")


def test_06_times_each_format_of_the_paper_model_and_07_builds_tables_2_to_4_from_it(zoo_of, tmp_path):
    import json
    import shutil

    from lightfer_utils import PAPER_MODEL_LABEL, report
    from lightfer_utils.runtime import benchmark
    from lightfer_utils.runtime.faces import FaceStage
    from lightfer_utils.runtime.rundir import RunDir
    from lightfer_utils.runtime.face_photos import benchmark_frames
    from lightfer_utils.training import zoo

    _, data, card = zoo_of
    smoke = RunDir(Path(__file__).resolve().parent.parent / "papermill_runs" / "smoke")
    run = RunDir(tmp_path / "run")
    shutil.copytree(smoke.tables, run.tables, ignore=shutil.ignore_patterns("paper_table*"))
    assert benchmark.paper_model_tables(run, "", True, data.images[:8], benchmark_frames()[:1], FaceStage(), 5, 2) == \
        "paper model not benchmarked: no paper_model named"
    classifier, end_to_end = benchmark.paper_model_tables(run, "paper_tiny", True, data.images[:8].astype(np.float32),
                                                          benchmark_frames()[:2], FaceStage(), 5, 2)
    assert set(end_to_end.index) == set(benchmark.PAPER_MODEL_FORMATS)
    zoo.paper_model_table("paper_tiny", data).to_csv(run.table(run.PAPER_MODEL_RESULTS))
    t2, t3, t4 = report.table_2(run.root), report.table_3(run.root), report.table_4(run.root)
    assert t2.loc[PAPER_MODEL_LABEL, "nonzero_parameters"] == card["architecture"]["nonzero_parameters"]
    assert {f"{PAPER_MODEL_LABEL} ({f})" for f in ("onnx_fp16", "tflite_fp16", "onnx_fp32")} <= set(t3.index)
    assert (t4["model"] == PAPER_MODEL_LABEL).all()
    assert t4.loc[("TFLite", "FP16"), "fps"] == round(end_to_end.loc["tflite_fp16", "fps"], 2)
    assert t4.loc[("TensorRT", "FP16"), "status"].startswith("not run on this host")
    assert t4.loc[("TensorRT", "FP16"), "paper_fps"] == 5.51
    assert json.loads(run.benchmark_host.read_text())["logical_cores"] >= 1


def test_derived_files_are_made_again_checked_and_refused_when_changed(zoo_of, capsys):
    """The ONNX files are too large to commit: `lightfer maintain materialize` makes them from the
    committed Keras file, checks them against it and records their sha256, which every load checks."""
    from lightfer_utils.cli import main
    from lightfer_utils.runtime import shipped_models
    from lightfer_utils.runtime.errors import ModelLoadError

    models = zoo_of[0] / "models"
    for fmt in PAPER_DERIVED:
        (models / f"paper_tiny{PAPER_SUFFIXES[fmt]}").unlink()
    with pytest.raises(ModelLoadError, match="not made yet: `lightfer maintain materialize paper_tiny`"):
        shipped_models.model_file("paper_tiny", "onnx_fp32")
    assert main(["maintain", "materialize", "paper_tiny"]) == 0
    out = capsys.readouterr().out
    assert "paper_tiny onnx_fp32:" in out and "paper_tiny onnx_fp16:" in out
    made = shipped_models.model_file("paper_tiny", "onnx_fp16")
    record = shipped_models.derived_record("paper_tiny")
    assert record["onnx_fp32"]["max_abs_dp"] <= 1e-4 and record["onnx_fp16"]["checked_against"] == "paper_tiny.onnx"
    assert main(["maintain", "materialize", "--all"]) == 0
    assert capsys.readouterr().out == "paper_tiny: its derived files are here and unchanged\n"
    made.write_bytes(made.read_bytes() + b"\0")
    with pytest.raises(ModelLoadError, match="differs from the one in paper_tiny.derived.json"):
        shipped_models.model_file("paper_tiny", "onnx_fp16")
    assert main(["maintain", "materialize", "paper_tiny"]) == 0
    assert shipped_models.model_file("paper_tiny", "onnx_fp16") == made


def test_the_paper_models_derived_files_are_kept_out_of_git():
    root = Path(__file__).resolve().parent.parent
    names = [f"models/light_fer_xception{PAPER_SUFFIXES[fmt]}" for fmt in PAPER_DERIVED]
    names.append("models/light_fer_xception.derived.json")
    ignored = subprocess.run(["git", "check-ignore", *names], cwd=root, capture_output=True, text=True).stdout.split()
    assert ignored == names
