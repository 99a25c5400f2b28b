"""Checkpoints read back (a damaged one is one line that says what to do), and a live run's fallback
in its record: the weights of its latest checkpoint in float16, without optimizer state
(`lightfer maintain snapshot`), and reading them back into a model."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np

import tensorflow as tf
import tf_keras as keras

from lightfer_utils.runtime.atomic import atomic_write
from lightfer_utils.runtime.provenance import cpu_model, now_iso
from lightfer_utils.training.config import load_config
from lightfer_utils.training.models import build_model
from lightfer_utils.training.trainingdir import TrainingDir


def write_snapshot(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The record's fallback: the weights of the latest checkpoint (no optimizer state) in float16,
    replacing the snapshot before; returns what snapshot.json says."""
    record = TrainingDir(run_dir)
    manager_dir = record.work.checkpoint
    latest = tf.train.latest_checkpoint(str(manager_dir))
    if not latest:
        raise FileNotFoundError(f"{record.root}: no checkpoint in {manager_dir} to take a snapshot of")
    config = load_config(record.root)
    model = build_model(config.model, **config.model_config)
    tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    weights = [w.numpy().astype(np.float16) for w in model.weights]
    if not all(np.isfinite(w).all() for w in weights):
        raise ValueError(f"{record.root}: a weight of the checkpoint does not fit in float16")
    buffer = io.BytesIO()
    np.savez(buffer, **{f"w{i:04d}": w for i, w in enumerate(weights)})
    atomic_write(record.snapshot, buffer.getvalue())
    info = {"epoch": int(latest.rsplit("-", 1)[1]), "dtype": "float16", "weights": len(weights),
            "parameters": int(sum(w.size for w in weights)), "written": now_iso(), "cpu": cpu_model(),
            "holds": "the model's weights after this epoch; no optimizer state"}
    atomic_write(record.snapshot_info, json.dumps(info, indent=2) + "\n")
    return info


def read_snapshot(record: TrainingDir, model: keras.Model) -> list[np.ndarray]:
    """The snapshot's weights in float32, checked against `model`'s shapes."""
    with np.load(record.snapshot, allow_pickle=False) as stored:
        weights = [stored[f"w{i:04d}"].astype(np.float32) for i in range(len(stored.files))]
    expected = [tuple(w.shape) for w in model.weights]
    if [w.shape for w in weights] != expected:
        raise ValueError(f"{record.snapshot}: its weights do not fit {model.name} ({len(weights)} arrays, "
                         f"{len(expected)} expected)")
    return weights


def restore_latest(checkpoint: tf.train.Checkpoint, manager: tf.train.CheckpointManager, remedy: str) -> int:
    """Restores the latest checkpoint into `checkpoint`'s objects and returns its epoch (0: none).
    One that cannot be read is a ValueError naming its folder, then `remedy`."""
    if not manager.latest_checkpoint:
        return 0
    epoch = int(manager.latest_checkpoint.rsplit("-", 1)[1])
    try:
        checkpoint.restore(manager.latest_checkpoint).expect_partial()
    except Exception as err:  # damaged shards raise OpError, IndexError, ValueError... from TensorFlow's reader
        first = str(getattr(err, "message", err)).strip().splitlines()[0][:200]
        raise ValueError(f"{manager.directory}: the checkpoint of epoch {epoch} cannot be read ({first}); {remedy}") from None
    return epoch
