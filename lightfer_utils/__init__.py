"""lightfer_utils: shared logic of the Light-FER reproduction package.

The environment variables below must be set before TensorFlow is first imported:
tensorflow-model-optimization only prunes Keras 2 (tf_keras) models, and TensorFlow's
C++ log lines would otherwise make notebook outputs non-deterministic.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 48

# how tables name the paper's model as this package trains and compresses it (lightfer maintain ship-paper)
PAPER_MODEL_LABEL = "Light-FER (the paper's model, ours)"
