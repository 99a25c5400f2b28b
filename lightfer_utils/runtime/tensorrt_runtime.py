"""TensorRT engines built from the ONNX model (FP32, FP16, INT8 with entropy calibration) and a
predictor that runs them. Needs an NVIDIA GPU, the `tensorrt` Python package and pycuda; on other
machines `tensorrt_unavailable()` says why and callers skip.

Written for TensorRT 8.0/8.2 (JetPack 4.6, Python 3.6) and 8.5+/10.x on desktops: no syntax newer
than Python 3.6, and the API differences (workspace limit, explicit batch flag, bindings vs tensor
names) are handled where they arise.
"""

import os
from pathlib import Path
from typing import List, Optional

import numpy as np

PRECISIONS = ("fp32", "fp16", "int8")
INPUT_SHAPE = (48, 48, 1)


def tensorrt_unavailable() -> Optional[str]:
    """None when engines can be built and run here, else the reason they cannot."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt Python package is not installed (NVIDIA GPU machines and Jetsons only)"
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA device is visible"
    except ImportError:
        return "pycuda is not installed (needed to move data to the GPU)"
    except Exception as err:  # pycuda raises its own error types when there is no driver
        return "CUDA is not usable: {}".format(err)
    return None


# What JetPack 4.6's TensorRT 8.2 can parse: ONNX opsets up to 13 and these operators (the "Y" rows
# of onnx-tensorrt's docs/operators.md on its release/8.2 branch; Xor and Shrink came in 8.4).
TENSORRT_8_2_MAX_OPSET = 13
TENSORRT_8_2_OPERATORS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GRU HardSigmoid Identity If ImageScaler InstanceNormalization
IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean Min
Mul Neg NonMaxSuppression Not Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomUniform RandomUniformLike
Range ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN Round ScaledTanh Scan Scatter ScatterElements ScatterND
Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan
Tanh ThresholdedRelu Tile TopK Transpose Unsqueeze Upsample Where
""".split())


def tensorrt_8_2_problems(onnx_path: Path) -> List[str]:
    """Why TensorRT 8.2 (the Nano's JetPack 4.6) could not parse this ONNX file: an opset above 13,
    or operators its parser lacks. Empty when it fits. Checked here, without TensorRT."""
    import onnx

    model = onnx.load(str(onnx_path))
    problems = []
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > TENSORRT_8_2_MAX_OPSET:
            problems.append("opset {} (TensorRT 8.2 parses up to {})".format(opset.version, TENSORRT_8_2_MAX_OPSET))
    missing = sorted({node.op_type for node in model.graph.node if node.op_type not in TENSORRT_8_2_OPERATORS})
    if missing:
        problems.append("operators TensorRT 8.2 cannot parse: {}".format(", ".join(missing)))
    return problems


class _Calibrator:
    """Factory for an IInt8EntropyCalibrator2 over Training faces (defined lazily: tensorrt may be absent)."""

    @staticmethod
    def create(faces: np.ndarray, batch_size: int, cache_file: Path):
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
        import pycuda.driver as cuda
        import tensorrt as trt

        class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self):
                trt.IInt8EntropyCalibrator2.__init__(self)
                self.faces = np.ascontiguousarray(faces.reshape((-1,) + INPUT_SHAPE), dtype=np.float32)
                self.batch_size = batch_size
                self.position = 0
                self.device = cuda.mem_alloc(self.faces[:batch_size].nbytes)

            def get_batch_size(self):
                return self.batch_size

            def get_batch(self, names):
                if self.position + self.batch_size > len(self.faces):
                    return None
                batch = self.faces[self.position:self.position + self.batch_size]
                cuda.memcpy_htod(self.device, np.ascontiguousarray(batch))
                self.position += self.batch_size
                return [int(self.device)]

            def read_calibration_cache(self):
                return cache_file.read_bytes() if cache_file.exists() else None

            def write_calibration_cache(self, cache):
                cache_file.write_bytes(bytes(cache))

        return EntropyCalibrator()


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    precision: str,
    calibration_faces: Optional[np.ndarray] = None,
    max_batch: int = 64,
    workspace_mib: int = 256,
) -> Path:
    """Parse the ONNX file, build an engine with a dynamic batch profile 1..max_batch, write it."""
    import tensorrt as trt

    if precision not in PRECISIONS:
        raise ValueError("precision must be one of {}, got {!r}".format(PRECISIONS, precision))
    if Path(engine_path).exists():
        raise FileExistsError("{} exists; engines are never overwritten".format(engine_path))
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # required before TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError("TensorRT cannot parse {}: {}".format(onnx_path, errors))
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    else:
        config.max_workspace_size = workspace_mib << 20
    name = network.get_input(0).name
    profile = builder.create_optimization_profile()
    profile.set_shape(name, (1,) + INPUT_SHAPE, (max_batch,) + INPUT_SHAPE, (max_batch,) + INPUT_SHAPE)
    config.add_optimization_profile(profile)
    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            raise ValueError("this GPU has no fast FP16")
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibration_faces is None or len(calibration_faces) == 0:
            raise ValueError("INT8 engines need calibration faces (from Training)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _Calibrator.create(calibration_faces, 32, Path(str(engine_path) + ".calibration"))
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the {} engine from {}".format(precision, onnx_path))
    Path(engine_path).write_bytes(bytes(serialized))
    return Path(engine_path)


class TensorRTPredictor:
    """Runs a serialized engine: float32 [N, 48, 48, 1] raw faces in, [N, 7] probabilities out."""

    runtime = "tensorrt"

    def __init__(self, engine_path: Path):
        import pycuda.autoinit  # noqa: F401
        import pycuda.driver as cuda
        import tensorrt as trt

        self.path = Path(engine_path)
        self.cuda = cuda
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ValueError("cannot load TensorRT engine {} (built by another TensorRT version or GPU?)".format(engine_path))
        self.context = self.engine.create_execution_context()
        self.stream = cuda.Stream()
        self.uses_tensor_names = hasattr(self.engine, "num_io_tensors")  # TensorRT >= 8.5
        if self.uses_tensor_names:
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            self.input_name = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT][0]
            self.output_name = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT][0]

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        cuda = self.cuda
        faces = np.ascontiguousarray(np.asarray(faces, dtype=np.float32).reshape((-1,) + INPUT_SHAPE))
        output = np.empty((len(faces), 7), dtype=np.float32)
        device_in, device_out = cuda.mem_alloc(faces.nbytes), cuda.mem_alloc(output.nbytes)
        cuda.memcpy_htod_async(device_in, faces, self.stream)
        if self.uses_tensor_names:
            self.context.set_input_shape(self.input_name, faces.shape)
            self.context.set_tensor_address(self.input_name, int(device_in))
            self.context.set_tensor_address(self.output_name, int(device_out))
            self.context.execute_async_v3(self.stream.handle)
        else:  # TensorRT 8.0/8.2 on JetPack 4.6: bindings in engine order, input first
            self.context.set_binding_shape(0, faces.shape)
            self.context.execute_async_v2([int(device_in), int(device_out)], self.stream.handle)
        cuda.memcpy_dtoh_async(output, device_out, self.stream)
        self.stream.synchronize()
        return output


def onnxruntime_gpu_providers() -> List[str]:
    """The GPU execution providers this onnxruntime build offers (CUDA, TensorRT), if any."""
    try:
        import onnxruntime
    except ImportError:
        return []
    wanted = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    return [p for p in wanted if p in onnxruntime.get_available_providers()]


def ort_provider_options(provider: str, cache_dir: Path, precision: str = "fp32") -> tuple:
    """(provider, options) for an ONNX Runtime session; TensorRT EP engines are cached on disk."""
    if provider == "TensorrtExecutionProvider":
        os.makedirs(str(cache_dir), exist_ok=True)
        return (provider, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
                           "trt_fp16_enable": precision == "fp16", "trt_int8_enable": precision == "int8"})
    return (provider, {})

