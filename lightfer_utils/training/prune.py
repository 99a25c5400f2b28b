"""Pruning: tfmot magnitude pruning during fine-tuning (the paper's method), the compression ratio
R of Eq. 1, and structured channel pruning that rebuilds a smaller dense model.

tfmot only zeroes entries of dense tensors, which no CPU runtime skips (tfmot issues #173, #611).
`prune_channels` instead removes whole convolution filters with the lowest L1 norm and builds a
genuinely smaller network, so the saving shows up as latency on every runtime.
"""

from __future__ import annotations

import gzip
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

import tf_keras as keras

from lightfer_utils.data import FerData
from lightfer_utils.runtime.predictor import model_input
from lightfer_utils.training.fine_tuning import fine_tune, save_uncompiled
from lightfer_utils.training.pipeline import steps_per_epoch

# tfmot prunes these kernels (of a SeparableConv2D its pointwise kernel; the depthwise one stays dense)
PRUNABLE = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.Dense)
PASS_THROUGH = (keras.layers.BatchNormalization, keras.layers.Activation, keras.layers.ReLU, keras.layers.Dropout,
                keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.GlobalAveragePooling2D)


# --------------------------------------------------------------------------- tfmot (unstructured, 2:4)


def magnitude_prune(
    model: keras.Model,
    train_data: FerData,
    val_data: FerData,
    target_sparsity: float | None,
    epochs: int,
    m_by_n: tuple[int, int] | None = None,
    **fine_tune_args,
) -> keras.Model:
    """Pruning during training: every Conv2D/SeparableConv2D/Dense kernel is wrapped by tfmot's
    `prune_low_magnitude` (PolynomialDecay from 0 to `target_sparsity` over the first 70 % of the
    steps, or 2:4-style `m_by_n` sparsity), fine-tuned, and stripped back to plain layers. Nested
    models (keras.applications backbones such as the paper's Xception) are wrapped layer by layer too."""
    import tensorflow_model_optimization as tfmot

    sparsity = tfmot.sparsity.keras
    steps = epochs * steps_per_epoch(len(train_data), fine_tune_args.get("batch_size", 64))
    frequency = max(1, min(100, steps // 10))  # masks update only every `frequency` steps
    if m_by_n is None:
        if not 0 < (target_sparsity or 0) < 1:
            raise ValueError(f"target sparsity must be in (0, 1), got {target_sparsity}")
        schedule = sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=target_sparsity, begin_step=0,
                                            end_step=max(frequency, int(steps * 0.7)), frequency=frequency)
        wrap_args = {"pruning_schedule": schedule}
    else:
        wrap_args = {"sparsity_m_by_n": m_by_n}

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=wrap)
        clone = layer.__class__.from_config(layer.get_config())
        return sparsity.prune_low_magnitude(clone, **wrap_args) if isinstance(layer, PRUNABLE) else clone

    wrapped = keras.models.clone_model(model, clone_function=wrap)
    wrapped.set_weights(_weights_for_wrapped(model, wrapped))
    with tempfile.TemporaryDirectory() as logs:
        fine_tune(wrapped, train_data, val_data, epochs, callbacks=[sparsity.UpdatePruningStep(),
                  sparsity.PruningSummaries(log_dir=logs), *fine_tune_args.pop("callbacks", [])], **fine_tune_args)
    return sparsity.strip_pruning(wrapped)


def _weights_for_wrapped(model: keras.Model, wrapped: keras.Model) -> list[np.ndarray]:
    """The dense model's weights in the wrapped model's order (masks start at one)."""
    by_name = {w.name: value for w, value in zip(model.weights, model.get_weights())}
    values = []
    for weight in wrapped.weights:
        name = weight.name.replace("prune_low_magnitude_", "")
        if name in by_name:
            values.append(by_name[name])
        elif "mask" in weight.name:
            values.append(np.ones(weight.shape, weight.dtype.as_numpy_dtype))
        else:  # threshold and pruning step
            values.append(keras.backend.get_value(weight))
    return values


def flat_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers, those of nested models in their place."""
    return [inner for layer in model.layers
            for inner in (flat_layers(layer) if isinstance(layer, keras.Model) else [layer])]


def nonzero_parameters(model: keras.Model) -> int:
    """Parameters (all weights: kernels, biases, batch-norm) that are not zero."""
    return int(sum(np.count_nonzero(w) for w in model.get_weights()))


def sparsity_table(model: keras.Model) -> pd.DataFrame:
    """Per prunable kernel: weights, zero weights, sparsity, and filters / input channels that are all
    zero (of a SeparableConv2D: its pointwise kernel, the one tfmot prunes)."""
    rows = []
    for layer in flat_layers(model):
        if not isinstance(layer, PRUNABLE):
            continue
        kernel = (layer.pointwise_kernel if isinstance(layer, keras.layers.SeparableConv2D) else layer.kernel).numpy()
        zero = kernel == 0
        rows.append({"layer": layer.name, "weights": kernel.size, "zero_weights": int(zero.sum()),
                     "sparsity": float(zero.mean()), "filters": kernel.shape[-1],
                     "zero_filters": int(zero.reshape(-1, kernel.shape[-1]).all(axis=0).sum()),
                     "channels": kernel.shape[-2],
                     "zero_channels": int(np.moveaxis(zero, -2, 0).reshape(kernel.shape[-2], -1).all(axis=1).sum())})
    return pd.DataFrame(rows).set_index("layer")


def compression_ratio(table: pd.DataFrame, original: pd.DataFrame | None = None) -> dict[str, float]:
    """Eq. 1, R = sum of unpruned / sum of remaining units, over weights, filters and channels.

    `original` is the unpruned model's `sparsity_table` when the pruned model is smaller
    (structured pruning); by default the units of `table` itself are the unpruned ones.
    """
    original = table if original is None else original
    ratio = {}
    for unit, zero in (("weights", "zero_weights"), ("filters", "zero_filters"), ("channels", "zero_channels")):
        remaining = table[unit].sum() - table[zero].sum()
        ratio[f"R_{unit}"] = round(float(original[unit].sum() / remaining), 3) if remaining else float("inf")
    return ratio


def gzipped_size(path: str | Path) -> int:
    """Bytes of the file after gzip -9: what zeroed weights save in storage."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as archive:
        archive.write(Path(path).read_bytes())
    return len(buffer.getvalue())


# --------------------------------------------------------------------------- structured (channels)


@dataclass
class ChannelPlan:
    space_of_output: dict[str, int]  # layer name -> channel space of its output
    space_of_input: dict[str, int]  # layer name -> channel space of its (first) input
    frozen: set[int]  # spaces whose width must not change (input, flatten, classes, unsupported layers)
    producers: dict[int, list[str]]  # space -> Conv2D layers writing it


def channel_plan(model: keras.Model) -> ChannelPlan:
    """Which convolution outputs share a channel space (residual additions tie them together)."""
    parent: dict[int, int] = {}

    def find(space: int) -> int:
        while parent[space] != space:
            space = parent[space]
        return space

    def new_space() -> int:
        parent[len(parent)] = len(parent)
        return len(parent) - 1

    out_space: dict[int, int] = {}  # id(output tensor) -> space
    by_layer_out: dict[str, int] = {}
    by_layer_in: dict[str, int] = {}
    frozen: set[int] = set()
    for layer in model.layers:
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        if isinstance(layer, keras.layers.InputLayer):
            space = new_space()
            frozen.add(space)
        else:
            in_spaces = [out_space[id(t)] for t in inputs]
            by_layer_in[layer.name] = in_spaces[0]
            if isinstance(layer, keras.layers.Conv2D) and type(layer) is keras.layers.Conv2D and layer.groups == 1:
                space = new_space()
            elif isinstance(layer, keras.layers.Dense):
                space = new_space()
                frozen.add(space)
            elif isinstance(layer, PASS_THROUGH):
                space = in_spaces[0]
            elif isinstance(layer, keras.layers.Add):
                space = in_spaces[0]
                for other in in_spaces[1:]:
                    parent[find(other)] = find(space)
            else:  # Rescaling, Flatten, SeparableConv2D, resizing...: keep everything around it as is
                frozen.update(in_spaces)
                space = new_space()
                frozen.add(space)
        out_space[id(layer.output)] = space
        by_layer_out[layer.name] = space
    resolve = {k: find(v) for k, v in by_layer_out.items()}
    producers: dict[int, list[str]] = {}
    for layer in model.layers:
        if type(layer) is keras.layers.Conv2D:
            producers.setdefault(resolve[layer.name], []).append(layer.name)
    return ChannelPlan(space_of_output=resolve, space_of_input={k: find(v) for k, v in by_layer_in.items()},
                       frozen={find(s) for s in frozen}, producers=producers)


def channel_importance(model: keras.Model, plan: ChannelPlan) -> dict[int, np.ndarray]:
    """L1 norm of each output filter, normalised per layer, summed over the layers writing a space."""
    scores = {}
    for space, names in plan.producers.items():
        if space in plan.frozen:
            continue
        total = 0.0
        for name in names:
            kernel = model.get_layer(name).get_weights()[0]
            l1 = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
            total = total + l1 / max(float(l1.mean()), 1e-12)
        scores[space] = total
    return scores


def recalibrate_batch_norm(
    model: keras.Model, faces: np.ndarray, batch_size: int = 256, batches: int = 16, seed: int = 0
) -> None:
    """Re-estimates every BatchNormalization layer's moving mean and variance on a random sample
    of `faces` (the folder layout lists them class by class), as a cumulative average over
    `batches` batches. Once channels are removed, the statistics that later layers had during
    training no longer hold (measured: 22 % PublicTest accuracy before recalibration, 47 % after)."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    sample = np.random.default_rng(seed).permutation(len(faces))[:batches * batch_size]
    faces = model_input(faces)[sample]
    try:
        for i in range(min(batches, -(-len(faces) // batch_size))):
            for layer in norms:
                layer.momentum = i / (i + 1)  # batch i gets weight 1 / (i + 1): a plain average
            model(faces[i * batch_size:(i + 1) * batch_size], training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def prune_channels(
    model: keras.Model,
    keep_fraction: float,
    calibration_faces: np.ndarray | None = None,
    min_channels: int = 16,
    multiple_of: int = 16,
) -> tuple[keras.Model, pd.DataFrame]:
    """A smaller dense copy of `model` keeping the `keep_fraction` most important channels of
    every free channel space (L1 criterion), with the surviving weights copied over and, given
    `calibration_faces` (Training faces, shuffled), batch-norm statistics re-estimated on them.

    Kept counts are rounded to a multiple of `multiple_of`: CPU convolution kernels work on
    blocks of 8 or 16 channels (AVX2, AVX-512), and a width off that grid can run slower than
    the unpruned one (docs/measurements.md).
    """
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    if multiple_of < 1:
        raise ValueError(f"multiple_of must be at least 1, got {multiple_of}")
    plan = channel_plan(model)
    keep: dict[int, np.ndarray] = {}
    rows = []
    for space, score in channel_importance(model, plan).items():
        rounded = multiple_of * max(1, int(round(len(score) * keep_fraction / multiple_of)))
        count = min(len(score), max(min_channels, rounded))
        keep[space] = np.sort(np.argsort(-score, kind="stable")[:count])
        rows.append({"layers": ", ".join(plan.producers[space]), "channels": len(score), "kept": count})

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if type(layer) is keras.layers.Conv2D and plan.space_of_output[layer.name] in keep:
            config["filters"] = len(keep[plan.space_of_output[layer.name]])
        return layer.__class__.from_config(config)

    smaller = keras.models.clone_model(model, clone_function=clone)
    for old, new in zip(model.layers, smaller.layers):
        weights = old.get_weights()
        if not weights:
            continue
        in_keep = keep.get(plan.space_of_input.get(old.name, -1))
        out_keep = keep.get(plan.space_of_output[old.name])
        if isinstance(old, keras.layers.Conv2D):
            kernel = weights[0]
            if in_keep is not None:
                kernel = kernel[:, :, in_keep, :]
            if out_keep is not None:
                kernel = kernel[..., out_keep]
                weights = [kernel] + [w[out_keep] for w in weights[1:]]
            else:
                weights = [kernel] + weights[1:]
        elif isinstance(old, keras.layers.Dense) and in_keep is not None:
            weights = [weights[0][in_keep]] + weights[1:]
        elif isinstance(old, keras.layers.BatchNormalization) and out_keep is not None:
            weights = [w[out_keep] for w in weights]
        new.set_weights(weights)
    if calibration_faces is not None:
        recalibrate_batch_norm(smaller, calibration_faces)
    return smaller, pd.DataFrame(rows)


def onnx_latencies(
    models: dict[str, Path], faces: np.ndarray, iterations: int = 200, rounds: int = 5, threads: int = 0
) -> dict[str, float]:
    """Batch-1 p50 latency (ms) of each saved Keras model exported to ONNX and run by ONNX
    Runtime's CPU provider, all measured together (`benchmark.interleaved_timings`)."""
    from lightfer_utils.runtime.benchmark import interleaved_timings
    from lightfer_utils.training.export import export_onnx
    from lightfer_utils.runtime.predictor import OnnxPredictor
    from lightfer_utils.runtime.safe_keras import load_keras_model

    with tempfile.TemporaryDirectory() as scratch:
        exported = {name: export_onnx(load_keras_model(path), Path(scratch) / f"{name}.onnx")
                    for name, path in models.items()}
        loaders = {name: (lambda path=path: OnnxPredictor(path, threads=threads)) for name, path in exported.items()}
        timings = interleaved_timings(loaders, faces, (1,), iterations=iterations, rounds=rounds)
    return {name: timing[1]["latency_p50_ms"] for name, timing in timings.items()}


def variant_row(
    name: str,
    model: keras.Model,
    validation: FerData,
    test: FerData,
    saved: Path,
    original: pd.DataFrame,
) -> dict[str, float | int | str]:
    """One line of the pruning table (latency apart: `onnx_latencies` times every variant at the
    end): size (plain and gzipped), non-zero kernel weights, R of Eq. 1 against the `original`
    (dense) model's sparsity table, FLOPs, PublicTest and PrivateTest accuracy."""
    from lightfer_utils.training.evaluate import count_flops, evaluate
    from lightfer_utils.runtime.predictor import keras_predictor

    save_uncompiled(model, saved)
    predict = keras_predictor(model)
    kernels = sparsity_table(model)
    return {
        "variant": name,
        "parameters": model.count_params(),
        "nonzero_kernel_weights": int(kernels["weights"].sum() - kernels["zero_weights"].sum()),
        **compression_ratio(kernels, original),
        "mflops": round(count_flops(model) / 1e6, 1),
        "file_kb": round(saved.stat().st_size / 1024, 1),
        "gzipped_kb": round(gzipped_size(saved) / 1024, 1),
        "PublicTest_accuracy": round(evaluate(predict, validation.images, validation.labels).accuracy, 4),
        "PrivateTest_accuracy": round(evaluate(predict, test.images, test.labels).accuracy, 4),
    }


# The goal of structured pruning in 03: at least this much lower batch-1 latency than the dense
# model, for at most this many PrivateTest points (reported, never used to choose).
MIN_LATENCY_REDUCTION = 0.30
MAX_POINTS_LOST = 1.0


def parse_fractions(text: str) -> list[float]:
    """A parameter such as "0.5,0.75,0.9" as numbers, each in (0, 1)."""
    values = [float(v) for v in text.split(",") if v.strip()]
    if not text.strip():
        return []  # none: e.g. no structured variants
    if not values or not all(0 < v < 1 for v in values):
        raise ValueError(f"{text!r}: expected comma-separated fractions between 0 and 1")
    return values


def measure_variants(
    names: list[str], make: Callable[[str], keras.Model], validation: FerData, test: FerData, out: Path,
    dense_layers: pd.DataFrame,
) -> tuple[list[dict[str, Any]], dict[str, pd.DataFrame]]:
    """Each named variant made by `make` (fine-tuned, or loaded from shipped files: training/variants.py),
    saved in `out` and measured: the pruning table's rows and each variant's per-layer sparsity."""
    rows, per_layer = [], {}
    for name in names:
        model = make(name)
        per_layer[name] = sparsity_table(model)
        rows.append(variant_row(name, model, validation, test, out / f"{name}.keras", dense_layers))
    return rows, per_layer


def pruning_table(rows: list[dict[str, Any]], out: Path, faces: np.ndarray, iterations: int, rounds: int) -> pd.DataFrame:
    """Every variant's row with its ONNX batch-1 latency (interleaved rounds, median), the latency
    reduction and the PrivateTest points lost against the dense model."""
    table = pd.DataFrame(rows).set_index("variant")
    latency = onnx_latencies({name: out / f"{name}.keras" for name in table.index}, faces, iterations, rounds)
    table["onnx_latency_b1_ms"] = pd.Series(latency).round(3)
    baseline = table.loc["dense"]
    table["latency_reduction"] = (1 - table["onnx_latency_b1_ms"] / baseline["onnx_latency_b1_ms"]).round(3)
    table["PrivateTest_points_lost"] = ((baseline["PrivateTest_accuracy"] - table["PrivateTest_accuracy"]) * 100).round(2)
    return table


def choose_structured(
    table: pd.DataFrame, variants: list[str], min_latency_reduction: float = MIN_LATENCY_REDUCTION
) -> dict | None:
    """The structured variant with the best PublicTest accuracy among those whose batch-1 latency
    is at least `min_latency_reduction` below the dense model's (PrivateTest plays no part); None
    if none is that fast. `table` is 03's pruning table with its latency_reduction and
    PrivateTest_points_lost columns."""
    candidates = table.loc[variants]
    eligible = candidates[candidates["latency_reduction"] >= min_latency_reduction]
    if eligible.empty:
        return None
    name = str(eligible["PublicTest_accuracy"].idxmax())
    row = table.loc[name]
    return {"variant": name, "file": f"{name}.keras", "parameters": int(row["parameters"]),
            "PublicTest_accuracy": float(row["PublicTest_accuracy"]), "PrivateTest_accuracy": float(row["PrivateTest_accuracy"]),
            "latency_reduction": float(row["latency_reduction"]), "PrivateTest_points_lost": float(row["PrivateTest_points_lost"]),
            "goal_met": bool(row["latency_reduction"] >= min_latency_reduction and row["PrivateTest_points_lost"] <= MAX_POINTS_LOST)}


def record_choice(table: pd.DataFrame, keep_fractions: list[float], run_dir: str | Path) -> str:
    """Choose the structured variant (choose_structured) and write it where 04 and ship-edge read
    it (RunDir.pruning_choice); returns what was chosen, as a sentence."""
    import json

    from lightfer_utils.runtime.rundir import RunDir

    choice = choose_structured(table, [f"channels_{k:g}" for k in keep_fractions])
    if choice is None:
        return f"no structured variant is at least {MIN_LATENCY_REDUCTION:.0%} faster than the dense model"
    RunDir(run_dir).pruning_choice.write_text(json.dumps(choice, indent=2))
    return (f"chosen on PublicTest: {choice['variant']}: {choice['latency_reduction']:.0%} lower latency, "
            f"{choice['PrivateTest_points_lost']:+.2f} points on PrivateTest -> goal {'met' if choice['goal_met'] else 'NOT met'}")
