"""Runtime predictor, ONNX export and model shipping, and the train/ship/evaluate CLI, on generated data."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import random_faces, write_contest_csv
from lightfer_utils.cli import main
from lightfer_utils.data import SPLITS
from lightfer_utils.runtime.predictor import ModelLoadError, load_predictor
from test_data import write_ferplus

TINY_MODEL = json.dumps({"widths": [8, 8, 8, 8], "blocks": [0, 1, 1, 1], "dropout": 0.0})


@pytest.fixture(scope="module")
def contest_csv(tmp_path_factory) -> Path:
    """42 generated faces: 7 classes x 2 per split."""
    path = tmp_path_factory.mktemp("data") / "fer2013.csv"
    write_contest_csv(path, random_faces(42, seed=5), [i % 7 for i in range(42)], [SPLITS[i // 14] for i in range(42)])
    return path


@pytest.fixture(scope="module")
def shipped(contest_csv, tmp_path_factory) -> Path:
    """A tiny model trained for two epochs by `lightfer train` and shipped by `lightfer ship`."""
    root = tmp_path_factory.mktemp("shipping")
    run = root / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", "--data", str(contest_csv), "--out", str(run), "--model-config", TINY_MODEL,
                     "--epochs", "2", "--batch-size", "7", "--seed", "1"]) == 0
    (root / "train_stdout.txt").write_text(printed.getvalue())
    assert main(["maintain", "ship", str(run), "--data", str(contest_csv), "--name", "tiny", "--models-dir", str(root / "models")]) == 0
    return root / "models"


def test_ship_writes_model_files_and_a_card_with_measured_metrics(shipped, contest_csv):
    card = json.loads((shipped / "tiny.card.json").read_text())
    assert {f["path"] for f in card["files"].values()} == {"tiny.keras", "tiny.onnx"}
    assert card["training"]["epochs_done"] == 2
    assert card["metrics"]["PrivateTest"]["count"] == 14
    assert card["architecture"]["parameters"]["total"] > 0 and card["architecture"]["flops_per_face"] > 0
    assert card["onnx_parity_PrivateTest"]["max_abs_probability_difference"] < 1e-4
    from lightfer_utils.data import load_fer2013

    assert card["data"]["sha256"] == load_fer2013(contest_csv, progress=False).sha256
    markdown = (shipped / "tiny.card.md").read_text()
    assert "PrivateTest" in markdown and card["git"]["commit"] in markdown
    assert "batch 7" in markdown and "seed 1" in markdown and "distilled" not in markdown


def test_card_names_the_teacher_of_a_distilled_model(shipped):
    from lightfer_utils.training.shipping import render_card

    card = json.loads((shipped / "tiny.card.json").read_text())
    card["training"]["config"].update(teacher="models/light_fer_net/training", distill_alpha=0.5, distill_temperature=2.0)
    card["training"]["config"]["augmentation"]["erase_probability"] = 0.5
    recipe = next(line for line in render_card(card).splitlines() if line.startswith("- **Recipe**"))
    assert "distilled from `models/light_fer_net/training` (alpha 0.5, temperature 2)" in recipe
    assert "erase_probability 0.5" in recipe
    card["training"]["config"].update(teacher="a/training,b.keras", teacher_flip=True, init_from="b.keras")
    recipe = next(line for line in render_card(card).splitlines() if line.startswith("- **Recipe**"))
    assert "started from the weights of `b.keras`" in recipe
    assert "distilled from `a/training` + `b.keras`, each with its mirrored face (alpha 0.5" in recipe


def test_every_format_gives_the_same_probabilities_for_raw_faces(shipped):
    faces = random_faces(9, seed=11).astype(np.float32)
    keras_p = load_predictor(shipped / "tiny.keras")(faces)
    onnx_p = load_predictor(shipped / "tiny.onnx")(faces[..., None])
    assert keras_p.shape == (9, 7)
    np.testing.assert_allclose(keras_p.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(onnx_p, keras_p, atol=1e-5)


def test_train_prints_the_size_that_the_card_states(shipped):
    architecture = json.loads((shipped / "tiny.card.json").read_text())["architecture"]
    size = (f"{architecture['parameters']['total']:,} parameters, "
            f"{architecture['flops_per_face'] / 1e6:.1f} MFLOPs per face")
    assert size in (shipped.parent / "train_stdout.txt").read_text()


def test_ship_never_overwrites_without_force(shipped, contest_csv, capsys):
    before = (shipped / "tiny.onnx").read_bytes()
    assert main(["maintain", "ship", str(shipped.parent / "run"), "--data", str(contest_csv), "--name", "tiny",
                 "--models-dir", str(shipped)]) == 2
    assert "exist" in capsys.readouterr().err
    assert (shipped / "tiny.onnx").read_bytes() == before


def test_evaluate_command_measures_a_shipped_file(shipped, contest_csv, capsys):
    assert main(["evaluate", str(shipped / "tiny.onnx"), "--data", str(contest_csv), "--split", "PublicTest", "--tta"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "14 faces" in out and "flip TTA accuracy" in out


def test_evaluate_command_scores_an_ensemble_by_mean_probability(shipped, contest_csv, capsys):
    # the same weights in two formats: the ensemble scores exactly as either file alone
    assert main(["evaluate", str(shipped / "tiny.onnx"), "--data", str(contest_csv), "--split", "PublicTest"]) == 0
    out = capsys.readouterr().out
    single = json.loads(out[out.index("{"):out.index("}") + 1])
    assert main(["evaluate", str(shipped / "tiny.onnx"), str(shipped / "tiny.keras"), "--data", str(contest_csv),
                 "--split", "PublicTest"]) == 0
    out = capsys.readouterr().out
    assert "mean probability of 2 models" in out and "tiny.keras (keras)" in out
    assert json.loads(out[out.index("{"):out.index("}") + 1])["accuracy"] == single["accuracy"]


def test_evaluate_command_scores_a_training_run_as_its_shipped_file(shipped, contest_csv, capsys):
    # a run is scored from its best weights before it is shipped; an empty folder is one error line
    for model in (shipped / "tiny.keras", shipped.parent / "run"):
        assert main(["evaluate", str(model), "--data", str(contest_csv), "--split", "PublicTest"]) == 0
    shipped_out, run_out = capsys.readouterr().out.split("on PublicTest, 14 faces:")[1:]
    assert "(keras, training run)" in shipped_out  # the second header line ends the first block
    assert json.loads(run_out[run_out.index("{"):run_out.index("}") + 1]) == \
        json.loads(shipped_out[shipped_out.index("{"):shipped_out.index("}") + 1])
    empty = shipped.parent / "not_a_run"
    empty.mkdir()
    assert main(["evaluate", str(empty), "--data", str(contest_csv)]) == 2
    assert "not a finished training run" in capsys.readouterr().err


def test_training_on_ferplus_soft_labels(contest_csv, tmp_path):
    usage = [SPLITS[i // 14] for i in range(42)]
    votes = [[0] * 10 for _ in range(42)]
    for i, row in enumerate(votes):  # neutral/happiness mixtures: soft targets differ from the hard ones
        row[i % 2], row[1 - i % 2] = 6, 4
    plus = tmp_path / "fer2013new.csv"
    write_ferplus(plus, votes, usage)
    run = tmp_path / "run"
    assert main(["train", "--data", str(contest_csv), "--labels", "ferplus-soft", "--ferplus", str(plus),
                 "--out", str(run), "--model-config", TINY_MODEL, "--epochs", "1", "--batch-size", "7"]) == 0
    assert json.loads((run / "state.json").read_text())["epochs_done"] == 1
    assert main(["train", "--data", str(contest_csv), "--labels", "ferplus", "--out", str(tmp_path / "other")]) == 2


def test_bad_model_config_is_a_one_line_error(contest_csv, tmp_path, capsys):
    assert main(["train", "--data", str(contest_csv), "--out", str(tmp_path / "r"), "--model-config", "{widths"]) == 2
    assert "lightfer: error" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad model files


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_predictor(tmp_path / "absent.onnx")


@pytest.mark.parametrize("suffix", [".onnx", ".tflite", ".keras", ".h5"])
def test_empty_model_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        load_predictor(path)


@pytest.mark.parametrize("suffix", [".onnx", ".tflite", ".keras", ".h5"])
def test_corrupt_model_file_names_the_file(tmp_path, suffix):
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_predictor(path)


def test_truncated_onnx_model(shipped, tmp_path):
    path = tmp_path / "truncated.onnx"
    path.write_bytes((shipped / "tiny.onnx").read_bytes()[:2000])
    with pytest.raises(ModelLoadError, match="truncated.onnx"):
        load_predictor(path)


def test_unknown_format_and_engines_are_explained(tmp_path):
    for name, message in (("model.pt", "unknown model format"), ("model.engine", "TensorRT engine cannot run here")):
        path = tmp_path / name
        path.write_bytes(b"x")
        with pytest.raises(ModelLoadError, match=message):
            load_predictor(path)


def test_wrong_face_shape_is_rejected(shipped):
    predict = load_predictor(shipped / "tiny.onnx")
    with pytest.raises(ValueError, match=r"\[N, 48, 48, 1\]"):
        predict(np.zeros((2, 64, 64, 1), np.float32))


def test_parity_check_names_the_failing_format():
    import pandas as pd

    from lightfer_utils.training.export import check_parity

    table = pd.DataFrame({"argmax_agreement_vs_keras_fp32": [1.0, 0.996, 0.97]},
                         index=["onnx_fp32", "tflite_fp16", "onnx_int8"])
    with pytest.raises(AssertionError, match=r"onnx_int8 \(97\.00% < 98\.0%\)"):
        check_parity(table, "keras_fp32")
    passed = check_parity(table.iloc[:2], "keras_fp32")
    assert passed["required"].tolist() == [0.999, 0.995] and passed["passed"].all()
    table.loc["tflite_fp16", "argmax_agreement_vs_keras_fp32"] = 0.99
    with pytest.raises(AssertionError, match="tflite_fp16"):
        check_parity(table.iloc[:2], "keras_fp32")


def test_ship_edge_ships_the_chosen_pruned_model_in_its_quantized_formats(shipped, contest_csv, tmp_path, capsys):
    from lightfer_utils.data import load_fer2013
    from lightfer_utils.runtime.rundir import RunDir
    from lightfer_utils.training.prune import prune_channels
    from lightfer_utils.training.quantize import calibration_faces, export_formats

    data = load_fer2013(contest_csv, progress=False)
    run = RunDir(tmp_path / "run")
    assert main(["maintain", "ship-edge", str(run.root), "--data", str(contest_csv), "--models-dir", str(tmp_path / "models")]) == 2
    assert "chose no structured variant" in capsys.readouterr().err
    dense = load_predictor(shipped / "tiny.keras").model
    pruned, _ = prune_channels(dense, 0.5, min_channels=4, multiple_of=4)
    run.pruned.mkdir(parents=True)
    pruned.save(run.pruned / "channels_0.5.keras")
    run.pruning_choice.write_text(json.dumps({
        "variant": "channels_0.5", "file": "channels_0.5.keras", "parameters": pruned.count_params(),
        "latency_reduction": 0.4, "PrivateTest_points_lost": 0.5, "goal_met": True}))
    export_formats(pruned, run.quantized_structured, calibration_faces(data, 14, seed=0))
    run.tables.mkdir()
    run.table("pruning").write_text(
        "variant,parameters,mflops,gzipped_kb,PublicTest_accuracy,PrivateTest_accuracy,onnx_latency_b1_ms\n"
        f"dense,{dense.count_params()},1.0,10.0,0.2,0.2,0.5\nchannels_0.5,{pruned.count_params()},0.5,5.0,0.2,0.2,0.3\n")
    models = tmp_path / "models"
    assert main(["maintain", "ship-edge", str(run.root), "--data", str(contest_csv), "--models-dir", str(models), "--name", "edge",
                 "--iterations", "5"]) == 0
    card = json.loads((models / "edge.card.json").read_text())
    assert {f["path"] for f in card["files"].values()} == {"edge.keras", "edge.onnx", "edge_int8.onnx", "edge_int8.tflite"}
    assert card["edge_format"] in ("onnx_int8", "tflite_int8")
    assert card["architecture"]["parameters"]["total"] == pruned.count_params()
    test = data.split("PrivateTest")
    for fmt, row in card["formats"].items():  # every accuracy is what the shipped file gives
        probabilities = load_predictor(models / card["files"][fmt]["path"])(test.images)
        assert row["PrivateTest_accuracy"] == pytest.approx(float((probabilities.argmax(1) == test.labels).mean()), abs=1e-4)
    fastest_within = min((f for f in ("onnx_int8", "tflite_int8")
                          if card["formats"]["keras_fp32"]["PublicTest_accuracy"] - card["formats"][f]["PublicTest_accuracy"] <= 0.01),
                         key=lambda f: card["formats"][f]["latency_b1_p50_ms"], default=card["edge_format"])
    assert card["edge_format"] == fastest_within
    assert [row["variant"] for row in card["pruning_table"]] == ["dense", "channels_0.5"]
    assert "edge_int8" in (models / "edge.card.md").read_text()
    assert main(["maintain", "ship-edge", str(run.root), "--data", str(contest_csv), "--models-dir", str(models), "--name", "edge"]) == 2
    assert "--force" in capsys.readouterr().err


def test_ship_int8_adds_measured_int8_files_and_changes_nothing_else(shipped, contest_csv, tmp_path, capsys):
    from lightfer_utils.data import load_fer2013
    from lightfer_utils.runtime.provenance import file_sha256

    models = tmp_path / "models"
    shutil.copytree(shipped, models)
    before = json.loads((models / "tiny.card.json").read_text())
    command = ["maintain", "ship-int8", "tiny", "--data", str(contest_csv), "--models-dir", str(models), "--calibration-size", "7"]
    assert main(command) == 0
    card = json.loads((models / "tiny.card.json").read_text())
    assert {f["path"] for f in card["files"].values()} == {"tiny.keras", "tiny.onnx", "tiny_int8.tflite", "tiny_int8.onnx"}
    assert {k: v for k, v in card.items() if k not in ("files", "int8")} == {k: v for k, v in before.items() if k != "files"}
    assert {k: card["files"][k] for k in before["files"]} == before["files"]
    assert card["int8"]["calibration"] == {"split": "Training", "faces": 7, "seed": 1}
    test = load_fer2013(contest_csv, progress=False).split("PrivateTest")
    for fmt in ("tflite_int8", "onnx_int8"):
        path = models / card["files"][fmt]["path"]
        assert file_sha256(path) == card["files"][fmt]["sha256"]
        predicted = load_predictor(path)(test.images).argmax(1)
        assert card["int8"]["formats"][fmt]["PrivateTest_accuracy"] == pytest.approx(float((predicted == test.labels).mean()), abs=1e-4)
    assert "tiny_int8.tflite" in (models / "tiny.card.md").read_text()
    capsys.readouterr()
    assert main(command) == 2 and "--force" in capsys.readouterr().err
    other = tmp_path / "other.csv"
    write_contest_csv(other, random_faces(42, seed=6), [i % 7 for i in range(42)], [SPLITS[i // 14] for i in range(42)])
    assert main(["maintain", "ship-int8", "tiny", "--data", str(other), "--models-dir", str(models), "--force"]) == 2
    assert "is not the data tiny was measured on" in capsys.readouterr().err
    (models / "tiny.onnx").write_bytes((models / "tiny.onnx").read_bytes() + b"\0")
    assert main([*command, "--force"]) == 2
    assert "tiny.onnx: missing, or its sha256 differs from the one in tiny.card.json" in capsys.readouterr().err


def test_default_model_is_the_shipped_model_with_the_best_public_test_accuracy():
    from lightfer_utils.runtime import shipped_models

    cards = {name: shipped_models.card(name) for name in shipped_models.names()}
    public = {name: card["metrics"]["PublicTest"]["accuracy"]
              for name, card in cards.items() if "metrics" in card}  # the cards `lightfer ship` wrote
    assert shipped_models.DEFAULT_MODEL in public and public[shipped_models.DEFAULT_MODEL] == max(public.values()), public
    assert shipped_models.resolve(None) == shipped_models.model_file(shipped_models.DEFAULT_MODEL, "onnx")