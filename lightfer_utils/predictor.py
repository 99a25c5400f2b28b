"""One interface to every model format: ``load_predictor(path)(faces) -> probabilities``.

Faces are raw 48x48 gray crops, [N, 48, 48, 1] (or [N, 48, 48]), pixel values 0..255; every
shipped model normalises inside its graph and returns the 7 FER2013 class probabilities.
ONNX Runtime and TFLite predictors never import TensorFlow, so an edge install needs only numpy
and onnxruntime or ai-edge-litert. Models are loaded without executing code (no pickles; Keras
files only through safe_keras, which checks the architecture before deserialising it). No syntax newer than Python 3.6: the Jetson benchmark imports this module.
"""

from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import numpy as np

from lightfer_utils.errors import ModelLoadError
from lightfer_utils.safe_keras import check_onnx_external_data, load_keras_model

KERAS_SUFFIXES = (".keras", ".h5")


class Predictor:
    runtime = "abstract"

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        faces = np.asarray(faces, dtype=np.float32)
        if faces.ndim == 3:
            faces = faces[..., None]
        if faces.shape[1:] != (48, 48, 1):
            raise ValueError(f"expected faces of shape [N, 48, 48, 1], got {list(faces.shape)}")
        return self._predict(faces)

    def _predict(self, faces: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path.name!r}, runtime={self.runtime!r})"


class OnnxPredictor(Predictor):
    runtime = "onnxruntime"

    def __init__(self, path: Path, providers: Optional[List] = None, threads: int = 0):
        super().__init__(path)
        import onnxruntime as ort

        check_onnx_external_data(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise ModelLoadError(f"cannot load ONNX model {path}: {err}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()

    def _predict(self, faces: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: faces})[0].astype(np.float32)


class TFLitePredictor(Predictor):
    runtime = "tflite"

    def __init__(self, path: Path, threads: Optional[int] = None):
        super().__init__(path)
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        except Exception as err:
            raise ModelLoadError(f"cannot load TFLite model {path}: {err}") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = 0

    def _predict(self, faces: np.ndarray) -> np.ndarray:
        if len(faces) != self.batch:
            self.interpreter.resize_tensor_input(self.input["index"], [len(faces)] + [int(d) for d in self.input["shape"][1:]])
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
            self.batch = len(faces)
        scale, zero = self.input["quantization"]
        data = faces
        if self.input["dtype"] != np.float32:  # full-integer model: quantise the raw faces
            info = np.iinfo(self.input["dtype"])
            data = np.clip(np.round(faces / scale + zero), info.min, info.max).astype(self.input["dtype"])
        self.interpreter.set_tensor(self.input["index"], data)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        out_scale, out_zero = self.output["quantization"]
        if self.output["dtype"] != np.float32:
            out = (out.astype(np.float32) - out_zero) * out_scale
        return out.astype(np.float32)


class KerasPredictor(Predictor):
    runtime = "keras"

    def __init__(self, path: Path, batch_size: int = 256):
        super().__init__(path)
        from lightfer_utils.evaluate import keras_predictor

        self.model = load_keras_model(path)
        self._call = keras_predictor(self.model, batch_size)

    def _predict(self, faces: np.ndarray) -> np.ndarray:
        return self._call(faces)


LOADERS = {  # type: Dict[str, Callable[[Path], Predictor]]
    ".onnx": OnnxPredictor,
    ".tflite": TFLitePredictor,
    **{suffix: KerasPredictor for suffix in KERAS_SUFFIXES},
}


def load_predictor(path: Union[str, Path]) -> Predictor:
    """A predictor for a .keras/.h5, .onnx or .tflite model file, chosen by its suffix."""
    model = Path(path)
    if not model.is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    suffix = model.suffix.lower()
    if suffix in (".engine", ".plan"):
        from lightfer_utils.tensorrt_runtime import TensorRTPredictor, tensorrt_unavailable

        reason = tensorrt_unavailable()
        if reason:
            raise ModelLoadError(f"{model}: a TensorRT engine cannot run here: {reason}")
        return TensorRTPredictor(model)  # type: ignore[return-value]
    if suffix not in LOADERS:
        raise ModelLoadError(f"{model}: unknown model format {suffix!r}; expected one of {', '.join(sorted(LOADERS))}")
    if model.stat().st_size == 0:
        raise ModelLoadError(f"{model} is empty (0 bytes)")
    return LOADERS[suffix](model)
