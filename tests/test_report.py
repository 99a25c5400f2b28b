"""07's tables from a synthetic run directory: ours next to the paper, missing rows marked, never invented."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lightfer_utils import CLASS_NAMES, published, report


@pytest.fixture
def run_dir(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    pd.DataFrame(np.eye(7), index=pd.Index(CLASS_NAMES, name="true"), columns=CLASS_NAMES).to_csv(tables / "confusion_light_fer_net.csv")
    pd.DataFrame([{"model": "light_fer_net", "parameters": 949015, "train_acc": 80.0, "test_acc": 70.5}]).to_csv(
        tables / "model_results.csv", index=False)
    pd.DataFrame([
        {"format": "keras_fp32", "batch_size": 1, "fps": 100.0, "power_mw": None, "cpu_memory_gb": 0.7,
         "gpu_memory_gb": None, "total_memory_gb": 0.7, "latency_p50_ms": 9.0, "status": None},
        {"format": "tflite_fp16", "batch_size": 1, "fps": 300.0, "power_mw": None, "cpu_memory_gb": 0.5,
         "gpu_memory_gb": None, "total_memory_gb": 0.5, "latency_p50_ms": 3.0, "status": None},
        {"format": "tflite_fp16", "batch_size": 64, "fps": 900.0, "power_mw": None, "cpu_memory_gb": 0.5,
         "gpu_memory_gb": None, "total_memory_gb": 0.5, "latency_p50_ms": 70.0, "status": None},
        {"format": "tensorrt_fp16", "status": "not run on this host: no GPU"},
    ]).to_csv(tables / "benchmark.csv", index=False)
    return tmp_path


def test_table_1_and_2_put_ours_next_to_the_paper(run_dir):
    t1 = report.table_1(run_dir)
    assert t1["difference"].loc["sad", "sad"] == pytest.approx(1 - 0.414)
    assert report.diagonal(t1)["paper"].tolist() == [published.TABLE_1[i][i] for i in range(7)]
    t2 = report.table_2(run_dir)
    assert t2.loc["light_fer_net", "test_minus_light_fer"] == pytest.approx(70.5 - 69.87)
    assert t2.loc["Light-FER", "source"] == "paper" and len(t2) == 1 + len(published.TABLE_2)


def test_table_4_keeps_every_paper_row_and_never_fills_in_ours(run_dir):
    t4 = report.table_4(run_dir)
    assert set(published.table_4().index) <= set(t4.index)
    assert t4.loc[("TFLite", "FP16"), "fps"] == 300.0  # batch 1 only
    assert t4.loc[("TFLite", "FP16"), "fps_vs_keras_fp32"] == 3.0
    assert t4.loc[("TensorRT", "FP16"), "status"] == "not run on this host: no GPU"
    assert np.isnan(t4.loc[("TensorRT", "FP16"), "fps"]) and t4.loc[("TensorRT", "FP16"), "paper_fps"] == 5.51
    assert t4.loc[("ONNX", "FP32"), "status"] == report.NOT_RUN


def test_missing_artifacts_are_named_and_all_formats_written(run_dir):
    with pytest.raises(report.MissingArtifact, match="pipeline_benchmark.csv"):
        (run_dir / "tables" / "benchmark_host.json").write_text(json.dumps({"ram_gb": 8}))
        report.table_3(run_dir)
    paths = report.save_all_formats(report.table_2(run_dir), run_dir, "paper_table2")
    assert "\\toprule" in paths["tex"].read_text() and "| light_fer_net" in paths["md"].read_text()
    text = report.reproduction_report(run_dir, {"table2": report.table_2(run_dir)}, {"table1": "x", "table3": "y", "table4": "z"})
    assert "Not produced: y" in text and "light_fer_net" in text


def test_publish_copies_a_finished_runs_tables_and_figures_with_provenance(tmp_path):
    from lightfer_utils.cli import main

    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "tables").mkdir()
    (run / "figures" / "paper_confusion.png").write_bytes(b"png")
    (run / "figures" / "training_curves.png").write_bytes(b"not a paper figure")
    (run / "tables" / "paper_table1.md").write_text("| table |")
    manifest = {"run_id": "cpu-1", "status": "running", "git": {"commit": "abc", "dirty": False},
                "data": {"sha256": "d" * 64}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "figures"
    with pytest.raises(ValueError, match="did not complete"):
        report.publish(run, target)
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "completed"}))
    with pytest.raises(report.MissingArtifact, match="REPRODUCTION.md"):
        report.publish(run, target)
    (run / "REPRODUCTION.md").write_text("# report")
    assert main(["publish", str(run), "--to", str(target)]) == 0
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == [
        "REPRODUCTION.md", "figures/paper_confusion.png", "provenance.json", "tables/paper_table1.md"]
    provenance = json.loads((target / "provenance.json").read_text())
    assert provenance["git"]["commit"] == "abc" and provenance["data"]["sha256"] == "d" * 64
    with pytest.raises(FileExistsError):  # never replaced silently
        report.publish(run, target)
    report.publish(run, target, force=True)
