"""`lightfer maintain`: the maintainers' commands that make, ship and rebuild the models and
publish the tables. Their old top-level names (`lightfer ship`, ...) still work for one release,
unlisted, with a note naming the new one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lightfer_utils.cli.common import HelpFormatter, command, data_option, examples, int_list, labels_parent


def _check_name(args: argparse.Namespace) -> None:
    """The name is an output: checked before any data is read."""
    from lightfer_utils.training.shipping import check_model_name

    check_model_name(args.name)


def _ship(args: argparse.Namespace) -> int:
    from lightfer_utils.cli.common import load_labelled
    from lightfer_utils.training.shipping import ship_model

    _check_name(args)
    card = ship_model(args.run_dir, load_labelled(args), args.name, args.models_dir, overwrite=args.force)
    metrics = card["metrics"]
    print(f"{args.name}: PublicTest {metrics['PublicTest']['accuracy'] * 100:.2f} %, "
          f"PrivateTest {metrics['PrivateTest']['accuracy'] * 100:.2f} % "
          f"(flip TTA {metrics['PrivateTest_flip_tta']['accuracy'] * 100:.2f} %); card: {args.models_dir}/{args.name}.card.md")
    return 0


def _ship_edge(args: argparse.Namespace) -> int:
    from lightfer_utils.data import load_fer2013
    from lightfer_utils.training.shipping import ship_edge_model

    _check_name(args)
    card = ship_edge_model(args.run_dir, load_fer2013(args.data), args.name, args.models_dir,
                           latency_iterations=args.iterations, overwrite=args.force)
    edge = card["formats"][card["edge_format"]]
    print(f"{card['name']}: edge format {card['edge_format']} ({card['files'][card['edge_format']]['path']}), "
          f"{card['architecture']['parameters']['total']:,} parameters, PrivateTest {edge['PrivateTest_accuracy'] * 100:.2f} %, "
          f"batch-1 {edge['latency_b1_p50_ms']:.3f} ms; card {Path(args.models_dir) / (args.name + '.card.md')}")
    return 0


def _ship_int8(args: argparse.Namespace) -> int:
    from lightfer_utils.data import load_fer2013
    from lightfer_utils.training.shipping import ship_int8

    _check_name(args)
    card = ship_int8(args.name, load_fer2013(args.data), args.models_dir, args.calibration_size, overwrite=args.force)
    for fmt, row in card["int8"]["formats"].items():
        print(f"{card['files'][fmt]['path']}: {card['files'][fmt]['bytes'] / 2**20:.3f} MiB, PublicTest "
              f"{row['PublicTest_accuracy'] * 100:.2f} %, PrivateTest {row['PrivateTest_accuracy'] * 100:.2f} %, "
              f"agreement with the float model {row['argmax_agreement_with_float_PrivateTest'] * 100:.2f} %")
    return 0


def _ship_paper(args: argparse.Namespace) -> int:
    from lightfer_utils.data import load_fer2013
    from lightfer_utils.training.paper_model import Compression, ship_paper_model

    _check_name(args)
    compression = Compression(sparsity=args.sparsity, epochs=args.epochs, batch_size=args.batch_size,
                              learning_rate=args.lr, calibration_size=args.calibration_size)
    card = ship_paper_model(args.run_dir, load_fer2013(args.data), args.name, args.models_dir, compression,
                            args.work or None, overwrite=args.force, unfinished=args.unfinished)
    for fmt, row in card["formats"].items():
        print(f"{args.name} {fmt}: PublicTest {row['PublicTest_accuracy'] * 100:.2f} %, "
              f"PrivateTest {row['PrivateTest_accuracy'] * 100:.2f} %")
    print(f"Eq. 1 R over weights {card['pruning']['eq1']['R_weights']}; {card['architecture']['nonzero_parameters']:,} "
          f"non-zero parameters; card: {args.models_dir}/{args.name}.card.md")
    return 0


def _ship_variants(args: argparse.Namespace) -> int:
    from lightfer_utils.data import SPLITS, load_for_run
    from lightfer_utils.runner import notebook_values
    from lightfer_utils.training.train import load_trained
    from lightfer_utils.training.variants import Recipe, ship_variants

    values = notebook_values(args.profile, "03_pruning")
    recipe = Recipe.from_parameters(values)
    out = Path(args.out) if args.out else Path(args.source).parent / "variants"
    dense = load_trained(args.source)
    data = load_for_run(args.data, values["subset_fraction"], values["seed"])
    train, validation, _ = (data.split(split) for split in SPLITS)
    record = ship_variants(dense, train, validation, data.sha256, recipe, out, args.source, overwrite=args.force)
    print(f"{out}: {', '.join(record['variants'])}; `make reproduce` measures them from these files "
          f"(the {args.profile} profile's variants_from)")
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    from lightfer_utils.training.snapshot import write_snapshot
    from lightfer_utils.training.trainingdir import TrainingDir

    info = write_snapshot(args.run_dir)
    record = TrainingDir(args.run_dir)
    print(f"{record.snapshot}: the weights after epoch {info['epoch']} in float16 "
          f"({record.snapshot.stat().st_size / 2**20:.1f} MiB, no optimizer state); described in {record.snapshot_info.name}")
    return 0


def _materialize(args: argparse.Namespace) -> int:
    from lightfer_utils.runtime import shipped_models
    from lightfer_utils.training.derived import derived_formats, materialize

    if not args.names and not args.all:
        raise ValueError("name the shipped models whose derived files to make, or pass --all")
    names = [n for n in shipped_models.names() if derived_formats(shipped_models.card(n))] if args.all else args.names
    for name in names:
        shipped_models.card(name)  # an unknown name is refused before any file is made
    if not names:
        print("no shipped model has derived files")
    for name in names:
        made = materialize(name, force=args.force)
        if not made:
            print(f"{name}: its derived files are here and unchanged")
        for fmt, entry in made.items():
            print(f"{name} {fmt}: {entry['bytes'] / 2**20:.1f} MiB, {entry['how']}; against {entry['checked_against']} on "
                  f"{entry['check_faces']} seeded faces: max |dp| {entry['max_abs_dp']:.1e}, argmax agreement "
                  f"{entry['argmax_agreement'] * 100:.2f} %")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from lightfer_utils.training.runs import config_differences, summarize

    at = sorted(set(int_list(args.at, "--at", "epoch numbers")))
    runs = [Path(run) for run in args.runs]
    print(summarize(runs, at).to_string(na_rep="-"))
    differences = config_differences(runs)
    if len(runs) > 1:
        print("\nsettings that differ:" if len(differences) else "\nthe runs have the same settings")
        if len(differences):
            print(differences.to_string(na_rep="-"))
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    from lightfer_utils import recipes
    from lightfer_utils.training.trainingdir import TrainingDir

    steps = recipes.chain(args.name)
    if args.list:
        for number, step in enumerate(steps, 1):
            print(f"{number}. {step.name}: {step.describe()}")
        return 0
    if args.compare:
        rebuilt = recipes.step_dir(Path(args.out), steps[-1])
        if steps[-1].kind != "train" or not TrainingDir(rebuilt).history.is_file():
            raise FileNotFoundError(f"{rebuilt}: no training history to compare (only trained models have one)")
        _print_curve(args.name, rebuilt)
        return 0
    from lightfer_utils.data import load_fer2013

    data = load_fer2013(args.data)
    where = recipes.rebuild(args.name, data, Path(args.out), last_step_only=args.last_step_only, data_path=args.data)
    print("\n".join(recipes.against_card(args.name, Path(args.out), data, where)))
    if steps[-1].kind == "train":
        _print_curve(args.name, where[args.name])
    return 0


def _print_curve(name: str, rebuilt: Path) -> None:
    from lightfer_utils import recipes
    from lightfer_utils.runtime import shipped_models

    print(f"{name}: the rebuilt training curve ({rebuilt}) against the shipped one")
    for line in recipes.compare_curves(rebuilt, shipped_models.models_dir() / name / "training"):
        print(f"  {line}")


def _publish(args: argparse.Namespace) -> int:
    from lightfer_utils.reproduction import publish

    copied = publish(Path(args.run_dir), Path(args.to), force=args.force)
    print(f"{len(copied)} files and provenance.json from {args.run_dir} in {args.to}")
    return 0


def _models_dir_and_force(parser: argparse.ArgumentParser, what: str = "model files") -> None:
    parser.add_argument("--models-dir", default="models", help="where the model files and cards go")
    parser.add_argument("--force", action="store_true", help=f"replace existing {what}")


def _add(commands: argparse._SubParsersAction, listed: bool) -> None:
    """The maintainer commands, into `commands` (the maintain group, or the top level for the old names):
    first those that ship a model, then the rest."""
    ship = command(commands, "ship", "evaluate a run's best epoch, write model files + card",
                   ("lightfer maintain ship runs/mine --name my_model --data /path/to/fer2013",), _ship,
                   tensorflow=True, listed=listed, parents=(labels_parent(),))
    ship.add_argument("run_dir", help="a finished training directory")
    ship.add_argument("--name", required=True, help="the shipped name (letters, digits, '_' and '-')")
    _models_dir_and_force(ship)

    edge = command(commands, "ship-edge", "ship a run's structured-pruned, quantized model (03 + 04) with a card",
                   ("lightfer maintain ship-edge papermill_runs/reproduce-20261130 --data /path/to/fer2013",),
                   _ship_edge, tensorflow=True, listed=listed)
    edge.add_argument("run_dir", help="a run directory in which 03 chose a structured variant and 04 quantized it")
    edge.add_argument("--name", default="light_fer_net_edge", help="the shipped name")
    data_option(edge)
    edge.add_argument("--iterations", type=int, default=300, help="timed batch-1 calls per format")
    _models_dir_and_force(edge)

    paper = command(commands, "ship-paper", "the paper's Light-FER from a trained Xception run: tfmot pruning during "
                    "fine-tuning, FP16 (the paper's) and INT8 files, each measured, shipped with a card",
                    ("lightfer maintain ship-paper models/xception/training --data /path/to/fer2013",),
                    _ship_paper, tensorflow=True, listed=listed)
    paper.add_argument("run_dir", help="the trained Xception's training directory (or its record, for a --live run)")
    data_option(paper)
    paper.add_argument("--name", default="light_fer_xception", help="the shipped name")
    paper.add_argument("--sparsity", type=float, default=0.5, help="tfmot target sparsity")
    paper.add_argument("--epochs", type=int, default=3, help="pruning fine-tuning epochs")
    paper.add_argument("--batch-size", type=int, default=128, help="faces per fine-tuning step")
    paper.add_argument("--lr", type=float, default=2e-4, help="Adam, cosine decay to 5 %%")
    paper.add_argument("--calibration-size", type=int, default=500, help="Training faces for INT8")
    paper.add_argument("--work", default="", help="where the pruned model is kept and reused (default: compression/ "
                       "beside the run's large files: in its live directory for a --live run)")
    _models_dir_and_force(paper)
    paper.add_argument("--unfinished", action="store_true", help="ship from a run that has not finished training: a "
                       "dry run of the pipeline, into a scratch --models-dir")

    variants = command(commands, "ship-variants", "03's compression variants of a model, fine-tuned once with a profile's "
                       "settings and shipped with a record, so that runs of that profile measure them from their files; "
                       "resumable, one variant at a time",
                       ("lightfer maintain ship-variants models/light_fer_net_deep/training --data /path/to/fer2013",),
                       _ship_variants, tensorflow=True, listed=listed)
    variants.add_argument("source", help="the dense model: a training directory or a .keras file")
    data_option(variants)
    variants.add_argument("--profile", default="reproduce", choices=("reproduce",), help="whose 03 settings to use")
    variants.add_argument("--out", default="", help="where the variants go (default: variants/ beside the source)")
    variants.add_argument("--force", action="store_true", help="start again, replacing the variants made so far")

    _add_records(commands, listed)


def _add_records(commands: argparse._SubParsersAction, listed: bool) -> None:
    """The commands on training records, derived files and published tables."""
    int8 = command(commands, "ship-int8", "add INT8 files (TFLite, ONNX) of a shipped model, calibrated on Training "
                   "faces and measured, to its card",
                   ("lightfer maintain ship-int8 light_fer_net_deep --data /path/to/fer2013",), _ship_int8,
                   tensorflow=True, listed=listed)
    int8.add_argument("name", help="a shipped model (see `lightfer models`), not an edge model")
    data_option(int8)
    int8.add_argument("--calibration-size", type=int, default=500, help="Training faces for calibration (as 04)")
    _models_dir_and_force(int8, "INT8 files")

    snap = command(commands, "snapshot", "write a live run's fallback: its latest weights in float16 into its record",
                   ("lightfer maintain snapshot models/xception/training",), _snapshot, tensorflow=True, listed=listed)
    snap.add_argument("run_dir", help="a training directory (the record of a --live run, or a plain one)")

    if listed:  # new in the maintain group: no old name to keep
        made = command(commands, "materialize", "make a shipped model's derived files (too large to commit) from its "
                       "committed ones, each checked against its source",
                       ("lightfer maintain materialize light_fer_xception", "lightfer maintain materialize --all"),
                       _materialize, tensorflow=True)
        made.add_argument("names", nargs="*", metavar="name", help="shipped models (see `lightfer models`)")
        made.add_argument("--all", action="store_true", help="every shipped model that has derived files")
        made.add_argument("--force", action="store_true", help="make them again even when they are there and unchanged")

    runs = command(commands, "runs", "training runs side by side from their files: epochs, best PublicTest, best by "
                   "given epochs, seconds per epoch, the settings that differ",
                   ("lightfer maintain runs models/light_fer_net_deep/training models/light_fer_net_v5/training",
                    "lightfer maintain runs models/xception/training --at 10,20,30,40"), _runs, listed=listed)
    runs.add_argument("runs", nargs="+", metavar="run_dir", help="training directories")
    runs.add_argument("--at", default="10,20,40,60", help="epochs at which to show the best PublicTest reached so far")

    again = command(commands, "rebuild", "rebuild a shipped model and every model it depends on from their recipes, in "
                    "order; resumable, finished steps skipped",
                    ("lightfer maintain rebuild light_fer_net_deep --list",
                     "lightfer maintain rebuild light_fer_net_deep --data /path/to/fer2013 --out runs/rebuild"),
                    _rebuild, tensorflow=True, listed=listed)
    again.add_argument("name", help="a shipped model (see `lightfer models`)")
    data_option(again)
    again.add_argument("--out", default="runs/rebuild", help="where each step's result goes")
    again.add_argument("--last-step-only", action="store_true", help="rebuild only the model itself, from the shipped "
                       "models it depends on")
    again.add_argument("--list", action="store_true", help="print the steps and stop")
    again.add_argument("--compare", action="store_true", help="compare the rebuilt training curve under --out (finished "
                       "or not) with the shipped run's, epoch by epoch, and stop")

    publish = command(commands, "publish", "copy a finished run's paper tables and figures into figures/",
                      ("lightfer maintain publish papermill_runs/reproduce-20261207-120000 --force",), _publish,
                      listed=listed)
    publish.add_argument("run_dir", help="a finished run directory")
    publish.add_argument("--to", default="figures", help="the folder published into (relative: to the current one)")
    publish.add_argument("--force", action="store_true", help="replace what the folder holds")


MAINTAIN_COMMANDS = ("ship", "ship-edge", "ship-paper", "ship-variants", "ship-int8", "materialize", "snapshot", "runs", "rebuild",
                     "publish")


def add_commands(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("maintain", help="maintainers: ship, rebuild and snapshot models, compare runs, "
                                "publish the tables", description="the maintainers' commands",
                                formatter_class=HelpFormatter,
                                epilog=examples("lightfer maintain ship-paper models/xception/training --data PATH",
                                                "lightfer maintain publish papermill_runs/reproduce-TIME --force"))
    _add(group.add_subparsers(dest="maintain_command", required=True, metavar="{" + ",".join(MAINTAIN_COMMANDS) + "}"),
         listed=True)
    _add(commands, listed=False)


def note_old_name(args: argparse.Namespace) -> None:
    """The old top-level names still work for this release; say the new one."""
    if args.command in MAINTAIN_COMMANDS and args.command != "materialize":
        print(f"lightfer: note: `lightfer {args.command}` is now `lightfer maintain {args.command}`; the old name "
              "goes in the next release", file=sys.stderr)
