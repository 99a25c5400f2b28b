"""Fine-tuning a trained model (pruning's and distillation's): Adam with cosine decay on the
training pipeline, optionally ending on its best PublicTest epoch, and epoch checkpoints (model and
optimizer) so that long work continues after a session ends; a damaged checkpoint is one line that
says what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import tensorflow as tf
import tf_keras as keras

from lightfer_utils import NUM_CLASSES
from lightfer_utils.data import FerData
from lightfer_utils.runtime.predictor import model_input
from lightfer_utils.training.pipeline import steps_per_epoch, training_dataset
from lightfer_utils.training.snapshot import restore_latest
from lightfer_utils.training.train import Distiller


def continued_fine_tuning(model: keras.Model, optimizer: keras.optimizers.Optimizer,
                          folder: Path) -> tuple[int, list[keras.callbacks.Callback]]:
    """The epoch a fine-tuning continues after (0: none saved in `folder` yet) and the callback
    that saves the model and the optimizer there after every epoch."""
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    manager = tf.train.CheckpointManager(checkpoint, str(folder), max_to_keep=1)
    first_epoch = restore_latest(checkpoint, manager, "remove that folder to fine-tune from the start")
    if first_epoch:
        print(f"continuing the fine-tuning after epoch {first_epoch} from {folder}")
    return first_epoch, [keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: manager.save(checkpoint_number=epoch + 1))]


def best_epoch_keeper(epochs: int) -> keras.callbacks.EarlyStopping:
    """Restores, at the end of training, the weights of the epoch with the best PublicTest
    accuracy (patience = all epochs: it never stops training early)."""
    return keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=epochs, restore_best_weights=True)


def fine_tune(
    model: keras.Model,
    train_data: FerData,
    val_data: FerData,
    epochs: int,
    learning_rate: float = 2e-4,
    batch_size: int = 64,
    label_smoothing: float = 0.1,
    seed: int = 0,
    teacher: keras.Model | None = None,
    keep_best: bool = False,
    callbacks: list | None = None,
    verbose: int = 2,
    checkpoint_dir: Path | None = None,
) -> keras.callbacks.History:
    """Adam with cosine decay from `learning_rate`, with the training pipeline's augmentation;
    distilled from `teacher` when one is given. `keep_best` ends on the best PublicTest epoch
    (only for models whose structure is fixed: tfmot's masks must reach their final sparsity).
    `checkpoint_dir`: the model and Adam are saved there after every epoch, and a fine-tuning
    that finds a checkpoint there continues after its epoch (hours for the paper's Xception on an
    AVX2 CPU: a session may end in between)."""
    if checkpoint_dir is not None and keep_best:
        raise ValueError("keep_best holds the best epoch in memory only: it cannot resume from a checkpoint")
    keras.utils.set_random_seed(seed)  # dropout; also required when op determinism is enabled
    steps = steps_per_epoch(len(train_data), batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps, alpha=0.05)
    trained = model if teacher is None else Distiller(model, teacher)
    trained.compile(optimizer=keras.optimizers.Adam(schedule),
                    loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing), metrics=["accuracy"])
    first_epoch, saving = continued_fine_tuning(model, trained.optimizer, checkpoint_dir) if checkpoint_dir else (0, [])
    stream = training_dataset(train_data.images, train_data.labels, batch_size, seed=seed, first_epoch=first_epoch)
    validation = (model_input(val_data.images), np.eye(NUM_CLASSES, dtype=np.float32)[val_data.labels])
    return trained.fit(stream, epochs=epochs, initial_epoch=first_epoch, steps_per_epoch=steps, validation_data=validation,
                       callbacks=[*(callbacks or []), *([best_epoch_keeper(epochs)] if keep_best else []),
                                  *saving],
                       verbose=verbose)


def save_uncompiled(model: keras.Model, path: Path) -> None:
    """`model` saved without its optimizer state: an uncompiled copy holding its weights."""
    plain = keras.models.clone_model(model)
    plain.set_weights(model.get_weights())
    plain.save(path)
