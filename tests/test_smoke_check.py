"""The smoke-run number check catches real regressions: broken results fed to it fail with a
message naming the quantity and both values; the committed smoke run against itself passes,
so every number it holds has a stated tolerance."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from smoke_numbers import RULES, TIMING, compare_runs, compare_table, tolerance_for

from lightfer_utils import CLASS_NAMES

SMOKE_RUN = Path(__file__).resolve().parent.parent / "papermill_runs" / "smoke"


@pytest.fixture
def replay(tmp_path) -> Path:
    """A copy of the committed smoke run's tables, to break."""
    shutil.copytree(SMOKE_RUN / "tables", tmp_path / "tables")
    return tmp_path


def read(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def write(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def set_cell(path: Path, row_label: str, column: str, value: str) -> None:
    rows = read(path)
    column_index = rows[0].index(column)
    for row in rows[1:]:
        if row[0] == row_label:
            row[column_index] = value
    write(path, rows)


def test_the_smoke_run_matches_itself_and_every_number_has_a_tolerance():
    assert compare_runs(SMOKE_RUN, SMOKE_RUN) == []


def test_every_tolerance_states_why():
    assert all(tolerance.why for _, _, tolerance, *_ in RULES)
    assert tolerance_for("benchmark", "fps") is TIMING and tolerance_for("pruning", "onnx_latency_b1_ms") is TIMING


def test_a_model_that_always_predicts_one_class_fails(replay):
    # the smoke model predicts "neutral" for every face; a broken one predicting "happy" instead
    confusion = replay / "tables" / "confusion_light_fer_net.csv"
    rows = read(confusion)
    happy = rows[0].index("happy")
    write(confusion, [rows[0]] + [[row[0]] + ["1.0" if i == happy else "0.0" for i in range(1, len(row))] for row in rows[1:]])
    set_cell(replay / "tables" / "model_results.csv", "light_fer_net", "test_acc", "24.44")  # 44 happy faces of 180
    problems = compare_runs(SMOKE_RUN, replay)
    text = "\n".join(problems)
    assert "confusion_light_fer_net.csv [angry] happy: smoke run 0, replay 1" in text
    assert "confusion_light_fer_net.csv [angry] neutral: smoke run 1, replay 0" in text
    assert "model_results.csv [light_fer_net] test_acc: smoke run 17.22, replay 24.44" in text
    assert len(problems) == 2 * len(CLASS_NAMES) + 1


def test_an_accuracy_a_few_faces_off_passes_and_one_far_off_fails(replay):
    path = replay / "tables" / "export_parity.csv"
    set_cell(path, "onnx_fp32", "accuracy", "0.1889")  # three faces of 180 more: CPU-kind drift
    assert compare_runs(SMOKE_RUN, replay) == []
    set_cell(path, "onnx_fp32", "accuracy", "0.2444")  # 13 faces more: a different model
    (problem,) = compare_runs(SMOKE_RUN, replay)
    assert problem.startswith("export_parity.csv [onnx_fp32] accuracy: smoke run 0.1722, replay 0.2444, allowed ±0.045")


def test_quantised_formats_have_their_own_tolerances():
    assert tolerance_for("export_parity", "max_abs_dp", "tflite_int8").absolute == 0.02
    assert tolerance_for("export_parity", "max_abs_dp", "onnx_fp16").absolute == 0.002
    assert tolerance_for("quantization_formats_structured", "accuracy", "tflite_dynamic").absolute == 0.065


def test_eq_2_to_4_with_a_wrong_scale_fails(monkeypatch):
    from lightfer_utils.training import quantize
    from lightfer_utils.training.models import build_model

    model = build_model("mini_xception")

    def as_rows(table) -> list[list[str]]:
        frame = table.reset_index()
        return [list(frame.columns)] + [[str(v) for v in row] for row in frame.itertuples(index=False)]

    correct = as_rows(quantize.equation_error_table(model))
    assert compare_table("quantization_equation_error", correct, as_rows(quantize.equation_error_table(model))) == []

    right_quantize = quantize.symmetric_quantize

    def scale_off_by_two(weights, bits, axis=None):
        q = right_quantize(weights, bits, axis=axis)
        return quantize.QuantizedTensor(values=q.values, scale=q.scale * 2, bits=q.bits)

    monkeypatch.setattr(quantize, "symmetric_quantize", scale_off_by_two)
    problems = compare_table("quantization_equation_error", correct, as_rows(quantize.equation_error_table(model)))
    assert any(p.startswith("quantization_equation_error.csv [4] mean_relative_error: smoke run ") and ", replay " in p
               for p in problems), problems


def test_a_missing_column_or_table_is_named(replay):
    path = replay / "tables" / "pruning.csv"
    write(path, [row[:-1] for row in read(path)])
    (replay / "tables" / "anchor_accuracy.csv").unlink()
    problems = compare_runs(SMOKE_RUN, replay)
    assert "pruning.csv: columns differ (missing ['PrivateTest_points_lost'], unexpected [])" in problems
    assert "anchor_accuracy.csv: written by the smoke run, missing from the replay" in problems


def test_a_changed_label_or_row_count_is_named(replay):
    set_cell(replay / "tables" / "quantization_formats.csv", "onnx_int8", "runtime", "tflite")
    path = replay / "tables" / "architectures.csv"
    rows = read(path)
    write(path, rows[:-1])
    problems = compare_runs(SMOKE_RUN, replay)
    assert "quantization_formats.csv [onnx_int8] runtime: smoke run 'onnxruntime', replay 'tflite'" in problems
    assert f"architectures.csv: {len(rows)} rows in the smoke run, {len(rows) - 1} in the replay" in problems


def test_timings_are_never_compared(replay):
    set_cell(replay / "tables" / "benchmark.csv", "keras_fp32", "fps", "1.0")
    set_cell(replay / "tables" / "pruning.csv", "dense", "onnx_latency_b1_ms", "99.0")
    assert compare_runs(SMOKE_RUN, replay) == []


def test_a_number_without_a_stated_tolerance_fails(replay):
    path = replay / "tables" / "new_numbers.csv"
    write(path, [["model", "mystery"], ["light_fer_net", "0.5"]])
    problems = compare_table("new_numbers", read(path), read(path))
    assert problems == ["new_numbers.csv [light_fer_net] mystery: no tolerance is stated for this number (tests/smoke_numbers.py RULES)"]
