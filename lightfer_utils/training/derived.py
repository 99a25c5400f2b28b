"""Derived model files: formats of a shipped model that are too large to commit and are made
again from a committed one (`lightfer maintain materialize NAME`). A conversion is not
byte-reproducible (tf2onnx names nodes afresh), so each made file is checked against its source on
seeded faces and its sha256 is recorded beside the card in NAME.derived.json, which the runtime
checks at every load (`shipped_models.model_file`)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lightfer_utils.runtime import shipped_models
from lightfer_utils.runtime.atomic import atomic_write
from lightfer_utils.runtime.predictor import load_predictor
from lightfer_utils.runtime.provenance import file_sha256, now_iso
from lightfer_utils.training.export import export_onnx
from lightfer_utils.training.quantize import onnx_fp16

# the largest probability difference a derived file may show against its source on the check faces
MAX_ABS_DP = {"onnx_fp32": 1e-4, "onnx_fp16": 1e-2}
CHECK_FACES = 256


def _onnx_fp32(source: Path, target: Path) -> None:
    from lightfer_utils.runtime.tensorrt_runtime import tensorrt_8_2_problems

    export_onnx(load_predictor(source).model, target)
    problems = tensorrt_8_2_problems(target)
    if problems:
        raise ValueError(f"{target}: {'; '.join(problems)}")


# format -> how it is made from the format it is derived from (ONNX at opset 13, TensorRT 8.2's)
MAKERS: dict[str, tuple[str, Callable[[Path, Path], Any]]] = {
    "onnx_fp32": ("tf2onnx, opset 13, TensorRT 8.2's operators checked", _onnx_fp32),
    "onnx_fp16": ("onnxconverter-common float16, keep_io_types", onnx_fp16),
}


def derive(fmt: str, source: Path, target: Path) -> dict[str, Any]:
    """Make `target` in `fmt` from `source` and check it: returns its record (sha256, bytes, the
    largest probability difference and the argmax agreement against the source)."""
    how, make = MAKERS[fmt]
    partial = target.with_name(f"{target.stem}.partial{target.suffix}")  # the loaders go by the suffix
    make(source, partial)
    faces = np.random.default_rng(2022).integers(0, 256, (CHECK_FACES, 48, 48)).astype(np.float32)
    reference, made = load_predictor(source)(faces), load_predictor(partial)(faces)
    largest = float(np.abs(reference - made).max())
    if largest > MAX_ABS_DP[fmt]:
        partial.unlink()
        raise RuntimeError(f"{target}: made from {source.name}, it answers up to {largest:.2e} apart from it on "
                           f"{CHECK_FACES} seeded faces (at most {MAX_ABS_DP[fmt]:g} allowed)")
    os.replace(partial, target)
    return {"sha256": file_sha256(target), "bytes": target.stat().st_size, "how": how, "checked_against": source.name,
            "check_faces": CHECK_FACES, "max_abs_dp": largest,
            "argmax_agreement": float((reference.argmax(1) == made.argmax(1)).mean()), "made": now_iso()}


def derived_formats(card: dict[str, Any]) -> list[str]:
    """The card's derived formats, each after the format it is made from."""
    files, ordered = card["files"], []

    def visit(fmt: str) -> None:
        source = files[fmt].get("derived_from")
        if source and fmt not in ordered:
            visit(source)
            ordered.append(fmt)

    for fmt in files:
        visit(fmt)
    return ordered


def materialize(name: str, models_dir: str | os.PathLike[str] | None = None, force: bool = False) -> dict[str, Any]:
    """Make the shipped model's derived files that are missing or changed (all of them with `force`)
    and record them in NAME.derived.json; returns the records of the files made."""
    folder = Path(models_dir) if models_dir else shipped_models.models_dir()
    card = json.loads((folder / f"{name}{shipped_models.CARD_SUFFIX}").read_text())
    record_path = folder / f"{name}{shipped_models.DERIVED_SUFFIX}"
    record = json.loads(record_path.read_text()) if record_path.is_file() and not force else {}
    made = {}
    for fmt in derived_formats(card):
        entry = card["files"][fmt]
        target, source = folder / entry["path"], folder / card["files"][entry["derived_from"]]["path"]
        if fmt in record and target.is_file() and file_sha256(target) == record[fmt]["sha256"]:
            continue
        if fmt not in MAKERS:
            raise ValueError(f"{name}: no maker for the derived format {fmt!r} (known: {', '.join(MAKERS)})")
        record[fmt] = made[fmt] = derive(fmt, source, target)
        atomic_write(record_path, json.dumps(record, indent=2) + "\n")
    return made


def deflate_keras(path: Path) -> None:
    """Rewrite a .keras file (a zip Keras writes uncompressed) with deflate: a pruned model's zeros
    then cost almost nothing, in the repository and in every clone."""
    partial = path.with_name(f"{path.stem}.partial{path.suffix}")
    with zipfile.ZipFile(path) as stored, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as packed:
        for item in stored.infolist():
            packed.writestr(item, stored.read(item), compress_type=zipfile.ZIP_DEFLATED)
    os.replace(partial, path)
