"""03's compression variants of a model, made once and shipped with a record of how.

03 fine-tunes every variant (tfmot sparsities, 2:4, channel budgets): ten Keras epochs of the
default model in `make reproduce`, about 31 min on an AVX-512 host and about 2 h on an AVX2-only one
(docs/measurements.md). `lightfer maintain ship-variants` makes them once, with the reproduce
profile's settings, one variant at a time (an interrupted run goes on with the next one), into a
folder holding each variant's .keras file and `variants.json`: the recipe, the hashes of the dense
weights and of the data, and each file's hash, host and time. 03 given that folder (`variants_from`)
measures the shipped files instead of fine-tuning, and refuses a folder that lacks a variant or was
made from other weights, other data or another recipe.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tf_keras as keras
from tqdm import tqdm

from lightfer_utils.data import FerData
from lightfer_utils.runtime.atomic import atomic_write
from lightfer_utils.runtime.provenance import file_sha256, git_revision, host_info, now_iso

RECORD = "variants.json"
MakeVariant = Callable[[str], keras.Model]


@dataclass(frozen=True)
class Recipe:
    """03's compression settings: the variants and how each is fine-tuned."""

    sparsities: tuple[float, ...]
    channel_keep: tuple[float, ...]
    prune_epochs: int
    structured_epochs: int
    learning_rate: float
    batch_size: int
    seed: int

    @classmethod
    def from_json(cls, values: Any, where: str) -> "Recipe":
        names = {f.name for f in fields(cls)}
        if not isinstance(values, dict) or set(values) != names:
            raise ValueError(f"{where}: the recipe must name exactly {', '.join(sorted(names))}")
        try:
            return cls(tuple(float(v) for v in values["sparsities"]), tuple(float(v) for v in values["channel_keep"]),
                       int(values["prune_epochs"]), int(values["structured_epochs"]), float(values["learning_rate"]),
                       int(values["batch_size"]), int(values["seed"]))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: a recipe value has the wrong type ({err})") from None

    @classmethod
    def from_parameters(cls, values: dict[str, Any]) -> "Recipe":
        """From 03's parameters as a run gives them (fractions comma-separated)."""
        from lightfer_utils.training.prune import parse_fractions

        return cls(tuple(parse_fractions(values["sparsities"])), tuple(parse_fractions(values["channel_keep"])),
                   values["prune_epochs"], values["structured_epochs"], values["learning_rate"], values["batch_size"],
                   values["seed"])

    def magnitude_names(self) -> list[str]:
        return [*(f"magnitude_{s:g}" for s in self.sparsities), "sparsity_2of4"]

    def structured_names(self) -> list[str]:
        return [f"channels_{k:g}" for k in self.channel_keep]

    def names(self) -> list[str]:
        """The variants, in 03's order: each sparsity, 2:4, each channel budget."""
        return [*self.magnitude_names(), *self.structured_names()]

    def differences(self, other: "Recipe") -> list[str]:
        mine, theirs = asdict(self), asdict(other)
        return [f"{name} {theirs[name]} (this run: {mine[name]})" for name in mine if mine[name] != theirs[name]]


def weights_sha256(model: keras.Model) -> str:
    """A hash of the weights themselves, the same for a training run's best epoch and its .keras file."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights, dtype=np.float32).tobytes())
    return digest.hexdigest()


def fine_tuner(dense: keras.Model, train: FerData, validation: FerData, recipe: Recipe) -> MakeVariant:
    """Makes a variant by name from the dense model: tfmot to a sparsity or 2:4 (`prune_epochs`), or
    channel pruning then distilled fine-tuning from the dense model, best PublicTest epoch kept."""
    from lightfer_utils.training.fine_tuning import fine_tune
    from lightfer_utils.training.prune import magnitude_prune, prune_channels

    tuning = {"learning_rate": recipe.learning_rate, "batch_size": recipe.batch_size, "seed": recipe.seed}
    plan: dict[str, tuple[str, float]] = {**{f"magnitude_{s:g}": ("magnitude", s) for s in recipe.sparsities},
                                          "sparsity_2of4": ("2:4", 0.5),
                                          **{f"channels_{k:g}": ("channels", k) for k in recipe.channel_keep}}

    def make(name: str) -> keras.Model:
        kind, amount = plan[name]
        print(f"--- {name}")
        if kind == "magnitude":
            return magnitude_prune(dense, train, validation, amount, recipe.prune_epochs, **tuning)
        if kind == "2:4":
            return magnitude_prune(dense, train, validation, None, recipe.prune_epochs, m_by_n=(2, 4), **tuning)
        smaller, _ = prune_channels(dense, amount, calibration_faces=train.images)
        fine_tune(smaller, train, validation, recipe.structured_epochs, teacher=dense, keep_best=True, **tuning)
        return smaller

    return make


def read_record(folder: Path) -> dict[str, Any]:
    path = folder / RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a variants record ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get("variants"), dict):
        raise ValueError(f"{path}: not a variants record (no 'variants' table)")
    record["recipe"] = Recipe.from_json(record.get("recipe"), str(path))
    return record


def _check_origin(record: dict[str, Any], folder: Path, recipe: Recipe, dense_sha256: str, data_sha256: str) -> None:
    problems = recipe.differences(record["recipe"])
    if record.get("dense_weights_sha256") != dense_sha256:
        problems.append("other dense weights")
    if record.get("data_sha256") != data_sha256:
        problems.append("other data")
    if problems:
        raise ValueError(f"{folder / RECORD}: its variants were made with {'; '.join(problems)}: give a matching "
                         "folder, or leave variants_from empty to fine-tune them in this run")


def shipped(folder: str | os.PathLike[str], recipe: Recipe, dense: keras.Model, data_sha256: str) -> MakeVariant:
    """Loads each variant from `folder` (the one safe loader, its hash checked against the record),
    once the folder is checked to hold every variant of `recipe`, made from `dense` and the data."""
    from lightfer_utils.runtime.predictor import load_predictor

    root = Path(folder)
    record = read_record(root)
    _check_origin(record, root, recipe, weights_sha256(dense), data_sha256)
    missing = [name for name in recipe.names() if not isinstance(record["variants"].get(name), dict)]
    if missing:
        raise ValueError(f"{root} does not hold {', '.join(missing)} yet: finish it with `lightfer maintain ship-variants`, "
                         "or leave variants_from empty to fine-tune every variant in this run")

    def load(name: str) -> keras.Model:
        entry, path = record["variants"][name], root / f"{name}.keras"
        if not path.is_file() or file_sha256(path) != entry.get("sha256"):
            raise ValueError(f"{path}: missing or changed since {root / RECORD} recorded it")
        print(f"--- {name}: shipped, made on {entry.get('created')} ({entry.get('cpu')}); measured from {path.name}")
        return load_predictor(path).model

    return load


def save_weights_only(model: keras.Model, path: Path) -> None:
    """Uncompiled (no optimizer state in the file), deflated (pruned zeros cost almost nothing in git)."""
    from lightfer_utils.training.derived import deflate_keras
    from lightfer_utils.training.fine_tuning import save_uncompiled

    partial = path.with_name(f"{path.stem}.partial.keras")
    save_uncompiled(model, partial)
    deflate_keras(partial)
    os.replace(partial, path)


def ship_variants(dense: keras.Model, train: FerData, validation: FerData, data_sha256: str, recipe: Recipe,
                  out: str | os.PathLike[str], source: str, overwrite: bool = False) -> dict[str, Any]:
    """Make every variant of `recipe` not yet in `out`, saving the record after each one."""
    root = Path(out)
    dense_sha256 = weights_sha256(dense)
    if (root / RECORD).exists() and not overwrite:
        record = read_record(root)
        _check_origin(record, root, recipe, dense_sha256, data_sha256)
    else:
        record = {"source": source, "dense_weights_sha256": dense_sha256, "data_sha256": data_sha256,
                  "recipe": recipe, "variants": {}}
    root.mkdir(parents=True, exist_ok=True)
    make = fine_tuner(dense, train, validation, recipe)
    todo = [name for name in recipe.names() if name not in record["variants"]]
    print(f"{root}: {len(recipe.names()) - len(todo)} of {len(recipe.names())} variants made before; making "
          f"{', '.join(todo) or 'none'}")
    host, revision = host_info(), git_revision()  # the code that makes them, before any of them is committed
    for name in tqdm(todo, desc="variants", unit="variant"):
        started = time.perf_counter()
        path = root / f"{name}.keras"
        save_weights_only(make(name), path)
        record["variants"][name] = {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
                                    "seconds": round(time.perf_counter() - started, 1), "created": now_iso(),
                                    "cpu": f"{host['cpu']} ({host['cpu_isa']}, {host['logical_cores']} cores)",
                                    "git": f"{revision['commit']}{'+dirty' if revision.get('dirty') else ''}"}
        atomic_write(root / RECORD, json.dumps({**record, "recipe": asdict(record["recipe"])}, indent=2) + "\n")
    return record
