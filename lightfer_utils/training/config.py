"""A training run's settings (`config.json` of a training directory): what `lightfer train` and
notebook 02 train, checked before anything is written, and read back with the defaults of
settings added since. No TensorFlow here."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lightfer_utils.training.trainingdir import TrainingDir


PRECISIONS = ("float32", "mixed_bfloat16")  # compute precisions of training (training/precision.py)


# each numeric augmentation setting's upper bound and whether the bound itself is allowed
AUGMENTATION_RANGES = {"max_shift": (1.0, True), "max_rotation_deg": (180.0, True), "max_zoom": (1.0, False),
                       "max_brightness": (1.0, True), "max_contrast": (1.0, False), "erase_probability": (1.0, True),
                       "erase_max_area": (1.0, True), "mixup_alpha": (100.0, True)}


@dataclass(frozen=True)
class Augmentation:
    flip: bool = True
    max_shift: float = 0.1  # fraction of the image side
    max_rotation_deg: float = 10.0
    max_zoom: float = 0.1  # scale in [1 - z, 1 + z]
    max_brightness: float = 0.15  # fraction of 255
    max_contrast: float = 0.2  # factor in [1 - c, 1 + c]
    erase_probability: float = 0.0  # random erasing (Zhong et al. 2020): share of faces with a noise patch
    erase_max_area: float = 0.25  # largest patch, as a fraction of the face (smallest: 0.02)
    mixup_alpha: float = 0.0  # mixup (Zhang et al. 2018): > 0 blends each face and its target with another's, weight ~ Beta(a, a)

    def as_dict(self) -> dict[str, float | bool]:
        return asdict(self)

    def check(self) -> None:
        """Every setting finite and in its range (from the command line or a config file)."""
        for name, (top, closed) in AUGMENTATION_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0 or value > top or (value == top and not closed):
                raise ValueError(f"augmentation setting {name!r} must be a number in [0, {top:g}{']' if closed else ')'}, "
                                 f"got {value!r}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"augmentation setting 'flip' must be true or false, got {self.flip!r}")

    def changed(self, changes: dict[str, object]) -> Augmentation:
        """These settings with `changes` (user input: names and types are checked)."""
        settings = self.as_dict()
        for name, value in changes.items():
            if name not in settings:
                raise ValueError(f"no augmentation setting {name!r} (settings: {', '.join(settings)})")
            wanted = bool if isinstance(settings[name], bool) else (int, float)
            if not isinstance(value, wanted) or (wanted != bool and isinstance(value, bool)) or value < 0:
                raise ValueError(f"augmentation setting {name!r} must be {'true or false' if wanted == bool else 'a number >= 0'}, got {value!r}")
        changed = Augmentation(**{**settings, **changes})
        changed.check()
        return changed


@dataclass
class TrainConfig:
    model: str = "light_fer_net"
    model_config: dict[str, Any] = field(default_factory=dict)
    epochs: int = 60
    batch_size: int = 64  # per replica
    learning_rate: float = 1e-3  # per replica batch; scaled by the replica count
    warmup_epochs: int = 2
    min_learning_rate: float = 1e-5
    label_smoothing: float = 0.1
    class_weights: bool = False
    augmentation: dict[str, Any] | None = field(default_factory=lambda: Augmentation().as_dict())
    patience: int = 15  # epochs without PublicTest improvement before stopping; 0 = never
    seed: int = 2022
    # trained models (.keras or training dirs; relative: to the project root) to distil from,
    # comma-separated: their mean probability teaches
    teacher: str = ""
    distill_alpha: float = 0.5  # weight of the labels; 1 - alpha goes to the teacher
    distill_temperature: float = 2.0
    teacher_flip: bool = False  # the teacher also sees the mirrored face; its two answers are averaged
    # offline: the teacher's probabilities on the un-augmented Training faces are computed once
    # (cached in the run as teacher_targets.npy) and mixed into the targets, alpha * labels +
    # (1 - alpha) * teacher softened by the temperature; no teacher pass per batch, so a small
    # student trains at its own speed
    teacher_offline: bool = False
    init_from: str = ""  # a trained model of the same architecture whose weights start the run
    # > 0: an exponential moving average of all the weights (batch-norm statistics too), updated
    # after every step with this decay (0.999 averages over ~1,000 steps, about 2 epochs at batch
    # 64); PublicTest scores the average, best_weights.h5 holds it. 0: off
    weight_average_decay: float = 0.0
    # "mixed_bfloat16": layers compute in bfloat16, weights, optimizer, average and the softmax stay
    # float32 (faster on CPUs with bfloat16 instructions, avx512_bf16 or amx_bf16, slower on other
    # AVX-512 CPUs, refused on AVX2-only ones); the saved weights are float32 either way, so
    # exports and evaluation are unchanged
    precision: str = "float32"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def check(self) -> None:
        """Every number finite, whole where it counts, and in its range: these come from the command
        line and from config files, and are checked before anything is written."""
        ranges = {"epochs": (lambda v: 1 <= v <= 100_000, "in [1, 100000]"),
                  "batch_size": (lambda v: 1 <= v <= 65_536, "in [1, 65536]"),
                  "warmup_epochs": (lambda v: v >= 0, ">= 0"), "patience": (lambda v: v >= 0, ">= 0 (0: never stop)"),
                  "seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32)"), "learning_rate": (lambda v: v >= 0, ">= 0"),
                  "min_learning_rate": (lambda v: v >= 0, ">= 0"), "label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
                  "distill_alpha": (lambda v: 0 <= v <= 1, "in [0, 1]"), "distill_temperature": (lambda v: v > 0, "> 0"),
                  "weight_average_decay": (lambda v: 0 <= v < 1, "in [0, 1) (0: off)")}
        whole = ("epochs", "batch_size", "warmup_epochs", "patience", "seed")
        for name, (in_range, wanted) in ranges.items():
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not number or (name in whole and not isinstance(value, int)) or not in_range(value):
                kind = "a whole number" if name in whole else "a finite number"
                raise ValueError(f"{name} must be {kind} {wanted}, got {value!r}")
        if not isinstance(self.model_config, dict) or not _finite(self.model_config):
            raise ValueError(f"model_config must be a JSON object of finite values, got {self.model_config!r}")
        if self.augmentation is not None:
            if not isinstance(self.augmentation, dict) or set(self.augmentation) - set(Augmentation().as_dict()):
                raise ValueError(f"augmentation must be an object of the settings {', '.join(Augmentation().as_dict())}, "
                                 f"got {self.augmentation!r}")
            Augmentation(**self.augmentation).check()

    def same_run(self, other: TrainConfig) -> bool:
        """Whether `other` describes the same run: everything equal but the compute precision."""
        return replace(self, precision="").to_json() == replace(other, precision="").to_json()


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


def project_path(model: str) -> Path:
    """A trained model named in a config (teacher, init_from): relative paths are relative to the
    project root, because notebooks run in their run directory."""
    from lightfer_utils.runtime.provenance import PROJECT_ROOT

    return Path(model) if Path(model).is_absolute() else PROJECT_ROOT / model


def load_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The run's config; fields and augmentation settings added since it was written take their
    defaults, which leave such runs as they were."""
    path = TrainingDir(run_dir).config
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{path} is not JSON ({err})") from None
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(settings) - known) if isinstance(settings, dict) else []
    if not isinstance(settings, dict) or unknown:
        raise ValueError(f"{path}: not a training config ({'unknown setting ' + ', '.join(unknown) if unknown else 'not a JSON object'})")
    config = TrainConfig(**settings)
    try:
        config.check()
        if config.augmentation is not None:
            config.augmentation = Augmentation(**config.augmentation).as_dict()
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from None
    return config
