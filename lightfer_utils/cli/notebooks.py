"""`lightfer run` and `lightfer tables`: the numbered notebooks with papermill."""

from __future__ import annotations

import argparse

from lightfer_utils.cli.common import command, data_option


def _run(args: argparse.Namespace) -> int:
    from lightfer_utils.runner import execute, plan_run

    only = [part.strip() for part in (args.only or "").split(",") if part.strip()]
    plan = plan_run(args.profile, args.data, args.out, args.param or [], only=only)
    print(f"run directory: {plan.run_dir}")
    manifest = execute(plan, kernel_name=args.kernel)
    print(f"{manifest['status']}: {plan.run_dir / 'manifest.json'}")
    return 0


def _tables(args: argparse.Namespace) -> int:
    from lightfer_utils.runner import regenerate_tables

    target = regenerate_tables(args.run_dir, force=args.force, kernel_name=args.kernel)
    print(f"tables, figures and REPRODUCTION.md regenerated in {target.parent} ({target.name})")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    run = command(commands, "run", "run the numbered notebooks 01-07 with papermill into a new run directory",
                  ("lightfer run --profile smoke --data /path/to/fer2013",
                   "lightfer run --profile reproduce --data /path/to/fer2013 --out papermill_runs/mine",
                   "lightfer run --profile smoke --data /path/to/fer2013 -p iterations=50"), _run)
    run.add_argument("--profile", choices=("smoke", "reproduce", "cpu", "paper"), required=True,
                     help="smoke: minutes, seeded; reproduce: the paper's tables from the shipped models; cpu: train "
                     "from scratch; paper: the paper's Xception")
    data_option(run)
    run.add_argument("--out", help="run directory (default: papermill_runs/<profile>-<time>); must not exist")
    run.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="override a notebook parameter")
    run.add_argument("--only", help="comma-separated notebooks to run (name or number prefix, e.g. 04,05,06,07)")
    run.add_argument("--kernel", help="Jupyter kernel name (default: the notebooks' own)")

    tables = command(commands, "tables", "rebuild the paper's tables, figures and REPRODUCTION.md of a run (07 only)",
                     ("lightfer tables papermill_runs/smoke --force",), _tables)
    tables.add_argument("run_dir", help="a run directory written by `lightfer run`")
    tables.add_argument("--force", action="store_true", help="replace the run's earlier 07 output")
    tables.add_argument("--kernel", help="Jupyter kernel name (default: the notebook's own)")
