"""Input pipeline determinism and training resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from conftest import random_faces
from lightfer_utils.data import FerData
from lightfer_utils.runtime.predictor import model_input
from lightfer_utils.training.config import Augmentation
from lightfer_utils.training.pipeline import augment_batch, training_dataset
from lightfer_utils.training.trainingdir import TrainingDir
from lightfer_utils.training.config import TrainConfig, load_config
from lightfer_utils.training.precision import bfloat16_support
from lightfer_utils.training.train import load_best, load_trained, train


def test_augmentation_is_a_function_of_its_seed():
    faces = tf.constant(random_faces(8).reshape(8, 48, 48, 1).astype(np.float32))
    aug = Augmentation()
    a = augment_batch(faces, tf.constant([1, 2], tf.int64), aug).numpy()
    b = augment_batch(faces, tf.constant([1, 2], tf.int64), aug).numpy()
    c = augment_batch(faces, tf.constant([1, 3], tf.int64), aug).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == (8, 48, 48, 1) and a.min() >= 0 and a.max() <= 255


def test_identity_augmentation_leaves_faces_unchanged_and_flip_mirrors():
    faces = random_faces(4).reshape(4, 48, 48, 1).astype(np.float32)
    none = Augmentation(flip=False, max_shift=0, max_rotation_deg=0, max_zoom=0, max_brightness=0, max_contrast=0)
    out = augment_batch(tf.constant(faces), tf.constant([0, 0], tf.int64), none).numpy()
    np.testing.assert_allclose(out, faces, atol=1e-3)
    flip_only = Augmentation(flip=True, max_shift=0, max_rotation_deg=0, max_zoom=0, max_brightness=0, max_contrast=0)
    out = augment_batch(tf.constant(faces), tf.constant([0, 5], tf.int64), flip_only).numpy()
    for original, result in zip(faces, out):
        assert np.allclose(result, original, atol=1e-3) or np.allclose(result, original[:, ::-1], atol=1e-3)


def test_random_erasing_replaces_one_rectangle_of_the_chosen_faces_and_nothing_else():
    faces = np.full((64, 48, 48, 1), 128.0, np.float32)  # noise differs from a flat face almost everywhere
    still = dict(flip=False, max_shift=0, max_rotation_deg=0, max_zoom=0, max_brightness=0, max_contrast=0)
    seed = tf.constant([3, 4], tf.int64)
    out = augment_batch(tf.constant(faces), seed, Augmentation(**still, erase_probability=0.5)).numpy()
    changed = np.abs(out - faces)[..., 0] > 1.0
    erased = changed.any(axis=(1, 2))
    assert 16 < erased.sum() < 48  # about half of 64
    for mask in changed[erased]:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
        assert mask.sum() > 0.9 * box  # one filled rectangle
        assert 0.01 * 48 * 48 <= box <= 0.3 * 48 * 48
    plain = augment_batch(tf.constant(faces), seed, Augmentation()).numpy()
    with_zero = augment_batch(tf.constant(faces), seed, Augmentation(erase_probability=0.0)).numpy()
    np.testing.assert_array_equal(plain, with_zero)


def test_mixup_blends_faces_and_targets_with_the_same_weights_and_leaves_the_rest_as_it_was():
    faces, labels = random_faces(32), np.arange(32) % 7
    still = dict(flip=False, max_shift=0, max_rotation_deg=0, max_zoom=0, max_brightness=0, max_contrast=0)
    plain = next(iter(training_dataset(faces, labels, 16, seed=3, augmentation=Augmentation(**still))))
    mixed = next(iter(training_dataset(faces, labels, 16, seed=3, augmentation=Augmentation(**still, mixup_alpha=0.4))))
    x, y = (t.numpy() for t in plain)
    mx, my = (t.numpy() for t in mixed)
    np.testing.assert_allclose(my.sum(1), 1, atol=1e-6)
    differ = y.argmax(1) != y[::-1].argmax(1)  # where the partner's class differs, the own class keeps weight lambda
    assert differ.sum() >= 8
    weight = my[np.arange(16), y.argmax(1)][differ]
    blend = weight[:, None, None, None] * x[differ] + (1 - weight[:, None, None, None]) * x[::-1][differ]
    np.testing.assert_allclose(mx[differ], blend, atol=1e-2)
    assert 0 < weight.min() and weight.max() < 1 and weight.std() > 0.05  # drawn per face
    normal = next(iter(training_dataset(faces, labels, 16, seed=3)))
    unmixed = next(iter(training_dataset(faces, labels, 16, seed=3, augmentation=Augmentation(mixup_alpha=0.0))))
    np.testing.assert_array_equal(normal[0].numpy(), unmixed[0].numpy())


def test_epoch_k_is_the_same_whether_started_at_0_or_k():
    faces, labels = random_faces(48), np.arange(48) % 7
    from_start = list(training_dataset(faces, labels, 16, seed=3).take(6))  # 3 batches per epoch
    from_two = list(training_dataset(faces, labels, 16, seed=3, first_epoch=1).take(3))
    for (xa, ya), (xb, yb) in zip(from_start[3:], from_two):
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
    assert not np.array_equal(from_start[0][0].numpy(), from_start[3][0].numpy())


def tiny_split(count: int, seed: int, split: int) -> FerData:
    return FerData(images=random_faces(count, seed), labels=np.arange(count) % 7, usage=np.full(count, split),
                   sources=np.array([f"line {i}" for i in range(count)]), csv_rows=np.arange(count),
                   origin="generated", source_rows=count)


class _Interrupt(keras.callbacks.Callback):
    """Simulates a kill in the middle of the second epoch."""

    def on_train_batch_end(self, batch, logs=None):
        if self.model.optimizer.iterations.numpy() == 6:  # 4 batches per epoch: epoch 2, batch 2
            raise KeyboardInterrupt


def test_interrupted_training_resumes_to_the_same_place(tmp_path):
    config = TrainConfig(model_config={"widths": (8, 8, 8, 8), "blocks": (0, 1, 1, 1), "dropout": 0.0},
                         epochs=3, batch_size=16, patience=0, warmup_epochs=1)
    train_data, val_data = tiny_split(64, 1, 0), tiny_split(21, 2, 1)
    straight = train(config, train_data, val_data, tmp_path / "straight", verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train(config, train_data, val_data, tmp_path / "resumed", verbose=0, callbacks=[_Interrupt()])
    assert json.loads((tmp_path / "resumed" / "state.json").read_text())["epochs_done"] == 1
    resumed = train(config, train_data, val_data, tmp_path / "resumed", verbose=0)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    rows = (tmp_path / "resumed" / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    final_straight = (tmp_path / "straight" / "checkpoint").glob("ckpt-3.index")
    assert list(final_straight)
    assert load_best(tmp_path / "resumed").count_params() == straight.count_params()
    # a finished run ships without its checkpoint (optimizer state): it is evaluated, not trained again
    shutil.rmtree(tmp_path / "straight" / "checkpoint")
    history = (tmp_path / "straight" / "history.csv").read_text()
    again = train(config, train_data, val_data, tmp_path / "straight", verbose=0)
    assert (tmp_path / "straight" / "history.csv").read_text() == history
    for a, b in zip(straight.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_run_records_where_its_data_came_from_relative_to_the_project(tmp_path):
    import dataclasses

    from lightfer_utils.runtime.provenance import PROJECT_ROOT

    config = TrainConfig(model_config={"widths": (8, 8, 8, 8), "blocks": (0, 1, 1, 1), "dropout": 0.0},
                         epochs=1, batch_size=16, patience=0, warmup_epochs=0)
    (tmp_path / "faces").mkdir()
    train_data = dataclasses.replace(tiny_split(32, 1, 0), origin=str(tmp_path / "faces"))
    train(config, train_data, tiny_split(21, 2, 1), tmp_path / "run", verbose=0)
    origin = json.loads(TrainingDir(tmp_path / "run").data.read_text())["origin"]
    assert not Path(origin).is_absolute() and (PROJECT_ROOT / origin).resolve() == (tmp_path / "faces").resolve()
    train(config, tiny_split(32, 1, 0), tiny_split(21, 2, 1), tmp_path / "generated", verbose=0)
    assert json.loads(TrainingDir(tmp_path / "generated").data.read_text())["origin"] == "generated"

def test_a_long_epoch_shows_its_steps_and_the_evaluation_that_closes_it(tmp_path):
    import io

    from lightfer_utils.training.progress import BatchProgress

    config = TrainConfig(model_config={"widths": (8, 8, 8, 8), "blocks": (0, 1, 1, 1), "dropout": 0.0},
                         epochs=2, batch_size=16, patience=0, warmup_epochs=0)
    shown = io.StringIO()
    train(config, tiny_split(64, 1, 0), tiny_split(21, 2, 1), tmp_path / "run", verbose=0, callbacks=[BatchProgress(shown)])
    text = shown.getvalue()
    for expected in ("epoch 1/2", "epoch 2/2", "4/4", "loss=", "accuracy=", "epoch 2/2: PublicTest"):
        assert expected in text, (expected, text[-500:])

def test_a_run_directory_is_not_reused_for_another_config(tmp_path):
    config = TrainConfig(model_config={"widths": (8, 8, 8, 8)}, epochs=1, batch_size=16, patience=0)
    train(config, tiny_split(32, 1, 0), tiny_split(14, 2, 1), tmp_path / "run", verbose=0)
    with pytest.raises(FileExistsError, match="different config"):
        train(TrainConfig(model_config={"widths": (8, 8, 8, 8)}, epochs=2, batch_size=16), tiny_split(32, 1, 0),
              tiny_split(14, 2, 1), tmp_path / "run", verbose=0)


def earlier_training_directory(tmp_path) -> tuple[Path, TrainConfig]:
    """A finished mini_xception training directory, as a shipped model's training/ holds it."""
    earlier = tmp_path / "shipped" / "training"
    earlier.mkdir(parents=True)
    config = TrainConfig(model="mini_xception", epochs=3, seed=7)
    (earlier / "config.json").write_text(config.to_json())
    (earlier / "state.json").write_text(json.dumps({"epochs_done": 3}))
    return earlier, config


def test_02_starts_from_an_earlier_training_directory_with_its_own_config(tmp_path):
    from lightfer_utils.training.zoo import start_from

    earlier, config = earlier_training_directory(tmp_path)
    root = tmp_path / "run" / "training"
    assert start_from("", ["mini_xception"], root) == {}
    assert start_from(str(earlier), ["light_fer_net", "mini_xception"], root) == {"mini_xception": config}
    assert (root / "mini_xception" / "state.json").exists() and (earlier / "state.json").exists()
    with pytest.raises(FileExistsError):  # the run already holds one
        start_from(str(earlier), ["mini_xception"], root)
    with pytest.raises(ValueError, match="not in models"):
        start_from(str(earlier), ["light_fer_net"], tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="not a training directory"):
        start_from(str(tmp_path / "nowhere"), ["light_fer_net"], tmp_path / "other")


def test_02_gives_new_models_the_run_recipe_and_resumed_ones_their_own(tmp_path):
    from lightfer_utils.training.zoo import run_configs

    earlier, config = earlier_training_directory(tmp_path)
    configs = run_configs(["light_fer_net", "mini_xception", "xception"], str(earlier), tmp_path / "run", 96, 0.5,
                          epochs=9, seed=1)
    assert configs["mini_xception"] == config
    new = configs["light_fer_net"]
    assert (new.model, new.epochs, new.seed, new.augmentation["erase_probability"]) == ("light_fer_net", 9, 1, 0.5)
    assert configs["xception"].model_config == {"input_size": 96, "bn_momentum": 0.9}


def test_02s_architecture_table_sizes_each_model_as_configured():
    from lightfer_utils.training.zoo import zoo_table

    table = zoo_table({"light_fer_net": TrainConfig(model_config={"widths": (8, 8, 8, 8)}),
                       "mini_xception": TrainConfig(model="mini_xception")})
    wide = zoo_table({"light_fer_net": TrainConfig(model_config={"widths": (8, 8, 8, 16)})})
    assert table.loc["mini_xception", "parameters"] == 58_423
    assert table.loc["light_fer_net", "parameters"] < wide.loc["light_fer_net", "parameters"]
    assert table.loc["light_fer_net", "MFLOPs_per_face"] < wide.loc["light_fer_net", "MFLOPs_per_face"]


def test_distilled_training_saves_the_student_and_resumes(tmp_path):
    tiny = {"widths": (8, 8, 8, 8), "blocks": (0, 1, 1, 1), "dropout": 0.0}
    train_data, val_data = tiny_split(64, 1, 0), tiny_split(21, 2, 1)
    teacher_config = TrainConfig(model_config=tiny, epochs=1, batch_size=16, patience=0, warmup_epochs=0)
    train(teacher_config, train_data, val_data, tmp_path / "teacher", verbose=0)
    config = TrainConfig(model_config={**tiny, "widths": (8, 16, 16, 16)}, epochs=2, batch_size=16, patience=0,
                         warmup_epochs=0, teacher=str(tmp_path / "teacher"), distill_alpha=0.3,
                         augmentation={**Augmentation().as_dict(), "erase_probability": 0.5})
    with pytest.raises(KeyboardInterrupt):
        train(config, train_data, val_data, tmp_path / "student", verbose=0, callbacks=[_Interrupt()])
    student = train(config, train_data, val_data, tmp_path / "student", verbose=0)
    assert student.count_params() > load_best(tmp_path / "teacher").count_params()
    assert load_best(tmp_path / "student").get_layer("stage1_block0_a_conv").filters == 16  # the student, alone
    history = (tmp_path / "student" / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in history[1:]] == ["1", "2"]
    shutil.rmtree(tmp_path / "teacher")  # a finished run is evaluated without its teacher
    assert train(config, train_data, val_data, tmp_path / "student", verbose=0).count_params() == student.count_params()


def test_ensemble_teacher_averages_members_and_mirrored_faces():
    import tensorflow as tf

    from lightfer_utils.training.train import ensemble_teacher

    def member(offset):  # a "model" whose answer depends on the left/right layout of the face
        return lambda faces, training=False: tf.nn.softmax(tf.reduce_mean(faces[:, :, :24, 0], axis=[1, 2])[:, None]
                                                           * tf.range(7, dtype=tf.float32) + offset)

    faces = tf.constant(np.concatenate([np.ones((2, 48, 24, 1)), np.zeros((2, 48, 24, 1))], axis=2), tf.float32)
    mirrored = tf.reverse(faces, axis=[2])
    a, b = member(0.0), member(tf.constant([1.0, 0, 0, 0, 0, 0, 0]))
    np.testing.assert_allclose(ensemble_teacher([a], flip=False)(faces), a(faces), rtol=1e-6)
    np.testing.assert_allclose(ensemble_teacher([a, b], flip=False)(faces), (a(faces) + b(faces)) / 2, rtol=1e-6)
    expected = (a(faces) + a(mirrored) + b(faces) + b(mirrored)) / 4
    np.testing.assert_allclose(ensemble_teacher([a, b], flip=True)(faces), expected, rtol=1e-6)
    assert not np.allclose(a(faces), a(mirrored))  # the mirror does change this member's answer


def test_a_run_can_start_from_trained_weights_and_learn_from_several_teachers(tmp_path):
    tiny = {"widths": (8, 8, 8, 8), "blocks": (0, 1, 1, 1), "dropout": 0.0}
    train_data, val_data = tiny_split(64, 1, 0), tiny_split(21, 2, 1)
    base = TrainConfig(model_config=tiny, epochs=1, batch_size=16, patience=0, warmup_epochs=0)
    train(base, train_data, val_data, tmp_path / "a", verbose=0)
    train(TrainConfig(**{**base.__dict__, "seed": 7}), train_data, val_data, tmp_path / "b", verbose=0)
    config = TrainConfig(**{**base.__dict__, "epochs": 2, "learning_rate": 0.0, "min_learning_rate": 0.0,
                            "teacher": f"{tmp_path / 'a'},{tmp_path / 'b'}", "teacher_flip": True,
                            "init_from": str(tmp_path / "a")})
    fine_tuned = train(config, train_data, val_data, tmp_path / "c", verbose=0)
    start = load_best(tmp_path / "a")
    for before, after in zip(start.trainable_weights, fine_tuned.trainable_weights):  # (batch-norm statistics move)
        np.testing.assert_array_equal(before.numpy(), after.numpy())  # learning rate 0: the starting weights
    wider = TrainConfig(**{**config.__dict__, "model_config": {**tiny, "widths": (8, 16, 16, 16)}})
    with pytest.raises(ValueError, match="architecture differs"):
        train(wider, train_data, val_data, tmp_path / "d", verbose=0)


def test_offline_distillation_mixes_the_teachers_probabilities_into_the_targets_once(tmp_path):
    from lightfer_utils.training.train import ensemble_teacher, offline_targets

    tiny = {"widths": (8, 8, 8, 8), "blocks": (0, 1, 1, 1), "dropout": 0.0}
    train_data, val_data = tiny_split(64, 1, 0), tiny_split(21, 2, 1)
    base = TrainConfig(model_config=tiny, epochs=1, batch_size=16, patience=0, warmup_epochs=0)
    train(base, train_data, val_data, tmp_path / "teacher", verbose=0)
    config = TrainConfig(**{**base.__dict__, "teacher": str(tmp_path / "teacher"), "teacher_flip": True,
                            "teacher_offline": True, "distill_alpha": 0.25, "distill_temperature": 2.0})
    train(config, train_data, val_data, tmp_path / "student", verbose=0)
    targets = np.load(TrainingDir(tmp_path / "student").teacher_targets)
    faces = train_data.images[:, :, :, None].astype(np.float32)
    teacher = ensemble_teacher([load_best(tmp_path / "teacher")], flip=True)(tf.constant(faces)).numpy()
    softened = np.sqrt(teacher) / np.sqrt(teacher).sum(axis=1, keepdims=True)  # temperature 2
    np.testing.assert_allclose(targets, 0.25 * np.eye(7)[train_data.labels] + 0.75 * softened, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-5)
    (tmp_path / "teacher" / "best_weights.h5").unlink()  # the cached targets need the teacher no more
    assert np.array_equal(offline_targets(config, train_data, tmp_path / "student"), targets)


def test_a_run_written_before_new_config_fields_still_resumes(tmp_path):
    config = TrainConfig(model_config={"widths": (8, 8, 8, 8)}, epochs=1, batch_size=16, patience=0)
    train(config, tiny_split(32, 1, 0), tiny_split(14, 2, 1), tmp_path / "run", verbose=0)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    for key in ("teacher", "distill_alpha", "distill_temperature"):
        del stored[key]
    for key in ("erase_probability", "erase_max_area"):
        del stored["augmentation"][key]
    (tmp_path / "run" / "config.json").write_text(json.dumps(stored))
    assert load_config(tmp_path / "run").to_json() == config.to_json()
    train(load_config(tmp_path / "run"), tiny_split(32, 1, 0), tiny_split(14, 2, 1), tmp_path / "run", verbose=0)


def test_training_batches_are_always_full():
    from lightfer_utils.training.pipeline import steps_per_epoch

    stream = training_dataset(random_faces(27), np.arange(27) % 7, batch_size=8, seed=0, augmentation=None)
    assert steps_per_epoch(27, 8) == 3
    sizes = [len(faces) for faces, _ in stream.take(7)]  # two epochs and a bit: no ragged batch of 3
    assert sizes == [8] * 7
    with pytest.raises(ValueError, match="fewer than one batch"):
        steps_per_epoch(5, 8)


def test_02_names_a_resumed_shipped_model_by_its_folder(tmp_path):
    from lightfer_utils.training.zoo import trained_names

    earlier, _ = earlier_training_directory(tmp_path)  # tmp_path/shipped/training trains mini_xception
    assert trained_names(str(earlier)) == {"mini_xception": "shipped"}
    assert trained_names("") == {}


def test_training_cost_is_measured_for_each_named_model_and_scaled_to_a_full_epoch():
    from lightfer_utils.training.zoo import TRAINING_FACES, training_cost_table

    data = tiny_split(40, 3, 0)
    cost = training_cost_table("mini_xception", data, 71, steps=1, batch_size=16)
    row = cost.loc["mini_xception"]
    assert (row["parameters"], row["batch_size"], row["steps_timed"]) == (58_423, 16, 1)
    assert row["seconds_per_step"] > 0
    assert row["minutes_per_epoch"] == pytest.approx(row["seconds_per_step"] * (TRAINING_FACES // 16) / 60, abs=0.06)
    assert training_cost_table("", data, 71, steps=1).empty
    with pytest.raises(ValueError, match="unknown"):
        training_cost_table("nosuchnet", data, 71, steps=1)


def test_weight_average_follows_the_warmed_up_decay():
    from lightfer_utils.training.train import WeightAverage

    model = keras.Sequential([keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", input_shape=(1,))])
    average = WeightAverage(model, decay=0.5)
    expected = 0.0
    for step, value in enumerate([1.0, 2.0, 4.0, 4.0, 4.0]):
        model.layers[0].kernel.assign([[value]])
        average._update()
        decay = min(0.5, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * value
        np.testing.assert_allclose(average.average[0].numpy(), [[expected]], rtol=1e-6)
    average.swap_in()
    np.testing.assert_allclose(model.get_weights()[0], [[expected]], rtol=1e-6)
    average.swap_out()
    np.testing.assert_allclose(model.get_weights()[0], [[4.0]])
    with pytest.raises(ValueError, match="weight_average_decay"):
        WeightAverage(model, decay=1.0)


@pytest.mark.parametrize("setting, value, message", [
    ("weight_average_decay", 1.5, r"weight_average_decay must be a finite number in \[0, 1\) \(0: off\), got 1.5"),
    ("batch_size", 0, "batch_size must be a whole number in \\[1, 65536\\], got 0"),
    ("epochs", 2.5, "epochs must be a whole number in \\[1, 100000\\], got 2.5"),
    ("learning_rate", float("nan"), "learning_rate must be a finite number >= 0, got nan"),
    ("learning_rate", float("inf"), "learning_rate must be a finite number >= 0, got inf"),
    ("learning_rate", -1e-3, "learning_rate must be a finite number >= 0, got -0.001"),
    ("min_learning_rate", 1e308 * 10, "min_learning_rate must be a finite number >= 0, got inf"),
    ("label_smoothing", 1.0, r"label_smoothing must be a finite number in \[0, 1\), got 1.0"),
    ("distill_temperature", 0.0, "distill_temperature must be a finite number > 0, got 0.0"),
    ("patience", True, "patience must be a whole number"),
])
def test_a_bad_number_is_refused_before_the_run_is_written(tmp_path, setting, value, message):
    with pytest.raises(ValueError, match=message):
        train(TrainConfig(**{setting: value}), tiny_split(16, 1, 0), tiny_split(7, 2, 1), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_config_file_with_an_unknown_setting_is_named(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({**json.loads(TrainConfig().to_json()), "colour": "red"}))
    with pytest.raises(ValueError, match=r"run/config.json: not a training config \(unknown setting colour\)"):
        load_config(tmp_path / "run")
    (tmp_path / "run" / "config.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="config.json is not JSON"):
        load_config(tmp_path / "run")


def test_weight_averaged_run_validates_and_keeps_the_average_and_resumes_it(tmp_path):
    config = TrainConfig(model_config={"widths": (8, 8, 8, 8), "blocks": (0, 1, 1, 1), "dropout": 0.0},
                         epochs=2, batch_size=16, patience=0, warmup_epochs=0, weight_average_decay=0.9)
    train_data, val_data = tiny_split(64, 1, 0), tiny_split(21, 2, 1)
    with pytest.raises(KeyboardInterrupt):
        train(config, train_data, val_data, tmp_path / "run", verbose=0, callbacks=[_Interrupt()])
    checkpoint = tf.train.load_checkpoint(str(tmp_path / "run" / "checkpoint" / "ckpt-1"))
    names = checkpoint.get_variable_to_shape_map()
    averaged = sorted(n for n in names if n.startswith("weight_average/average/") and n.endswith("VARIABLE_VALUE"))
    best = load_best(tmp_path / "run")  # after one epoch, the best epoch is that one
    assert len(averaged) == len(best.weights) and checkpoint.get_tensor("weight_average/steps/.ATTRIBUTES/VARIABLE_VALUE") == 4
    kept = [checkpoint.get_tensor(f"weight_average/average/{i}/.ATTRIBUTES/VARIABLE_VALUE") for i in range(len(best.weights))]
    for weight, value in zip(best.get_weights(), kept):
        np.testing.assert_array_equal(weight, value)
    raw = checkpoint.get_tensor("model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE")
    assert not np.array_equal(raw, best.get_weights()[0])  # the average, not the last step's weights
    recorded = float((tmp_path / "run" / "history.csv").read_text().splitlines()[1].split(",")[-1])
    predicted = best(tf.constant(model_input(val_data.images)), training=False).numpy().argmax(1)
    assert recorded == pytest.approx(float(np.mean(predicted == val_data.labels)), abs=1e-6)
    train(config, train_data, val_data, tmp_path / "run", verbose=0)  # resumes with the average of epoch 1
    straight = train(config, train_data, val_data, tmp_path / "straight", verbose=0)
    assert json.loads((tmp_path / "run" / "state.json").read_text())["epochs_done"] == 2
    for a, b in zip(load_best(tmp_path / "run").get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


TWO_REPLICA_RUN = """
import sys
from pathlib import Path
import lightfer_utils  # Keras 2 for TensorFlow, before it starts
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from lightfer_utils.training import train as training
from test_training import tiny_split
training.distribution_strategy = lambda: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out, tiny = Path(sys.argv[1]), {"widths": (8, 8, 8, 8), "blocks": (0, 1, 1, 1), "dropout": 0.0}
data = tiny_split(64, 1, 0), tiny_split(21, 2, 1)
common = dict(model_config=tiny, batch_size=8, patience=0, warmup_epochs=0)
training.train(training.TrainConfig(**common, epochs=1), *data, out / "teacher", verbose=0)
student = training.TrainConfig(**common, epochs=2, weight_average_decay=0.9, teacher=str(out / "teacher"),
                               teacher_flip=True, augmentation={"mixup_alpha": 0.2, "erase_probability": 0.5})
training.train(student, *data, out / "student", verbose=0)
"""


def test_training_on_two_replicas_with_a_teacher_a_weight_average_and_mixup(tmp_path):
    """The multi-GPU path (MirroredStrategy) on two logical CPUs, which must exist before TensorFlow
    starts: hence a process of its own."""
    result = subprocess.run([sys.executable, "-c", TWO_REPLICA_RUN, str(tmp_path)], cwd=Path(__file__).parent,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = (tmp_path / "student" / "history.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and float(rows[0].split(",")[1]) == pytest.approx(2e-3)  # 1e-3 per replica batch
    checkpoint = tf.train.load_checkpoint(str(tmp_path / "student" / "checkpoint" / "ckpt-2"))
    assert checkpoint.get_tensor("weight_average/steps/.ATTRIBUTES/VARIABLE_VALUE") == 2 * 4  # global batch 16
    assert load_best(tmp_path / "student").count_params() == 3815  # the best weights saved under the strategy load


class _ComputeDtypes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.dtypes = {layer.name: layer.compute_dtype for layer in self.model.layers}


def test_a_mixed_bfloat16_run_computes_in_bfloat16_and_leaves_float32_weights_and_policy(tmp_path):
    if bfloat16_support() == "none":  # the refusal there: tests/test_cli_errors.py
        pytest.skip("TensorFlow cannot train bfloat16 convolutions on this CPU (no AVX-512)")
    config = TrainConfig(model_config={"widths": (8, 8, 8, 8), "blocks": (0, 1, 1, 1), "dropout": 0.0},
                         epochs=1, batch_size=16, patience=0, warmup_epochs=0, precision="mixed_bfloat16")
    seen = _ComputeDtypes()
    best = train(config, tiny_split(64, 1, 0), tiny_split(21, 2, 1), tmp_path / "run", verbose=0, callbacks=[seen])
    assert seen.dtypes["stem_conv"] == "bfloat16" and seen.dtypes["probabilities"] == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"
    assert {layer.compute_dtype for layer in best.layers} == {"float32"}  # what ship and evaluate get
    assert {w.dtype for w in best.weights} == {tf.float32}
    assert load_config(tmp_path / "run").precision == "mixed_bfloat16"
    as_teacher = load_trained(tmp_path / "run", "mixed_bfloat16")  # how a mixed-precision run loads its teachers
    assert as_teacher.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"


def test_an_unknown_precision_is_refused_before_the_run_is_written(tmp_path):
    with pytest.raises(ValueError, match="precision must be one of float32, mixed_bfloat16, got 'float16'"):
        train(TrainConfig(precision="float16"), tiny_split(16, 1, 0), tiny_split(7, 2, 1), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_bench_training_times_a_run_s_steps_in_each_precision(tmp_path, capsys):
    from lightfer_utils.cli import main

    tiny = TrainConfig(model_config={"widths": (8, 8, 8, 8), "blocks": (0, 1, 1, 1), "dropout": 0.0},
                       epochs=1, batch_size=16, patience=0, warmup_epochs=0)
    train(tiny, tiny_split(64, 1, 0), tiny_split(21, 2, 1), tmp_path / "teacher", verbose=0)
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "config.json").write_text(
        TrainConfig(**{**tiny.__dict__, "teacher": str(tmp_path / "teacher")}).to_json())
    capsys.readouterr()
    assert main(["bench", "training", str(tmp_path / "student"), "--steps", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"teacher: {tmp_path / 'teacher'}" in out[0]
    assert [line.split(":")[0].strip() for line in out[1:]] == ["float32", "mixed_bfloat16"]
    assert " ms per step, " in out[1] and out[1].endswith("s per epoch of 1794 steps")
    support = bfloat16_support()
    assert out[2].endswith({"native": "s per epoch of 1794 steps", "emulated": "(bfloat16 emulated)",
                            "none": "not available here (TensorFlow cannot train bfloat16 convolutions on this CPU)"}[support])
    assert main(["bench", "training", str(tmp_path / "student"), "--precision", "float16"]) == 2
    assert main(["bench", "training", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--precision takes float32, mixed_bfloat16 (comma-separated), got 'float16'" in err
    assert f"{tmp_path} is not a training run: no config.json" in err
