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
    joined.insert(0, "model", PAPER_MODEL_LABEL if paper_model else main_model_name(run_dir))
    return joined.sort_index()


# Decimals per kind of column, first match on the column's name: ratios and differences to 2,
# frame rates and powers whole, accuracies in % and memory in GB to 2, minutes to 1.
DECIMALS = (("_vs_", 2), ("minus", 2), ("fps", 0), ("_mw", 0), ("parameters", 0), ("percent", 2), ("_acc", 2),
            ("_gb", 2), ("minutes", 1))


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """The table as text for people (Markdown, LaTeX, REPRODUCTION.md): each number with the
    precision its kind deserves (DECIMALS; others 3 significant digits), thousands separated,
    missing values blank. The CSV keeps the numbers."""
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
    return text


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


# --------------------------------------------------------------------------- report

def reproduction_report(run_dir: Path, tables: dict[str, pd.DataFrame], missing: dict[str, str]) -> str:
    """REPRODUCTION.md: what was reproduced, what differs, the host, the manifest, how to regenerate."""
    manifest_file = RunDir(run_dir).manifest
    manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    git = manifest.get("git", {})
    lines = ["# Reproduction report", "",
             f"Generated by `07_tables` from run `{manifest.get('run_id', '?')}` "
             f"(profile `{manifest.get('profile', '?')}`, git {git.get('commit', '?')}, data sha256 "
             f"`{manifest.get('data', {}).get('sha256', '?')}`). Every number of ours below comes from that run's "
             "artifacts; the paper's numbers come from `lightfer_utils.published`.", "",
             "Regenerate: `lightfer tables RUN_DIR --force` (tables only) or "
             f"`lightfer run --profile {manifest.get('profile', 'cpu')} --data PATH` (everything).", ""]
    host = manifest.get("host", {})
    if host:
        lines += [f"Host: {host.get('cpu')} ({host.get('cpu_isa', 'vector extensions not recorded')}), {host.get('logical_cores')} logical cores, {host.get('ram_gb')} GB RAM, "
                  f"GPUs: {', '.join(g['name'] for g in host.get('gpus', [])) or 'none'}.", ""]
    if manifest.get("profile") == "smoke":
        lines += ["**Smoke profile**: 5 % of the data and one epoch — a check that the pipeline runs, "
                  "not a reproduction; its accuracies mean nothing.", ""]
    titles = {"table1": "Table 1 — confusion matrix (PrivateTest)", "table2": "Table 2 — train / test accuracy",
              "table3": "Table 3 — CPU and memory (% of the machine), FPS (end to end)", "table4": "Table 4 — framework × precision (end to end; classifier alone at batch 1 apart)"}
    for key, title in titles.items():
        lines += [f"## {title}", ""]
        if key == "table1" and key in tables:
            lines += ["Per-class recall (the matrix's diagonal); full matrices in `tables/paper_table1.*`.", "",
                      diagonal(tables[key]).to_markdown(floatfmt=".3f"), ""]
        elif key in tables:
            lines += [readable(tables[key]).to_markdown(disable_numparse=True), ""]
        else:
            lines += [f"Not produced: {missing[key]}", ""]
    drawn = [name for name in FIGURE_ORDER if (RunDir(run_dir).figures / f"{name}.png").is_file()]
    if drawn:
        captions = figure_captions(run_dir)
        lines += ["## Figures", ""]
        for name in drawn:
            lines += [f"![{name}](figures/{name}.png)", "", f"*{name}*: {captions[name]}", ""]
    lines += ["## What differs and why", ""] + differences(run_dir, host) + [""]
    return "\n".join(lines)


FIGURE_ORDER = ("paper_confusion", "paper_accuracy_vs_parameters", "paper_accuracy_vs_sparsity", "paper_size_vs_accuracy",
                "paper_latency", "paper_training_curves")


def _machine(host: dict[str, Any]) -> str:
    gpus = ", ".join(g["name"] for g in host.get("gpus", [])) or "none"
    return f"{host.get('cpu', '?')} ({host.get('cpu_isa', '?')}), {host.get('logical_cores', '?')} cores, GPUs: {gpus}"


def figure_captions(run_dir: Path) -> dict[str, str]:
    """What each paper figure of the run shows and what was run to make it: the models' epochs,
    the data (FER2013's hash, the share of it used), the host."""
    manifest_file = RunDir(run_dir).manifest
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    parameters, host = manifest.get("parameters", {}), manifest.get("host", {})
    fraction = float(parameters.get("subset_fraction", 1.0))
    data = f"FER2013 sha256 {str(manifest.get('data', {}).get('sha256', '?'))[:8]}…" + (
        f", {100 * fraction:g} % of each split" if fraction < 1 else "")
    faces, main = scored_faces(run_dir), main_model_name(run_dir)
    results_file = RunDir(run_dir).table(RunDir.MODEL_RESULTS)
    results = pd.read_csv(results_file) if results_file.is_file() else pd.DataFrame(columns=["model", "epochs", "best_epoch"])
    epochs = {row["model"]: f"`{row.get('name', row['model'])}` {int(row['epochs'])} epochs (best {int(row['best_epoch'])} on PublicTest)"
              for _, row in results.iterrows()}
    origin = (f"02 started from the shipped training records ({parameters['resume_from'].replace(',', ', ')}), so epochs "
              "done there were not re-run" if parameters.get("resume_from") else f"trained by 02 in this run on {_machine(host)}")
    trained = f"Trained on Training: {'; '.join(epochs.values()) or '?'}; {origin}."
    scored = f"PrivateTest: {faces:,} faces ({data}), ±1 standard error, scored on {_machine(host)}."
    bench_host = RunDir(run_dir).benchmark_host
    timed_on = _machine(json.loads(bench_host.read_text())) if bench_host.is_file() else _machine(host)
    return {
        "paper_confusion": f"`{main}`'s normalised confusion matrix on PrivateTest ({faces:,} faces; {data}), rows the true "
                           f"class. Trained on Training: {epochs.get('light_fer_net', '?')}; {origin}.",
        "paper_accuracy_vs_parameters": "Test accuracy against parameters of every model of ours the run scored, with the "
                                        f"paper's Light-FER and Zhou et al.'s mini-Xception as published. {scored} {trained}",
        "paper_accuracy_vs_sparsity": f"tfmot magnitude pruning of `{main}` to each target sparsity, "
                                      f"{parameters.get('prune_epochs', '?')} fine-tuning epoch(s) on Training per point. {scored}",
        "paper_size_vs_accuracy": f"File size against accuracy of each format 04 made of `{main}` (INT8 calibrated on "
                                  f"{parameters.get('calibration_size', '?')} Training faces). {scored}",
        "paper_latency": f"Classifier-only batch-1 latency (median of {parameters.get('iterations', '?')} calls after "
                         f"warm-up) of `{main}` per runtime and precision, the fer package's model in grey; timed by 06 on "
                         f"{timed_on}. End-to-end figures with the face stage are in Tables 3-4.",
        "paper_training_curves": "Loss and accuracy per epoch on Training's augmented batches (solid) and on PublicTest "
                                 f"(dashed; {data}). {trained}",
    }


def differences(run_dir: Path, host: dict[str, Any]) -> list[str]:
    """The "what differs and why" items, with this run's own numbers where it has them."""
    machine = f"{host.get('cpu', '?')} ({host.get('cpu_isa', 'vector extensions not recorded')}), " \
              f"{host.get('logical_cores', '?')} cores, GPUs: {', '.join(g['name'] for g in host.get('gpus', [])) or 'none'}"
    items = [
        f"- Hardware: ours were measured on {machine}; the paper's Table 3 on an i5-10300H PC and its Table 4 on a "
        "Jetson Nano. Rows needing a GPU, TensorRT or a Jetson read 'not run on this host'. Timings depend on the "
        "CPU kind: oneDNN (Keras), ONNX Runtime and XNNPACK (TFLite) choose kernels per CPU, so the ranking of "
        "formats by speed can change between AVX-512 and AVX2 machines; compare timings of one machine only.",
        f"- Model: the paper prunes and quantises stock Xception; our default is the compact "
        f"`{main_model_name(run_dir)}` (see `models/*.card.md`), so Table 2's parameter counts differ by design.",
        "- Table 1 protocol: the paper's Table 1 is an 'actual test' on a local PC with the authors' own images, "
        "not a FER2013 split; ours is the normalised confusion matrix on FER2013's PrivateTest (3,589 faces). "
        "The per-class differences measure two protocols, not a failed reproduction.",
    ]
    results = RunDir(run_dir).table(RunDir.MODEL_RESULTS)
    table = pd.read_csv(results).set_index("model") if results.exists() else pd.DataFrame()
    if "mini_xception" in table.index:
        row = table.loc["mini_xception"]
        items.append(
            f"- mini-Xception: Zhou et al. report 67 % for their 58,423-parameter model after 250 epochs, read off "
            "learning curves on their validation and test sets (their Figs. 12-13), without saying which FER2013 rows "
            f"those are or how the epoch was chosen. Ours ({int(row['parameters']):,} parameters, {int(row['epochs'])} "
            f"epochs, epoch chosen on PublicTest) reaches {row['val_acc']:.2f} % on PublicTest and {row['test_acc']:.2f} % "
            "on PrivateTest, measured once. The `fer` package ships the same architecture (the anchor rows).")
    return items


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


def write_reproduction_report(run_dir: Path, tables: dict[str, pd.DataFrame], missing: dict[str, str]) -> list[str]:
    """07: REPRODUCTION.md of the run; returns its section titles."""
    text = reproduction_report(run_dir, tables, missing)
    RunDir(run_dir).reproduction_report.write_text(text)
    return [line[3:] for line in text.splitlines() if line.startswith("## ")]


PUBLISHED_PATTERNS = ("figures/paper_*.png", "figures/paper_*.pdf", "tables/paper_table*.csv", "tables/paper_table*.md",
                      "tables/paper_table*.tex", "REPRODUCTION.md")


def publish(run_dir: Path, target: Path, force: bool = False) -> list[Path]:
    """Copy a finished run's paper tables, figures and REPRODUCTION.md into `target` (the
    repository's figures/), with provenance.json naming the run, its git revision and data hash."""
    import shutil

    run, target = Path(run_dir), Path(target)
    manifest_file = RunDir(run).manifest
    if not manifest_file.is_file():
        raise MissingArtifact(f"{run} has no manifest.json: not a run directory of `lightfer run`")
    manifest = json.loads(manifest_file.read_text())
    if manifest.get("status") != "completed":
        raise ValueError(f"{run} did not complete (status {manifest.get('status')!r}); publish only finished runs")
    sources = sorted(p for pattern in PUBLISHED_PATTERNS for p in run.glob(pattern))
    if not RunDir(run).reproduction_report.is_file():
        raise MissingArtifact(f"{run} has no REPRODUCTION.md: run 07_tables first (lightfer tables {run})")
    if target.exists() and any(target.iterdir()) and not force:
        raise FileExistsError(f"{target} is not empty; pass --force to replace what it holds")
    if target.exists():
        shutil.rmtree(target)
    copied = []
    for source in sources:
        destination = target / source.relative_to(run)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        copied.append(destination)
    provenance = {key: manifest.get(key) for key in ("run_id", "profile", "parameters", "overrides", "data", "git",
                                                     "started", "finished", "host", "notebooks", "tables_regenerated")}
    provenance["run_dir"] = run.name
    (target / "provenance.json").write_text(json.dumps(provenance, indent=2))
    (target / "README.md").write_text(published_readme(provenance))
    return copied


def published_readme(provenance: dict[str, Any]) -> str:
    """figures/README.md: which run these files come from and the command that makes them again."""
    git, host, data = provenance.get("git") or {}, provenance.get("host") or {}, provenance.get("data") or {}
    overrides = " ".join(f"-p {k}={v}" for k, v in (provenance.get("overrides") or {}).items())
    command = ("make reproduce DATA=PATH" if provenance.get("profile") == "reproduce" and not overrides
               else f"lightfer run --profile {provenance.get('profile')} --data PATH {overrides}".strip())
    minutes = sum(n.get("seconds") or 0 for n in provenance.get("notebooks") or []) / 60
    lines = ["# Published tables and figures", "",
             f"Copied by `lightfer maintain publish` from run `{provenance.get('run_id')}` (profile `{provenance.get('profile')}`, "
             f"git {str(git.get('commit', '?'))[:7]}{', uncommitted changes' if git.get('dirty') else ''}; FER2013 sha256 "
             f"{str(data.get('sha256', '?'))[:8]}…; {host.get('cpu', '?')} ({host.get('cpu_isa', '?')}), "
             f"{host.get('logical_cores', '?')} cores, GPUs: {', '.join(g['name'] for g in host.get('gpus', [])) or 'none'}; "
             f"notebooks {minutes:.0f} min). Made again with", "", "```bash", command, "```", "",
             "`provenance.json` holds the run's parameters, the host and each notebook's time; "
             "`REPRODUCTION.md` the tables with what differs from the paper and why."]
    for regenerated in provenance.get("tables_regenerated") or []:
        lines += ["", f"The tables, figures and REPRODUCTION.md were rebuilt from the run's artifacts by "
                      f"`lightfer tables RUN --force` at git {str(regenerated['git'].get('commit', '?'))[:7]} "
                      f"({regenerated['at']}); nothing of 01-06 was re-run."]
    return "\n".join(lines) + "\n"
