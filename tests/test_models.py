"""Every architecture builds, takes raw 48x48x1 faces and has the parameter count it should."""

from __future__ import annotations


import numpy as np
import pytest

from lightfer_utils.training.evaluate import count_flops, count_parameters
from lightfer_utils.training.models import BUILDERS, build_model

# Computed by building each model (not hand-written); a change to an architecture shows here.
EXPECTED_PARAMETERS = {
    "light_fer_net": (949_015, 946_551),
    "mini_xception": (58_423, 56_951),  # Zhou et al. 2020: 58,423 total, 56,951 trainable
    "vgg_style": (7_053_383, 7_049_543),
    "simple_cnn": (1_274_375, 1_274_375),
    "resnet50": (23_602_055, 23_548_935),
    "xception": (20_875_823, 20_821_295),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_architecture_parameters_and_io(name):
    model = build_model(name)
    counts = count_parameters(model)
    assert (counts["total"], counts["trainable"]) == EXPECTED_PARAMETERS[name]
    assert counts["total"] == model.count_params()
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1)).astype(np.float32)
    probabilities = model(faces, training=False).numpy()
    assert probabilities.shape == (3, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_the_shipped_default_model_is_within_the_parameter_budget():
    # the model `lightfer predict` uses, read from its own file, not the builder's default
    from lightfer_utils.runtime import shipped_models
    from lightfer_utils.training.train import load_trained

    default = shipped_models.DEFAULT_MODEL
    parameters = load_trained(shipped_models.model_file(default, "keras")).count_params()
    assert parameters == shipped_models.card(default)["architecture"]["parameters"]["total"]
    assert parameters <= 1_000_000, f"{default}: {parameters:,} parameters, over the 1 M budget"


def test_flops_are_counted_from_the_graph():
    # mini-Xception's two stem convolutions alone take 2*(46*46*9*1*8 + 44*44*9*8*8) FLOPs; the
    # whole model must count more than that, and stays near its published ~11 M (< 24 M).
    model = build_model("mini_xception")
    stem = 2 * (46 * 46 * 9 * 1 * 8 + 44 * 44 * 9 * 8 * 8)
    flops = count_flops(model)
    assert stem < flops < 2 * 12_000_000
    assert count_flops(build_model("light_fer_net", widths=(8, 8, 8, 8))) < count_flops(build_model("light_fer_net"))


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="at least 71x71"):
        build_model("xception", input_size=48)
    with pytest.raises(ValueError, match="unknown model 'alexnet'"):
        build_model("alexnet")
    with pytest.raises(ValueError, match="one entry per stage"):
        build_model("light_fer_net", widths=(8, 16), blocks=(1,))
