"""The `lightfer` Jupyter kernel: IPython with TensorFlow imported quietly before the first cell,
so that executed notebooks carry no start-up lines of the native libraries (oneDNN, CUDA's
cuInit, absl's log preamble), which TensorFlow writes to file descriptor 2 before its log level
applies. What the native libraries write there while cells run (tf.data's C++ log lines, for one)
is not forwarded into the notebook either: it goes to the kernel's own stderr, which is
/dev/null unless LIGHTFER_DEBUG=1 asks for it. Python's warnings and tracebacks still reach the
notebook.

    python -m lightfer_utils.kernel install    # the kernelspec, into this environment (make setup)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

KERNEL_NAME = "lightfer"
DISPLAY_NAME = "Python (lightfer)"


def install(prefix: str = sys.prefix) -> Path:
    """Write the kernelspec into `prefix` (this environment, not the user's home) and return its folder."""
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as folder:
        spec = {"argv": [sys.executable, "-m", "lightfer_utils.kernel", "-f", "{connection_file}"],
                "display_name": DISPLAY_NAME, "language": "python", "metadata": {"debugger": True}}
        (Path(folder) / "kernel.json").write_text(json.dumps(spec, indent=1))
        return Path(KernelSpecManager().install_kernel_spec(folder, KERNEL_NAME, prefix=prefix))


def installed() -> bool:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        return True
    except NoSuchKernel:
        return False


def main() -> None:
    if sys.argv[1:] == ["install"]:
        print(f"installed the kernel {KERNEL_NAME!r} in {install()}")
        return
    from lightfer_utils.runtime.quiet import native_output_wanted, native_stderr_hidden

    with native_stderr_hidden():
        import tensorflow as tf

        tf.config.list_physical_devices()
    from ipykernel import kernelapp

    sys.argv.append("--IPKernelApp.capture_fd_output=False")
    if not native_output_wanted():
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
