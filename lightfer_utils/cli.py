"""The `lightfer` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_run(args: argparse.Namespace) -> int:
    from lightfer_utils.runner import execute, plan_run

    plan = plan_run(args.profile, args.data, args.out, args.param or [])
    print(f"run directory: {plan.run_dir}")
    manifest = execute(plan, kernel_name=args.kernel)
    print(f"{manifest['status']}: {plan.run_dir / 'manifest.json'}")
    return 0


def _cmd_data_to_csv(args: argparse.Namespace) -> int:
    from lightfer_utils.data import format_problems, load_fer2013, write_csv

    data = load_fer2013(args.source, strict=not args.lenient, use_cache=False)
    if data.problems:
        print(f"dropped {len(data.problems)} invalid record(s):\n{format_problems(data.problems)}", file=sys.stderr)
    target = write_csv(data, args.target, overwrite=args.force)
    print(f"wrote {len(data)} records to {target} (dataset sha256 {data.sha256})")
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from lightfer_utils.data import format_problems, load_fer2013

    data = load_fer2013(args.source, strict=False, use_cache=False)
    print(data.counts().to_string())
    print(f"\n{len(data)} valid records of {data.source_rows}; dataset sha256 {data.sha256}")
    if data.problems:
        print(f"{len(data.problems)} invalid record(s):\n{format_problems(data.problems, limit=args.limit)}")
        return 1
    return 0


def _cmd_data_timing(args: argparse.Namespace) -> int:
    import tempfile
    import time

    from lightfer_utils.data import load_fer2013

    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        data = load_fer2013(args.source, cache_dir=cache, progress=False)
        cold = time.perf_counter() - started
        cached = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            load_fer2013(args.source, cache_dir=cache, progress=False)
            cached.append(time.perf_counter() - started)
    print(f"{data.origin}: {len(data)} records, sha256 {data.sha256}")
    print(f"cold load (decode + validate + write cache): {cold:.2f} s")
    print(f"cached load: best {min(cached):.3f} s, median {sorted(cached)[len(cached) // 2]:.3f} s of {args.repeat}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightfer", description="Light-FER reproduction package")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the numbered notebooks with papermill")
    run.add_argument("--profile", choices=("smoke", "cpu", "paper"), required=True)
    run.add_argument("--data", help="FER2013 CSV or image folder (default: $LIGHTFER_DATA, then data/fer2013)")
    run.add_argument("--out", help="run directory (default: papermill_runs/<profile>-<time>); must not exist")
    run.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="override a notebook parameter")
    run.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebooks' own)")
    run.set_defaults(handler=_cmd_run)

    data = commands.add_parser("data", help="FER2013 data tools").add_subparsers(dest="data_command", required=True)
    to_csv = data.add_parser("to-csv", help="write a FER2013 folder tree (or CSV) as a contest-format CSV")
    to_csv.add_argument("source", type=Path)
    to_csv.add_argument("target", type=Path, help="output .csv or .csv.gz")
    to_csv.add_argument("--lenient", action="store_true", help="drop invalid records instead of failing")
    to_csv.add_argument("--force", action="store_true", help="replace an existing target file")
    to_csv.set_defaults(handler=_cmd_data_to_csv)
    check = data.add_parser("check", help="validate every record and print class counts per split")
    check.add_argument("source", type=Path, nargs="?")
    check.add_argument("--limit", type=int, default=50, help="problems to list")
    check.set_defaults(handler=_cmd_data_check)
    timing = data.add_parser("timing", help="measure a cold and a cached load of the dataset")
    timing.add_argument("source", type=Path, nargs="?")
    timing.add_argument("--repeat", type=int, default=5)
    timing.set_defaults(handler=_cmd_data_timing)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        # Data, parameter and path errors are the user's to fix: one clear line, no traceback.
        print(f"lightfer: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
