"""The `lightfer` command: one module per command group, each owning its parser, its handlers
and whether a command needs the `train` extra (TensorFlow). Handlers parse, call and print;
the work is in the library."""

from __future__ import annotations

import argparse
import os
import sys

from lightfer_utils import __version__
from lightfer_utils.cli import bench, data, maintain, notebooks, predict, train
from lightfer_utils.cli.common import HelpFormatter, examples

USER_COMMANDS = ("predict", "models", "evaluate", "run", "tables", "train", "data", "bench", "maintain")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightfer", description="Light-FER reproduction package: tag emotions in photos and videos, train, "
        "compress and benchmark the models, and reproduce the paper's tables", formatter_class=HelpFormatter,
        epilog=examples("lightfer predict photo.jpg", "lightfer run --profile reproduce --data /path/to/fer2013",
                        "lightfer COMMAND --help   # each command's options and examples"))
    parser.add_argument("--version", action="version", version=f"lightfer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(USER_COMMANDS) + "}")
    for group in (predict, notebooks, train, data, bench, maintain):
        group.add_commands(commands)
    return parser


def import_tensorflow_quietly() -> None:
    """TensorFlow writes its start-up lines (oneDNN on, no CUDA driver, cuInit failed) to file
    descriptor 2 before its log level applies; import it (and start its CUDA platform) with them
    hidden."""
    if "tensorflow" in sys.modules:
        return
    from lightfer_utils.runtime.quiet import native_stderr_hidden

    with native_stderr_hidden():
        import tensorflow as tf

        tf.config.list_physical_devices()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    maintain.note_old_name(args)
    try:
        if args.tensorflow:
            import_tensorflow_quietly()
        return args.handler(args)
    except ImportError as err:  # a runtime-only install (pip install .) running a training command
        if os.environ.get("LIGHTFER_DEBUG") == "1" or err.name is None or err.name.startswith("lightfer"):
            raise
        print(f"lightfer: error: `lightfer {args.command}` needs {err.name}, which the runtime install leaves out: "
              "pip install 'lightfer[train]' (from the repository)", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError, KeyboardInterrupt):
        if os.environ.get("LIGHTFER_DEBUG") == "1":  # the full traceback, for reporting a bug
            raise
        return _report(sys.exc_info()[1])


def _report(err: BaseException) -> int:
    """One line for an error the user can act on, and the exit status: 2 for bad data, parameters,
    paths and model files (the user's to fix), 1 when a step failed (a run's notebook, a missing
    runtime), 130 for Ctrl-C."""
    if isinstance(err, KeyboardInterrupt):
        print("lightfer: interrupted", file=sys.stderr)
        return 130
    from lightfer_utils.runtime.safe_text import terminal_text

    print(f"lightfer: error: {terminal_text(str(err))}", file=sys.stderr)
    return 1 if isinstance(err, RuntimeError) else 2
