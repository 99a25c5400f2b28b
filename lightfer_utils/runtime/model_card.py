"""A shipped model's card (`NAME.card.json`): one type for its three kinds, read by shape,
validated when read and before it is written.

- "trained" (`lightfer maintain ship`, `ship-int8` adds an `int8` section): `metrics` per split,
  its files keras / onnx (and tflite_int8 / onnx_int8);
- "edge" (`ship-edge`): a structured-pruned, quantized model, `formats` measured per file and the
  chosen `edge_format`;
- "paper" (`ship-paper`): the paper's Light-FER, `formats` measured per file, its `compression`
  recipe; some files may be derived (`derived_from`, made by `lightfer maintain materialize`).

Cards written before `schema_version` and `kind` existed are read by their shape. No syntax newer
than Python 3.6: the runtime reads cards.
"""

import json
from pathlib import Path
from typing import Any, Dict, Optional, Union

from lightfer_utils.runtime.errors import ModelLoadError

SCHEMA_VERSION = 1
KINDS = ("trained", "edge", "paper")
SPLITS = ("PublicTest", "PrivateTest")


class ModelCard(dict):
    """The card's JSON object, with the questions every reader asks of it."""

    def __init__(self, content: Dict[str, Any], source: Union[str, Path] = "model card") -> None:
        super().__init__(content)
        self.source = str(source)
        self.validate()

    @classmethod
    def read(cls, path: Union[str, Path]) -> "ModelCard":
        try:
            content = json.loads(Path(path).read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise ModelLoadError("{}: not a model card (not JSON: {})".format(path, err)) from None
        if not isinstance(content, dict):
            raise ModelLoadError("{}: not a model card (not a JSON object)".format(path))
        return cls(content, path)

    def write(self, path: Union[str, Path]) -> "ModelCard":
        """Stamped with the schema version and kind, checked, then written whole; returns the card."""
        from lightfer_utils.runtime.atomic import atomic_write

        self.setdefault("schema_version", SCHEMA_VERSION)
        self.setdefault("kind", self.kind)
        self.validate()
        atomic_write(Path(path), json.dumps(self, indent=2))
        return self

    @property
    def kind(self) -> str:
        return self.get("kind") or ("edge" if "edge_format" in self else "trained")

    def validate(self) -> None:
        problems = []
        files = self.get("files")
        if not isinstance(files, dict) or not files or not all(
                isinstance(entry, dict) and isinstance(entry.get("path"), str) and Path(entry["path"]).name == entry["path"]
                and (isinstance(entry.get("sha256"), str) or entry.get("derived_from") in files)
                for entry in files.values()):
            problems.append("it needs 'files': format -> {path in its folder, sha256 or derived_from another format}")
        if self.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            problems.append("schema_version {!r} is not {}".format(self.get("schema_version"), SCHEMA_VERSION))
        if self.kind not in KINDS:
            problems.append("kind {!r} is not one of {}".format(self.kind, ", ".join(KINDS)))
        elif self.kind == "trained" and not all(isinstance(self.get("metrics", {}).get(s), dict) for s in SPLITS):
            problems.append("a trained model's card needs 'metrics' for PublicTest and PrivateTest")
        elif self.kind != "trained" and not isinstance(self.get("formats"), dict):
            problems.append("a {} model's card needs 'formats'".format(self.kind))
        elif self.kind == "edge" and self.get("edge_format") not in (files or {}):
            problems.append("its edge_format {!r} is not among its files".format(self.get("edge_format")))
        architecture = self.get("architecture")
        if not isinstance(architecture, dict) or not isinstance(architecture.get("parameters", {}).get("total"), int):
            problems.append("it needs 'architecture': {parameters: {total}}")
        if problems:
            raise ModelLoadError("{}: not a model card ({})".format(self.source, "; ".join(problems)))

    def default_format(self) -> str:
        """An edge model's chosen format; otherwise the (FP32) ONNX file."""
        for fmt in (self.get("edge_format"), "onnx", "onnx_fp32"):
            if fmt in self["files"]:
                return fmt
        return sorted(self["files"])[0]

    @property
    def parameters(self) -> int:
        return int(self["architecture"]["parameters"]["total"])

    def accuracy(self, split: str, fmt: Optional[str] = None) -> Optional[float]:
        """Accuracy on `split` of format `fmt` (default: the default format) as measured at shipping;
        None when the card did not measure it."""
        fmt = fmt or self.default_format()
        if self.kind == "trained":
            if fmt in self.get("int8", {}).get("formats", {}):
                return self["int8"]["formats"][fmt].get(split + "_accuracy")
            return self["metrics"][split]["accuracy"] if fmt in ("keras", "onnx") else None
        return self["formats"].get(fmt, {}).get(split + "_accuracy")
