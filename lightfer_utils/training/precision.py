"""The compute precision of a training session: float32 or mixed_bfloat16 (layers in bfloat16,
weights float32), what this machine can do, and which one a session uses."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import tensorflow as tf
import tf_keras as keras

from lightfer_utils.training.config import PRECISIONS, TrainConfig
from lightfer_utils.training.trainingdir import TrainingDir



@contextlib.contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy set to `name` while models are built and trained inside."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def bfloat16_support() -> str:
    """How this machine's TensorFlow trains a bfloat16 convolution: "native" (a GPU, or a CPU with
    avx512_bf16 or amx_bf16 that ONEDNN_MAX_CPU_ISA does not cap), "emulated" (other CPUs on which
    the op still runs: slower than float32, docs/measurements.md) or "none" (the op fails: seen on an
    AVX-512 host capped to AVX2; an AVX2-only AMD Zen 3 host emulates it)."""
    try:
        with precision_policy("mixed_bfloat16"):
            layer = keras.layers.Conv2D(4, 3)
            with tf.GradientTape() as tape:
                output = tf.reduce_sum(tf.cast(layer(tf.zeros((2, 8, 8, 1))), tf.float32))
            tape.gradient(output, layer.trainable_variables)
    except tf.errors.OpError:
        return "none"
    if tf.config.list_logical_devices("GPU"):
        return "native"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper() not in ("ALL", "DEFAULT")
    return "native" if ("avx512_bf16" in flags or "amx_bf16" in flags) and not capped else "emulated"


def session_precision(config: TrainConfig, record: TrainingDir, requested: str | None = None) -> str:
    """The compute precision of this session. Asked for (`requested`, or a new run's config) and
    impossible here, mixed_bfloat16 is refused; a run that trained in mixed_bfloat16 before and lands
    on a CPU without native bfloat16 continues in float32 instead (the weights are float32 either
    way, so only the arithmetic of the coming epochs changes), and says so."""
    wanted = requested or config.precision
    if wanted not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {wanted!r}")
    if wanted == "float32":
        return wanted
    support = bfloat16_support()
    resumed = record.work.read_state().get("epochs_done", 0) > 0 or record.read_state().get("epochs_done", 0) > 0
    if support == "native":
        return wanted
    if resumed and not requested:
        print(f"note: {record.root} trained in mixed_bfloat16 so far; this CPU has no native bfloat16 "
              f"({'emulated: slower than float32' if support == 'emulated' else 'no kernel'}), so it continues in float32")
        return "float32"
    if support == "none":
        raise ValueError("precision mixed_bfloat16: TensorFlow cannot train bfloat16 convolutions on this machine "
                         "(oneDNN has no such kernel for CPUs without AVX-512); train in float32, or on an AVX-512 "
                         "CPU or a GPU")
    print("note: this CPU emulates bfloat16: mixed_bfloat16 trains slower here than float32 (3x on an AVX-512 host "
          "without avx512_bf16; `lightfer bench training RUN` measures it here)")
    return wanted
