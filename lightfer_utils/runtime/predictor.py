"""One interface to every model format: ``load_predictor(path)(faces) -> probabilities``.

Faces are raw 48x48 gray crops, [N, 48, 48, 1] (or [N, 48, 48]), pixel values 0..255; every
shipped model normalises inside its graph and returns the 7 FER2013 class probabilities.
ONNX Runtime and TFLite predictors never import TensorFlow, so an edge install needs only numpy
and onnxruntime or ai-edge-litert. Models are loaded without executing code (no pickles; Keras
files only through safe_keras, which checks the architecture before deserialising it). Every
model's input and output are checked against the contract at load. No syntax newer than
Python 3.6: the Jetson benchmark imports this module.
"""

import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from lightfer_utils import CLASS_NAMES, IMAGE_SIZE
from lightfer_utils.runtime.errors import ModelLoadError
from lightfer_utils.runtime.quiet import native_stderr_hidden
from lightfer_utils.runtime.safe_keras import check_onnx_external_data, load_keras_model

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def model_input(faces: np.ndarray) -> np.ndarray:
    """Gray faces ([N, 48, 48] or [N, 48, 48, 1], 0-255) as the models take them: float32 [N, 48, 48, 1]."""
    return np.asarray(faces, dtype=np.float32).reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1)


# Faces per runtime call at most: TFLite and ONNX Runtime allocate activations for the whole batch,
# and a split of 3,589 faces through the paper's 20.8 M-parameter Xception in one call took 24 GB.
CHUNK = 256


class Predictor:
    runtime = "abstract"
    max_batch = 0  # 0: any batch size (fed CHUNK at a time); 1: a model with a fixed batch of one, run face by face

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        faces = np.asarray(faces, dtype=np.float32)
        if faces.ndim == 3:
            faces = faces[..., None]
        if faces.shape[1:] != (48, 48, 1):
            raise ValueError(f"expected faces of shape [N, 48, 48, 1], got {list(faces.shape)}")
        step = self.max_batch or CHUNK
        if len(faces) > step:
            return np.concatenate([self._predict(faces[i:i + step]) for i in range(0, len(faces), step)])
        return self._predict(faces)

    def _predict(self, faces: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def declared_shapes(self) -> Tuple[List, List]:
        """The model's declared input and output shapes (None or -1 for a free dimension)."""
        raise NotImplementedError

    def for_worker(self, workers: int) -> "Predictor":
        """A predictor for one of `workers` threads running at once (this one, where the runtime
        manages its own threads and is thread-safe)."""
        return self

    def _own_session(self, workers: int) -> "Predictor":
        """A new session with this model's share of the cores: ONNX Runtime's and TFLite's thread
        pools would otherwise each take every core, and ONNX Runtime's spin, starving the other
        workers (`lightfer bench pipeline --workers 2` measures it: docs/measurements.md)."""
        copy = type(self)(self.path, threads=max(1, (os.cpu_count() or 1) // max(1, workers)))
        copy.max_batch = self.max_batch
        return copy

    def check_contract(self) -> None:
        """Refuse, naming what was found, a model that does not take [N, 48, 48, 1] raw faces and
        return 7 class probabilities; a model with a fixed batch of 1 is run face by face."""
        inputs, outputs = self.declared_shapes()
        free = (None, -1)
        if len(inputs) != 4 or [d if d not in free else None for d in inputs[1:]] != [48, 48, 1]:
            raise ModelLoadError(f"{self.path}: takes input {_shape(inputs)}; lightfer models take [N, 48, 48, 1] "
                                 "raw gray faces")
        if inputs[0] not in free and inputs[0] != 1:
            raise ModelLoadError(f"{self.path}: takes a fixed batch of {inputs[0]}; expected a free batch size or 1")
        self.max_batch = 1 if inputs[0] == 1 else 0
        if not outputs or outputs[-1] != len(CLASS_NAMES):
            raise ModelLoadError(f"{self.path}: returns {_shape(outputs)}; lightfer models return [N, 7] "
                                 f"probabilities of {', '.join(CLASS_NAMES)}")
        probe = _within(PROBE_SECONDS, lambda: self(np.full((2, 48, 48, 1), 128, np.float32)),
                        f"{self.path}: a test call on 2 faces took over {PROBE_SECONDS:g} s (a looping or enormous graph?); "
                        "LIGHTFER_PROBE_SECONDS raises the limit")
        if probe.shape != (2, len(CLASS_NAMES)) or not np.all(np.isfinite(probe)) or \
                not np.allclose(probe.sum(axis=1), 1.0, atol=0.05) or probe.min() < -1e-3:
            raise ModelLoadError(f"{self.path}: its outputs are not 7 class probabilities (a probe batch gave shape "
                                 f"{list(probe.shape)}, row sums {np.round(probe.sum(axis=-1), 3).tolist()})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path.name!r}, runtime={self.runtime!r})"


def _shape(dims: List) -> str:
    return "[" + ", ".join("N" if d in (None, -1) or isinstance(d, str) else str(d) for d in dims) + "]"


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
        inputs, outputs = len(self.session.get_inputs()), len(self.session.get_outputs())
        if inputs != 1 or outputs != 1:
            raise ModelLoadError(f"{path}: has {inputs} inputs and {outputs} outputs; lightfer models have one of each")
        self.input_name = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()

    def declared_shapes(self) -> Tuple[List, List]:
        model_input, model_output = self.session.get_inputs()[0], self.session.get_outputs()[0]
        if model_input.type != "tensor(float)":
            raise ModelLoadError(f"{self.path}: takes {model_input.type}; lightfer models take tensor(float) faces")
        free = lambda dims: [d if isinstance(d, int) else None for d in dims]  # noqa: E731
        return free(model_input.shape), free(model_output.shape)

    def _predict(self, faces: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: faces})[0].astype(np.float32)

    def for_worker(self, workers: int) -> Predictor:
        return self._own_session(workers)


_litert_note_hidden = False


class TFLitePredictor(Predictor):
    runtime = "tflite"

    def __init__(self, path: Path, threads: Optional[int] = None):
        super().__init__(path)
        from ai_edge_litert.interpreter import Interpreter

        global _litert_note_hidden
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            if not _litert_note_hidden:  # the first allocation prints "Created ... XNNPACK delegate", once per process
                with native_stderr_hidden():
                    self.interpreter.allocate_tensors()
                _litert_note_hidden = True
        except Exception as err:
            raise ModelLoadError(f"cannot load TFLite model {path}: {err}") from None
        inputs, outputs = len(self.interpreter.get_input_details()), len(self.interpreter.get_output_details())
        if inputs != 1 or outputs != 1:
            raise ModelLoadError(f"{path}: has {inputs} inputs and {outputs} outputs; lightfer models have one of each")
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = 0

    def declared_shapes(self) -> Tuple[List, List]:
        if self.input["dtype"] not in (np.float32, np.int8, np.uint8):
            raise ModelLoadError(f"{self.path}: takes {np.dtype(self.input['dtype']).name}; expected float32 or "
                                 "integer-quantised faces")
        signature = lambda detail: [int(d) for d in detail.get("shape_signature", detail["shape"])]  # noqa: E731
        return signature(self.input), signature(self.output)

    def for_worker(self, workers: int) -> Predictor:
        return self._own_session(workers)  # an interpreter is not thread-safe

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


def keras_predictor(model, batch_size: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """Batched direct calls of a Keras model (``model.predict`` has a large per-call overhead)."""
    import tensorflow as tf

    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def predict(faces: np.ndarray) -> np.ndarray:
        faces = model_input(faces)
        parts = [call(tf.constant(faces[i:i + batch_size])).numpy() for i in range(0, len(faces), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, len(CLASS_NAMES)), np.float32)

    return predict


class KerasPredictor(Predictor):
    runtime = "keras"

    def __init__(self, path: Path, batch_size: int = 256):
        super().__init__(path)
        self.model = load_keras_model(path)
        self._call = keras_predictor(self.model, batch_size)

    def declared_shapes(self) -> Tuple[List, List]:
        if len(self.model.inputs) != 1 or len(self.model.outputs) != 1:
            raise ModelLoadError(f"{self.path}: has {len(self.model.inputs)} inputs and {len(self.model.outputs)} "
                                 "outputs; lightfer models have one of each")
        return list(self.model.inputs[0].shape), list(self.model.outputs[0].shape)

    def _predict(self, faces: np.ndarray) -> np.ndarray:
        return self._call(faces)


# Limits for model files, which are untrusted input (environment variables raise them).
MAX_MODEL_BYTES = int(float(os.environ.get("LIGHTFER_MAX_MODEL_MB", "1024")) * 2**20)
PROBE_SECONDS = float(os.environ.get("LIGHTFER_PROBE_SECONDS", "60"))


def _within(seconds: float, call: Callable[[], np.ndarray], message: str) -> np.ndarray:
    """call() on a daemon thread, refused with `message` if it has not returned after `seconds`
    (the thread cannot be stopped; the command ends, and the process with it)."""
    import threading

    result = {}  # type: Dict[str, object]

    def run() -> None:
        try:
            result["value"] = call()
        except BaseException as err:  # handed to the caller's thread
            result["error"] = err

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise ModelLoadError(message)
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]


LOADERS = {  # type: Dict[str, Callable[[Path], Predictor]]
    ".onnx": OnnxPredictor,
    ".tflite": TFLitePredictor,
    **{suffix: KerasPredictor for suffix in KERAS_SUFFIXES},
}


def load_predictor(path: Union[str, Path]) -> Predictor:
    """A predictor for a .keras/.h5, .onnx or .tflite model file, chosen by its suffix, whose
    input and output were checked against the package's model contract."""
    model = Path(path)
    if not model.is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    suffix = model.suffix.lower()
    if suffix in (".engine", ".plan"):
        from lightfer_utils.runtime.tensorrt_runtime import TensorRTPredictor, tensorrt_unavailable

        reason = tensorrt_unavailable()
        if reason:
            raise ModelLoadError(f"{model}: a TensorRT engine cannot run here: {reason}")
        return TensorRTPredictor(model)  # type: ignore[return-value]
    if suffix not in LOADERS:
        raise ModelLoadError(f"{model}: unknown model format {suffix!r}; expected one of {', '.join(sorted(LOADERS))}")
    if model.stat().st_size == 0:
        raise ModelLoadError(f"{model} is empty (0 bytes)")
    if model.stat().st_size > MAX_MODEL_BYTES:
        raise ModelLoadError(f"{model} is {model.stat().st_size / 2**20:,.0f} MiB, over the limit of "
                             f"{MAX_MODEL_BYTES / 2**20:,.0f} MiB (LIGHTFER_MAX_MODEL_MB raises it)")
    predictor = LOADERS[suffix](model)
    predictor.check_contract()
    return predictor
