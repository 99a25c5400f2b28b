"""The one way a Keras model file is loaded: its architecture is read and checked *before*
anything is deserialised, so a model file never runs code.

Why a check of our own: tf_keras ignores ``safe_mode`` for HDF5, so a Lambda layer's stored
bytecode runs while an .h5 loads; and in .keras files safe mode refuses lambda bytecode but
imports and calls a Lambda whose ``function_type`` is "function" naming any module function
(e.g. ``pydoc.pipepager`` with a shell command). Here the architecture config (the zip's
config.json, the HDF5 ``model_config`` attribute) is read as plain JSON and walked, nested
models included; the file is refused, naming the layer, if it holds

- a Lambda (or any object carrying a function): stored code;
- a layer class outside ALLOWED_LAYERS (Keras's built-in layers our models and the ``fer``
  anchor use, and common ones like them; this package defines no custom layers);
- a ``module`` or ``registered_name`` outside Keras: deserialising it would import that module.

ONNX files are checked too: external-data paths may not leave the model's folder.
No syntax newer than Python 3.6 and no TensorFlow import until a checked file is loaded: the
runtime side (predictor) imports this module.
"""

import json
import zipfile
from pathlib import Path
from typing import Any, Iterator, List, Tuple, Union

from lightfer_utils.runtime.errors import ModelLoadError

ALLOWED_LAYERS = frozenset({
    # models
    "Functional", "Sequential", "Model", "InputLayer",
    # convolution, dense, pooling
    "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "Dense",
    "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    # normalisation, activation, regularisation
    "BatchNormalization", "LayerNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Dropout", "SpatialDropout2D", "GaussianNoise",
    # shape and merge
    "Flatten", "Reshape", "ZeroPadding2D", "Cropping2D", "UpSampling2D", "Permute",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    # preprocessing inside the graph
    "Rescaling", "Normalization", "Resizing",
})
KERAS_MODULE_PREFIXES = ("keras", "tf_keras")
HDF5_SUFFIXES = (".h5", ".hdf5")
# Keys under which Keras stores a callable: a file holding them carries code.
CODE_KEYS = ("function", "function_type", "output_shape_type", "module_function")


class UnsafeModelError(ModelLoadError):
    """A model file whose architecture would run code or import modules while loading."""


# Sizes a layer may ask for, checked in the config before anything is built: a 13 kB file of
# Resizing(12000, 12000) would otherwise allocate gigabytes per face. Far above any model here
# (Xception resizes to 71x71; the widest layer has 2,048 filters).
MAX_LAYER_LIMITS = {"pixels": 4096 * 4096, "units": 1 << 20, "upsampling": 64, "padding": 1024}
# A .keras file is a zip: its members are checked by their declared sizes before one is inflated.
MAX_KERAS_UNCOMPRESSED = 2 << 30
MAX_KERAS_CONFIG = 16 << 20


def _numbers(value: Any) -> List[int]:
    """The integers in a config value (an int, or a list/tuple of ints and pairs)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        return [n for item in value for n in _numbers(item)]
    return []


def _product(values: List[int]) -> int:
    total = 1
    for value in values:
        total *= max(int(value), 1)
    return total


def check_layer_sizes(config: dict, origin: Union[str, Path]) -> None:
    """Refuse a layer whose configured size would allocate beyond MAX_LAYER_LIMITS."""
    for where, layer in _layers(config):
        kind, inner = layer.get("class_name"), layer.get("config") or {}
        if not isinstance(inner, dict):
            continue
        checks = []  # (what, size, limit name)
        if kind == "Resizing":
            checks.append(("output of {}x{} pixels".format(inner.get("height"), inner.get("width")),
                           _product(_numbers([inner.get("height"), inner.get("width")])), "pixels"))
        if kind == "Reshape":
            checks.append(("target shape {}".format(inner.get("target_shape")), _product(_numbers(inner.get("target_shape"))),
                           "pixels"))
        for key in ("units", "filters"):
            if key in inner:
                checks.append(("{} {}".format(inner.get(key), key), _product(_numbers(inner.get(key))), "units"))
        if kind == "UpSampling2D":
            checks.append(("upsampling by {}".format(inner.get("size")), _product(_numbers(inner.get("size"))), "upsampling"))
        if kind == "ZeroPadding2D":
            checks.append(("padding of {}".format(inner.get("padding")), max(_numbers(inner.get("padding")) or [0]),
                           "padding"))
        for what, size, limit in checks:
            if size > MAX_LAYER_LIMITS[limit]:
                raise UnsafeModelError("{}: refusing layer '{}' ({}): its {} is over the limit of {:,}".format(
                    origin, where, kind, what, MAX_LAYER_LIMITS[limit]))


def _is_keras_module(module: Any) -> bool:
    return module is None or (isinstance(module, str) and module.split(".")[0] in KERAS_MODULE_PREFIXES)


def _layers(config: Any, nesting: str = "") -> Iterator[Tuple[str, dict]]:
    """(where, layer config) for every layer, sub-models' layers included."""
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "layers" and isinstance(value, list):
                for layer in value:
                    if isinstance(layer, dict):
                        inner = layer.get("config")
                        where = nesting + str(inner.get("name", "?") if isinstance(inner, dict) else "?")
                        yield where, layer
                        yield from _layers(layer.get("config"), where + "/")
            else:
                yield from _layers(value, nesting)
    elif isinstance(config, list):
        for value in config:
            yield from _layers(value, nesting)


def _objects(config: Any) -> Iterator[dict]:
    """Every serialised object (a dict with a class_name) anywhere in the config."""
    if isinstance(config, dict):
        if "class_name" in config:
            yield config
        for value in config.values():
            yield from _objects(value)
    elif isinstance(config, list):
        for value in config:
            yield from _objects(value)


def check_architecture(config: dict, origin: Union[str, Path]) -> None:
    """Raise UnsafeModelError naming the first layer or object that could run code on load."""
    for where, layer in _layers(config):
        kind = layer.get("class_name")
        if kind == "Lambda" or "Lambda" in str(kind):
            raise UnsafeModelError("{}: refusing layer '{}' ({}): it holds code that would run on load".format(origin, where, kind))
        if kind not in ALLOWED_LAYERS:
            raise UnsafeModelError("{}: refusing layer '{}': class {!r} is not one of the built-in layers this "
                                   "package loads".format(origin, where, kind))
    for obj in _objects(config):
        module, registered = obj.get("module"), obj.get("registered_name")
        if not _is_keras_module(module):
            raise UnsafeModelError("{}: refusing object {!r} from module {!r}: loading it would import code "
                                   "outside Keras".format(origin, obj.get("class_name"), module))
        if registered not in (None, obj.get("class_name")) and not _is_keras_module(str(registered).split(">")[0]):
            raise UnsafeModelError("{}: refusing object {!r} registered as {!r}: not a Keras built-in".format(
                origin, obj.get("class_name"), registered))
        inner = obj.get("config")
        if isinstance(inner, dict) and any(key in inner for key in CODE_KEYS):
            raise UnsafeModelError("{}: refusing {!r} object: it stores a function that would run on load".format(
                origin, obj.get("class_name")))


def architecture_config(path: Union[str, Path]) -> dict:
    """The architecture a .keras or .h5 file declares, read without deserialising anything."""
    source = Path(path)
    suffix = source.suffix.lower()
    try:
        if suffix == ".keras":
            with zipfile.ZipFile(str(source)) as archive:
                members = archive.infolist()
                declared = sum(member.file_size for member in members)
                config_size = next((m.file_size for m in members if m.filename == "config.json"), 0)
                if declared > MAX_KERAS_UNCOMPRESSED or config_size > MAX_KERAS_CONFIG:
                    raise UnsafeModelError("{}: its zip members would inflate to {:,} bytes (config.json {:,}), over the "
                                           "limit of {:,} ({:,})".format(source, declared, config_size,
                                                                         MAX_KERAS_UNCOMPRESSED, MAX_KERAS_CONFIG))
                text = archive.read("config.json")
        elif suffix in HDF5_SUFFIXES:
            import h5py

            with h5py.File(str(source), "r") as handle:
                text = handle.attrs.get("model_config")
            if text is None:
                raise UnsafeModelError("{}: no model_config in this HDF5 file (weights only?): not a model file".format(source))
        else:
            raise ModelLoadError("{}: not a Keras model file (.keras, .h5 or .hdf5)".format(source))
        config = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except ModelLoadError:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise ModelLoadError("cannot read the architecture of {}: {}".format(source, err)) from None
    except RecursionError:
        raise ModelLoadError("cannot read the architecture of {}: its config.json is nested too deeply".format(source)) from None
    if not isinstance(config, dict):
        raise ModelLoadError("{}: its architecture config is not a JSON object".format(source))
    return config


def load_keras_model(path: Union[str, Path]):
    """A Keras model from a .keras or .h5 file, after its architecture passed check_architecture
    and check_layer_sizes."""
    source = Path(path)
    config = architecture_config(source)
    check_architecture(config, source)
    check_layer_sizes(config, source)
    import tf_keras as keras

    try:
        return keras.models.load_model(str(source), compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many types for damaged files
        raise ModelLoadError("cannot load Keras model {}: {}".format(source, err)) from None


def _onnx_tensors(graph) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _onnx_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _onnx_tensors(subgraph)


def _mentions(path: Path, word: bytes) -> bool:
    import mmap

    with open(str(path), "rb") as handle:
        if handle.seek(0, 2) == 0:
            return False
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(word) >= 0


def check_onnx_external_data(path: Union[str, Path]) -> None:
    """Refuse an ONNX model whose external-data files lie outside its own folder."""
    source = Path(path)
    if not _mentions(source, b"location"):  # no external-data entry without its "location" key: nothing to check
        return
    import onnx  # ~1 s to import: only for the files that may point elsewhere

    try:
        model = onnx.load(str(source), load_external_data=False)
    except Exception as err:  # protobuf decode errors have several types
        raise ModelLoadError("cannot load ONNX model {}: {}".format(source, err)) from None
    folder = source.resolve().parent
    outside: List[str] = []
    for tensor in _onnx_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        target = (folder / location).resolve()
        if Path(location).is_absolute() or folder not in target.parents:
            outside.append(location)
    if outside:
        raise UnsafeModelError("{}: refusing external data outside the model's folder: {}".format(source, ", ".join(outside)))
