"""Metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from lightfer_utils.training.evaluate import evaluate_probabilities, expected_calibration_error, flip_tta, mean_predictor


def one_hot_probabilities(predicted, confidence=1.0):
    p = np.full((len(predicted), 7), (1 - confidence) / 6)
    p[np.arange(len(predicted)), predicted] = confidence
    return p


def test_accuracy_recall_confusion_and_f1():
    labels = np.array([0, 0, 0, 0, 3, 3, 6, 6])
    predicted = np.array([0, 0, 0, 4, 3, 0, 6, 6])
    result = evaluate_probabilities(one_hot_probabilities(predicted), labels)
    assert result.accuracy == pytest.approx(6 / 8)
    assert result.per_class_recall["angry"] == pytest.approx(0.75)
    assert result.per_class_recall["happy"] == pytest.approx(0.5)
    assert result.per_class_recall["neutral"] == 1.0
    assert result.confusion.loc["angry", "sad"] == 0.25
    assert result.confusion.loc["happy", "angry"] == 0.5
    # F1 over the classes present: angry P=3/4 R=3/4; happy P=1 R=1/2; neutral 1
    expected_f1 = np.mean([0.75, 2 * 1 * 0.5 / 1.5, 1.0])
    assert result.macro_f1 == pytest.approx(expected_f1)


def test_ece_of_calibrated_and_overconfident_predictions():
    labels = np.zeros(10, dtype=int)
    predicted = np.array([0] * 8 + [1] * 2)
    # 80 % correct at confidence 0.8: calibrated
    assert expected_calibration_error(one_hot_probabilities(predicted, 0.8), labels) == pytest.approx(0.0, abs=1e-9)
    # 80 % correct at confidence 1.0: ECE 0.2
    assert expected_calibration_error(one_hot_probabilities(predicted, 1.0), labels) == pytest.approx(0.2)


def test_flip_tta_averages_mirror_predictions():
    def left_brightness(faces):
        left = faces[:, :, :24, 0].mean(axis=(1, 2))
        p = np.zeros((len(faces), 7))
        p[:, 0] = left / 255
        p[:, 1] = 1 - left / 255
        return p

    face = np.zeros((1, 48, 48, 1), np.float32)
    face[:, :, :24] = 255
    np.testing.assert_allclose(left_brightness(face)[0, :2], [1, 0])
    np.testing.assert_allclose(flip_tta(left_brightness)(face)[0, :2], [0.5, 0.5])


def test_mean_predictor_averages_members_and_needs_one():
    def constant(probabilities):
        return lambda faces: np.tile(np.asarray(probabilities, dtype=np.float64), (len(faces), 1))

    faces = np.zeros((3, 48, 48, 1), np.float32)
    sure_angry = constant([1, 0, 0, 0, 0, 0, 0])
    mostly_happy = constant([0.2, 0, 0, 0.8, 0, 0, 0])
    np.testing.assert_allclose(mean_predictor([sure_angry, mostly_happy])(faces),
                               np.tile([0.6, 0, 0, 0.4, 0, 0, 0], (3, 1)))
    np.testing.assert_allclose(mean_predictor([mostly_happy])(faces), mostly_happy(faces))
    with pytest.raises(ValueError, match="at least one"):
        mean_predictor([])
