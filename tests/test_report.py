"""07's tables from the committed smoke run's real tables: ours next to the paper, missing rows marked, never invented."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lightfer_utils import published, report, reproduction


SMOKE_RUN = Path(__file__).resolve().parent.parent / "papermill_runs" / "smoke"


@pytest.fixture
def run_dir(tmp_path):
    """The tables the notebooks really wrote (the committed smoke run), so a column that drifts
    in a notebook breaks these tests too; 07's own outputs are left out, it rebuilds them."""
    shutil.copytree(SMOKE_RUN / "tables", tmp_path / "tables", ignore=shutil.ignore_patterns("paper_table*"))
    return tmp_path


def smoke_table(name: str, **kwargs) -> pd.DataFrame:
    return pd.read_csv(SMOKE_RUN / "tables" / name, **kwargs)


def test_table_1_and_2_put_ours_next_to_the_paper(run_dir):
    t1 = report.table_1(run_dir)
    ours = smoke_table("confusion_light_fer_net.csv", index_col=0)
    assert t1["difference"].loc["sad", "sad"] == pytest.approx(ours.loc["sad", "sad"] - published.TABLE_1[4][4], abs=1e-3)
    assert report.diagonal(t1)["paper"].tolist() == [published.TABLE_1[i][i] for i in range(7)]
    t2 = report.table_2(run_dir)
    results = smoke_table("model_results.csv", index_col="model")
    anchors = smoke_table("anchor_accuracy.csv", index_col="format")
    cost = smoke_table("training_cost.csv", index_col="model")
    ours = t2[t2["source"] == "ours"]
    for model, row in results.iterrows():
        assert ours.loc[model, "test_percent"] == row["test_acc"]
        assert ours.loc[model, "test_minus_light_fer"] == pytest.approx(row["test_acc"] - 69.87)
    assert t2.index.is_unique  # a model both trained and costed (mini_xception in smoke) has one row
    for model, minutes in cost["minutes_per_epoch"].items():
        assert t2.loc[model, "minutes_per_epoch"] == minutes
        assert (t2.loc[model, "source"] == "ours") == (model in results.index)
    assert t2.loc["Light-FER", "source"] == "paper"
    assert len(t2) == len(results.index.union(cost.index)) + len(anchors) + len(published.TABLE_2)


def test_table_4_is_end_to_end_keeps_every_paper_row_and_never_fills_in_ours(run_dir):
    t4 = report.table_4(run_dir)
    bench = smoke_table("benchmark.csv")
    batch_1 = bench[bench["batch_size"] == 1].set_index("format")
    pipeline = smoke_table("pipeline_benchmark.csv").set_index("format")
    host = json.loads((SMOKE_RUN / "tables" / "benchmark_host.json").read_text())
    assert set(published.table_4().index) <= set(t4.index)
    for fmt, key in (("tflite_fp16", ("TFLite", "FP16")), ("keras_fp32", ("Keras", "FP32")), ("onnx_fp32", ("ONNX", "FP32"))):
        assert t4.loc[key, "fps"] == round(pipeline.loc[fmt, "fps"], 2)  # end to end, as the paper's
        assert t4.loc[key, "classifier_fps_b1"] == round(batch_1.loc[fmt, "fps"], 2)  # apart, labelled
        assert 0 < t4.loc[key, "cpu_percent_of_machine"] <= 100
        assert t4.loc[key, "cpu_percent_of_machine"] == round(pipeline.loc[fmt, "cpu_percent_of_machine"], 1)
    assert host["logical_cores"] >= 1
    assert t4.loc[("TFLite", "FP16"), "fps_vs_keras_fp32"] == pytest.approx(
        round(pipeline.loc["tflite_fp16", "fps"], 2) / round(pipeline.loc["keras_fp32", "fps"], 2), abs=0.01)
    skipped = bench[bench["status"].notna()].set_index("format")
    assert t4.loc[("TensorRT", "FP16"), "status"] == skipped.loc["tensorrt_fp16", "status"]
    assert np.isnan(t4.loc[("TensorRT", "FP16"), "fps"]) and t4.loc[("TensorRT", "FP16"), "paper_fps"] == 5.51
    anchor = t4.index.get_level_values("framework").str.startswith("fer anchor")
    assert anchor.any() and (t4.loc[anchor, "model"] == report.ANCHOR_MODEL).all()  # not credited to ours
    assert (t4.loc[~anchor, "model"] == report.main_model_name(run_dir)).all()


def test_table_3_gives_cpu_as_a_share_of_the_whole_machine(run_dir):
    t3 = report.table_3(run_dir)
    assert {"cpu_percent_of_machine", "mem_percent_of_ram", "fps_end_to_end"} <= set(t3.columns)
    ours = t3[t3["source"].str.startswith("ours")]
    assert len(ours) >= 1 and (ours["cpu_percent_of_machine"] <= 100).all()
    assert t3.loc["Light-FER", "cpu_percent_of_machine"] == 18.4


def test_missing_artifacts_are_named_and_all_formats_written(run_dir):
    (run_dir / "tables" / "pipeline_benchmark.csv").unlink()
    with pytest.raises(report.MissingArtifact, match="pipeline_benchmark.csv"):
        report.table_3(run_dir)
    paths = report.save_all_formats(report.table_2(run_dir), run_dir, "paper_table2")
    assert "\\toprule" in paths["tex"].read_text() and "| light_fer_net" in paths["md"].read_text()
    text = reproduction.reproduction_report(run_dir, {"table2": report.table_2(run_dir)}, {"table1": "x", "table3": "y", "table4": "z"})
    assert "Not produced: y" in text and "light_fer_net" in text


def test_each_figure_of_the_report_has_a_caption_saying_what_was_run(run_dir):
    results = smoke_table("model_results.csv", index_col="model")
    host = {"cpu": "Some CPU", "cpu_isa": "AVX2", "logical_cores": 2, "gpus": []}
    (run_dir / "manifest.json").write_text(json.dumps({
        "run_id": "r", "profile": "reproduce", "host": host, "data": {"sha256": "abcdef0123" + "0" * 54},
        "parameters": {"subset_fraction": 1.0, "prune_epochs": 3, "iterations": 77, "resume_from": "models/a/training"}}))
    (run_dir / "figures").mkdir()
    for name in ("paper_latency", "paper_training_curves", "paper_accuracy_vs_sparsity"):
        (run_dir / "figures" / f"{name}.png").write_bytes(b"png")
    text = reproduction.reproduction_report(run_dir, {}, {"table1": "x", "table2": "x", "table3": "x", "table4": "x"})
    figures = text.split("## Figures")[1].split("## What differs")[0]
    assert figures.count("![") == 3 and "paper_confusion" not in figures  # only the figures the run drew
    captions = {line.split("*")[1]: line for line in figures.splitlines() if line.startswith("*")}
    timed = json.loads((run_dir / "tables" / "benchmark_host.json").read_text())  # 06's host names the timings
    assert "median of 77 calls" in captions["paper_latency"] and f"on {timed['cpu']} ({timed['cpu_isa']})" in captions["paper_latency"]
    assert "scored on Some CPU (AVX2), 2 cores, GPUs: none" in captions["paper_accuracy_vs_sparsity"]
    assert "3 fine-tuning epoch(s)" in captions["paper_accuracy_vs_sparsity"]
    assert "3,589 faces" in captions["paper_accuracy_vs_sparsity"]  # the full split: subset_fraction 1
    curves = captions["paper_training_curves"]
    assert "sha256 abcdef01" in curves and "models/a/training" in curves and "not re-run" in curves
    for model, row in results.iterrows():
        assert f"`{row['name'] if 'name' in row else model}` {int(row['epochs'])} epochs (best {int(row['best_epoch'])}" in curves


def test_publish_copies_a_finished_runs_tables_and_figures_with_provenance(tmp_path):
    from lightfer_utils.cli import main

    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "tables").mkdir()
    (run / "figures" / "paper_confusion.png").write_bytes(b"png")
    (run / "figures" / "training_curves.png").write_bytes(b"not a paper figure")
    (run / "tables" / "paper_table1.md").write_text("| table |")
    manifest = {"run_id": "reproduce-1", "profile": "reproduce", "status": "running", "git": {"commit": "abc", "dirty": False},
                "data": {"sha256": "d" * 64}, "notebooks": [{"name": "01_data", "seconds": 120.0}],
                "tables_regenerated": [{"git": {"commit": "fedcba9876"}, "at": "2026-11-30T17:00:00"}]}
    (run / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "figures"
    with pytest.raises(ValueError, match="did not complete"):
        reproduction.publish(run, target)
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "completed"}))
    with pytest.raises(report.MissingArtifact, match="REPRODUCTION.md"):
        reproduction.publish(run, target)
    (run / "REPRODUCTION.md").write_text("# report")
    assert main(["maintain", "publish", str(run), "--to", str(target)]) == 0
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == [
        "README.md", "REPRODUCTION.md", "figures/paper_confusion.png", "provenance.json", "tables/paper_table1.md"]
    provenance = json.loads((target / "provenance.json").read_text())
    assert provenance["git"]["commit"] == "abc" and provenance["data"]["sha256"] == "d" * 64
    readme = (target / "README.md").read_text()
    assert "run `reproduce-1`" in readme and "make reproduce DATA=PATH" in readme and "notebooks 2 min" in readme
    assert "at git fedcba9" in readme  # tables rebuilt later by newer code are said to be
    with pytest.raises(FileExistsError):  # never replaced silently
        reproduction.publish(run, target)
    reproduction.publish(run, target, force=True)


def test_readable_tables_give_each_kind_of_number_its_precision():
    table = pd.DataFrame({"fps": [1413.26, np.nan], "test_percent": [71.3333, 61.35], "cpu_gb": [0.31416, 1.0],
                          "parameters": [958023.0, 58423.0], "fps_vs_keras_fp32": [12.345, 1.0], "ece": [0.0701, 0.2],
                          "status": ["measured", np.nan]}, index=["a", "b"])
    text = report.readable(table)
    assert text.loc["a"].tolist() == ["1,413", "71.33", "0.31", "958,023", "12.35", "0.0701", "measured"]
    assert text.loc["b", "FPS (end to end)"] == "" and text.loc["b", "Status"] == ""
    assert list(text.columns[:2]) == ["FPS (end to end)", "Test (%)"] and "ece" in text  # headers in words
    assert "e+" not in report.readable(pd.DataFrame({"fps": [14100.0]})).to_markdown(disable_numparse=True)


def test_table_2_names_our_rows_after_the_models_and_states_the_cost_of_those_not_trained(run_dir):
    results = smoke_table("model_results.csv")
    results["name"] = results["model"].replace({"light_fer_net": "light_fer_net_deep"})
    results.to_csv(run_dir / "tables" / "model_results.csv", index=False)
    pd.DataFrame({"model": ["big_net"], "parameters": [23_600_903], "MFLOPs_per_face": [1200.0], "batch_size": [64],
                  "steps_timed": [5], "seconds_per_step": [1.1], "minutes_per_epoch": [8.2]}).to_csv(
        run_dir / "tables" / "training_cost.csv", index=False)
    t2 = report.table_2(run_dir)
    assert "light_fer_net_deep" in t2.index and "light_fer_net" not in t2.index
    assert t2.loc["big_net", "minutes_per_epoch"] == 8.2 and np.isnan(t2.loc["big_net", "test_percent"])
    assert "not trained on this CPU" in t2.loc["big_net", "source"]
    assert report.main_model_name(run_dir) == "light_fer_net_deep"


def test_readable_tables_keep_the_papers_values_as_published_and_flatten_row_pairs():
    table = pd.DataFrame({"fps": [235.4], "paper_fps": [4.85], "paper_cpu_gb": [0.863], "paper_fps_vs_keras_fp32": [1.944]},
                         index=pd.MultiIndex.from_tuples([("TFLite", "FP32")]))
    text = report.readable(table)
    assert text.index.tolist() == ["TFLite FP32"]
    assert text.iloc[0].tolist() == ["235", "4.85", "0.863", "1.94"]


def test_every_paper_table_is_flat_and_its_latex_compiles(run_dir, tmp_path):
    """Tables a paper can use: one header row, escaped text, numbers right-aligned, and a real LaTeX
    engine (Debian's pdflatex + booktabs, installed by `make latex` / CI) compiles each .tex."""
    import os
    import shutil
    import subprocess

    tables, missing = report.paper_tables(run_dir)
    assert {"table1", "table2", "table3", "table4"} <= set(tables), missing
    for name, table in tables.items():
        paths = report.save_all_formats(table, run_dir, f"paper_{name}")
        header = paths["md"].read_text().splitlines()[0]
        assert "('" not in header and "_percent" not in header, header  # flat headers, in words
        tex = paths["tex"].read_text()
        assert "\\toprule" in tex and "_" not in tex.replace("\\_", ""), name  # underscores escaped
        columns = tex.split("\\begin{tabular}{", 1)[1].split("}", 1)[0]
        assert columns[0] == "l" and "r" in columns, columns
    if shutil.which("pdflatex") is None:
        if os.environ.get("LIGHTFER_REQUIRE_LATEX") == "1":
            pytest.fail("pdflatex is not installed (make latex)")
        pytest.skip("pdflatex is not installed (make latex installs Debian's texlive-latex-base and -recommended)")
    for name in tables:
        document = tmp_path / f"{name}.tex"
        document.write_text("\\documentclass{article}\\usepackage{booktabs}\\usepackage[T1]{fontenc}\n"
                            "\\usepackage[landscape,margin=5mm]{geometry}\\begin{document}\\tiny\n"
                            f"\\input{{{run_dir / 'tables' / f'paper_{name}.tex'}}}\n\\end{{document}}\n")
        result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout[-2000:]
        assert (tmp_path / f"{name}.pdf").stat().st_size > 1000
