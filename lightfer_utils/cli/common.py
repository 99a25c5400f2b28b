"""What every command group shares: the help layout (real defaults, an example per page), the
data options, and small parsers of option values. No TensorFlow here."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

DATA_HELP = "FER2013 CSV or image folder (default: $LIGHTFER_DATA, then data/fer2013)"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's real default after its help (unless the help names it already), and
    keeps the examples of the epilog as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = "%(default)" in text or "default" in text.lower()
        if shown or default in (None, False, "", [], argparse.SUPPRESS) or action.option_strings == []:
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def command(commands: argparse._SubParsersAction, name: str, summary: str, example_lines: tuple[str, ...],
            handler: Callable[[argparse.Namespace], int], tensorflow: bool = False, listed: bool = True,
            parents: tuple[argparse.ArgumentParser, ...] = ()) -> argparse.ArgumentParser:
    """A sub-command with its summary, examples and handler; `tensorflow`: it needs the train
    extra (TensorFlow is imported quietly before it runs). Unlisted commands are aliases kept for
    a release: they work but are not shown."""
    options: dict[str, Any] = {"help": summary} if listed else {}
    parser = commands.add_parser(name, description=summary, epilog=examples(*example_lines),
                                 formatter_class=HelpFormatter, parents=list(parents), **options)
    parser.set_defaults(handler=handler, tensorflow=tensorflow)
    return parser


def data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help=DATA_HELP)


def labels_parent() -> argparse.ArgumentParser:
    """--data with FER+ relabelling, for the commands that train or score."""
    labels = argparse.ArgumentParser(add_help=False)
    data_option(labels)
    labels.add_argument("--labels", choices=("fer2013", "ferplus", "ferplus-soft"), default="fer2013",
                        help="FER2013's labels, or FER+'s majority (ferplus) or vote shares (ferplus-soft)")
    labels.add_argument("--ferplus", help="fer2013new.csv, for --labels ferplus / ferplus-soft")
    return labels


def load_labelled(args: argparse.Namespace):
    """FER2013, relabelled with FER+ when asked (hard majority or soft vote shares)."""
    from lightfer_utils.data import load_fer2013, relabelled

    return relabelled(load_fer2013(args.data), args.labels, args.ferplus)


def json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{option} is not JSON ({err}): {text}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object, got: {text}")
    return value


def int_list(text: str, option: str, what: str = "whole numbers") -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} takes comma-separated {what}, got {text!r}") from None


def cpu_name() -> str:
    from lightfer_utils.runtime.provenance import host_info

    host = host_info()
    return f"{host.get('cpu')}, {host.get('logical_cores')} cores"
