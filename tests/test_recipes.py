"""Recipes of the shipped models and rebuilding a chain of them, in order, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lightfer_utils import recipes
from lightfer_utils.training.config import TrainConfig, load_config
from lightfer_utils.training.train import load_best
from test_training import tiny_split

TINY = {"widths": (8, 8, 8, 8), "blocks": (0, 1, 1, 1), "dropout": 0.0}


def shipped_chain(models: Path) -> None:
    """a (from scratch) -> b (distilled from a, started from a's weights), as committed training configs."""
    base = TrainConfig(model_config=TINY, epochs=1, batch_size=16, patience=0, warmup_epochs=0)
    (models / "a" / "training").mkdir(parents=True)
    (models / "a" / "training" / "config.json").write_text(base.to_json())
    student = TrainConfig(**{**base.__dict__, "epochs": 2, "teacher": "models/a/training", "init_from": "models/a/training"})
    (models / "b" / "training").mkdir(parents=True)
    (models / "b" / "training" / "config.json").write_text(student.to_json())


def tiny_fer():
    """64 Training and 21 PublicTest faces."""
    data = tiny_split(64, 1, 0)
    return type(data)(**{**data.__dict__, "images": np.concatenate([data.images, tiny_split(21, 2, 1).images]),
                         "labels": np.concatenate([data.labels, np.arange(21) % 7]),
                         "usage": np.concatenate([data.usage, np.ones(21, data.usage.dtype)]),
                         "sources": np.concatenate([data.sources, np.array(["v"] * 21)]),
                         "csv_rows": np.arange(85)})


def test_every_shipped_model_has_a_recipe_whose_dependencies_are_shipped():
    from lightfer_utils.runtime import shipped_models

    for name in shipped_models.names():
        steps = recipes.chain(name)
        assert steps[-1].name == name and len({s.name for s in steps}) == len(steps)
        assert all(set(s.depends_on) <= {t.name for t in steps[:i]} for i, s in enumerate(steps))
    deep = recipes.chain("light_fer_net_deep")
    assert [s.name for s in deep][-2:] == ["light_fer_net_v5", "light_fer_net_deep"]
    edge = recipes.recipe("light_fer_net_deep_edge")
    assert edge.kind == "edge" and edge.depends_on == ["light_fer_net_deep"] and "model_path" not in edge.parameters


def test_a_chain_is_rebuilt_in_order_from_its_own_steps_and_resumes(tmp_path):
    shipped_chain(tmp_path / "models")
    assert [s.name for s in recipes.chain("b", tmp_path / "models")] == ["a", "b"]
    data = tiny_fer()
    where = recipes.rebuild("b", data, tmp_path / "out", models_dir=tmp_path / "models")
    assert where["a"] == (tmp_path / "out" / "a" / "training").resolve()
    rebuilt_b = load_config(where["b"])
    assert rebuilt_b.teacher == str(where["a"]) and rebuilt_b.init_from == str(where["a"])  # the rebuilt a, not the shipped
    assert json.loads((where["b"] / "state.json").read_text())["epochs_done"] == 2
    history = (where["b"] / "history.csv").read_text()
    recipes.rebuild("b", data, tmp_path / "out", models_dir=tmp_path / "models")  # finished steps are skipped
    assert (where["b"] / "history.csv").read_text() == history


def test_the_last_step_alone_starts_from_the_shipped_dependencies(tmp_path):
    shipped_chain(tmp_path / "models")
    with pytest.raises(FileNotFoundError, match="models/a/training is not a finished training run"):  # the shipped a
        recipes.rebuild("b", tiny_split(16, 1, 0), tmp_path / "out", last_step_only=True, models_dir=tmp_path / "models")
    with pytest.raises(ValueError, match="models/NAME/training"):
        recipes.model_named("runs/elsewhere")


def test_a_rebuilt_config_names_the_models_relative_to_the_project_so_another_clone_resumes_it(tmp_path, monkeypatch):
    from lightfer_utils.runtime import provenance

    shipped_chain(tmp_path / "models")
    monkeypatch.setattr(provenance, "PROJECT_ROOT", tmp_path)
    where = recipes.rebuild("b", tiny_fer(), tmp_path / "out", models_dir=tmp_path / "models")
    assert load_config(where["b"]).teacher == "out/a/training" == load_config(where["b"]).init_from
    assert recipes.recorded(Path("/elsewhere/training")) == "/elsewhere/training"


def test_a_rebuilt_curve_is_compared_with_the_original_epoch_by_epoch(tmp_path):
    header = "epoch,learning_rate,seconds,loss,accuracy,val_loss,val_accuracy\n"
    (tmp_path / "original").mkdir()
    (tmp_path / "original" / "history.csv").write_text(
        header + "1,0.1,9,2.0,0.3,1.9,0.40\n2,0.1,9,1.0,0.5,1.5,0.50\n3,0.1,9,0.8,0.6,1.4,0.65\n")
    (tmp_path / "rebuilt").mkdir()
    (tmp_path / "rebuilt" / "history.csv").write_text(header + "1,0.1,7,2.2,0.3,1.9,0.46\n2,0.1,7,1.0,0.5,1.5,0.48\n")
    lines = recipes.compare_curves(tmp_path / "rebuilt", tmp_path / "original")
    assert lines == [
        "epochs compared: 2 (rebuilt run: 2, original: 3)",
        "training loss: 5.00 % apart on average, 10.00 % at most",
        "PublicTest accuracy per epoch: 4.00 points apart on average, 6.00 at most",
        "best PublicTest by epoch 2: 48.00 % rebuilt, 50.00 % original (original's best: 65.00 % at epoch 3)",
    ]


def test_comparing_a_model_that_has_no_rebuilt_curve_is_one_clear_error(tmp_path, capsys):
    from lightfer_utils.cli import main

    assert main(["maintain", "rebuild", "light_fer_net_deep_edge", "--compare", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("lightfer: error:") == 1 and "no training history to compare" in err and "Traceback" not in err


def test_the_paper_model_s_recipe_is_its_card_s_compression_and_rebuilds_after_its_training(tmp_path):
    from test_paper_model import tiny_data

    shipped_chain(tmp_path / "models")
    compression = {"sparsity": 0.5, "epochs": 1, "batch_size": 16, "learning_rate": 2e-4, "calibration_size": 20}
    card = {"name": "p", "kind": "paper", "compression": {**compression, "source": "models/a/training", "method": "tfmot"},
            "files": {"keras_fp32": {"path": "p.keras", "sha256": "0"}}, "formats": {}, "architecture": {"parameters": {"total": 1}}}
    (tmp_path / "models" / "p.card.json").write_text(json.dumps(card))
    steps = recipes.chain("p", tmp_path / "models")
    assert [(s.name, s.kind) for s in steps] == [("a", "train"), ("p", "paper")]
    assert steps[-1].depends_on == ["a"] and steps[-1].parameters == compression
    assert steps[-1].describe().startswith("prune a during fine-tuning (tfmot; sparsity 0.5, epochs 1")
    where = recipes.rebuild("p", tiny_data(), tmp_path / "out", models_dir=tmp_path / "models")
    rebuilt = json.loads((tmp_path / "out" / "models" / "p.card.json").read_text())
    source = rebuilt["compression"]["source"]  # relative to the project, as every record's path
    assert not Path(source).is_absolute() and (recipes.provenance.PROJECT_ROOT / source).resolve() == where["a"].resolve()
    assert rebuilt["kind"] == "paper"
    assert where["p"] == tmp_path / "out" / "p" / "compression" and (where["p"] / "pruned.keras").is_file()
