"""Runs too large to commit train live in the cache and keep a record here: the record mirrors the
small files every epoch, a float16 snapshot is the fallback when the cache is gone, and the
compute precision may change between sessions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tf_keras as keras

from lightfer_utils.training import precision as training_precision
from lightfer_utils.training.config import TrainConfig
from lightfer_utils.training.snapshot import read_snapshot, write_snapshot
from lightfer_utils.training.train import load_best, train
from lightfer_utils.training.trainingdir import SMALL_FILES, TrainingDir, make_live
from test_training import tiny_split

TINY = {"widths": (8, 8, 8, 8), "blocks": (0, 1, 1, 1), "dropout": 0.0}


class _StopAfter(keras.callbacks.Callback):
    """Simulates the end of a session after `epochs` epochs."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


@pytest.fixture
def live_run(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTFER_CACHE", str(tmp_path / "cache"))
    record = TrainingDir(tmp_path / "repo" / "training")
    make_live(record, "tiny")
    config = TrainConfig(model_config=TINY, epochs=3, batch_size=16, patience=0, warmup_epochs=1)
    return record, config, tiny_split(64, 1, 0), tiny_split(21, 2, 1)


def test_a_live_run_keeps_its_large_files_in_the_cache_and_its_record_here(live_run, capsys):
    record, config, train_data, val_data = live_run
    with pytest.raises(KeyboardInterrupt):
        train(config, train_data, val_data, record.root, verbose=0, callbacks=[_StopAfter(2)])
    live = record.live
    assert live is not None and live.root == record.root.parent.parent / "cache" / "live" / "tiny"
    assert live.checkpoint.is_dir() and live.best_weights.is_file()
    assert sorted(p.name for p in record.root.iterdir()) == sorted([*SMALL_FILES, "live.json"])
    for name in SMALL_FILES:
        assert (record.root / name).read_bytes() == (live.root / name).read_bytes()
    assert record.read_state()["epochs_done"] == 2
    capsys.readouterr()
    train(config, train_data, val_data, record.root, verbose=0)
    assert f"resuming {record.root} after epoch 2 from its live checkpoint in {live.root}" in capsys.readouterr().out
    assert [int(line.split(",")[0]) for line in record.history.read_text().splitlines()[1:]] == [1, 2, 3]
    assert load_best(record.root).count_params() > 0


def test_without_its_cache_a_live_run_resumes_from_its_float16_snapshot(live_run, capsys):
    record, config, train_data, val_data = live_run
    with pytest.raises(KeyboardInterrupt):
        train(config, train_data, val_data, record.root, verbose=0, callbacks=[_StopAfter(2)])
    info = write_snapshot(record.root)
    assert info["epoch"] == 2 and json.loads(record.snapshot_info.read_text())["dtype"] == "float16"
    with np.load(record.snapshot) as stored:
        assert {stored[k].dtype for k in stored.files} == {np.dtype(np.float16)}
    checkpoint_weights = load_best(record.root).get_weights() if record.read_state()["best_epoch"] == 2 else None
    snapshot = read_snapshot(record, load_best(record.root))
    if checkpoint_weights is not None:  # the snapshot is the checkpoint rounded to float16
        for a, b in zip(checkpoint_weights, snapshot):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    for path in sorted(record.live.root.rglob("*"), reverse=True):  # the cache is gone
        path.rmdir() if path.is_dir() else path.unlink()
    capsys.readouterr()
    train(config, train_data, val_data, record.root, verbose=0)
    out = capsys.readouterr().out
    assert (f"resuming {record.root} after epoch 2 from its float16 snapshot (no live checkpoint in {record.live.root}; "
            "weights only: Adam's moments start again)") in out
    assert record.read_state()["epochs_done"] == 3
    assert [int(line.split(",")[0]) for line in record.history.read_text().splitlines()[1:]] == [1, 2, 3]


def test_a_record_without_cache_or_snapshot_is_refused_in_one_sentence(live_run):
    record, config, train_data, val_data = live_run
    with pytest.raises(KeyboardInterrupt):
        train(config, train_data, val_data, record.root, verbose=0, callbacks=[_StopAfter(1)])
    for path in sorted(record.live.root.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    with pytest.raises(FileNotFoundError, match="trained 1 epochs, but neither its live checkpoint .* nor a snapshot"):
        train(config, train_data, val_data, record.root, verbose=0)


def test_a_live_name_holding_another_run_is_refused(live_run, tmp_path):
    record, config, train_data, val_data = live_run
    train(config, train_data, val_data, record.root, verbose=0)
    other = TrainingDir(tmp_path / "repo" / "other")
    make_live(other, "tiny")
    with pytest.raises(FileExistsError, match="holds a run with a different config; choose a new directory or live name"):
        train(TrainConfig(model_config=TINY, epochs=2, batch_size=16), train_data, val_data, other.root, verbose=0)
    with pytest.raises(ValueError, match="a live name is letters"):
        make_live(other, "../escape")


def test_a_mixed_bfloat16_run_continues_in_float32_on_a_cpu_without_bfloat16(tmp_path, monkeypatch, capsys):
    config = TrainConfig(model_config=TINY, epochs=2, batch_size=16, patience=0, warmup_epochs=1,
                         precision="mixed_bfloat16")
    train_data, val_data, run = tiny_split(64, 1, 0), tiny_split(21, 2, 1), tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # session 1 asked for float32 on any CPU
        train(config, train_data, val_data, run, verbose=0, callbacks=[_StopAfter(1)], precision="float32")
    monkeypatch.setattr(training_precision, "bfloat16_support", lambda: "none")
    train(config, train_data, val_data, run, verbose=0)  # session 2: the config's precision is not available
    assert f"note: {run} trained in mixed_bfloat16 so far; this CPU has no native bfloat16" in capsys.readouterr().out
    state = TrainingDir(run).read_state()
    assert state["epochs_done"] == 2 and [s["precision"] for s in state["sessions"]] == ["float32"]
    assert json.loads(TrainingDir(run).config.read_text())["precision"] == "mixed_bfloat16"  # the config is the run's
    with pytest.raises(ValueError, match="cannot train bfloat16"):  # asked for explicitly, it is refused
        train(TrainConfig(model_config=TINY, epochs=1, precision="mixed_bfloat16"), train_data, val_data,
              tmp_path / "new", verbose=0)
    assert not (tmp_path / "new").exists()


def test_sessions_record_each_change_of_precision(tmp_path):
    if training_precision.bfloat16_support() != "native":
        pytest.skip("this CPU has no native bfloat16")
    config = TrainConfig(model_config=TINY, epochs=2, batch_size=16, patience=0, warmup_epochs=1)
    train_data, val_data, run = tiny_split(64, 1, 0), tiny_split(21, 2, 1), tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(config, train_data, val_data, run, verbose=0, callbacks=[_StopAfter(1)])
    train(config, train_data, val_data, run, verbose=0, precision="mixed_bfloat16")
    sessions = TrainingDir(run).read_state()["sessions"]
    assert [(s["from_epoch"], s["precision"]) for s in sessions] == [(1, "float32"), (2, "mixed_bfloat16")]


def test_the_commands_train_live_and_write_the_snapshot(good_csv, tmp_path, monkeypatch, capsys):
    from lightfer_utils.cli import main

    monkeypatch.setenv("LIGHTFER_CACHE", str(tmp_path / "cache"))
    record = tmp_path / "record"
    tiny = '{"widths": [8, 8, 8, 8], "blocks": [0, 1, 1, 1], "dropout": 0.0}'
    assert main(["maintain", "snapshot", str(record)]) == 2
    assert capsys.readouterr().err.strip() == (f"lightfer: error: {record}: no checkpoint in {record / 'checkpoint'} "
                                                "to take a snapshot of")
    assert main(["train", "--data", str(good_csv[0]), "--out", str(record), "--live", "cli_tiny", "--model-config", tiny,
                 "--epochs", "1", "--batch-size", "7"]) == 0
    live = tmp_path / "cache" / "live" / "cli_tiny"
    assert f"best weights: {live / 'best_weights.h5'}" in capsys.readouterr().out
    assert main(["maintain", "snapshot", str(record)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{record / 'snapshot_fp16.npz'}: the weights after epoch 1 in float16")
    assert json.loads((record / "snapshot.json").read_text())["epoch"] == 1
    assert not (record / "checkpoint").exists() and (live / "checkpoint").is_dir()
    refused = tmp_path / "refused"  # a refused command leaves nothing, not even the live marker
    assert main(["train", "--data", str(good_csv[0]), "--out", str(refused), "--live", "x", "--batch-size", "0"]) == 2
    assert not refused.exists() and not (tmp_path / "cache" / "live" / "x").exists()


def test_a_truncated_checkpoint_is_one_line_that_says_what_to_do(live_run):
    record, config, train_data, val_data = live_run
    with pytest.raises(KeyboardInterrupt):
        train(config, train_data, val_data, record.root, verbose=0, callbacks=[_StopAfter(1)])
    for shard in record.live.checkpoint.glob("ckpt-1.data-*"):
        shard.write_bytes(shard.read_bytes()[:10])
    with pytest.raises(ValueError, match=r"checkpoint of epoch 1 cannot be read \(.*\); remove that folder to start a new run"):
        train(config, train_data, val_data, record.root, verbose=0)
