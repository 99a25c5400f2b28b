"""Hiding what the native libraries write straight to file descriptor 2, where Python's logging
levels do not reach (TensorFlow's start-up lines, the TFLite converter's settings, LiteRT's
"Created TensorFlow Lite XNNPACK delegate"), so that a command's own one-line messages stand
alone. LIGHTFER_DEBUG=1 or TF_CPP_MIN_LOG_LEVEL below 2 shows them. Python 3.6 syntax: the
runtime side imports it."""

import os
import sys
from contextlib import contextmanager
from typing import Iterator


def native_output_wanted() -> bool:
    return os.environ.get("LIGHTFER_DEBUG") == "1" or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") < "2"


@contextmanager
def native_stderr_hidden() -> Iterator[None]:
    """File descriptor 2 points at /dev/null inside the block, for every thread: use it only
    before worker threads start. Python exceptions still carry their messages."""
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
