"""The timing harness (runs on the Jetson's Python 3.6) and the Keras model loader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lightfer_utils.runtime import benchmark
from lightfer_utils.training.train import load_trained

# the runtime side (what 06_jetson_benchmark and predict import) must run on JetPack 4.6's Python 3.6:
# the whole folder, so a new module cannot slip past the check; the package's __init__ runs first
RUNTIME_FOLDER = Path(benchmark.__file__).parent
JETSON_MODULES = [RUNTIME_FOLDER.parent / "__init__.py", RUNTIME_FOLDER]


def test_time_predictor_counts_calls_and_reports_percentiles():
    calls = []

    def predict(batch):
        calls.append(len(batch))
        return np.zeros((len(batch), 7), np.float32)

    result = benchmark.time_predictor(predict, np.zeros((5, 48, 48), np.uint8), batch_size=8, iterations=30, warmup=4)
    assert calls == [8] * 34  # batches larger than the face set are built by repetition
    assert result["latency_p50_ms"] <= result["latency_p90_ms"] <= result["latency_p99_ms"]
    assert result["faces_per_second"] > 0 and result["iterations"] == 30
    with pytest.raises(ValueError):
        benchmark.time_predictor(predict, np.zeros((5, 48, 48)), batch_size=0)


def test_interleaved_timings_load_each_model_once_per_round_in_turn():
    events = []

    def loader(name):
        def load():
            events.append(("load", name))
            return lambda batch: events.append((name, len(batch))) or np.zeros((len(batch), 7), np.float32)
        return load

    timings = benchmark.interleaved_timings({"a": loader("a"), "b": loader("b")}, np.zeros((6, 48, 48), np.uint8),
                                            batch_sizes=(1, 4), iterations=8, rounds=3, warmup=1)
    loads = [name for event, name in events if event == "load"]
    assert loads == ["a", "b"] * 3  # interleaved, one model alive at a time
    first_round = events[:events.index(("load", "b"))]
    assert first_round.count(("a", 1)) == 1 + 8 and first_round.count(("a", 4)) == 1 + 5  # warm-up + timed calls
    assert set(timings) == {"a", "b"} and set(timings["a"]) == {1, 4}
    assert timings["a"][4]["batch_size"] == 4 and timings["b"][1]["latency_p50_ms"] > 0
    with pytest.raises(ValueError, match="rounds"):
        benchmark.interleaved_timings({"a": loader("a")}, np.zeros((6, 48, 48)), rounds=0)


def test_the_runtime_side_needs_no_python_newer_than_3_6():
    result = subprocess.run([str(Path(sys.executable).with_name("vermin")), "--no-tips", "--violations", "-t=3.6-",
                             *map(str, JETSON_MODULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_load_trained_explains_what_it_cannot_load(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished training run"):
        load_trained(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match="expected a Keras model"):
        load_trained(tmp_path / "model.onnx")


def test_tegrastats_lines_of_old_and_new_jetpacks():
    from lightfer_utils.runtime.resources import parse_tegrastats

    nano = "RAM 1843/3964MB (lfb 1x2MB) CPU [12%@1479,3%@1479] GR3D_FREQ 0%@921 POM_5V_IN 3176/3201 POM_5V_GPU 83/83"
    orin = "RAM 2810/7620MB SWAP 0/3810MB CPU [2%@729] VDD_IN 4880mW/4880mW VDD_CPU_GPU_CV 479mW/479mW"
    assert parse_tegrastats(nano) == {"power_mw": 3176.0, "ram_used_mb": 1843.0}
    assert parse_tegrastats(orin) == {"power_mw": 4880.0, "ram_used_mb": 2810.0}
    assert parse_tegrastats("garbage") == {"power_mw": None, "ram_used_mb": None}


def test_benchmark_rows_carry_table_4_columns_and_say_where_power_comes_from():
    def predict(batch):
        return np.zeros((len(batch), 7), np.float32)

    rows = benchmark.benchmark_predictors({"zeros": predict}, np.zeros((8, 48, 48), np.uint8), batch_sizes=(1, 4),
                                          iterations=8, warmup=1)
    assert [(r["format"], r["batch_size"]) for r in rows] == [("zeros", 1), ("zeros", 4)]
    for row in rows:
        assert row["fps"] > 0 and row["cpu_memory_gb"] > 0 and 0 <= row["cpu_percent_of_machine"] <= 101
        assert row["power_source"]  # a source or the reason there is none
        if row["power_mw"] is None:
            assert row["power_source"].startswith("not available")


def test_recall_composites_place_labelled_faces_at_known_sizes_and_the_detector_finds_them():
    from lightfer_utils.runtime.benchmark import face_recall
    from lightfer_utils.runtime.face_photos import astronaut, composites, face_crops
    from lightfer_utils.runtime.faces import FaceStage

    crops = face_crops([astronaut()])
    assert crops[0][0].shape == (192, 192, 3) and crops[0][1] == 0.5  # the face and as much around it
    frames, truths = composites(crops, count=2, per_frame=2, sizes=(100, 160))
    assert [[size for _, size in placed] for placed in truths] == [[100, 160], [100, 160]]
    assert all(box[2] - box[0] == size for placed in truths for box, size in placed)
    (row,) = face_recall(lambda m: FaceStage(min_face=m), [80], frames, truths)
    assert row["recall_100px"] == row["recall_160px"] == row["recall"] == 1.0 and row["false_detections"] == 0
    (coarse,) = face_recall(lambda m: FaceStage(min_face=m), [300], frames, truths)
    assert coarse["recall_100px"] == 0.0  # faces smaller than min_face are not searched for


def test_the_group_photo_is_checked_by_sha256_and_a_wrong_file_is_named(tmp_path, monkeypatch):
    """No network here: a file in LIGHTFER_PHOTOS that is not insightface's t1.jpg is refused."""
    from lightfer_utils.runtime.face_photos import group_photo

    (tmp_path / "t1.jpg").write_bytes(b"not the photo")
    monkeypatch.setenv("LIGHTFER_PHOTOS", str(tmp_path))
    with pytest.raises(ValueError, match=r"t1.jpg is not insightface 2.1's t1.jpg \(sha256 differs\)"):
        group_photo(tmp_path / "cache")


def test_compare_pipelines_runs_every_pipeline_on_the_same_frames_with_workers():
    from lightfer_utils.runtime.benchmark import compare_pipelines

    seen = []
    frames = np.zeros((3, 4, 4), np.uint8)
    factories = {"one face": lambda: (lambda frame: seen.append(frame.shape) or [1]),
                 "none": lambda: (lambda frame: [])}
    result = compare_pipelines(factories, frames, iterations=10, rounds=2, workers=2, warmup=1)
    assert result["one face"]["faces_per_frame"] == 1.0 and result["none"]["faces_per_frame"] == 0.0
    assert result["one face"]["fps"] > 0 and set(seen) == {(4, 4)}
    with pytest.raises(ValueError, match="at least 1"):
        compare_pipelines(factories, frames, iterations=0)


def test_the_nano_step_skips_in_one_line_without_tensorrt_and_checks_the_onnx_first(tmp_path, capsys):
    """`python3 -m lightfer_utils.runtime.nano RUN` builds FP32/FP16 engines on the Nano and runs 06
    there; here (no TensorRT) it says why in one line; an ONNX file TensorRT 8.2 cannot parse is
    named before any engine is built."""
    import onnx
    from onnx import TensorProto, helper

    from lightfer_utils.runtime import nano
    from lightfer_utils.runtime.rundir import RunDir

    run = RunDir(tmp_path / "run")
    run.quantized.mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "lightfer_utils.runtime.nano", str(run.root)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("nano: skipped: no TensorRT engines can be built here: ")
    assert len(result.stdout.splitlines()) == 1 and not result.stderr.strip()
    assert nano.main([str(run.root), "--precisions", "fp64"]) == 2
    assert "--precisions takes fp32, fp16, int8" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="model.onnx is missing"):
        nano.build_engines(run, ["fp16"])
    face = helper.make_tensor_value_info("face", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["face"], ["out"])], "g", [face],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(run.quantized / "model.onnx"))
    with pytest.raises(ValueError, match=r"opset 17 \(TensorRT 8.2 parses up to 13\)"):
        nano.build_engines(run, ["fp16"])
    assert not run.tensorrt.exists()


def test_bench_pipeline_prints_both_modes_the_stages_and_each_target_met_or_not(monkeypatch, capsys):
    """With a stand-in for fer's pipeline (no download here): the still and video sections, the time
    per stage, and one verdict per target of issue 34, whichever way the CPU decides them."""
    import time as clock

    from lightfer_utils.cli import bench, main
    from lightfer_utils.runtime import anchor

    def slow_peer(files):
        return lambda frame: clock.sleep(0.002) or [object()]

    monkeypatch.setattr(bench, "_fer_peer_files", lambda: "stand-in")
    monkeypatch.setattr(anchor, "FerPipeline", slow_peer)
    assert main(["bench", "pipeline", "--iterations", "5", "--workers", "1", "--detector", "blazeface",
                 "--min-face", "80,160", "--full-detect-every", "5"]) == 0
    out = capsys.readouterr().out
    assert "640x480 frames with one ~175 px face:" in out and "video mode (--full-detect-every 5)" in out
    assert "lightfer blazeface --min-face 80 --full-detect-every 5" in out and "x fer" in out
    assert "blazeface --min-face 80 video mode:" in out
    verdicts = out.split("targets over fer")[1].splitlines()[1:4]
    assert [v.split(" (>=")[0].strip() for v in verdicts] == ["predict's defaults", "--min-face 160", "video mode"]
    assert all(v.endswith(": met") or v.endswith(": NOT met") for v in verdicts)


def test_alignment_agreement_compares_the_two_alignments_of_the_same_faces():
    from lightfer_utils.runtime.face_photos import alignment_agreement
    from lightfer_utils.runtime.face_photos import astronaut

    calls = []
    result = alignment_agreement([astronaut().image], lambda faces: calls.append(faces.shape) or np.eye(7)[[3]])
    assert result["faces"] == 1 and result["same_top_emotion"] == 1.0 and calls == [(1, 48, 48), (1, 48, 48)]
    assert 0 <= result["median_roll_difference_deg"] <= 15
