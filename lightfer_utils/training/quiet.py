"""Hiding what TensorFlow's C++ side writes straight to file descriptor 2 (start-up lines, the
TFLite converter's settings), where Python's logging levels do not reach, so that a command's own
one-line messages stand alone. LIGHTFER_DEBUG=1 or TF_CPP_MIN_LOG_LEVEL below 2 shows them."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def native_output_wanted() -> bool:
    return os.environ.get("LIGHTFER_DEBUG") == "1" or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") < "2"


@contextmanager
def native_stderr_hidden() -> Iterator[None]:
    """File descriptor 2 points at /dev/null inside the block; Python exceptions still carry their
    messages, so nothing a refusal needs is lost."""
    if native_output_wanted():
        yield
        return
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)
