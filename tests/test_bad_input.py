"""`lightfer predict` on bad and unusual input: one clear line per case, the right exit status,
no traceback, no lost finished row. (Hostile model files: test_model_safety.py.)"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from lightfer_utils.cli import main
from lightfer_utils.runtime.errors import ModelLoadError
from lightfer_utils.runtime.faces import FaceStage
from lightfer_utils.runtime.tagging import ResultWriter, expand_inputs, predict_files
from lightfer_utils.runtime.predictor import load_predictor


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    from lightfer_utils.training.export import export_onnx
    from lightfer_utils.training.models import build_model

    path = tmp_path_factory.mktemp("model") / "m.onnx"
    export_onnx(build_model("light_fer_net", widths=(8, 8, 8, 8), blocks=(0, 1, 1, 1)), path)
    return path


@pytest.fixture(scope="module")
def stage() -> FaceStage:
    return FaceStage()


@pytest.fixture
def photos(tmp_path) -> Path:
    """Six photos of the astronaut (one face each) in a folder."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(data.astronaut()).save(folder / f"photo_{i}.png")
    return folder


def run(capsys, *args) -> tuple[int, str, str]:
    status = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


def csv_files(path: Path) -> list[str]:
    with open(path, newline="") as handle:
        return [row["file"] for row in csv.DictReader(handle)]


# --------------------------------------------------------------------------- odd images never end the batch

def test_decompression_bomb_strip_and_bad_files_are_skipped_and_the_rest_kept(tmp_path, photos, onnx_model, capsys):
    Image.new("1", (15000, 15000)).save(photos / "bomb.png")  # 225 megapixels, a few kB on disk
    Image.fromarray(np.full((2, 5000), 100, np.uint8)).save(photos / "strip.png")
    (photos / "notes.jpg").write_text("not an image")
    out = tmp_path / "faces.csv"
    status, _, err = run(capsys, photos, "--model", onnx_model, "--csv", out)
    assert status == 0
    assert "skipped: " in err and "bomb.png: 15000x15000 pixels is over the limit of 120,000,000 (--max-megapixels)" in err
    assert "notes.jpg: not an image" in err and "no face: " in err and "strip.png" in err
    assert len(csv_files(out)) == 6  # every good photo's face is kept


def test_a_smaller_pixel_limit_is_stated_in_the_message(tmp_path, photos, onnx_model, capsys):
    status, _, err = run(capsys, photos / "photo_0.png", "--model", onnx_model, "--max-megapixels", "0.1")
    assert status == 0 and "262,144 pixels is over the limit of 100,000 (--max-megapixels)" in err


def test_interrupt_keeps_every_finished_row_and_resume_completes_without_repeats(tmp_path, photos, onnx_model, stage):
    predictor = load_predictor(onnx_model)
    calls = []

    def interrupt_on_the_fourth_file(faces):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return predictor(faces)

    out, jsonl = tmp_path / "faces.csv", tmp_path / "faces.jsonl"
    writer = ResultWriter(out, jsonl)
    first = predict_files(expand_inputs([photos]), interrupt_on_the_fourth_file, stage, writer=writer, progress=False)
    writer.close()
    assert first.interrupted and first.done == 3 and len(csv_files(out)) == 3
    writer = ResultWriter(out, jsonl, resume=True)
    second = predict_files(expand_inputs([photos]), predictor, stage, writer=writer, progress=False)
    writer.close()
    assert second.already_done == 3 and second.done == 3 and not second.interrupted
    assert sorted(csv_files(out)) == sorted(str(p) for p in photos.iterdir())
    assert len(jsonl.read_text().splitlines()) == 6


def test_an_interrupted_command_says_how_much_was_kept(tmp_path, photos, onnx_model, capsys, monkeypatch):
    import lightfer_utils.runtime.tagging as predict

    real = predict._predict_input
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(predict, "_predict_input", interrupted)
    out = tmp_path / "faces.csv"
    status, _, err = run(capsys, photos, "--model", onnx_model, "--csv", out)
    assert status == 130 and "interrupted: the 2 finished inputs are kept in" in err and "--resume" in err
    assert len(csv_files(out)) == 2


def test_a_resumed_file_that_is_not_ours_is_refused(tmp_path, photos, onnx_model, capsys):
    out = tmp_path / "other.csv"
    out.write_text("a,b\n1,2\n")
    status, _, err = run(capsys, photos, "--model", onnx_model, "--csv", out, "--resume")
    assert status == 2 and "not a lightfer predict CSV" in err


# --------------------------------------------------------------------------- outputs checked before the work

@pytest.mark.parametrize("case, expected", [
    ("missing_folder", "does not exist (create it, or pass --mkdir)"),
    ("folder_as_file", "is a folder; --csv and --json take a file name"),
    ("same_file", "--csv and --json name the same file"),
    ("exists", "exists; pass --force to replace it or --resume to continue it"),
    ("force_and_resume", "choose one"),
])
def test_bad_outputs_are_refused_before_the_first_image(tmp_path, photos, onnx_model, capsys, case, expected):
    out = tmp_path / "faces.csv"
    args = {"missing_folder": ["--csv", tmp_path / "no" / "faces.csv"],
            "folder_as_file": ["--csv", tmp_path, "--force"],
            "same_file": ["--csv", out, "--json", out],
            "exists": ["--csv", out],
            "force_and_resume": ["--csv", out, "--force", "--resume"]}[case]
    out.write_text("") if case == "exists" else None
    status, stdout, err = run(capsys, photos, "--model", onnx_model, *args)
    assert status == 2 and expected in err and err.count("\n") == 1 and stdout == ""


def test_mkdir_creates_the_output_folder(tmp_path, photos, onnx_model, capsys):
    status, _, _ = run(capsys, photos / "photo_0.png", "--model", onnx_model, "--csv", tmp_path / "new" / "f.csv", "--mkdir")
    assert status == 0 and len(csv_files(tmp_path / "new" / "f.csv")) == 1


def test_annotated_names_keep_the_path_and_never_collide(tmp_path, onnx_model, capsys):
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        Image.fromarray(data.astronaut()).save(tmp_path / "in" / sub / "same.png")
    status, _, _ = run(capsys, tmp_path / "in", "--model", onnx_model, "--annotate", tmp_path / "ann")
    assert status == 0
    assert sorted(p.relative_to(tmp_path / "ann").as_posix() for p in (tmp_path / "ann").rglob("*.png")) == [
        "in/a/same_annotated.png", "in/b/same_annotated.png"]
    status, _, err = run(capsys, tmp_path / "in" / "a" / "same.png", tmp_path / "in" / "b" / "same.png",
                         "--model", onnx_model, "--annotate", tmp_path / "ann2")
    assert status == 2 and "would both be annotated as" in err


def test_a_missing_input_is_refused_with_a_non_zero_status(tmp_path, onnx_model, capsys):
    status, _, err = run(capsys, tmp_path / "nope.jpg", "--model", onnx_model)
    assert status == 2 and "no such file or folder" in err and "nope.jpg" in err


# --------------------------------------------------------------------------- faces by size, crops, hints

def test_face_crops_need_crops_and_the_hint_says_so(tmp_path, onnx_model, capsys):
    folder = tmp_path / "crops"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 48), dtype=np.uint8)).save(folder / f"{i}.png")
    status, _, err = run(capsys, folder, "--model", onnx_model)
    assert status == 0 and "no face found in any input" in err and "--crops" in err
    out = tmp_path / "crops.csv"
    status, _, _ = run(capsys, folder, "--model", onnx_model, "--crops", "--csv", out)
    assert status == 0 and len(csv_files(out)) == 3


@pytest.mark.parametrize("value", ["0", "-1", "5000"])
def test_an_impossible_min_face_is_refused(onnx_model, photos, capsys, value):
    status, _, err = run(capsys, photos, "--model", onnx_model, "--min-face", value)
    assert status == 2 and "min_face must be between 20 and 4000 px" in err


def test_min_face_finds_small_faces_only_when_asked(tmp_path, onnx_model, capsys):
    import cv2

    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)  # a ~40 px face
    frame = np.full((600, 800), 128, np.uint8)
    frame[100:100 + small.shape[0], 200:200 + small.shape[1]] = small
    Image.fromarray(frame).save(tmp_path / "small_face.png")
    _, out_default, _ = run(capsys, tmp_path / "small_face.png", "--model", onnx_model)
    _, out_small, _ = run(capsys, tmp_path / "small_face.png", "--model", onnx_model, "--min-face", "35")
    assert "no faces found" in out_default and "small_face.png" in out_small


# --------------------------------------------------------------------------- model contract

def onnx_with(path: Path, input_shape: list, classes: int = 7) -> Path:
    import onnx
    from onnx import helper, numpy_helper

    flat = int(np.prod([d for d in input_shape[1:]]))
    weights = numpy_helper.from_array(np.full((flat, classes), 1e-3, np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, flat], np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [input_shape[0], classes])],
                              [weights, shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_a_model_with_another_input_size_or_class_count_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match=r"takes input \[N, 64, 64, 1\]; lightfer models take \[N, 48, 48, 1\]"):
        load_predictor(onnx_with(tmp_path / "big.onnx", [None, 64, 64, 1]))
    with pytest.raises(ModelLoadError, match=r"returns \[N, 3\]; lightfer models return \[N, 7\]"):
        load_predictor(onnx_with(tmp_path / "three.onnx", [None, 48, 48, 1], classes=3))


def test_a_model_with_three_output_tensors_is_refused(tmp_path):
    import onnx
    from onnx import helper

    model = onnx.load(str(onnx_with(tmp_path / "one.onnx", [None, 48, 48, 1])))
    for name in ("logits", "flat"):  # expose two intermediate tensors as outputs too
        model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    onnx.save(model, str(tmp_path / "three.onnx"))
    with pytest.raises(ModelLoadError, match="has 1 inputs and 3 outputs; lightfer models have one of each"):
        load_predictor(tmp_path / "three.onnx")


def test_a_batch_of_one_model_is_run_face_by_face(tmp_path):
    predictor = load_predictor(onnx_with(tmp_path / "one.onnx", [1, 48, 48, 1]))
    assert predictor.max_batch == 1 and predictor(np.zeros((5, 48, 48, 1), np.float32)).shape == (5, 7)


def test_the_command_refuses_a_contract_breaking_model_in_one_line(tmp_path, photos, capsys):
    status, _, err = run(capsys, photos, "--model", onnx_with(tmp_path / "big.onnx", [None, 64, 64, 1]))
    assert status == 2 and err.count("\n") == 1 and "[N, 48, 48, 1]" in err


def test_jsonl_records_every_input_kind(tmp_path, photos, onnx_model, capsys):
    (photos / "broken.png").write_bytes(b"\x89PNG broken")
    Image.fromarray(np.full((200, 200), 128, np.uint8)).save(photos / "blank.png")
    out = tmp_path / "faces.jsonl"
    run(capsys, photos, "--model", onnx_model, "--json", out)
    statuses = sorted(json.loads(line)["status"] for line in out.read_text().splitlines())
    assert statuses == ["face"] * 6 + ["no face", "skipped"]


def test_workers_give_the_same_rows_in_the_same_order(tmp_path, photos, onnx_model, stage):
    (photos / "broken.png").write_bytes(b"\x89PNG broken")
    Image.fromarray(np.full((200, 200), 128, np.uint8)).save(photos / "blank.png")
    predictor = load_predictor(onnx_model)
    one = predict_files(expand_inputs([photos]), predictor, stage, progress=False, workers=1)
    two = predict_files(expand_inputs([photos]), predictor, stage, progress=False, workers=2)
    assert two.rows == one.rows and len(one.rows) == 6
    assert two.problems == one.problems and two.files_without_faces == one.files_without_faces


def test_a_tflite_prediction_writes_only_its_own_summary_to_stderr(tmp_path):
    """LiteRT prints "Created TensorFlow Lite XNNPACK delegate" to file descriptor 2 at its first
    allocation, past capsys: run the command itself."""
    import os
    import subprocess
    import sys

    crop = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)).save(crop)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "LIGHTFER_DEBUG")}
    command = [sys.executable, "-m", "lightfer_utils.cli", "predict", "--crops", "--model",
               "light_fer_net_deep:tflite_int8", str(crop)]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert quiet.returncode == 0 and quiet.stderr.startswith("1 faces with tflite"), quiet.stderr
    assert len(quiet.stderr.splitlines()) == 1
    debugging = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**env, "LIGHTFER_DEBUG": "1"})
    assert debugging.returncode == 0 and "XNNPACK" in debugging.stderr


# --------------------------------------------------------------------------- input names never reach outputs raw


def test_hostile_names_reach_csv_json_and_the_terminal_neutralised_and_resume_matches_them(tmp_path, onnx_model, capsys,
                                                                                          monkeypatch):
    """A name that a spreadsheet would run (=, +, -, @), one with a terminal escape sequence and one
    that is not UTF-8, all made here: the CSV cell is quoted with an apostrophe, the terminal sees
    escapes, the bytes that are not UTF-8 become \\xNN, and --resume recognises every one of them."""
    import json
    import os

    from lightfer_utils.runtime.safe_text import csv_cell, path_text, terminal_text

    folder = tmp_path / "in"
    folder.mkdir()
    face = Image.fromarray(data.astronaut())
    names = ["=HYPERLINK(1).png", "+1.png", "@cmd.png", "-x.png", "\x1b[31mred.png"]
    for name in names:
        face.save(folder / name)
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.png"), "wb") as handle:  # Latin-1 bytes: not UTF-8
        face.save(handle, format="PNG")
    monkeypatch.chdir(folder)
    inputs = [*names, os.fsdecode(b"caf\xe9.png")]
    outputs = ("--csv", tmp_path / "r.csv", "--json", tmp_path / "r.jsonl")
    status, out, err = run(capsys, "--model", onnx_model, *outputs, "--", *inputs)
    assert status == 0 and "\x1b" not in out + err and "\\x1b[31mred.png" in out
    cells = csv_files(tmp_path / "r.csv")
    assert cells == ["'=HYPERLINK(1).png", "'+1.png", "'@cmd.png", "'-x.png", "\x1b[31mred.png", "caf\\xe9.png"]
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["file"] for r in records] == [*names, "caf\\xe9.png"]  # JSON is not a spreadsheet: the names as they are
    status, out, err = run(capsys, "--model", onnx_model, *outputs, "--resume", "--", *inputs)
    assert status == 0 and "6 already in the outputs" in err
    assert len(csv_files(tmp_path / "r.csv")) == 6
    assert csv_cell("-2+3") == "'-2+3" and csv_cell("a=b") == "a=b"
    assert terminal_text("a\nb\x9bc") == "a\\nb\\x9bc" and path_text(os.fsdecode(b"\xff")) == "\\xff"


def test_a_fifo_input_is_refused_before_any_work_and_video_frames_obey_the_pixel_limit(tmp_path, onnx_model, capsys):
    """Made here: a FIFO named as an input (opening it would block for ever) and a 320x240 video
    read with a limit of 0.05 megapixels."""
    import os

    import cv2

    os.mkfifo(tmp_path / "stream.mp4")
    status, out, err = run(capsys, tmp_path / "stream.mp4", "--model", onnx_model)
    assert status == 2 and err.strip() == ("lightfer: error: not a regular file or folder (a FIFO, socket or device): "
                                           f"{tmp_path / 'stream.mp4'}")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(3):
        writer.write(np.zeros((240, 320, 3), np.uint8))
    writer.release()
    status, out, err = run(capsys, video, "--model", onnx_model, "--max-megapixels", "0.05")
    assert status == 0 and (f"skipped: {video}: frames of 320x240 pixels are over the limit of 50,000 (--max-megapixels)"
                            in err)
    status, out, err = run(capsys, video, "--model", onnx_model, "--max-megapixels", "inf")
    assert status == 2 and "--max-megapixels must be a finite positive number" in err


def test_an_output_another_process_writes_and_a_folder_that_cannot_be_written_are_refused_first(tmp_path, photos,
                                                                                              onnx_model, capsys):
    """Two commands writing the same CSV would splice their rows: the second is refused while the
    first holds its lock. A folder nothing can be written in (here /proc, read-only even for root)
    is found before the first image."""
    import fcntl

    held = tmp_path / "held.csv"
    held.write_text("the other process's rows\n")
    with open(held, "a") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        status, out, err = run(capsys, photos, "--model", onnx_model, "--csv", held, "--force")
        assert status == 2 and f"{held} is being written by another process" in err
    assert held.read_text() == "the other process's rows\n"  # the refused command neither emptied nor wrote it
    status, out, err = run(capsys, photos, "--model", onnx_model, "--annotate", "/proc/lightfer_annotated", "--mkdir")
    assert status == 2 and "cannot write in /proc" in err and "skipped" not in err
    status, out, err = run(capsys, photos, "--model", onnx_model, "--csv", "/proc/results.csv")
    assert status == 2 and "cannot write in /proc" in err


def test_dash_writes_the_rows_to_standard_output_and_the_table_to_stderr(tmp_path, photos, onnx_model, capsys):
    """`--csv -` and `--json -` pipe the rows; the table and the summary go to stderr. Standard
    output cannot be resumed, nor carry both formats."""
    one = photos / "photo_0.png"
    status, out, err = run(capsys, one, "--model", onnx_model, "--csv", "-")
    rows = list(csv.DictReader(out.splitlines()))
    assert status == 0 and len(rows) == 1 and rows[0]["file"] == str(one) and "emotion" in err
    assert "written to standard output" in err
    status, out, err = run(capsys, one, "--model", onnx_model, "--json", "-")
    assert status == 0 and json.loads(out.splitlines()[0])["status"] == "face"
    assert not Path("-").exists()
    for args, message in [(["--csv", "-", "--json", "-"], "both name standard output"),
                          (["--csv", "-", "--resume"], "standard output (-) cannot be continued")]:
        status, out, err = run(capsys, one, "--model", onnx_model, *args)
        assert status == 2 and message in err and out == ""


def test_out_of_range_workers_a_device_as_output_and_a_file_in_the_annotate_path_are_refused(tmp_path, photos,
                                                                                             onnx_model, capsys):
    for args, message in [(["--workers", "100000"], "--workers must be between 1 and"),
                          (["--every", "0"], "--every must be between 1 and 1,000,000"),
                          (["--csv", "/dev/null", "--force"], "/dev/null is not a regular file"),
                          (["--annotate", photos / "photo_0.png" / "copies"], "photo_0.png is a file, not a folder")]:
        status, out, err = run(capsys, photos, "--model", onnx_model, *args)
        assert status == 2 and message in err and err.count("\n") == 1


def test_a_single_input_runs_without_a_worker_pool(photos, onnx_model, stage, monkeypatch):
    import concurrent.futures

    def no_pool(*args, **kwargs):
        raise AssertionError("a pool was started for one input")

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", no_pool)
    predictor = load_predictor(onnx_model)
    run_ = predict_files(expand_inputs([photos / "photo_0.png"]), predictor, stage, workers=2, progress=False)
    assert run_.done == 1 and not run_.problems
