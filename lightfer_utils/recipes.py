"""Every shipped model's recipe, and rebuilding a model with everything it depends on.

A trained model's recipe is its committed training config (`models/NAME/training/config.json`:
builder, settings, schedule, augmentation), whose teachers and init-from name other shipped models
(`models/OTHER/training`). An edge model's recipe is the run its card names: the compression
notebooks 03-04 on its source model with the run's settings, then `lightfer maintain ship-edge`.
`rebuild` runs the chain in order, each step in its own directory under `out`, resuming a step
that was interrupted and skipping a step whose result exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lightfer_utils.data import FerData
from lightfer_utils.runtime import provenance, shipped_models
from lightfer_utils.runtime.model_card import ModelCard
from lightfer_utils.training.config import TrainConfig, load_config
from lightfer_utils.training.trainingdir import TrainingDir

# run parameters that name the model a compression run starts from; a rebuild sets its own
SOURCE_PARAMETERS = ("model_path", "resume_from", "models")


@dataclass
class Recipe:
    name: str
    kind: str  # "train", "edge" or "paper" (the paper's Light-FER: a trained model pruned and quantized)
    depends_on: list[str] = field(default_factory=list)
    config: TrainConfig | None = None  # train
    profile: str = ""  # edge: the run's profile and settings (without its source model)
    parameters: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "train":
            config = self.config
            extras = [f"teacher {', '.join(self.teachers())}"] if config.teacher else []
            extras += [f"init-from {self.init_from()}"] if config.init_from else []
            return (f"train {config.model} {json.dumps(config.model_config)} for {config.epochs} epochs"
                    + ("; " + "; ".join(extras) if extras else ""))
        if self.kind == "paper":
            settings = ", ".join(f"{k} {v}" for k, v in self.parameters.items())
            return f"prune {self.depends_on[0]} during fine-tuning (tfmot; {settings}), FP16 and INT8: lightfer maintain ship-paper"
        settings = " ".join(f"-p {k}={v}" for k, v in self.parameters.items())
        return f"compress {self.depends_on[0]}: lightfer run --profile {self.profile} --only 03,04 {settings}; ship-edge"

    def teachers(self) -> list[str]:
        return [model_named(t) for t in self.config.teacher.split(",") if t]

    def init_from(self) -> str:
        return model_named(self.config.init_from) if self.config.init_from else ""


def model_named(path: str) -> str:
    """The shipped model a config names by its training directory (models/NAME/training)."""
    parts = Path(path).parts
    if len(parts) >= 3 and parts[-1] == "training" and parts[-3] == "models":
        return parts[-2]
    raise ValueError(f"{path}: a recipe names other models as models/NAME/training")


def recipe(name: str, models_dir: Path | None = None) -> Recipe:
    models = Path(models_dir) if models_dir else shipped_models.models_dir()
    training = models / name / "training"
    if TrainingDir(training).config.is_file():
        found = Recipe(name, "train", config=load_config(training))
        found.depends_on = sorted(set(found.teachers() + ([found.init_from()] if found.config.init_from else [])))
        return found
    card_file = models / f"{name}.card.json"
    if not card_file.is_file():
        raise FileNotFoundError(f"no recipe for {name!r}: neither {training}/config.json nor {card_file}")
    card = ModelCard.read(card_file)
    if card.kind == "paper":
        compression = {k: v for k, v in card["compression"].items() if k not in ("source", "method")}
        return Recipe(name, "paper", depends_on=[model_named(card["compression"]["source"])], parameters=compression)
    source = card.get("source_run")
    if not source:
        raise ValueError(f"{card_file} names no source run, so {name} has no recipe")
    overrides = dict(source.get("overrides") or {})
    origin = next((overrides[p] for p in ("model_path", "resume_from") if overrides.get(p)), None)
    if origin is None:
        raise ValueError(f"{card_file}: its run names no source model (model_path or resume_from)")
    parameters = {k: v for k, v in overrides.items() if k not in SOURCE_PARAMETERS}
    return Recipe(name, "edge", depends_on=[model_named(origin)], profile=source["profile"], parameters=parameters)


def chain(name: str, models_dir: Path | None = None) -> list[Recipe]:
    """The recipes that rebuild `name`, dependencies first, each once."""
    ordered: list[Recipe] = []
    visiting: set[str] = set()

    def visit(model: str) -> None:
        if model in visiting:
            raise ValueError(f"recipes depend on each other in a circle through {model}")
        if any(r.name == model for r in ordered):
            return
        visiting.add(model)
        step = recipe(model, models_dir)
        for dependency in step.depends_on:
            visit(dependency)
        visiting.discard(model)
        ordered.append(step)

    visit(name)
    return ordered


def step_dir(out: Path, step: Recipe) -> Path:
    return Path(out) / step.name / {"train": "training", "edge": "run", "paper": "compression"}[step.kind]


def recorded(path: Path) -> str:
    """A model's directory as a rebuilt config names it: relative to the project root when inside it
    (as the shipped configs are written, and as `train` reads them), so that a step interrupted in
    one clone resumes in another; absolute otherwise."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(provenance.PROJECT_ROOT.resolve()))
    except ValueError:
        return str(path)


def rebuilt_config(step: Recipe, locations: dict[str, Path]) -> TrainConfig:
    """The step's config with each model it names taken from `locations` (the rebuilt ones)."""
    teachers = ",".join(recorded(locations[t]) for t in step.teachers())
    init_from = recorded(locations[step.init_from()]) if step.config.init_from else ""
    return replace(step.config, teacher=teachers, init_from=init_from)


def rebuild(
    name: str, data: FerData, out: Path, last_step_only: bool = False, models_dir: Path | None = None,
    data_path: str | None = None,
) -> dict[str, Path]:
    """Rebuild `name` and, unless `last_step_only`, every model it depends on, in order, under
    `out` (a training directory per trained model, a run directory and model files per edge
    model). With `last_step_only` the dependencies are the shipped ones. Returns where each step's
    result is."""
    from lightfer_utils.training.train import train

    models = Path(models_dir) if models_dir else shipped_models.models_dir()
    steps = chain(name, models)
    if last_step_only:
        steps = steps[-1:]
    locations = {model: models / model / "training" for model in {d for s in steps for d in s.depends_on}}
    out = Path(out).resolve()
    for number, step in enumerate(steps, 1):
        print(f"--- step {number} of {len(steps)}: {step.name}: {step.describe()}")
        target = step_dir(out, step)
        if step.kind == "train":
            train(rebuilt_config(step, locations), data.split("Training"), data.split("PublicTest"), target)
        elif step.kind == "paper":
            _rebuild_paper(step, locations[step.depends_on[0]], target, out / "models", data)
        else:
            _rebuild_edge(step, locations[step.depends_on[0]], target, out / "models", data, data_path)
        locations[step.name] = target
    return locations


def _rebuild_edge(step: Recipe, source: Path, run_dir: Path, models_out: Path, data: FerData,
                  data_path: str | None) -> None:
    from lightfer_utils.runner import execute, plan_run
    from lightfer_utils.training.shipping import ship_edge_model

    if (models_out / f"{step.name}.card.json").is_file():
        print(f"{step.name} is already rebuilt in {models_out}")
        return
    manifest = run_dir / "manifest.json"
    if not (manifest.is_file() and json.loads(manifest.read_text()).get("status") == "completed"):
        if run_dir.exists():
            raise FileExistsError(f"{run_dir} holds an unfinished run (runs do not resume): remove it and rebuild again")
        settings = [f"{k}={v}" for k, v in step.parameters.items()] + [f"model_path={source}"]
        execute(plan_run(step.profile, data_path, run_dir, settings, only=["03", "04"]))
    ship_edge_model(run_dir, data, step.name, models_out)


def _rebuild_paper(step: Recipe, source: Path, work: Path, models_out: Path, data: FerData) -> None:
    from lightfer_utils.training.paper_model import Compression, ship_paper_model

    if (models_out / f"{step.name}.card.json").is_file():
        print(f"{step.name} is already rebuilt in {models_out}")
        return
    ship_paper_model(source, data, step.name, models_out, Compression(**step.parameters), work)


def compare_curves(rebuilt: Path, original: Path) -> list[str]:
    """How a rebuilt training run (finished or not) follows the original one, epoch by epoch, from
    their `history.csv`: training loss, PublicTest accuracy, and the best PublicTest reached so far."""
    import pandas as pd

    ours, theirs = (pd.read_csv(TrainingDir(d).history).set_index("epoch") for d in (rebuilt, original))
    epochs = ours.index.intersection(theirs.index)
    if epochs.empty:
        return [f"{rebuilt}: no epoch to compare yet"]
    last = int(epochs.max())
    loss_gap = ((ours.loss[epochs] - theirs.loss[epochs]).abs() / theirs.loss[epochs]) * 100
    accuracy_gap = (ours.val_accuracy[epochs] - theirs.val_accuracy[epochs]).abs() * 100
    best_original = theirs.val_accuracy.max() * 100
    return [
        f"epochs compared: {len(epochs)} (rebuilt run: {len(ours)}, original: {len(theirs)})",
        f"training loss: {loss_gap.mean():.2f} % apart on average, {loss_gap.max():.2f} % at most",
        f"PublicTest accuracy per epoch: {accuracy_gap.mean():.2f} points apart on average, {accuracy_gap.max():.2f} at most",
        f"best PublicTest by epoch {last}: {ours.val_accuracy[epochs].max() * 100:.2f} % rebuilt, "
        f"{theirs.val_accuracy[epochs].max() * 100:.2f} % original "
        f"(original's best: {best_original:.2f} % at epoch {int(theirs.val_accuracy.idxmax())})",
    ]


def against_card(name: str, out: Path, data: FerData, where: dict[str, Path]) -> list[str]:
    """The rebuilt model's accuracy beside its shipped card's, one line per split (and format): a
    trained model scored here from its rebuilt run, the others as their rebuilt card says."""
    card = shipped_models.card(name)
    percent = "{:.2f} %".format
    if chain(name)[-1].kind == "train":
        from lightfer_utils.runtime.predictor import keras_predictor
        from lightfer_utils.training.evaluate import evaluate
        from lightfer_utils.training.train import load_best

        predict = keras_predictor(load_best(where[name]))
        return [f"{name} rebuilt, {split}: {percent(evaluate(predict, part.images, part.labels).accuracy * 100)} "
                f"(card: {percent(card.accuracy(split, 'keras') * 100)})"
                for split, part in ((s, data.split(s)) for s in ("PublicTest", "PrivateTest"))]
    rebuilt = ModelCard.read(Path(out) / "models" / f"{name}.card.json")
    formats = list(rebuilt["formats"]) if rebuilt.kind == "paper" else [rebuilt.default_format()]
    return [f"{name} rebuilt ({fmt}): " + ", ".join(
        f"{split} {percent(rebuilt.accuracy(split, fmt) * 100)} (card"
        f"{'' if card.kind == 'paper' else ', ' + card.default_format()}: "
        f"{percent(card.accuracy(split, fmt if card.kind == 'paper' else None) * 100)})" for split in ("PublicTest", "PrivateTest"))
        for fmt in formats]
