"""Training with a checkpoint every epoch and exact resume.

A run directory (`trainingdir.TrainingDir`) holds ``config.json``, ``state.json`` (epochs done,
best PublicTest accuracy, early-stopping counter, the precision of each session), ``history.csv``,
``checkpoint/`` (model + optimizer, every epoch) and ``best_weights.h5`` (weights of the epoch
with the best PublicTest accuracy; no optimizer state). A model too large to commit trains live in
the cache and keeps only its record here (see `trainingdir`). Running the same config on the same
directory resumes after the last completed epoch; an interrupted epoch is redone from its start,
and because the input pipeline is a pure function of (seed, epoch), it sees the same batches again.
The compute precision may change between sessions (the weights are float32 either way).
PrivateTest is never touched here: model selection uses PublicTest only.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import tensorflow as tf
import tf_keras as keras

from lightfer_utils import NUM_CLASSES
from lightfer_utils.data import FerData
from lightfer_utils.runtime.predictor import keras_predictor, model_input
from lightfer_utils.training.evaluate import count_flops, count_parameters
from lightfer_utils.training.models import build_model
from lightfer_utils.runtime.provenance import cpu_model, project_relative
from lightfer_utils.training.pipeline import evaluation_dataset, steps_per_epoch, training_dataset
from lightfer_utils.training.config import Augmentation, TrainConfig, load_config, project_path
from lightfer_utils.training.precision import precision_policy, session_precision
from lightfer_utils.training.snapshot import read_snapshot, restore_latest
from lightfer_utils.training.trainingdir import TrainingDir, make_live

# Checkpoints are committed so that long training continues across sessions: shards of at
# most 4 MB keep every committed file small.
CHECKPOINT_OPTIONS = tf.train.CheckpointOptions(
    experimental_sharding_callback=tf.train.experimental.MaxShardSizePolicy(max_shard_size=4_000_000)
)


class Distiller(keras.Model):
    """Trains `student` on a mix of the labels and the `teacher`'s probabilities for the same
    augmented batch (knowledge distillation, Hinton et al. 2015): loss = alpha * CE(labels) +
    (1 - alpha) * T^2 * KL(teacher_T || student_T), where _T softens by the temperature T.
    Both models end in a softmax, so their log-probabilities serve as logits. Validation and
    prediction use the student alone; the reported loss is the label loss, as without a teacher."""

    def __init__(self, student: keras.Model, teacher: Callable[..., tf.Tensor], alpha: float = 0.5,
                 temperature: float = 2.0):
        super().__init__(name="distiller")
        if not 0 <= alpha <= 1 or temperature <= 0:
            raise ValueError(f"need 0 <= alpha <= 1 and temperature > 0, got alpha={alpha}, temperature={temperature}")
        self.student, self.teacher, self.alpha, self.temperature = student, teacher, alpha, temperature

    def call(self, faces, training=False):
        return self.student(faces, training=training)

    def _softened(self, probabilities):
        return tf.nn.softmax(tf.math.log(tf.clip_by_value(probabilities, 1e-7, 1.0)) / self.temperature)

    def train_step(self, data):
        faces, targets = data
        teacher = self._softened(self.teacher(faces, training=False))
        with tf.GradientTape() as tape:
            probabilities = self.student(faces, training=True)
            hard = self.compiled_loss(targets, probabilities, regularization_losses=self.student.losses)
            # averaged over the global batch, like compiled_loss, so replicas add up correctly
            soft = tf.nn.compute_average_loss(keras.losses.kl_divergence(teacher, self._softened(probabilities)))
            loss = self.alpha * hard + (1 - self.alpha) * self.temperature**2 * soft
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.compiled_metrics.update_state(targets, probabilities)
        # "loss" stays the label loss (the epoch's mean, as without a teacher), not the combined objective
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        faces, targets = data  # the student alone, on the labels
        probabilities = self.student(faces, training=False)
        self.compiled_loss(targets, probabilities, regularization_losses=self.student.losses)
        self.compiled_metrics.update_state(targets, probabilities)
        return {m.name: m.result() for m in self.metrics}


def offline_targets(config: TrainConfig, train_data: FerData, run: Path, batch_size: int = 256) -> np.ndarray:
    """Soft targets for offline distillation: alpha * labels + (1 - alpha) * the teacher's
    probabilities on the un-augmented faces, softened by the temperature (p^(1/T), renormalised).
    Computed once and kept in the run, so a resumed run reuses them."""
    cache = TrainingDir(run).teacher_targets
    if cache.is_file():
        return np.load(cache)
    teacher = ensemble_teacher([load_trained(project_path(t)) for t in config.teacher.split(",")], config.teacher_flip)
    call = tf.function(lambda faces: teacher(faces, training=False))
    images = train_data.images
    probabilities = np.concatenate([
        call(tf.constant(model_input(images[i:i + batch_size]))).numpy()
        for i in range(0, len(images), batch_size)])
    softened = np.power(np.clip(probabilities, 1e-12, 1.0), 1.0 / config.distill_temperature)
    softened /= softened.sum(axis=1, keepdims=True)
    labels = train_data.soft_labels if train_data.soft_labels is not None else np.eye(NUM_CLASSES)[train_data.labels]
    targets = (config.distill_alpha * labels + (1 - config.distill_alpha) * softened).astype(np.float32)
    np.save(cache, targets)
    return targets


def ensemble_teacher(members: list[keras.Model], flip: bool) -> Callable[..., tf.Tensor]:
    """The mean probability of `members`, each also on the mirrored face when `flip`."""

    def predict(faces: tf.Tensor, training: bool = False) -> tf.Tensor:
        views = [faces, tf.reverse(faces, axis=[2])] if flip else [faces]
        return tf.add_n([member(view, training=False) for member in members for view in views]) / (len(members) * len(views))

    return predict


def distribution_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirrored under TF_CONFIG, Mirrored over several GPUs, else the default."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def learning_rate_at(epoch: int, config: TrainConfig, replicas: int) -> float:
    """Linear warm-up, then cosine decay to min_learning_rate, as a function of the epoch."""
    peak = config.learning_rate * replicas
    if epoch < config.warmup_epochs:
        return peak * (epoch + 1) / (config.warmup_epochs + 1)
    progress = (epoch - config.warmup_epochs) / max(1, config.epochs - config.warmup_epochs)
    return config.min_learning_rate + 0.5 * (peak - config.min_learning_rate) * (1 + math.cos(math.pi * progress))


def class_weight_map(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(float)
    return {i: float(len(labels) / (NUM_CLASSES * max(c, 1))) for i, c in enumerate(counts)}


class WeightAverage(keras.callbacks.Callback):
    """An exponential moving average of `model`'s weights, updated after every training step, with
    the usual warm-up of the decay, min(decay, (1 + n) / (10 + n)) at step n, so the random
    initial weights fade fast. Validation runs with the averaged weights swapped in (`swap_in`,
    `swap_out`; saving the best weights uses the same). `variables()` are checkpointed with the
    model, so a resumed run continues the same average."""

    def __init__(self, model: keras.Model, decay: float):
        super().__init__()
        if not 0 < decay < 1:
            raise ValueError(f"weight_average_decay must lie in (0, 1), got {decay}")
        self.student, self.decay = model, decay
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="average_steps")
        self.average = [tf.Variable(w, trainable=False, name=f"average_{i}") for i, w in enumerate(model.weights)]
        self._saved: list[np.ndarray] | None = None

    def variables(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(steps=self.steps, average=self.average)

    @tf.function
    def _update(self) -> None:
        n = tf.cast(self.steps, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + n) / (10.0 + n))
        for average, weight in zip(self.average, self.student.weights):
            average.assign(decay * average + (1.0 - decay) * tf.cast(weight, average.dtype))
        self.steps.assign_add(1)

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self._update()

    def swap_in(self) -> None:
        self._saved = [w.numpy() for w in self.student.weights]
        for weight, average in zip(self.student.weights, self.average):
            weight.assign(average)

    def swap_out(self) -> None:
        for weight, saved in zip(self.student.weights, self._saved or []):
            weight.assign(saved)
        self._saved = None

    def on_test_begin(self, logs=None) -> None:
        self.swap_in()

    def on_test_end(self, logs=None) -> None:
        self.swap_out()


class _EpochState(keras.callbacks.Callback):
    """Saves checkpoint, history row, state and best model at the end of every epoch (in the
    directory training writes, `record.work`), then mirrors the small files into the record."""

    def __init__(self, record: TrainingDir, manager: tf.train.CheckpointManager, state: dict[str, Any], patience: int,
                 student: keras.Model, average: WeightAverage | None = None):
        super().__init__()
        self.record, self.work = record, record.work
        self.manager, self.state, self.patience = manager, state, patience
        self.student = student  # the model itself, also when a Distiller trains it
        self.average = average  # when set, its weights are the ones validated, so the ones kept as best
        self.started = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.started = time.time()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = dict(logs or {})
        seconds = time.time() - self.started
        improved = logs["val_accuracy"] > self.state["best_val_accuracy"]
        if improved:
            if self.average:
                self.average.swap_in()
            self.student.save_weights(self.work.best_weights)
            if self.average:
                self.average.swap_out()
            self.state.update(best_val_accuracy=float(logs["val_accuracy"]), best_epoch=epoch + 1, stale_epochs=0)
        else:
            self.state["stale_epochs"] += 1
        self.manager.save(checkpoint_number=epoch + 1, options=CHECKPOINT_OPTIONS)
        row = {"epoch": epoch + 1, "learning_rate": float(keras.backend.get_value(self.model.optimizer.learning_rate)),
               "seconds": round(seconds, 1), **{k: float(v) for k, v in logs.items() if k != "lr"}}
        new_file = not self.work.history.exists()
        with open(self.work.history, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new_file:
                writer.writeheader()
            writer.writerow(row)
        self.state["epochs_done"] = epoch + 1
        self.state["train_seconds"] = self.state.get("train_seconds", 0.0) + seconds
        if self.patience and self.state["stale_epochs"] >= self.patience:
            self.model.stop_training = True
            self.state["stopped_early"] = True
        self.work.write_state(self.state)
        if self.work.root != self.record.root:
            self.work.mirror_to(self.record)


def _truncate_history(history: Path, epochs_done: int) -> None:
    """Drop history rows of an epoch that was interrupted after its row was written."""
    if not history.exists():
        return
    with open(history, newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [r for r in rows if int(r["epoch"]) <= epochs_done]
    if len(kept) != len(rows) and rows:
        with open(history, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)


def train(
    config: TrainConfig,
    train_data: FerData,
    val_data: FerData,
    run_dir: str | os.PathLike[str],
    verbose: int = 2,
    callbacks: list[keras.callbacks.Callback] | None = None,
    precision: str | None = None,
    live: str = "",
) -> keras.Model:
    """Train (or resume) in ``run_dir``; returns the best model by PublicTest accuracy (float32).
    `precision` (default: the config's) is this session's compute precision; see `session_precision`.
    `live` (a new run only): train in the cache under this name and keep the record in run_dir."""
    # everything the config names is checked before anything is written, so a mistake leaves no
    # config.json behind to block the corrected retry
    config.check()
    record = TrainingDir(run_dir)
    chosen = config.precision if _complete(record, config) else session_precision(config, record, precision)
    if live and not record.config.exists():
        make_live(record, live)
    with precision_policy(chosen):
        _train(config, chosen, train_data, val_data, record, verbose, callbacks or [])
    return load_best(run_dir)


def _complete(record: TrainingDir, config: TrainConfig) -> bool:
    """Whether the run finished (all its epochs, or stopped early) and kept its best weights."""
    state = record.read_state()
    if not state or _best_weights_source(record) is None:
        return False
    return bool(state.get("stopped_early")) or state["epochs_done"] >= config.epochs


def _best_weights_source(record: TrainingDir) -> Path | None:
    """The file holding the run's best weights: best_weights.h5 (live or here), else a snapshot
    of the best epoch."""
    if record.best_weights.is_file():
        return record.best_weights
    best_epoch = record.read_state().get("best_epoch")
    if record.snapshot.is_file() and best_epoch and record.read_snapshot_info().get("epoch") == best_epoch:
        return record.snapshot
    return None


def _refuse_before_writing(config: TrainConfig, train_faces: int, record: TrainingDir) -> None:
    """What would fail later, refused before a file is written: a missing teacher, too few faces for
    a batch, a directory holding another run."""
    named = [t for t in config.teacher.split(",") if t] + ([config.init_from] if config.init_from else [])
    missing = [m for m in named if not project_path(m).exists()]
    if missing and not record.config.exists():  # a finished run needs its teacher no more
        raise FileNotFoundError(f"teacher or init-from model not found: {', '.join(missing)}")
    steps_per_epoch(train_faces, config.batch_size)
    for directory in {record.root, record.work.root}:
        if TrainingDir(directory).config.exists() and not load_config(directory).same_run(config):
            raise FileExistsError(f"{directory} holds a run with a different config; choose a new directory "
                                  f"{'or live name ' if directory == record.work.root != record.root else ''}"
                                  "(runs are never overwritten)")


def _train(config: TrainConfig, precision: str, train_data: FerData, val_data: FerData, record: TrainingDir,
           verbose: int, callbacks: list[keras.callbacks.Callback]) -> None:
    strategy = distribution_strategy()
    replicas = strategy.num_replicas_in_sync
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(config.model, **config.model_config)
        optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate * replicas)
    _refuse_before_writing(config, len(train_data), record)
    work = record.work
    work.root.mkdir(parents=True, exist_ok=True)
    if not work.config.exists():
        work.config.write_text(config.to_json() if not record.config.exists() else record.config.read_text())
        origin = project_relative(train_data.origin) if Path(train_data.origin).exists() else train_data.origin
        work.data.write_text(record.data.read_text() if record.data.exists() else json.dumps(
            {"train_sha256": train_data.sha256, "val_sha256": val_data.sha256,
             "train_records": len(train_data), "val_records": len(val_data), "origin": origin}, indent=2))
        if work.root != record.root:
            work.mirror_to(record)

    print(f"{config.model} {json.dumps(config.model_config)}: {count_parameters(model)['total']:,} parameters, "
          f"{count_flops(model) / 1e6:.1f} MFLOPs per face")
    if _complete(record, config):  # a finished run needs no checkpoint
        print(f"{record.root} is complete ({record.read_state()['epochs_done']} epochs)")
        return
    with strategy.scope():
        average = WeightAverage(model, config.weight_average_decay) if config.weight_average_decay else None
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                     **({"weight_average": average.variables()} if average else {}))
    manager = tf.train.CheckpointManager(checkpoint, work.checkpoint, max_to_keep=1)
    state = _resume(record, manager, checkpoint, model)
    if state.get("stopped_early") or state["epochs_done"] >= config.epochs:
        print(f"{record.root} is complete ({state['epochs_done']} epochs)")
        return
    sessions = state.setdefault("sessions", [])
    if not sessions or sessions[-1]["precision"] != precision:
        sessions.append({"from_epoch": state["epochs_done"] + 1, "precision": precision, "cpu": cpu_model()})
    if config.init_from and state["epochs_done"] == 0:
        start = load_trained(project_path(config.init_from))
        if [w.shape for w in start.weights] != [w.shape for w in model.weights]:
            raise ValueError(f"init_from {config.init_from}: its architecture differs from this run's {config.model} "
                             f"{config.model_config}")
        model.set_weights(start.get_weights())
        if average:
            for variable, weight in zip(average.average, model.weights):
                variable.assign(weight)

    train_labels = train_data.soft_labels if train_data.soft_labels is not None else train_data.labels
    if config.teacher and config.teacher_offline:
        train_labels = offline_targets(config, train_data, work.root)
    with strategy.scope():  # the teacher is needed only when there is training left to do
        trained = compiled_for_training(config, model, optimizer)
    batch = config.batch_size * replicas
    augmentation = Augmentation(**config.augmentation) if config.augmentation else None
    val_labels = val_data.soft_labels if val_data.soft_labels is not None else val_data.labels
    stream = training_dataset(train_data.images, train_labels, batch, config.seed, state["epochs_done"], augmentation)
    trained.fit(
        stream,
        epochs=config.epochs,
        initial_epoch=state["epochs_done"],
        steps_per_epoch=steps_per_epoch(len(train_data), batch),
        validation_data=evaluation_dataset(val_data.images, val_labels),
        class_weight=class_weight_map(train_data.labels) if config.class_weights else None,
        callbacks=[
            keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate_at(epoch, config, replicas)),
            *([average] if average else []),  # before _EpochState, which saves what was validated
            _EpochState(record, manager, state, config.patience, model, average),
            *callbacks,
        ],
        verbose=verbose,
    )


def _resume(record: TrainingDir, manager: tf.train.CheckpointManager, checkpoint: tf.train.Checkpoint,
            model: keras.Model) -> dict[str, Any]:
    """The state training continues from, said in one line: the (live) checkpoint; else, for a live
    run, the record's float16 snapshot when it is newer; else the start."""
    work = record.work
    live = work.root != record.root
    checkpoint_epoch = int(manager.latest_checkpoint.rsplit("-", 1)[1]) if manager.latest_checkpoint and work.state.is_file() else 0
    snapshot_epoch = int(record.read_snapshot_info().get("epoch", 0)) if live and record.snapshot.is_file() else 0
    if checkpoint_epoch and checkpoint_epoch >= snapshot_epoch:
        fallback = "continue from the record's snapshot" if record.snapshot.is_file() else "start a new run"
        restore_latest(checkpoint, manager, f"remove that folder to {fallback}")
        state = work.read_state()
        state["epochs_done"] = checkpoint_epoch
        _truncate_history(work.history, checkpoint_epoch)
        print(f"resuming {record.root} after epoch {checkpoint_epoch}"
              + (f" from its live checkpoint in {work.root}" if live else ""))
        return state
    if snapshot_epoch:
        return _resume_from_snapshot(record, model, snapshot_epoch, checkpoint_epoch)
    if live and record.read_state().get("epochs_done", 0) > 0:
        raise FileNotFoundError(f"{record.root} trained {record.read_state()['epochs_done']} epochs, but neither its "
                                f"live checkpoint ({work.checkpoint}) nor a snapshot ({record.snapshot.name}) is here; "
                                "train in a new directory")
    print(f"starting {record.root}" + (f", training live in {work.root}" if live else ""))
    return {"epochs_done": 0, "best_val_accuracy": -1.0, "best_epoch": 0, "stale_epochs": 0}


def _resume_from_snapshot(record: TrainingDir, model: keras.Model, epoch: int, checkpoint_epoch: int) -> dict[str, Any]:
    """Continue a live run whose cache was lost (or is older) from the record's float16 snapshot of
    `epoch`: weights only, so Adam's moments start again; the schedule goes on by epoch. If the best
    epoch came after the snapshot, or its weights are not here, the snapshot's epoch becomes the best."""
    work = record.work
    model.set_weights(read_snapshot(record, model))
    state = record.read_state()
    state["epochs_done"] = epoch
    state.pop("stopped_early", None)
    if record.history.is_file():
        work.history.write_bytes(record.history.read_bytes())
        _truncate_history(work.history, epoch)
    note = ""
    if state.get("best_epoch", 0) > epoch or not work.best_weights.is_file():
        rows = list(csv.DictReader(work.history.read_text().splitlines())) if work.history.is_file() else []
        accuracy = next((float(r["val_accuracy"]) for r in rows if int(r["epoch"]) == epoch), -1.0)
        if state.get("best_epoch", 0) != epoch:
            note = f"; the best weights (epoch {state.get('best_epoch')}) were lost: the snapshot's epoch is the best so far"
        model.save_weights(work.best_weights)
        state.update(best_val_accuracy=accuracy, best_epoch=epoch, stale_epochs=0)
    work.write_state(state)
    work.mirror_to(record)
    found = f"its live checkpoint stops at epoch {checkpoint_epoch}" if checkpoint_epoch else "no live checkpoint"
    print(f"resuming {record.root} after epoch {epoch} from its float16 snapshot ({found} in {work.root}; "
          f"weights only: Adam's moments start again){note}")
    return state


def compiled_for_training(config: TrainConfig, model: keras.Model, optimizer: keras.optimizers.Optimizer) -> keras.Model:
    """What `fit` trains: the model itself or, with an online teacher, a Distiller around it (its
    teachers computing in the run's precision); compiled with the run's loss and accuracy."""
    trained = model if not config.teacher or config.teacher_offline else Distiller(
        model, ensemble_teacher([load_trained(project_path(t), config.precision) for t in config.teacher.split(",")],
                                config.teacher_flip),
        config.distill_alpha, config.distill_temperature)
    trained.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return trained


def set_determinism(enabled: bool) -> None:
    """Deterministic TensorFlow ops (slower; the smoke profile uses them, so nbval can compare)."""
    if enabled:
        tf.config.experimental.enable_op_determinism()


def load_best(run_dir: str | os.PathLike[str], precision: str = "float32") -> keras.Model:
    """The run's model with the weights of its best PublicTest epoch (not compiled), computing in
    `precision` (float32 unless a mixed-precision run asks for its teachers)."""
    config = load_config(run_dir)
    with precision_policy(precision):
        model = build_model(config.model, **config.model_config)
    record = TrainingDir(run_dir)
    source = _best_weights_source(record)
    if source is None:
        raise FileNotFoundError(f"{run_dir} is not a finished training run: no best weights "
                                f"({record.best_weights} or a snapshot of the best epoch)")
    if source == record.snapshot:
        model.set_weights(read_snapshot(record, model))
    else:
        model.load_weights(source)
    return model


def load_trained(path: str | os.PathLike[str], precision: str = "float32") -> keras.Model:
    """A training run directory (its best epoch, computing in `precision`) or a Keras model file
    (.keras/.h5, safe mode, in the precision it was saved with)."""
    source = Path(path)
    if source.is_dir():
        if not TrainingDir(source).config.is_file() or _best_weights_source(TrainingDir(source)) is None:
            raise FileNotFoundError(f"{source} is not a finished training run: no config.json, or no best weights")
        return load_best(source, precision)
    from lightfer_utils.runtime.predictor import KERAS_SUFFIXES, load_predictor

    if source.suffix.lower() not in KERAS_SUFFIXES:
        raise ValueError(f"{source}: expected a Keras model (.keras/.h5) or a training run directory")
    return load_predictor(source).model


class TrainingRunPredictor:
    """A training run directory's best epoch (its best_weights.h5 in its config's architecture), so
    that runs can be scored before they are shipped. Weights only: nothing in the run can run code."""

    runtime = "keras, training run"

    def __init__(self, run_dir: Path, batch_size: int = 256):
        self.path = run_dir
        self._predict = keras_predictor(load_trained(run_dir), batch_size)

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        return self._predict(faces)
