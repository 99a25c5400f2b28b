"""The command's smaller refusals: one clear line, the right exit status, nothing left behind."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

from lightfer_utils import __version__
from lightfer_utils.cli import main

from conftest import write_contest_csv, random_faces


def error_lines(err: str) -> int:
    """Lines the command wrote as messages (a progress bar may share stderr)."""
    return sum(line.startswith("lightfer:") for line in err.splitlines()) + err.count("Traceback")


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"lightfer {__version__}"


@pytest.mark.parametrize("args, message", [
    (["bench", "pipeline", "--iterations", "-3", "--no-peer"], "--iterations must be between 1 and 1,000,000, got -3"),
    (["data", "timing", "--repeat", "0"], "--repeat must be at least 1, got 0"),
])
def test_impossible_counts_are_refused(args, message, capsys, good_csv):
    if args[0] == "data":
        args = [*args, str(good_csv[0])]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and error_lines(err) == 1


def test_a_corrupt_gzip_csv_names_the_file(tmp_path, capsys, good_csv):
    target = tmp_path / "fer2013.csv.gz"
    target.write_bytes(gzip.compress(good_csv[0].read_bytes())[:200])
    assert main(["data", "check", str(target)]) == 2
    err = capsys.readouterr().err
    assert "fer2013.csv.gz: damaged or truncated file" in err and error_lines(err) == 1


def test_a_latin_1_csv_names_the_file_and_the_fix(tmp_path, capsys):
    target = tmp_path / "latin.csv"
    write_contest_csv(target, random_faces(2), [0, 1], ["Training", "PublicTest"])
    target.write_bytes(target.read_bytes().replace(b"Training", "Tr\u00e4ining".encode("latin-1")))
    assert main(["data", "check", str(target)]) == 2
    err = capsys.readouterr().err
    assert "latin.csv: not UTF-8 text" in err and "save it as UTF-8" in err


@pytest.mark.parametrize("args, message", [
    (["--model", "nosuchnet"], "unknown model 'nosuchnet'"),
    (["--model-config", '{"depth": 3}'], "takes no setting 'depth'"),
    (["--teacher", "models/absent_teacher"], "teacher or init-from model not found: models/absent_teacher"),
    (["--augmentation", '{"max_tilt": 3}'], "no augmentation setting 'max_tilt'"),
    (["--augmentation", '{"max_shift": "wide"}'], "augmentation setting 'max_shift' must be a number >= 0, got 'wide'"),
    (["--augmentation", '{"flip": 1}'], "augmentation setting 'flip' must be true or false, got 1"),
    (["--augmentation", "[0.1]"], "--augmentation must be a JSON object"),
    (["--model-config", "{widths: 3}"], "--model-config is not JSON"),
    (["--model", "xception", "--model-config", '{"bn_momentum": NaN}'], "model_config must be a JSON object of finite"),
    (["--augmentation", '{"max_rotation_deg": 1e308}'], "'max_rotation_deg' must be a number in [0, 180]"),
    (["--augmentation", '{"max_zoom": 1}'], "'max_zoom' must be a number in [0, 1)"),
    (["--batch-size", "100000000000"], "batch_size must be a whole number in [1, 65536]"),
    (["--batch-size", "4096", "--model", "simple_cnn"], "fewer than one batch of 4096"),
    (["--seed", "-1"], "seed must be a whole number in [0, 2**32)"),
])
def test_a_bad_training_request_leaves_no_config_behind(tmp_path, capsys, good_csv, args, message):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--data", str(good_csv[0]), "--epochs", "1", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and error_lines(err) == 1
    assert not out.exists() or not any(out.iterdir())


def test_augmentation_settings_given_on_the_command_line_are_the_run_s(tmp_path, good_csv):
    import json

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--data", str(good_csv[0]), "--epochs", "1", "--batch-size", "7",
                 "--model-config", '{"widths": [8, 8, 8, 8], "blocks": [0, 1, 1, 1]}',
                 "--augmentation", '{"max_rotation_deg": 0, "max_shift": 0.05}', "--erase-probability", "0.5"]) == 0
    augmentation = json.loads((out / "config.json").read_text())["augmentation"]
    assert augmentation["max_rotation_deg"] == 0 and augmentation["max_shift"] == 0.05
    assert augmentation["erase_probability"] == 0.5 and augmentation["max_zoom"] == 0.1  # the rest: defaults


def test_a_tensorflow_command_s_refusal_is_its_only_line_on_stderr(tmp_path):
    """TensorFlow's start-up lines go to file descriptor 2, past capsys: run the command itself."""
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(b"not an HDF5 file")
    result = subprocess.run([sys.executable, "-m", "lightfer_utils.cli", "evaluate", str(damaged), "--data",
                             str(tmp_path)], capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "LIGHTFER_DEBUG")})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lightfer: error: cannot read the architecture of {damaged}: ")


def test_mixed_bfloat16_on_a_cpu_without_bfloat16_kernels_is_one_line_and_writes_no_run(tmp_path, good_csv, capsys,
                                                                                      monkeypatch):
    """Where TensorFlow cannot train a bfloat16 convolution at all, the run is refused before anything
    is written. Which CPUs those are depends on the TensorFlow build (an AVX-512 host capped with
    ONEDNN_MAX_CPU_ISA=AVX2 was one; an AMD Zen 3 AVX2 host runs them emulated), so the probe's
    answer is set here."""
    from lightfer_utils.training import precision

    monkeypatch.setattr(precision, "bfloat16_support", lambda: "none")
    run = tmp_path / "run"
    assert main(["train", "--data", str(good_csv[0]), "--out", str(run), "--precision", "mixed_bfloat16"]) == 2
    err = capsys.readouterr().err
    assert not run.exists() and error_lines(err) == 1, err  # the progress bar of reading the data shares stderr
    assert "lightfer: error: precision mixed_bfloat16: TensorFlow cannot train bfloat16 convolutions on this machine" in err
    # a finished mixed_bfloat16 run (its weights are float32) still loads there: nothing is left to train
    tiny = '{"widths": [8, 8, 8, 8], "blocks": [0, 1, 1, 1], "dropout": 0.0}'
    assert main(["train", "--data", str(good_csv[0]), "--out", str(run), "--model-config", tiny, "--epochs", "1",
                 "--batch-size", "7"]) == 0
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "precision": "mixed_bfloat16"}))
    capsys.readouterr()
    assert main(["train", "--data", str(good_csv[0]), "--out", str(run), "--resume"]) == 0
    assert "is complete (1 epochs)" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["ship", "ship-paper"])
def test_a_model_name_cannot_leave_its_folder(tmp_path, good_csv, capsys, command):
    (tmp_path / "models").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [command, str(tmp_path / "run"), "--data", str(good_csv[0]), "--name", "../escaped", "--models-dir",
            str(tmp_path / "models")]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().endswith("--name: a model name is letters, digits, '_' and '-' (at most 100, "
                                                    "no path), got '../escaped'")
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not list((tmp_path / "models").iterdir())


def test_evaluating_an_empty_split_is_one_line_not_nan(tmp_path, capsys):
    from pathlib import Path

    model = Path(__file__).resolve().parent.parent / "models" / "mini_xception.onnx"
    csv_path = tmp_path / "train_only.csv"
    write_contest_csv(csv_path, random_faces(7), list(range(7)), ["Training"] * 7)
    assert main(["evaluate", str(model), "--data", str(csv_path), "--split", "PrivateTest"]) == 2
    err = capsys.readouterr().err
    assert error_lines(err) == 1 and "nan" not in err.lower()
    assert "lightfer: error: the data holds no PrivateTest faces: nothing to evaluate\n" in err
