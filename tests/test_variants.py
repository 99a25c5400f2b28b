"""03's compression variants made once, shipped with their record, and measured from their files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from lightfer_utils.training import variants
from lightfer_utils.training.models import build_model
from lightfer_utils.training.variants import RECORD, Recipe, ship_variants, shipped, weights_sha256
from test_prune import TINY
from test_training import tiny_split

RECIPE = Recipe(sparsities=(0.5,), channel_keep=(0.5,), prune_epochs=1, structured_epochs=1, learning_rate=3e-4,
                batch_size=8, seed=0)
DATA_SHA = "d" * 64


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A tiny model's variants, shipped into a folder: (dense model, folder, record)."""
    dense = build_model("light_fer_net", **TINY)
    train, validation = tiny_split(32, 1, 0), tiny_split(14, 2, 1)
    folder = tmp_path_factory.mktemp("variants")
    record = ship_variants(dense, train, validation, DATA_SHA, RECIPE, folder, "tiny")
    return dense, folder, record


def test_every_variant_is_shipped_with_its_hash_and_measured_from_its_file(made):
    dense, folder, record = made
    assert list(record["variants"]) == ["magnitude_0.5", "sparsity_2of4", "channels_0.5"] == RECIPE.names()
    on_disk = json.loads((folder / RECORD).read_text())
    assert on_disk["recipe"]["sparsities"] == [0.5] and on_disk["dense_weights_sha256"] == weights_sha256(dense)
    load = shipped(folder, RECIPE, dense, DATA_SHA)
    pruned = load("magnitude_0.5")
    kernels = [w for w in pruned.get_weights() if w.ndim == 4 and w.shape[-2] > 1]
    assert sum((k == 0).sum() for k in kernels) > 0.3 * sum(k.size for k in kernels)  # tfmot's zeros survived the file
    assert not any(np.array_equal(a, b) for a, b in zip(pruned.get_weights(), dense.get_weights()) if a.size > 100)


def test_a_folder_made_from_other_weights_data_or_settings_is_refused(made):
    dense, folder, _ = made
    with pytest.raises(ValueError, match=r"prune_epochs 1 \(this run: 2\)"):
        shipped(folder, dataclasses.replace(RECIPE, prune_epochs=2), dense, DATA_SHA)
    with pytest.raises(ValueError, match="other data"):
        shipped(folder, RECIPE, dense, "e" * 64)
    with pytest.raises(ValueError, match="other dense weights"):
        shipped(folder, RECIPE, _perturbed(dense), DATA_SHA)


def _perturbed(model):
    clone = build_model("light_fer_net", **TINY)
    clone.set_weights([w + 1e-3 for w in model.get_weights()])
    return clone


def test_a_changed_file_or_a_broken_record_is_named_not_loaded(made, tmp_path):
    dense, folder, _ = made
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    (copy / "sparsity_2of4.keras").write_bytes((copy / "magnitude_0.5.keras").read_bytes())
    load = shipped(copy, RECIPE, dense, DATA_SHA)
    with pytest.raises(ValueError, match="sparsity_2of4.keras: missing or changed"):
        load("sparsity_2of4")
    unfinished = json.loads((copy / RECORD).read_text())
    del unfinished["variants"]["channels_0.5"]
    (copy / RECORD).write_text(json.dumps(unfinished))
    with pytest.raises(ValueError, match="does not hold channels_0.5 yet: finish it with `lightfer maintain ship-variants`"):
        shipped(copy, RECIPE, dense, DATA_SHA)
    (copy / RECORD).write_text(json.dumps({"variants": {}, "recipe": {"sparsities": [0.5]}}))
    with pytest.raises(ValueError, match="the recipe must name exactly"):
        shipped(copy, RECIPE, dense, DATA_SHA)
    (copy / RECORD).write_text("{not json")
    with pytest.raises(ValueError, match="not a variants record"):
        shipped(copy, RECIPE, dense, DATA_SHA)


def test_an_interrupted_ship_goes_on_with_the_next_variant(tmp_path, monkeypatch, capsys):
    dense = build_model("light_fer_net", **TINY)
    train, validation = tiny_split(32, 1, 0), tiny_split(14, 2, 1)
    real = variants.fine_tuner
    made_here: list[str] = []

    def failing_after_first(*args):
        make = real(*args)

        def once(name):
            if made_here:
                raise KeyboardInterrupt  # the session ends
            made_here.append(name)
            return make(name)
        return once

    monkeypatch.setattr(variants, "fine_tuner", failing_after_first)
    with pytest.raises(KeyboardInterrupt):
        ship_variants(dense, train, validation, DATA_SHA, RECIPE, tmp_path, "tiny")
    assert list(json.loads((tmp_path / RECORD).read_text())["variants"]) == ["magnitude_0.5"]
    first = (tmp_path / "magnitude_0.5.keras").read_bytes()

    monkeypatch.setattr(variants, "fine_tuner", real)
    capsys.readouterr()
    record = ship_variants(dense, train, validation, DATA_SHA, RECIPE, tmp_path, "tiny")
    assert "1 of 3 variants made before; making sparsity_2of4, channels_0.5" in capsys.readouterr().out
    assert list(record["variants"]) == RECIPE.names() and (tmp_path / "magnitude_0.5.keras").read_bytes() == first
    with pytest.raises(ValueError, match="other dense weights"):  # resuming from another model is refused
        ship_variants(_perturbed(dense), train, validation, DATA_SHA, RECIPE, tmp_path, "tiny")


def test_the_reproduce_profile_measures_variants_shipped_with_its_own_recipe_and_weights():
    from lightfer_utils import runner
    from lightfer_utils.runtime.provenance import file_sha256
    from lightfer_utils.training.train import load_trained

    values = runner.notebook_values("reproduce", "03_pruning")
    folder = runner.PROJECT_ROOT / values["variants_from"]
    record = variants.read_record(folder)
    assert record["recipe"] == Recipe.from_parameters(values)  # the profile and the shipped files cannot drift apart
    for name in record["recipe"].names():
        assert file_sha256(folder / f"{name}.keras") == record["variants"][name]["sha256"]
    # made from the dense model the profile's 02 resumes (its 03 compresses that run's light_fer_net)
    assert record["source"] in runner.notebook_values("reproduce", "02_xception_baseline")["resume_from"].split(",")
    assert weights_sha256(load_trained(runner.PROJECT_ROOT / record["source"])) == record["dense_weights_sha256"]

