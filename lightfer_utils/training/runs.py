"""Training runs side by side, from their files alone (config.json, state.json, history.csv):
how far each got, its best PublicTest accuracy, the best it had reached by given epochs (the fair
comparison of runs of different lengths), its wall time per epoch, and the settings that differ.
Reads no weights and needs no TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from lightfer_utils.training.trainingdir import TrainingDir


def _read_run(run: Path) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    record = TrainingDir(run)
    files = [record.config, record.history]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{run} is not a training run: no {' or '.join(missing)}")
    config = json.loads(files[0].read_text())
    state = record.read_state()
    history = pd.read_csv(files[1]).set_index("epoch")
    if history.empty or "val_accuracy" not in history:
        raise ValueError(f"{run}/history.csv has no finished epoch with a PublicTest accuracy")
    return config, state, history


def _status(config: dict[str, Any], state: dict[str, Any], done: int) -> str:
    if state.get("stopped_early"):
        return "stopped early"
    return "finished" if done >= config["epochs"] else "in progress"


def summarize(runs: list[Path], at: list[int]) -> pd.DataFrame:
    """One row per run: epochs done of planned, status, best PublicTest (%) and its epoch, the best
    PublicTest reached by each epoch in `at` (empty where the run had not got that far), median
    seconds per epoch (the hardware and any concurrent jobs decide it), and the hours the epochs
    left would take at the pace of the last three epochs (a run resumed on another kind of CPU
    trains at that CPU's pace; at most: early stopping may end a run sooner)."""
    rows = []
    for run in runs:
        config, state, history = _read_run(run)
        done = int(history.index.max())
        accuracy = history.val_accuracy * 100
        row: dict[str, Any] = {
            "run": str(run), "model": config["model"], "epochs": f"{done}/{config['epochs']}",
            "status": _status(config, state, done), "best PublicTest %": round(float(accuracy.max()), 2),
            "best epoch": int(accuracy.idxmax()),
        }
        for epoch in at:
            row[f"best by {epoch}"] = round(float(accuracy[accuracy.index <= epoch].max()), 2) if done >= epoch else None
        row["s/epoch"] = round(float(history.seconds.median()), 1) if "seconds" in history else None
        in_progress = row["status"] == "in progress" and row["s/epoch"] is not None
        recent = float(history.seconds.tail(3).median()) if in_progress else 0.0
        row["h left"] = round((config["epochs"] - done) * recent / 3600, 1)
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in config.items() if k != "augmentation"}
    flat.update({f"augmentation.{k}": v for k, v in (config.get("augmentation") or {}).items()})
    return {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in flat.items()}


def config_differences(runs: list[Path]) -> pd.DataFrame:
    """The training settings that differ between the runs (rows: settings, columns: runs); a
    setting a run's config predates shows as missing."""
    flats = {str(run): _flat(_read_run(run)[0]) for run in runs}
    table = pd.DataFrame(flats)
    differs = table.astype(str).nunique(axis=1, dropna=False) > 1
    return table[differs]
