"""The paper's Light-FER from its trained Xception: pruned during fine-tuning with tfmot (Eq. 1's
R and the non-zero parameters reported), exported in FP32 and the paper's FP16 (Eq. 2-4), INT8 as
our extra, every format measured on PublicTest and PrivateTest and against the pruned FP32 Keras
model, and shipped as a named model with a card whose `compression` section is its recipe.

Pruning fine-tunes on Training and watches PublicTest; PrivateTest is only reported. The pruned
model is made once per work directory (by default in the training run's live directory) and
reused, so an interrupted ship does not prune again.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lightfer_utils.data import FerData
from lightfer_utils.runtime.model_card import ModelCard
from lightfer_utils.runtime.predictor import keras_predictor, load_predictor
from lightfer_utils.runtime.provenance import file_sha256, host_info, project_relative
from lightfer_utils.runtime.shipped_models import DERIVED_SUFFIX
from lightfer_utils.training.evaluate import compare_formats, count_flops, count_parameters, evaluate, parity_table
from lightfer_utils.training.progress import BatchProgress
from lightfer_utils.training.prune import compression_ratio, magnitude_prune, nonzero_parameters, sparsity_table
from lightfer_utils.training.derived import deflate_keras, derive
from lightfer_utils.training.export import ONNX_OPSET
from lightfer_utils.training.quantize import calibration_faces, convert_tflite
from lightfer_utils.training.shipping import _card_header, _refuse_overwrite
from lightfer_utils.training.config import load_config
from lightfer_utils.training.train import load_best
from lightfer_utils.training.trainingdir import TrainingDir

PAPER_MODEL = "light_fer_xception"
# shipped files: the pruned model in FP32 (Keras, and ONNX: TensorRT's source), the paper's FP16, our INT8
PAPER_SUFFIXES = {"keras_fp32": ".keras", "onnx_fp32": ".onnx", "onnx_fp16": "_fp16.onnx", "tflite_fp16": "_fp16.tflite",
                  "tflite_int8": "_int8.tflite"}
# Too large to commit, made again from a committed file (`lightfer maintain materialize`): one session
# may submit at most 256 MiB of diffs, and the five files of the 20.8 M-parameter model are about
# 260 MiB. Committed: the Keras file (deflated: its pruned zeros cost almost nothing, ~42 MiB), the
# paper's FP16 TFLite (~40 MiB) and our INT8 (~21 MiB); the ONNX files are derived.
PAPER_DERIVED = {"onnx_fp32": "keras_fp32", "onnx_fp16": "onnx_fp32"}


@dataclass(frozen=True)
class Compression:
    """How the trained Xception becomes Light-FER (the recipe a card records and `rebuild` replays)."""

    sparsity: float = 0.5  # tfmot target, reached over the first 70 % of the fine-tuning steps
    epochs: int = 3
    batch_size: int = 128
    learning_rate: float = 2e-4  # Adam, cosine decay to 5 %
    calibration_size: int = 500  # Training faces for the INT8 files

    def __post_init__(self) -> None:
        checks = {"sparsity": 0 < self.sparsity < 1, "epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1,
                  "learning_rate": np.isfinite(self.learning_rate) and self.learning_rate > 0,
                  "calibration_size": self.calibration_size >= 1}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"compression setting {bad[0]}={getattr(self, bad[0])!r} is out of range "
                             "(sparsity in (0, 1), epochs, batch size and calibration size >= 1, learning rate > 0)")


def default_work_dir(record_dir: str | os.PathLike[str]) -> Path:
    """Where the pruned model is kept: beside the training run's large files (its live directory)."""
    return TrainingDir(record_dir).work.root / "compression"


def pruned_model(record_dir: str | os.PathLike[str], data: FerData, compression: Compression, work: Path) -> Path:
    """work/pruned.keras: the run's best epoch pruned during fine-tuning; made once, then reused.
    The fine-tuning is checkpointed after every epoch in work/pruning/ and continues from there
    when a ship is interrupted; the compression settings and the best epoch of both are checked."""
    target, settings, checkpoints = work / "pruned.keras", work / "compression.json", work / "pruning"
    wanted = {**asdict(compression), "best_epoch": TrainingDir(record_dir).read_state().get("best_epoch")}
    if settings.is_file() and json.loads(settings.read_text()) != wanted:
        made = target if target.is_file() else checkpoints
        raise FileExistsError(f"{made} was pruned with other settings or from another best epoch "
                              f"({json.dumps(json.loads(settings.read_text()))}); "
                              "give another work directory")
    if target.is_file() and settings.is_file():
        print(f"reusing {target}")
        return target
    work.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps(wanted, indent=2))
    seed = load_config(record_dir).seed
    dense = load_best(record_dir)
    pruned = magnitude_prune(dense, data.split("Training"), data.split("PublicTest"), compression.sparsity,
                             compression.epochs, batch_size=compression.batch_size,
                             learning_rate=compression.learning_rate, seed=seed, checkpoint_dir=checkpoints,
                             callbacks=[BatchProgress()])
    partial = work / "pruned.partial.keras"
    pruned.save(partial)  # uncompiled after strip_pruning: no optimizer state in the file
    partial.replace(target)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return target


def _refuse_unfinished(record: TrainingDir) -> None:
    epochs, state = load_config(record.root).epochs, record.read_state()
    if not state.get("stopped_early") and state.get("epochs_done", 0) < epochs:
        raise ValueError(f"{record.root} has trained {state.get('epochs_done', 0)} of {epochs} epochs: finish it "
                         f"(lightfer train --out {record.root} --resume) before shipping, or pass --unfinished for a "
                         "dry run into a scratch --models-dir")


def ship_paper_model(record_dir: str | os.PathLike[str], data: FerData, name: str = PAPER_MODEL,
                     models_dir: str | os.PathLike[str] = "models", compression: Compression = Compression(),
                     work_dir: str | os.PathLike[str] | None = None, latency_iterations: int = 100,
                     overwrite: bool = False, unfinished: bool = False) -> dict[str, Any]:
    """Prune (once), export, measure and ship the paper's model; returns its card. `unfinished`:
    allow a run still training (a dry run of this pipeline, into a scratch models_dir)."""
    record = TrainingDir(record_dir)
    if not unfinished:
        _refuse_unfinished(record)
    target = Path(models_dir)
    paths = {fmt: target / f"{name}{suffix}" for fmt, suffix in PAPER_SUFFIXES.items()}
    card_json, card_md = target / f"{name}.card.json", target / f"{name}.card.md"
    _refuse_overwrite([*paths.values(), card_json], overwrite)
    header = _card_header(name)
    config, state = load_config(record.root), record.read_state()

    source = pruned_model(record.root, data, compression, Path(work_dir) if work_dir else default_work_dir(record.root))
    model = load_predictor(source).model  # the one safe loader
    dense = load_best(record.root)
    target.mkdir(parents=True, exist_ok=True)
    paths["keras_fp32"].write_bytes(source.read_bytes())
    deflate_keras(paths["keras_fp32"])
    derived = {fmt: derive(fmt, paths[origin], paths[fmt]) for fmt, origin in PAPER_DERIVED.items()}
    paths["tflite_fp16"].write_bytes(convert_tflite(model, "fp16"))
    calibration = calibration_faces(data, compression.calibration_size, config.seed)
    paths["tflite_int8"].write_bytes(convert_tflite(model, "int8", calibration))

    validation, test = data.split("PublicTest"), data.split("PrivateTest")
    formats = compare_formats(paths, test.images, test.labels, reference="keras_fp32", latency_iterations=latency_iterations)
    public, _ = parity_table({fmt: load_predictor(path) for fmt, path in paths.items()}, validation.images,
                             validation.labels, reference="keras_fp32")
    formats.insert(2, "PublicTest_accuracy", public["accuracy"])
    formats = formats.rename(columns={"accuracy": "PrivateTest_accuracy"})
    predict_dense = keras_predictor(dense)
    kernels, dense_kernels = sparsity_table(model), sparsity_table(dense)
    card: dict[str, Any] = {
        **header,
        "kind": "paper",
        "architecture": {"builder": config.model, "config": config.model_config, "parameters": count_parameters(model),
                         "nonzero_parameters": nonzero_parameters(model), "flops_per_face": count_flops(model)},
        "training": {"record": project_relative(record.root), "config": json.loads(config.to_json()),
                     "epochs_done": state.get("epochs_done"), "best_epoch": state.get("best_epoch"),
                     "best_PublicTest_accuracy": state.get("best_val_accuracy"), "sessions": state.get("sessions", []),
                     "train_hours": round(state.get("train_seconds", 0.0) / 3600, 2)},
        "dense": {"PublicTest_accuracy": round(evaluate(predict_dense, validation.images, validation.labels).accuracy, 4),
                  "PrivateTest_accuracy": round(evaluate(predict_dense, test.images, test.labels).accuracy, 4),
                  "nonzero_parameters": nonzero_parameters(dense)},
        "compression": {**asdict(compression), "source": project_relative(record.root), "method":
                        "tfmot prune_low_magnitude during fine-tuning (PolynomialDecay to the target over 70 % of the "
                        "steps) of every Conv2D, SeparableConv2D pointwise and Dense kernel; depthwise kernels stay dense"},
        "pruning": {"eq1": compression_ratio(kernels, dense_kernels),
                    "kernel_sparsity": round(float(kernels["zero_weights"].sum() / kernels["weights"].sum()), 4)},
        "data": {"sha256": data.sha256, "PublicTest_sha256": validation.sha256, "PrivateTest_sha256": test.sha256},
        "hardware": host_info(),
        "formats": json.loads(formats.to_json(orient="index")),
        "files": {fmt: {"path": path.name, "bytes": path.stat().st_size,
                        **({"derived_from": PAPER_DERIVED[fmt], "how": derived[fmt]["how"]} if fmt in derived
                           else {"sha256": file_sha256(path)})}
                  for fmt, path in paths.items()},
    }
    card["files"]["onnx_fp32"]["opset"] = card["files"]["onnx_fp16"]["opset"] = ONNX_OPSET
    card = ModelCard(card, card_json).write(card_json)
    card_md.write_text(render_paper_card(card))
    (target / f"{name}{DERIVED_SUFFIX}").write_text(json.dumps(derived, indent=2) + "\n")
    committed = sum(entry["bytes"] for entry in card["files"].values() if "sha256" in entry)
    print(f"{name}: the committed files come to {committed / 2**20:.1f} MiB; "
          f"{', '.join(paths[fmt].name for fmt in derived)} are derived (git-ignored, `lightfer maintain materialize`)")
    return card


def render_paper_card(card: dict[str, Any]) -> str:
    arch, training, compression, pruning = card["architecture"], card["training"], card["compression"], card["pruning"]
    total = arch["parameters"]["total"]
    lines = [
        f"# Model card: {card['name']} (the paper's Light-FER: pruned Xception, FP16)",
        "",
        f"Generated by `lightfer maintain ship-paper` on {card['created']} from git {card['git']['commit']}; every number below "
        f"was measured by that command on {card['hardware']['cpu']} ({card['hardware']['logical_cores']} cores).",
        "",
        f"- **Input**: {card['input']}",
        f"- **Output**: {card['output']}",
        f"- **Architecture**: `{arch['builder']}` {json.dumps(arch['config'])}: {total:,} parameters, "
        f"{arch['nonzero_parameters']:,} non-zero after pruning ({card['dense']['nonzero_parameters']:,} before); "
        f"{arch['flops_per_face'] / 1e6:.1f} MFLOPs per face (dense count)",
        f"- **Training**: `{training['record']}`, {training['epochs_done']} epochs (best PublicTest epoch "
        f"{training['best_epoch']}), {training['train_hours']} h",
        f"- **Pruning** (Eq. 1): {compression['method']}; target sparsity {compression['sparsity']:g}, "
        f"{compression['epochs']} epochs, batch {compression['batch_size']}, learning rate {compression['learning_rate']:g}; "
        f"kernel sparsity reached {pruning['kernel_sparsity']:.4f}; R over weights {pruning['eq1']['R_weights']}, "
        f"filters {pruning['eq1']['R_filters']}, channels {pruning['eq1']['R_channels']}",
        f"- **Dense model before pruning**: PublicTest {card['dense']['PublicTest_accuracy'] * 100:.2f} %, "
        f"PrivateTest {card['dense']['PrivateTest_accuracy'] * 100:.2f} %",
        f"- **Data**: FER2013 sha256 `{card['data']['sha256']}`",
        "",
        "| file | MiB | PublicTest | PrivateTest | argmax agreement with Keras FP32 | max abs Δp |",
        "|---|---|---|---|---|---|",
    ]
    for fmt, row in card["formats"].items():
        file = card["files"][fmt]
        lines.append(f"| `{file['path']}` | {file['bytes'] / 2**20:.2f} | {row['PublicTest_accuracy'] * 100:.2f} % | "
                     f"{row['PrivateTest_accuracy'] * 100:.2f} % | {row['argmax_agreement_vs_keras_fp32'] * 100:.2f} % | "
                     f"{row['max_abs_dp']:.2e} |")
    lines.append("")
    return "\n".join(lines)
