"""Shipping a trained model: Keras and ONNX files plus a model card (JSON + Markdown).

The card records what a user needs to trust and repeat the number: data hashes, architecture
and config, parameters and FLOPs, PublicTest and PrivateTest metrics (PrivateTest measured
here, once, after training chose its epoch on PublicTest), training time and hardware, and the
git revision.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lightfer_utils import CLASS_NAMES
from lightfer_utils.data import FerData
from lightfer_utils.training.evaluate import (count_flops, count_parameters, evaluate, evaluate_probabilities,
                                              flip_tta)
from lightfer_utils.runtime.model_card import ModelCard
from lightfer_utils.runtime.predictor import keras_predictor, load_predictor
from lightfer_utils.training.export import ONNX_OPSET, export_onnx
from lightfer_utils.training.quantize import FORMAT_FILES
from lightfer_utils.training.trainingdir import TrainingDir
from lightfer_utils.runtime.rundir import RunDir
from lightfer_utils.runtime.provenance import file_sha256, git_revision, host_info, now_iso, package_versions

INPUT_CONTRACT = "float32 [N, 48, 48, 1]: raw gray face crops, pixel values 0..255 (normalised inside the model)"
OUTPUT_CONTRACT = "float32 [N, 7]: class probabilities in FER2013 order " + ", ".join(CLASS_NAMES)


MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def check_model_name(name: str) -> str:
    """A name for model files: letters, digits, '_' and '-', so that every file stays in its folder."""
    if not MODEL_NAME.fullmatch(name):
        raise ValueError(f"--name: a model name is letters, digits, '_' and '-' (at most 100, no path), got {name!r}")
    return name


def _card_header(name: str) -> dict[str, Any]:
    """Taken before any file is written: replacing a tracked model file would make git's tree look dirty.
    The name is checked here too, for callers of the library."""
    check_model_name(name)
    return {"name": name, "created": now_iso(), "git": git_revision(), "input": INPUT_CONTRACT, "output": OUTPUT_CONTRACT}


def _refuse_overwrite(paths: list[Path], overwrite: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(map(str, existing))} exist; pass overwrite=True (CLI: --force) to replace them")


def ship_model(
    run_dir: str | os.PathLike[str],
    data: FerData,
    name: str,
    models_dir: str | os.PathLike[str],
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate a training run's best epoch and write <name>.keras, <name>.onnx and the card."""
    from lightfer_utils.training.config import load_config
    from lightfer_utils.training.train import load_best

    run = Path(run_dir)
    target = Path(models_dir)
    target.mkdir(parents=True, exist_ok=True)
    paths = {fmt: target / f"{name}.{fmt}" for fmt in ("keras", "onnx")}
    card_json, card_md = target / f"{name}.card.json", target / f"{name}.card.md"
    _refuse_overwrite([*paths.values(), card_json], overwrite)
    header = _card_header(name)

    config = load_config(run)
    state = TrainingDir(run).read_state()
    model = load_best(run)
    model.save(paths["keras"])
    export_onnx(model, paths["onnx"])

    predict = keras_predictor(model)
    validation, test = data.split("PublicTest"), data.split("PrivateTest")
    metrics = {
        "PublicTest": evaluate(predict, validation.images, validation.labels),
        "PrivateTest": evaluate(predict, test.images, test.labels),
        "PrivateTest_flip_tta": evaluate(flip_tta(predict), test.images, test.labels),
    }
    onnx_probabilities = load_predictor(paths["onnx"])(test.images)
    keras_probabilities = predict(test.images)
    card: dict[str, Any] = {
        **header,
        "architecture": {"builder": config.model, "config": config.model_config,
                         "parameters": count_parameters(model), "flops_per_face": count_flops(model)},
        "training": {"config": json.loads(config.to_json()), "epochs_done": state["epochs_done"],
                     "best_epoch": state["best_epoch"], "stopped_early": bool(state.get("stopped_early")),
                     "train_hours": round(state.get("train_seconds", 0.0) / 3600, 2),
                     "run_dir": os.path.relpath(run, target), "hardware": host_info(),
                     "packages": package_versions(["tensorflow", "tf-keras", "numpy"])},
        "data": {"sha256": data.sha256, "origin_kind": "csv" if data.csv_rows[0] >= 0 else "folder",
                 "PublicTest_sha256": validation.sha256, "PrivateTest_sha256": test.sha256,
                 **json.loads(TrainingDir(run).data.read_text())},
        "metrics": {split: result.summary() for split, result in metrics.items()},
        "confusion_PrivateTest": metrics["PrivateTest"].confusion.values.tolist(),
        "onnx_parity_PrivateTest": {
            "argmax_agreement": float((onnx_probabilities.argmax(1) == keras_probabilities.argmax(1)).mean()),
            "max_abs_probability_difference": float(np.abs(onnx_probabilities - keras_probabilities).max()),
        },
        "files": {fmt: {"path": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
                  for fmt, path in paths.items()},
    }
    card["files"]["onnx"]["opset"] = ONNX_OPSET
    card["training"]["config"].pop("model_config", None)
    card = ModelCard(card, card_json).write(card_json)
    card_md.write_text(render_card(card))
    return card


def training_recipe(config: dict[str, Any]) -> str:
    """One line of a model card: how the model was trained (the card's JSON has every field)."""
    augmentation = config.get("augmentation", {})
    parts = [f"Adam, learning rate {config['learning_rate']:g} ({config['warmup_epochs']} warm-up epochs, cosine decay "
             f"to {config['min_learning_rate']:g}), batch {config['batch_size']}, label smoothing {config['label_smoothing']:g}, "
             f"seed {config['seed']}",
             "augmentation " + ", ".join(f"{key} {value:g}" if not isinstance(value, bool) else key
                                         for key, value in augmentation.items() if value)]
    if config.get("class_weights"):
        parts.append("class weights")
    if config.get("init_from"):
        parts.append(f"started from the weights of `{config['init_from']}`")
    if config.get("teacher"):
        teachers = " + ".join(f"`{t}`" for t in config["teacher"].split(","))
        mirrored = ", each with its mirrored face" if config.get("teacher_flip") else ""
        offline = ", offline: on the un-augmented faces" if config.get("teacher_offline") else ""
        parts.append(f"distilled from {teachers}{mirrored} (alpha {config['distill_alpha']:g}, "
                     f"temperature {config['distill_temperature']:g}{offline})")
    if config.get("weight_average_decay"):
        parts.append(f"exponential moving average of the weights (decay {config['weight_average_decay']:g}), which "
                     "PublicTest scored and the model keeps")
    return "; ".join(parts)


def render_card(card: dict[str, Any]) -> str:
    arch, training, metrics = card["architecture"], card["training"], card["metrics"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"Generated by `lightfer maintain ship` on {card['created']} from git {card['git']['commit']}"
        f"{' (uncommitted changes)' if card['git']['dirty'] else ''}; every number below was measured by that command.",
        "",
        f"- **Input**: {card['input']}",
        f"- **Output**: {card['output']}",
        f"- **Architecture**: `{arch['builder']}` {json.dumps(arch['config'])}; "
        f"{arch['parameters']['total']:,} parameters ({arch['parameters']['trainable']:,} trainable); "
        f"{arch['flops_per_face'] / 1e6:.1f} MFLOPs per face",
        f"- **Training**: {training['epochs_done']} of {training['config']['epochs']} planned epochs"
        f"{' (stopped early)' if training['stopped_early'] else ''} (best PublicTest epoch {training['best_epoch']}), "
        f"{training['train_hours']} h on {training['hardware']['cpu']} ({training['hardware']['logical_cores']} cores); "
        f"state in `{training['run_dir']}`",
        f"- **Recipe**: {training_recipe(training['config'])}",
        f"- **Data**: FER2013 sha256 `{card['data']['sha256']}` ({card['data']['origin_kind']} form)",
        "",
        "| split | accuracy | macro-F1 | ECE | faces |",
        "|---|---|---|---|---|",
    ]
    for split, m in metrics.items():
        lines.append(f"| {split} | {m['accuracy'] * 100:.2f} % | {m['macro_f1']:.4f} | {m['ece']:.4f} | {m['count']} |")
    lines += ["", "Per-class recall on PrivateTest:", "",
              "| " + " | ".join(CLASS_NAMES) + " |", "|" + "---|" * len(CLASS_NAMES),
              "| " + " | ".join(f"{metrics['PrivateTest'][f'recall_{c}']:.3f}" for c in CLASS_NAMES) + " |", "",
              "ONNX vs Keras on PrivateTest: argmax agreement "
              f"{card['onnx_parity_PrivateTest']['argmax_agreement'] * 100:.2f} %, max |Δp| "
              f"{card['onnx_parity_PrivateTest']['max_abs_probability_difference']:.2e}.", "",
              "Files: " + ", ".join(f"`{f['path']}` ({f['bytes'] / 1e6:.2f} MB, sha256 {f['sha256'][:12]}…)"
                                    for f in card["files"].values()), ""]
    if "int8" in card:
        int8 = card["int8"]
        lines += [f"INT8 files, added by `lightfer maintain ship-int8` on {int8['created']} from git {int8['git']['commit']} and "
                  f"measured by it on {int8['hardware']['cpu']}: calibrated on {int8['calibration']['faces']} Training "
                  f"faces (seed {int8['calibration']['seed']}) from the files above.", "",
                  "| file | MiB | PublicTest | PrivateTest | argmax agreement with the float model (PrivateTest) |",
                  "|---|---|---|---|---|"]
        for fmt, row in int8["formats"].items():
            lines.append(f"| `{card['files'][fmt]['path']}` | {card['files'][fmt]['bytes'] / 2**20:.3f} | "
                         f"{row['PublicTest_accuracy'] * 100:.2f} % | {row['PrivateTest_accuracy'] * 100:.2f} % | "
                         f"{row['argmax_agreement_with_float_PrivateTest'] * 100:.2f} % |")
        lines.append("")
    return "\n".join(lines)


INT8_SUFFIXES = {"tflite_int8": "_int8.tflite", "onnx_int8": "_int8.onnx"}


def ship_int8(
    name: str,
    data: FerData,
    models_dir: str | os.PathLike[str],
    calibration_size: int = 500,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Add INT8 files of a shipped model to it: <name>_int8.tflite (full-integer TFLite) and
    <name>_int8.onnx (static QDQ), calibrated on `calibration_size` Training faces drawn with the
    model's training seed, from its Keras and ONNX files (checked against the card's sha256), each
    measured here on PublicTest and PrivateTest and against the float model, and recorded in the
    card. The model's other files and measurements stay as they are."""
    from lightfer_utils.runtime.shipped_models import CARD_SUFFIX
    from lightfer_utils.training.quantize import calibration_faces, convert_tflite, onnx_int8

    target = Path(models_dir)
    card_json = target / f"{name}{CARD_SUFFIX}"
    if not card_json.is_file():
        raise FileNotFoundError(f"{card_json} is missing: ship {name} first (lightfer maintain ship)")
    card = ModelCard.read(card_json)
    if "edge_format" in card:
        raise ValueError(f"{name} is an edge model: its card already lists its INT8 files")
    if data.sha256 != card["data"]["sha256"]:
        raise ValueError(f"the data given (sha256 {data.sha256[:12]}…) is not the data {name} was measured on "
                         f"({card['data']['sha256'][:12]}…)")
    if calibration_size < 1:
        raise ValueError(f"calibration_size must be at least 1, got {calibration_size}")
    sources = {}
    for fmt in ("keras", "onnx"):
        path = target / card["files"][fmt]["path"]
        if not path.is_file() or file_sha256(path) != card["files"][fmt]["sha256"]:
            raise ValueError(f"{path}: missing, or its sha256 differs from the one in {card_json.name}")
        sources[fmt] = path
    paths = {fmt: target / f"{name}{suffix}" for fmt, suffix in INT8_SUFFIXES.items()}
    _refuse_overwrite(list(paths.values()), overwrite)
    header = _card_header(name)

    model = load_predictor(sources["keras"]).model
    seed = card["training"]["config"]["seed"]
    calibration = calibration_faces(data, calibration_size, seed)
    paths["tflite_int8"].write_bytes(convert_tflite(model, "int8", calibration))
    onnx_int8(sources["onnx"], paths["onnx_int8"], calibration)

    validation, test = data.split("PublicTest"), data.split("PrivateTest")
    float_predictions = keras_predictor(model)(test.images).argmax(1)
    formats = {}
    for fmt, path in paths.items():
        predict = load_predictor(path)
        private = predict(test.images)
        formats[fmt] = {
            "PublicTest_accuracy": round(evaluate(predict, validation.images, validation.labels).accuracy, 4),
            "PrivateTest_accuracy": round(evaluate_probabilities(private, test.labels).accuracy, 4),
            "argmax_agreement_with_float_PrivateTest": round(float((private.argmax(1) == float_predictions).mean()), 4),
        }
    card["int8"] = {
        "created": header["created"], "git": header["git"], "hardware": host_info(),
        "calibration": {"split": "Training", "faces": len(calibration), "seed": seed},
        "source_files": {fmt: card["files"][fmt]["sha256"] for fmt in sources},
        "formats": formats,
    }
    card["files"].update({fmt: {"path": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
                          for fmt, path in paths.items()})
    card = ModelCard(card, card_json).write(card_json)
    (target / f"{name}.card.md").write_text(render_card(card))
    return card


EDGE_FORMATS = ("keras_fp32", "onnx_fp32", "onnx_int8", "tflite_int8")  # shipped: sources, TensorRT input, INT8
EDGE_SUFFIXES = {"keras_fp32": ".keras", "onnx_fp32": ".onnx", "onnx_int8": "_int8.onnx", "tflite_int8": "_int8.tflite"}


def ship_edge_model(
    run_dir: str | os.PathLike[str],
    data: FerData,
    name: str,
    models_dir: str | os.PathLike[str],
    latency_iterations: int = 300,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Ship the pruned + quantized edge model of a finished run: the structured variant 03 chose
    (pruned/chosen.json) in the formats 04 wrote (quantized_structured/), each re-measured here
    on PublicTest and PrivateTest, with latency on this machine. The edge format is chosen on
    PublicTest only: the fastest INT8 format within 1 point of the pruned FP32 model."""
    from lightfer_utils.training.evaluate import compare_formats, parity_table

    run = RunDir(run_dir)
    choice_file, formats_dir = run.pruning_choice, run.quantized_structured
    if not choice_file.is_file():
        raise FileNotFoundError(f"{choice_file} is missing: 03 chose no structured variant in {run.root}, or did not run")
    missing = [FORMAT_FILES[f] for f in EDGE_FORMATS if not (formats_dir / FORMAT_FILES[f]).is_file()]
    if missing:
        raise FileNotFoundError(f"{formats_dir} lacks {', '.join(missing)}: run 04 on {run.root} first")
    target = Path(models_dir)
    paths = {fmt: target / f"{name}{EDGE_SUFFIXES[fmt]}" for fmt in EDGE_FORMATS}
    card_json, card_md = target / f"{name}.card.json", target / f"{name}.card.md"
    _refuse_overwrite([*paths.values(), card_json], overwrite)
    header = _card_header(name)

    choice = json.loads(choice_file.read_text())
    sources = {fmt: formats_dir / FORMAT_FILES[fmt] for fmt in EDGE_FORMATS}
    validation, test = data.split("PublicTest"), data.split("PrivateTest")
    formats = compare_formats(sources, test.images, test.labels, reference="keras_fp32", latency_iterations=latency_iterations)
    public, _ = parity_table({fmt: load_predictor(path) for fmt, path in sources.items()},
                             validation.images, validation.labels, reference="keras_fp32")
    formats.insert(2, "PublicTest_accuracy", public["accuracy"])
    formats = formats.rename(columns={"accuracy": "PrivateTest_accuracy"})
    int8 = formats.loc[["onnx_int8", "tflite_int8"]]
    within = int8[(formats.loc["keras_fp32", "PublicTest_accuracy"] - int8["PublicTest_accuracy"]) * 100 <= 1.0]
    edge_format = str((within if not within.empty else int8)["latency_b1_p50_ms"].idxmin())

    target.mkdir(parents=True, exist_ok=True)
    for fmt, path in paths.items():
        path.write_bytes(sources[fmt].read_bytes())
    model = load_predictor(paths["keras_fp32"]).model
    edge = evaluate(load_predictor(paths[edge_format]), test.images, test.labels)
    manifest = json.loads(run.manifest.read_text()) if run.manifest.is_file() else {}
    pruning = run.table(run.PRUNING)
    card: dict[str, Any] = {
        **header,
        "edge_format": edge_format,
        "edge_format_rule": "fastest INT8 format (batch-1 p50) within 1 point of the pruned FP32 model on PublicTest",
        "architecture": {"builder": "light_fer_net, structured-pruned", "parameters": count_parameters(model),
                         "flops_per_face": count_flops(model),
                         "widths": [int(layer.filters) for layer in model.layers if type(layer).__name__ == "Conv2D"]},
        "pruning": choice,
        "source_run": {"run_dir": os.path.relpath(run.root, target), "run_id": manifest.get("run_id"),
                       "profile": manifest.get("profile"), "parameters": manifest.get("parameters"),
                       "overrides": manifest.get("overrides"), "git": manifest.get("git"),
                       "data_sha256": (manifest.get("data") or {}).get("sha256")},
        "data": {"sha256": data.sha256, "PublicTest_sha256": validation.sha256, "PrivateTest_sha256": test.sha256},
        "hardware": host_info(),
        "formats": json.loads(formats.to_json(orient="index")),
        "metrics_edge_format_PrivateTest": edge.summary(),
        "pruning_table": json.loads(pd.read_csv(pruning).to_json(orient="records")) if pruning.is_file() else None,
        "files": {fmt: {"path": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
                  for fmt, path in paths.items()},
    }
    card = ModelCard(card, card_json).write(card_json)
    card_md.write_text(render_edge_card(card))
    return card


def render_edge_card(card: dict[str, Any]) -> str:
    arch, pruning, source = card["architecture"], card["pruning"], card["source_run"]
    edge = card["metrics_edge_format_PrivateTest"]
    lines = [
        f"# Model card: {card['name']} (edge model: structured-pruned and quantized)",
        "",
        f"Generated by `lightfer maintain ship-edge` on {card['created']} from git {card['git']['commit']}"
        f"{' (uncommitted changes)' if card['git']['dirty'] else ''}; every number below was measured by that command"
        f" on {card['hardware']['cpu']} ({card['hardware']['logical_cores']} cores), except the pruning table, which is"
        f" the source run's `tables/pruning.csv`.",
        "",
        f"- **Input**: {card['input']}",
        f"- **Output**: {card['output']}",
        f"- **Edge format**: `{card['files'][card['edge_format']]['path']}` ({card['edge_format_rule']}): "
        f"PrivateTest accuracy {edge['accuracy'] * 100:.2f} %, macro-F1 {edge['macro_f1']:.4f}",
        f"- **Architecture**: {arch['builder']}, convolution widths {arch['widths']}; "
        f"{arch['parameters']['total']:,} parameters; {arch['flops_per_face'] / 1e6:.1f} MFLOPs per face",
        f"- **Pruning**: variant `{pruning['variant']}` chosen on PublicTest in run `{source['run_id']}` "
        f"(profile {source['profile']}, git {(source['git'] or {}).get('commit', '?')[:12]}); there "
        f"{pruning['latency_reduction']:.0%} lower ONNX batch-1 latency than the dense model, "
        f"{pruning['PrivateTest_points_lost']:.2f} PrivateTest points lost (goal: at least 30 % lower latency "
        f"within 1 point: {'met' if pruning['goal_met'] else 'not met'})",
        f"- **Data**: FER2013 sha256 `{card['data']['sha256']}`",
        "",
        "| format | file | KiB | PublicTest | PrivateTest | agreement with FP32 | batch-1 p50 ms | batch-64 faces/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fmt, row in card["formats"].items():
        lines.append(f"| {fmt} | `{card['files'][fmt]['path']}` | {row['size_kb']:.0f} | {row['PublicTest_accuracy'] * 100:.2f} % "
                     f"| {row['PrivateTest_accuracy'] * 100:.2f} % | {row['argmax_agreement_vs_keras_fp32'] * 100:.2f} % "
                     f"| {row['latency_b1_p50_ms']:.3f} | {row['throughput_b64_faces_per_s']:.0f} |")
    if card["pruning_table"]:
        lines += ["", "The source run's pruning table (dense, tfmot magnitude and 2:4, structured):", "",
                  "| variant | parameters | MFLOPs | gzipped KiB | PublicTest | PrivateTest | ONNX batch-1 ms |",
                  "|---|---|---|---|---|---|---|"]
        for row in card["pruning_table"]:
            lines.append(f"| {row['variant']} | {row['parameters']:,} | {row['mflops']} | {row['gzipped_kb']} | "
                         f"{row['PublicTest_accuracy'] * 100:.2f} % | {row['PrivateTest_accuracy'] * 100:.2f} % | "
                         f"{row['onnx_latency_b1_ms']} |")
    lines += ["", "Per-class recall of the edge format on PrivateTest:", "",
              "| " + " | ".join(CLASS_NAMES) + " |", "|" + "---|" * len(CLASS_NAMES),
              "| " + " | ".join(f"{edge[f'recall_{c}']:.3f}" for c in CLASS_NAMES) + " |", ""]
    return "\n".join(lines)
