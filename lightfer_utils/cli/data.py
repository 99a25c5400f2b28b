"""`lightfer data`: check, convert and time a FER2013 copy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lightfer_utils.cli.common import HelpFormatter, command, examples


def _to_csv(args: argparse.Namespace) -> int:
    from lightfer_utils.data import format_problems, load_fer2013, write_csv

    data = load_fer2013(args.source, strict=not args.lenient, use_cache=False)
    if data.problems:
        print(f"dropped {len(data.problems)} invalid record(s):\n{format_problems(data.problems)}", file=sys.stderr)
    target = write_csv(data, args.target, overwrite=args.force)
    print(f"wrote {len(data)} records to {target} (dataset sha256 {data.sha256})")
    return 0


def _check(args: argparse.Namespace) -> int:
    from lightfer_utils.data import format_problems, load_fer2013

    data = load_fer2013(args.source, strict=False, use_cache=False)
    print(data.counts().to_string())
    print(f"\n{len(data)} valid records of {data.source_rows}; dataset sha256 {data.sha256}")
    if data.problems:
        print(f"{len(data.problems)} invalid record(s):\n{format_problems(data.problems, limit=args.limit)}")
        return 1
    return 0


def _timing(args: argparse.Namespace) -> int:
    from lightfer_utils.data import time_loading

    timing = time_loading(args.source, args.repeat)
    cached = sorted(timing.cached_seconds)
    print(f"{timing.data.origin}: {len(timing.data)} records, sha256 {timing.data.sha256}")
    print(f"cold load (decode + validate + write cache): {timing.cold_seconds:.2f} s")
    print(f"cached load: best {cached[0]:.3f} s, median {cached[len(cached) // 2]:.3f} s of {args.repeat}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("data", help="FER2013 data tools: check, convert, time a load",
                                description="FER2013 data tools", formatter_class=HelpFormatter,
                                epilog=examples("lightfer data check /path/to/fer2013"))
    tools = group.add_subparsers(dest="data_command", required=True, metavar="{check,to-csv,timing}")
    to_csv = command(tools, "to-csv", "write a FER2013 folder tree (or CSV) as a contest-format CSV",
                     ("lightfer data to-csv /path/to/fer2013 fer2013.csv",), _to_csv)
    to_csv.add_argument("source", type=Path, help="a FER2013 CSV or image folder")
    to_csv.add_argument("target", type=Path, help="output .csv or .csv.gz")
    to_csv.add_argument("--lenient", action="store_true", help="drop invalid records instead of failing")
    to_csv.add_argument("--force", action="store_true", help="replace an existing target file")
    check = command(tools, "check", "validate every record and print class counts per split (exit 1 if any is invalid)",
                    ("lightfer data check /path/to/fer2013", "lightfer data check   # $LIGHTFER_DATA, then data/fer2013"),
                    _check)
    check.add_argument("source", type=Path, nargs="?", help="a FER2013 CSV or image folder (default: $LIGHTFER_DATA, "
                       "then data/fer2013)")
    check.add_argument("--limit", type=int, default=50, help="invalid records to list")
    timing = command(tools, "timing", "measure a cold and a cached load of the dataset",
                     ("lightfer data timing /path/to/fer2013 --repeat 3",), _timing)
    timing.add_argument("source", type=Path, nargs="?", help="a FER2013 CSV or image folder (default: $LIGHTFER_DATA, "
                        "then data/fer2013)")
    timing.add_argument("--repeat", type=int, default=5, help="cached loads timed")
