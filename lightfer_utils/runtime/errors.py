"""Errors shared by the runtime and training sides (no imports: Python 3.6, no TensorFlow)."""


class ModelLoadError(ValueError):
    """A model file that exists but cannot be loaded, or is refused."""
