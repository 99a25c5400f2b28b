"""The paper's Light-FER from a trained run: pruned once during fine-tuning, exported in FP32,
FP16 (the paper's) and INT8, every format measured and shipped with a card whose compression
section is the recipe. A tiny model stands in for the 20.8 M-parameter Xception."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lightfer_utils.data import FerData
from lightfer_utils.runtime.tensorrt_runtime import tensorrt_8_2_problems
from lightfer_utils.training.paper_model import PAPER_SUFFIXES, Compression, ship_paper_model
from lightfer_utils.training.train import TrainConfig, train
from test_training import tiny_split


def tiny_data() -> FerData:
    """Training, PublicTest and PrivateTest of generated faces."""
    parts = [tiny_split(64, 1, 0), tiny_split(21, 2, 1), tiny_split(21, 3, 2)]
    return FerData(images=np.concatenate([p.images for p in parts]), labels=np.concatenate([p.labels for p in parts]),
                   usage=np.concatenate([p.usage for p in parts]), sources=np.concatenate([p.sources for p in parts]),
                   csv_rows=np.concatenate([p.csv_rows for p in parts]), origin="generated",
                   source_rows=sum(len(p.labels) for p in parts))


def test_the_paper_model_is_pruned_once_exported_measured_and_carded(tmp_path, capsys):
    data = tiny_data()
    record = tmp_path / "training"
    config = TrainConfig(model_config={"widths": (8, 8, 8, 8), "blocks": (0, 1, 1, 1), "dropout": 0.0}, epochs=1,
                         batch_size=16, patience=0, warmup_epochs=0)
    train(config, data.split("Training"), data.split("PublicTest"), record, verbose=0)
    compression = Compression(sparsity=0.5, epochs=2, batch_size=16, calibration_size=20)
    card = ship_paper_model(record, data, "paper_tiny", tmp_path / "models", compression, tmp_path / "work",
                            latency_iterations=3)
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
    assert "R over weights" in (tmp_path / "models" / "paper_tiny.card.md").read_text()
    # shipping again reuses the pruned model; other settings in the same work directory are refused
    with pytest.raises(FileExistsError, match="exist; pass overwrite=True"):
        ship_paper_model(record, data, "paper_tiny", tmp_path / "models", compression, tmp_path / "work")
    capsys.readouterr()
    ship_paper_model(record, data, "paper_tiny", tmp_path / "models", compression, tmp_path / "work",
                     latency_iterations=3, overwrite=True)
    assert f"reusing {tmp_path / 'work' / 'pruned.keras'}" in capsys.readouterr().out
    with pytest.raises(FileExistsError, match="was pruned with other settings"):
        ship_paper_model(record, data, "paper_tiny", tmp_path / "models", Compression(sparsity=0.75, epochs=1),
                         tmp_path / "work", overwrite=True)
    with pytest.raises(ValueError, match="compression setting sparsity=1.5 is out of range"):
        Compression(sparsity=1.5)
