"""Training and comparing several architectures in one notebook run (02)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import tf_keras as keras
import pandas as pd

from lightfer_utils import PAPER_MODEL_LABEL
from lightfer_utils.data import FerData
from lightfer_utils.runtime.rundir import RunDir
from lightfer_utils.training.evaluate import Evaluation, count_flops, count_parameters, evaluate, flip_tta
from lightfer_utils.runtime.predictor import keras_predictor
from lightfer_utils.training.models import build_model
from lightfer_utils.training.config import Augmentation
from lightfer_utils.training.pipeline import steps_per_epoch, training_dataset
from lightfer_utils.training.precision import precision_policy
from lightfer_utils.training.config import TrainConfig, load_config
from lightfer_utils.training.train import compiled_for_training, load_best, train
from lightfer_utils.training.trainingdir import TrainingDir

TRAINING_FACES = 28_709  # FER2013's Training split: what one full epoch covers


def seconds_per_step(config: TrainConfig, train_data: FerData, steps: int = 5, warmup: int = 2) -> float:
    """Measured wall time of one training step of the run `config` describes (its model, precision,
    batch size, augmentation and online teacher; Adam), after `warmup` steps: what training costs
    on this machine, for models whose full training does not fit on it."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    keras.utils.set_random_seed(config.seed)
    with precision_policy(config.precision):
        model = build_model(config.model, **config.model_config)
        model = compiled_for_training(config, model, keras.optimizers.Adam(learning_rate=config.learning_rate))
    augmentation = Augmentation(**config.augmentation) if config.augmentation else None
    batches = iter(training_dataset(train_data.images, train_data.labels, config.batch_size, config.seed, 0, augmentation))
    for _ in range(warmup):
        model.train_on_batch(*next(batches))
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(*next(batches))
    return (time.perf_counter() - started) / steps

def parse_models(models: str) -> list[str]:
    from lightfer_utils.training.models import BUILDERS

    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in BUILDERS]
    if unknown or not names:
        raise ValueError(f"models={models!r}: unknown {unknown or 'empty list'}; choose from {', '.join(BUILDERS)}")
    return names


def start_from(resume_from: str, names: list[str], training_root: Path) -> dict[str, TrainConfig]:
    """Copy earlier training directories (comma-separated, e.g. the shipped models/light_fer_net/training)
    into this run, each under its model's name, keeping its own config: 02 then continues it, or
    only evaluates it when it is finished. The originals are not touched."""
    configs: dict[str, TrainConfig] = {}
    for source in (Path(s.strip()) for s in resume_from.split(",") if s.strip()):
        if not TrainingDir(source).config.is_file() or not TrainingDir(source).state.is_file():
            raise FileNotFoundError(f"resume_from: {source} is not a training directory (no config.json/state.json)")
        config = load_config(source)
        if config.model not in names:
            raise ValueError(f"resume_from: {source} trains {config.model!r}, which is not in models={','.join(names)}")
        if config.model in configs:
            raise ValueError(f"resume_from: two directories train {config.model!r}")
        shutil.copytree(source, training_root / config.model)  # fails if this run already has one
        configs[config.model] = config
    return configs


def run_configs(
    names: list[str], resume_from: str, training_root: Path, xception_input_size: int, erase_probability: float,
    **recipe: Any,
) -> dict[str, TrainConfig]:
    """The training config of each model of a 02 run: a directory in resume_from brings its own
    (copied into training_root by start_from); the others get the run's recipe (TrainConfig fields)."""
    earlier = start_from(resume_from, names, training_root)
    return {
        name: earlier.get(name) or TrainConfig(
            model=name, model_config=model_config_for(name, xception_input_size),
            augmentation=Augmentation(erase_probability=erase_probability).as_dict(), **recipe)
        for name in names
    }


def trained_names(resume_from: str) -> dict[str, str]:
    """What each model resumed from a shipped model's directory is called: models/NAME/training
    trains NAME (e.g. light_fer_net_deep, a light_fer_net); models trained by the run keep the
    builder's name."""
    names = {}
    for source in (Path(s.strip()) for s in resume_from.split(",") if s.strip()):
        names[load_config(source).model] = source.parent.name if source.name == "training" else source.name
    return names


def training_cost_table(
    models: str, data: FerData, xception_input_size: int, steps: int, **recipe: Any
) -> pd.DataFrame:
    """For models whose training does not fit on this machine (comma-separated builder names;
    empty: none): parameters, FLOPs and the measured time of a training step, scaled to one
    epoch of the full Training split (all 28,709 faces, whatever subset this run uses)."""
    rows = []
    for name in parse_models(models) if models.strip() else []:
        config = TrainConfig(model=name, model_config=model_config_for(name, xception_input_size), **recipe)
        model = build_model(config.model, **config.model_config)
        seconds = seconds_per_step(config, data.split("Training"), steps=steps)
        rows.append({"model": name, "parameters": count_parameters(model)["total"],
                     "MFLOPs_per_face": round(count_flops(model) / 1e6, 1), "batch_size": config.batch_size,
                     "steps_timed": steps, "seconds_per_step": round(seconds, 3),
                     "minutes_per_epoch": round(seconds * steps_per_epoch(TRAINING_FACES, config.batch_size) / 60, 1)})
    columns = ["model", "parameters", "MFLOPs_per_face", "batch_size", "steps_timed", "seconds_per_step",
               "minutes_per_epoch"]
    return pd.DataFrame(rows, columns=columns).set_index("model")


def model_config_for(name: str, xception_input_size: int) -> dict[str, Any]:
    """Xception trains from scratch with batch-norm momentum 0.9 (see models.xception)."""
    return {"input_size": xception_input_size, "bn_momentum": 0.9} if name == "xception" else {}


def zoo_table(configs: dict[str, TrainConfig]) -> pd.DataFrame:
    """Parameters and FLOPs of each model as it is configured (a resumed run keeps its own config)."""
    rows = []
    for name, config in configs.items():
        model = build_model(config.model, **config.model_config)
        params = count_parameters(model)
        rows.append({"model": name, "parameters": params["total"], "trainable": params["trainable"],
                     "MFLOPs_per_face": round(count_flops(model) / 1e6, 1)})
    return pd.DataFrame(rows).set_index("model")


def train_and_evaluate(
    name: str, config: TrainConfig, data: FerData, training_dir: Path, verbose: int = 2
) -> dict[str, Evaluation | float | int]:
    """Train (or resume) one model, then evaluate its best PublicTest epoch on every split.
    PrivateTest is measured here, once, after training is over."""
    train(config, data.split("Training"), data.split("PublicTest"), training_dir, verbose=verbose)
    model = load_best(training_dir)
    predict = keras_predictor(model)
    results: dict[str, Any] = {}
    for split in ("Training", "PublicTest", "PrivateTest"):
        part = data.split(split)
        results[split] = evaluate(predict, part.images, part.labels)
    test = data.split("PrivateTest")
    results["PrivateTest_flip_tta"] = evaluate(flip_tta(predict), test.images, test.labels)
    return results


def results_row(name: str, results: dict[str, Any], state: dict[str, Any], zoo: pd.DataFrame,
                label: str = "") -> dict[str, Any]:
    """One row of model_results: `label` is what the model is called (a shipped model's name,
    see trained_names), `name` its builder."""
    return {
        "model": name,
        "name": label or name,
        "parameters": int(zoo.loc[name, "parameters"]),
        "MFLOPs_per_face": float(zoo.loc[name, "MFLOPs_per_face"]),
        "epochs": state["epochs_done"],
        "best_epoch": state["best_epoch"],
        "train_minutes": round(state.get("train_seconds", 0.0) / 60, 1),
        "train_acc": round(results["Training"].accuracy * 100, 2),
        "val_acc": round(results["PublicTest"].accuracy * 100, 2),
        "test_acc": round(results["PrivateTest"].accuracy * 100, 2),
        "test_acc_flip_tta": round(results["PrivateTest_flip_tta"].accuracy * 100, 2),
        "test_macro_f1": round(results["PrivateTest"].macro_f1, 4),
        "test_ece": round(results["PrivateTest"].ece, 4),
    }


def train_all(
    configs: dict[str, TrainConfig], data: FerData, run_dir: str | Path
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, pd.DataFrame]]:
    """Train (or resume, or only evaluate) every model of a 02 run in its training directory:
    each model's evaluations, final training state and per-epoch history."""
    results, states, histories = {}, {}, {}
    for name, config in configs.items():
        training_dir = RunDir(run_dir).training_dir(name)
        print(f"--- {name}")
        results[name] = train_and_evaluate(name, config, data, training_dir)
        states[name] = TrainingDir(training_dir).read_state()
        histories[name] = pd.read_csv(TrainingDir(training_dir).history)
    return results, states, histories


def results_table(
    results: dict[str, dict[str, Any]], states: dict[str, dict[str, Any]], architectures: pd.DataFrame, resume_from: str
) -> pd.DataFrame:
    """02's model_results: one row per model, named as shipped where it came from a shipped model."""
    labels = trained_names(resume_from)
    return pd.DataFrame([results_row(name, results[name], states[name], architectures, labels.get(name, name))
                         for name in results]).set_index("model")


def run_model(run_dir: str | Path, model_path: str, compress: str = "light_fer_net") -> Path:
    """The model 03-04 compress: `model_path` if given, else the run's own 02 model `compress`
    (light_fer_net; the paper profile: xception)."""
    if model_path:
        return Path(model_path)
    source = RunDir(run_dir).training_dir(compress)
    if not source.is_dir():
        raise FileNotFoundError(f"compress={compress}: this run's 02 trained no such model ({source} is missing); "
                                "name one of its models, or give model_path")
    return source


PAPER_MODEL_FORMAT = "onnx_fp16"  # the paper's precision, in the format ONNX Runtime runs fastest here


def paper_model_table(name: str, data: FerData) -> pd.DataFrame | str:
    """02: the shipped paper model (the paper's Xception, trained and compressed by this package:
    `lightfer maintain ship-paper`) measured from its FP16 file on this run's Training and PrivateTest, as
    Table 2 reports models; or why it was not measured (none named, not shipped, files missing)."""
    from lightfer_utils.runtime import shipped_models
    from lightfer_utils.runtime.errors import ModelLoadError
    from lightfer_utils.runtime.predictor import load_predictor

    if not name:
        return "paper model not measured: no paper_model named"
    try:
        card = shipped_models.card(name)
        predict = load_predictor(shipped_models.model_file(name, PAPER_MODEL_FORMAT))
    except ModelLoadError as err:
        return f"paper model not measured: {err}"
    train, test = data.split("Training"), data.split("PrivateTest")
    architecture = card["architecture"]
    return pd.DataFrame([{
        "name": name, "format": PAPER_MODEL_FORMAT, "parameters": architecture["parameters"]["total"],
        "nonzero_parameters": architecture.get("nonzero_parameters"),
        "train_acc": round(evaluate(predict, train.images, train.labels).accuracy * 100, 2),
        "test_acc": round(evaluate(predict, test.images, test.labels).accuracy * 100, 2),
    }], index=pd.Index([PAPER_MODEL_LABEL], name="model"))
