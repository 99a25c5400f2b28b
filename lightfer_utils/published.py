"""The published numbers our runs are compared with, transcribed from the papers in
../shared/papers (each value with its table and row; tests/test_published.py checks every value
against the paper text). Nothing here is a result of this package."""

from __future__ import annotations

import pandas as pd

from lightfer_utils import CLASS_NAMES

LIGHT_FER = "Pascual et al. 2022 (Light-FER), Sensors 22(23) 9524"
ZHOU = "Zhou et al. 2020, lightweight CNN"

# Table 1: normalised confusion matrix of Light-FER (rows: true class, columns: predicted)
TABLE_1 = [
    [0.996, 0.000, 0.001, 0.000, 0.002, 0.000, 0.000],
    [0.002, 0.997, 0.000, 0.000, 0.000, 0.000, 0.000],
    [0.003, 0.000, 0.839, 0.000, 0.128, 0.027, 0.003],
    [0.001, 0.000, 0.001, 0.992, 0.000, 0.005, 0.002],
    [0.160, 0.001, 0.029, 0.003, 0.414, 0.001, 0.391],
    [0.004, 0.000, 0.035, 0.003, 0.000, 0.957, 0.000],
    [0.156, 0.000, 0.050, 0.008, 0.271, 0.004, 0.511],
]

# Table 2: train / test accuracy (%); None where the paper gives "-"
TABLE_2 = [
    ("VGG-Net [14]", 98.98, 59.32), ("ResNet-50 [14]", 98.87, 57.48), ("Simple CNN [14]", 99.70, 58.90),
    ("HOG + CNN [15]", None, 61.86), ("Improve Inception [16]", None, 66.41), ("Network from [17]", None, 66.40),
    ("CNN + Softmax [18]", None, 65.03), ("ShallowNer [19]", None, 63.49), ("Light-FER", 82.35, 69.87),
]

# Table 3: hardware performance on the authors' PC (i5-10300H): CPU %, MEM %, FPS (end to end)
TABLE_3 = [("VGG-Net [14]", 22.3, 1.6, 11), ("ResNet-50 [14]", 52.1, 1.3, 15), ("Simple CNN [14]", 11.5, 6.1, 19),
           ("Light-FER", 18.4, 1.5, 27)]

# Table 4: Jetson Nano, framework x precision: FPS, power (mW), CPU / GPU / total memory (GB)
TABLE_4 = [
    ("Keras", "FP32", 2.5, 3215, 2.1, 1.3, 3.4), ("TFLite", "FP32", 4.85, 3310, 0.844, 0.216, 1.06),
    ("TFLite", "FP16", 4.87, 3300, 0.863, 0.216, 1.08), ("ONNX", "FP32", 5.21, 3480, 2.6, 1.3, 3.9),
    ("ONNX", "FP16", 4.73, 3470, 2.9, 1, 3.9), ("TensorRT", "FP32", 5.43, 3390, 1.9, 0.467, 2.37),
    ("TensorRT", "FP16", 5.51, 3360, 1.9, 0.467, 2.37),
]

# Zhou et al. 2020: the 58k-parameter residual depthwise-separable CNN (their Table 3 and text)
ZHOU_MODEL = {"parameters": 58423, "trainable_parameters": 56951, "test_accuracy_percent": 67}


def table_1() -> pd.DataFrame:
    names = pd.Index(CLASS_NAMES, name="true")
    return pd.DataFrame(TABLE_1, index=names, columns=pd.Index(CLASS_NAMES, name="predicted"))


def table_2() -> pd.DataFrame:
    return pd.DataFrame(TABLE_2, columns=["model", "train_percent", "test_percent"]).set_index("model")


def table_3() -> pd.DataFrame:
    return pd.DataFrame(TABLE_3, columns=["model", "cpu_percent", "mem_percent", "fps"]).set_index("model")


def table_4() -> pd.DataFrame:
    columns = ["framework", "precision", "fps", "power_mw", "cpu_gb", "gpu_gb", "total_gb"]
    return pd.DataFrame(TABLE_4, columns=columns).set_index(["framework", "precision"])
