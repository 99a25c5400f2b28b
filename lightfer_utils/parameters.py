"""The notebooks' parameters: their types are read from each notebook's cell tagged
``parameters`` (``name: type = default``), and every value is checked -- type, range, paths --
before a run starts."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any


class ParameterError(ValueError):
    """A bad run parameter, found before any notebook starts."""


TYPES = {"int": int, "float": float, "str": str, "bool": bool}


# Notebooks run inside their run directory, so a relative path given with -p is resolved here,
# against the caller's working directory; several paths are comma-separated.
PATH_PARAMETERS: tuple[str, ...] = ("resume_from", "model_path", "variants_from", "formats_dir", "ferplus_path")


def resolve_path_parameter(name: str, value: str) -> str:
    """Absolute form of a path parameter's comma-separated entries; each must exist."""
    resolved = []
    for entry in (e.strip() for e in value.split(",") if e.strip()):
        path = Path(entry).expanduser().resolve()
        if not path.exists():
            raise ParameterError(f"parameter {name!r}: {entry} does not exist (relative paths start at {Path.cwd()})")
        resolved.append(str(path))
    return ",".join(resolved)


# the range of each numeric parameter (and of each number of the comma-separated ones), checked
# before the run directory exists, so a bad value never leaves a half-run behind
PARAMETER_RANGES: dict[str, tuple[float, float]] = {
    "batch_size": (1, 65_536), "batch_sizes": (1, 65_536), "calibration_size": (1, 100_000), "cost_steps": (1, 10_000),
    "epochs": (1, 100_000), "erase_probability": (0, 1), "iterations": (1, 1_000_000), "label_smoothing": (0, 0.99),
    "latency_iterations": (1, 1_000_000), "latency_rounds": (1, 1_000), "learning_rate": (0, 10), "min_face": (20, 4_000),
    "pipeline_iterations": (1, 1_000_000), "prune_epochs": (0, 1_000), "seed": (0, 2**32 - 1),
    "structured_epochs": (0, 1_000), "subset_fraction": (1e-6, 1), "xception_input_size": (71, 1_024),
    "sparsities": (0, 0.99), "channel_keep": (0.01, 1)}
LIST_PARAMETERS = {"batch_sizes": int, "sparsities": float, "channel_keep": float}


def coerce(name: str, raw: str, type_name: str) -> Any:
    """Parse a command-line value as the type its notebook declares, finite and in its range; the
    error names the parameter."""
    try:
        if type_name == "bool":
            lowered = raw.strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError
        if type_name == "int":
            value: Any = int(raw)
        elif type_name == "float":
            value = float(raw)
        else:
            value = raw
    except ValueError:
        raise ParameterError(f"parameter {name!r} expects {type_name}, got {raw!r}") from None
    check_range(name, value)
    return value


def check_range(name: str, value: Any) -> None:
    if name not in PARAMETER_RANGES:
        return
    low, high = PARAMETER_RANGES[name]
    kind = LIST_PARAMETERS.get(name)
    try:
        numbers = [kind(v) for v in str(value).split(",") if v.strip()] if kind else [value]
    except ValueError:
        raise ParameterError(f"parameter {name!r} takes comma-separated {kind.__name__}s, got {value!r}") from None
    for number in numbers:
        if not (math.isfinite(number) and low <= number <= high):
            raise ParameterError(f"parameter {name!r} must be between {low:g} and {high:g}, got {number!r}")


def assigned_names(notebook: Path) -> list[str]:
    """Names assigned at the top level of a notebook's cell tagged ``parameters``."""
    import nbformat

    for cell in nbformat.read(notebook, as_version=4).cells:
        if "parameters" in cell.metadata.get("tags", []):
            return re.findall(r"^([A-Za-z_]\w*)\s*[:=]", cell.source, flags=re.MULTILINE)
    return []


def parameter_schema(notebooks: list[Path]) -> dict[str, str]:
    import papermill

    schema: dict[str, str] = {}
    for notebook in notebooks:
        declared = papermill.inspect_notebook(str(notebook))
        unparsed = sorted(set(assigned_names(notebook)) - set(declared))
        if unparsed:  # papermill only warns and drops a line it cannot parse
            raise ParameterError(f"{notebook.name}: papermill cannot parse the parameter line(s) of {', '.join(unparsed)}")
        for name, spec in declared.items():
            type_name = spec["inferred_type_name"]
            if type_name not in TYPES:
                raise ParameterError(f"{notebook.name}: parameter {name!r} needs a type annotation (int, float, str, bool)")
            if schema.setdefault(name, type_name) != type_name:
                raise ParameterError(f"parameter {name!r} has type {schema[name]} in one notebook, {type_name} in {notebook.name}")
    return schema
