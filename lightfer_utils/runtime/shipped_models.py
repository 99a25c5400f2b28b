"""The model zoo: every model this package trained and shipped, found and loaded by name, in the
way timm's `create_model` works. A model is its card (`NAME.card.json`, written by `lightfer maintain ship`
or `ship-edge`, which measured it) and the files the card lists with their sha256; they live in
the repository's `models/` folder, installed as the package `lightfer_models` (the wheel carries
the ONNX/TFLite files and cards, not the Keras files or training state).

    load("light_fer_net_deep")                    # its ONNX file
    load("light_fer_net_deep_edge")               # an edge model's chosen format (TFLite INT8)
    load("light_fer_net_deep_edge:onnx_int8")     # a named format of its card

A card may list *derived* formats: files too large to commit that are made from a committed one
(`derived_from`) by `lightfer maintain materialize NAME`, which checks each against its source and
records its sha256 in `NAME.derived.json` beside the card (git-ignored, like the files).

No syntax newer than Python 3.6: the runtime imports this module.
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from lightfer_utils.runtime.errors import ModelLoadError
from lightfer_utils.runtime.model_card import ModelCard
from lightfer_utils.runtime.provenance import file_sha256

# The shipped model with the best PublicTest accuracy (tests/test_shipping.py checks this against the cards).
DEFAULT_MODEL = "light_fer_net_deep"
CARD_SUFFIX = ".card.json"
DERIVED_SUFFIX = ".derived.json"  # what materialize made here: format -> sha256, bytes, parity


class UnknownModel(ModelLoadError):
    """A model name that no shipped card has."""


def models_dir() -> Path:
    import lightfer_models

    return Path(lightfer_models.__file__).resolve().parent


def names() -> List[str]:
    return sorted(p.name[:-len(CARD_SUFFIX)] for p in models_dir().glob("*" + CARD_SUFFIX))


def card(name: str) -> ModelCard:
    path = models_dir() / (name + CARD_SUFFIX)
    if not path.is_file():
        raise UnknownModel("no shipped model named {!r}; shipped: {}".format(name, ", ".join(names())))
    return ModelCard.read(path)


def derived_record(name: str) -> Dict[str, Any]:
    """What `lightfer maintain materialize` made here for `name` (empty before it ran)."""
    path = models_dir() / (name + DERIVED_SUFFIX)
    try:
        record = json.loads(path.read_text()) if path.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict):
        raise ModelLoadError("{}: not a record of derived files (remove it and run `lightfer maintain materialize "
                             "{}`)".format(path, name))
    return record


def split_spec(spec: str) -> Tuple[str, Optional[str]]:
    name, _, fmt = spec.partition(":")
    return name, fmt or None


def model_file(name: str, fmt: Optional[str] = None) -> Path:
    """The file of `name` in format `fmt` (default: default_format), checked against its card's
    sha256, so a changed or damaged file is refused rather than silently used."""
    model_card = card(name)
    fmt = fmt or model_card.default_format()
    entry = model_card["files"].get(fmt)
    if entry is None:
        raise ModelLoadError("{} has no format {!r}; its formats: {}".format(name, fmt, ", ".join(model_card["files"])))
    path = models_dir() / entry["path"]
    derived = entry.get("derived_from")
    if derived and not path.is_file():
        raise ModelLoadError("{}: derived from {} and not made yet: `lightfer maintain materialize {}` makes it (needs "
                             "the train extra)".format(path, derived, name))
    if not path.is_file():
        raise ModelLoadError("{}: not part of this install (the wheel carries ONNX and TFLite files; Keras files and "
                             "training state are in the repository)".format(path))
    expected = derived_record(name).get(fmt, {}).get("sha256") if derived else entry["sha256"]
    if file_sha256(path) != expected:
        source = name + (DERIVED_SUFFIX if derived else CARD_SUFFIX)
        raise ModelLoadError("{}: its sha256 differs from the one in {} (changed or damaged{})".format(
            path, source, "; make it again: `lightfer maintain materialize {} --force`".format(name) if derived else ""))
    return path


def resolve(model: Union[str, Path, None]) -> Path:
    """A model argument as users give it: an existing file, or NAME[:FORMAT] of a shipped model;
    None is the default model."""
    if model is None:
        return model_file(DEFAULT_MODEL)
    if Path(model).exists():
        return Path(model)
    name, fmt = split_spec(str(model))
    if name in names():
        return model_file(name, fmt)
    raise FileNotFoundError("model not found: {} (neither a file nor a shipped model: {})".format(
        model, ", ".join(names())))


def load(model: Union[str, Path, None] = None):
    """A checked predictor (see predictor.load_predictor) for a file or a shipped model's name."""
    from lightfer_utils.runtime.predictor import load_predictor

    return load_predictor(resolve(model))


def summary() -> List[Dict[str, Any]]:
    """One row per shipped model: name, parameters, accuracies and formats, from the cards."""
    rows = []
    for name in names():
        model_card = card(name)
        rows.append({
            "name": name + (" (default)" if name == DEFAULT_MODEL else ""),
            "parameters": model_card.parameters,
            "PublicTest": model_card.accuracy("PublicTest"),
            "PrivateTest": model_card.accuracy("PrivateTest"),
            "default_format": model_card.default_format(),
            "formats": ", ".join(f for f, entry in model_card["files"].items() if (models_dir() / entry["path"]).is_file()),
        })
    return rows
