"""`lightfer runs`: training runs compared from their files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lightfer_utils.cli import main
from lightfer_utils.training.runs import config_differences, summarize
from lightfer_utils.training.config import TrainConfig


def write_run(run: Path, accuracies: list[float], epochs: int, **settings) -> Path:
    run.mkdir(parents=True)
    (run / "config.json").write_text(TrainConfig(epochs=epochs, **settings).to_json())
    rows = ["epoch,learning_rate,seconds,loss,accuracy,val_loss,val_accuracy"]
    rows += [f"{i + 1},0.001,{10 + i},1.0,0.5,1.0,{a}" for i, a in enumerate(accuracies)]
    (run / "history.csv").write_text("\n".join(rows) + "\n")
    (run / "state.json").write_text(json.dumps({"epochs_done": len(accuracies), "stopped_early": False}))
    return run


def test_runs_are_compared_by_the_best_reached_by_each_epoch(tmp_path):
    short = write_run(tmp_path / "short", [0.40, 0.55, 0.50], epochs=3)
    long = write_run(tmp_path / "long", [0.30, 0.45, 0.52, 0.60, 0.58], epochs=1805, seed=7,
                     augmentation={**TrainConfig().augmentation, "max_zoom": 0.0})
    table = summarize([short, long], at=[2, 4])
    row = table.loc[str(short)].to_dict()
    assert pd.isna(row.pop("best by 4"))  # the run had not got that far
    assert row == {"model": "light_fer_net", "epochs": "3/3", "status": "finished", "best PublicTest %": 55.0,
                   "best epoch": 2, "best by 2": 55.0, "s/epoch": 11.0, "h left": 0.0}
    assert (table.loc[str(long), "status"], table.loc[str(long), "best by 2"], table.loc[str(long), "best by 4"]) == \
        ("in progress", 45.0, 60.0)
    # 1,800 epochs left at the last three epochs' pace (median 13 s), not the whole run's (12 s):
    # a run resumed on another CPU trains at that CPU's pace
    assert table.loc[str(long), "s/epoch"] == 12.0 and table.loc[str(long), "h left"] == 6.5
    differences = config_differences([short, long])
    assert set(differences.index) == {"epochs", "seed", "augmentation.max_zoom"}
    config = json.loads((short / "config.json").read_text())
    del config["seed"]  # a config written before a setting existed
    (short / "config.json").write_text(json.dumps(config))
    assert pd.isna(config_differences([short, long]).loc["seed", str(short)])


def test_runs_command_prints_the_table_and_refuses_what_is_not_a_run(tmp_path, capsys):
    runs = [write_run(tmp_path / name, [0.5, 0.6], epochs=2) for name in ("a", "b")]
    assert main(["maintain", "runs", *map(str, runs), "--at", "1"]) == 0
    out = capsys.readouterr().out
    assert "best by 1" in out and "the runs have the same settings" in out
    (tmp_path / "empty").mkdir()
    assert main(["maintain", "runs", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.strip() == f"lightfer: error: {tmp_path / 'empty'} is not a training run: no config.json or history.csv"
    assert main(["maintain", "runs", str(runs[0]), "--at", "ten"]) == 2
    assert "--at takes comma-separated epoch numbers" in capsys.readouterr().err
