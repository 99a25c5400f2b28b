"""The command's shape: user commands at the top, the maintainers' under `maintain` (their old
names kept as aliases for a release), an example and the real defaults on every help page."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from lightfer_utils.cli import USER_COMMANDS, build_parser, main
from lightfer_utils.cli.maintain import MAINTAIN_COMMANDS
from lightfer_utils.training.config import TrainConfig


def help_pages(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) of every command and group, once each (aliases included)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from help_pages(sub, (*path, name))


PAGES = dict(help_pages(build_parser()))


@pytest.mark.parametrize("path", sorted(PAGES), ids=lambda p: " ".join(p) or "lightfer")
def test_every_help_page_has_an_example_and_real_defaults(path):
    page = PAGES[path].format_help()
    assert "examples:\n  lightfer " in page, f"lightfer {' '.join(path)} --help shows no example"
    assert "TrainConfig." not in page and "==SUPPRESS==" not in page


def test_train_shows_trainconfigs_defaults_and_takes_every_setting():
    page = PAGES[("train",)].format_help()
    for value in (TrainConfig.epochs, TrainConfig.batch_size, TrainConfig.patience, TrainConfig.label_smoothing):
        assert f"(default: {value})" in page
    args = build_parser().parse_args(["train", "--out", "x", "--lr", "0.01", "--min-learning-rate", "0"])
    assert args.learning_rate == 0.01 and args.min_learning_rate == 0.0 and not hasattr(args, "epochs")


def test_user_commands_at_the_top_and_maintainers_under_maintain():
    top = PAGES[()].format_help()
    listed = top.split("positional arguments:")[1].split("options:")[0]
    for name in USER_COMMANDS:
        assert f"\n    {name} " in listed
    for name in MAINTAIN_COMMANDS:
        assert f"\n    {name} " not in listed, f"{name} is a maintainer's command, listed at the top"
        assert ("maintain", name) in PAGES


def test_an_old_maintainer_name_still_works_and_names_the_new_one(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "`lightfer runs` is now `lightfer maintain runs`" in err
    assert main(["maintain", "runs", str(tmp_path / "nothing")]) == 2
    assert "is now" not in capsys.readouterr().err


def test_resume_refuses_settings_it_would_ignore(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(TrainConfig().to_json())
    assert main(["train", "--out", str(run), "--resume", "--epochs", "3", "--data", str(tmp_path / "absent")]) == 2
    assert "--epochs cannot change them" in capsys.readouterr().err


def test_the_package_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "lightfer_utils.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("lightfer ")
