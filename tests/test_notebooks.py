"""nbval on the committed smoke run: every executed notebook is run again and its outputs must
match (after tests/nbval_sanitize.cfg, which blanks decimal numbers: their low-order digits
depend on the CPU kind). The numbers are compared from the tables the replay writes, within the
tolerances of tests/smoke_numbers.py. The notebooks are replayed in order in one temporary
directory, as `lightfer run` executes them (04 quantizes the model 02 trained there), so
re-running them writes nothing into the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from smoke_numbers import compare_runs, written_files

ROOT = Path(__file__).resolve().parent.parent
SMOKE_RUN = ROOT / "papermill_runs" / "smoke"
SOURCES = ROOT / "notebooks"
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
REPLAY_CONFTEST = ROOT / "tests" / "nbval_conftest.py"
NOTEBOOKS = sorted(p.name for p in SOURCES.glob("[0-9][0-9]_*.ipynb"))


def code_sources(path: Path) -> list[str]:
    """Code cells, without the cell papermill injects for the run's parameters."""
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_smoke_run_is_current_and_executed(name):
    executed = SMOKE_RUN / name
    assert executed.exists(), f"{name} is missing from the committed smoke run; see docs/testing.md (make smoke-run)"
    assert code_sources(executed) == code_sources(SOURCES / name), f"the smoke run of {name} is stale: make smoke-run"
    nb = nbformat.read(executed, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{name} was not fully executed"
    assert sum(len(c.outputs) for c in code) > 0, f"{name} has no outputs: nbval would pass trivially"
    manifest = json.loads((SMOKE_RUN / "manifest.json").read_text())
    assert manifest["profile"] == "smoke" and manifest["status"] == "completed"


def test_the_smoke_run_keeps_the_histories_07_draws_so_any_clone_rebuilds_its_tables():
    """`lightfer tables papermill_runs/smoke --force` in a fresh clone must draw the same training
    curves as the run did: each trained model's history.csv is committed (its weights are not)."""
    trained = pd.read_csv(SMOKE_RUN / "tables" / "model_results.csv")["model"]
    histories = [f"papermill_runs/smoke/training/{model}/history.csv" for model in trained]
    listed = subprocess.run(["git", "ls-files", "--", *histories], cwd=ROOT, capture_output=True, text=True)
    tracked = set(listed.stdout.split()) if listed.returncode == 0 else {h for h in histories if (ROOT / h).is_file()}
    assert len(histories) > 0 and set(histories) <= tracked, sorted(set(histories) - tracked)


def nbval_marker_lines(source: str) -> list[str]:
    return [line.strip() for line in source.splitlines() if "NBVAL_" in line]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_nbval_markers_are_ones_nbval_recognises(name):
    # nbval only honours a comment that is exactly the marker: "# NBVAL_IGNORE_OUTPUT (why)" is silently ignored.
    from nbval.plugin import comment_markers

    for source in code_sources(SOURCES / name):
        for line in nbval_marker_lines(source):
            assert line.lstrip("#").strip() in comment_markers, f"{name}: nbval does not recognise {line!r}"


@pytest.fixture(scope="module")
def replay(tmp_path_factory, fer2013_path) -> dict[str, subprocess.CompletedProcess]:
    """nbval on every notebook of the smoke run, in order, in one directory (each notebook finds
    what the earlier ones wrote); a failing notebook does not stop the later ones."""
    directory = tmp_path_factory.mktemp("smoke_replay")
    shutil.copy(REPLAY_CONFTEST, directory / "conftest.py")
    results = {}
    for name in NOTEBOOKS:
        shutil.copy(SMOKE_RUN / name, directory / name)
        results[name] = subprocess.run(
            [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE),
             "-p", "no:cacheprovider", "-q", "--rootdir", str(directory), name],
            cwd=directory, capture_output=True, text=True,
            env={**os.environ, "LIGHTFER_DATA": str(Path(fer2013_path).resolve())},
        )
    results["directory"] = directory
    return results


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_smoke_run_outputs_reproduce_under_nbval(name, replay):
    """Text, shapes, counts, class names and column sets, as nbval sees them after the sanitizer."""
    result = replay[name]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_replay_writes_the_same_tables_and_figures(replay):
    assert written_files(replay["directory"]) == written_files(SMOKE_RUN)


def test_replay_numbers_match_the_smoke_run_within_tolerance(replay):
    problems = compare_runs(SMOKE_RUN, replay["directory"])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_committed_smoke_run_carries_no_library_noise(name):
    """The `lightfer` kernel imports TensorFlow quietly before the first cell and keeps what the
    native libraries write while cells run out of the notebook; the converters' known, harmless
    warnings are caught where they are called. No start-up lines, no C++ log lines (absl's
    "E0000 00:00:..." prefix) and no library's warning (its path in site-packages) in what a
    reader of the executed notebooks sees."""
    import re

    noise = ("absl::InitializeLog", "cuInit", "oneDNN custom operations", "cuda_platform", "Could not find cuda",
             "site-packages")
    notebook = nbformat.read(SMOKE_RUN / name, as_version=4)
    stderr = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if o.get("name") == "stderr")
    assert not any(n in stderr for n in noise), stderr[:1000]
    assert not re.search(r"(?m)^[IWEF]\d{4} \d\d:\d\d:", stderr), stderr[:1000]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_committed_smoke_run_records_no_host_paths(name):
    """papermill's own record of each notebook (input and output) is project-relative, as the
    manifest is: the committed run names no directory of the machine that made it."""
    recorded = nbformat.read(SMOKE_RUN / name, as_version=4).metadata["papermill"]
    assert (ROOT / recorded["input_path"]).resolve() == (SOURCES / name).resolve(), recorded["input_path"]
    assert (ROOT / recorded["output_path"]).resolve() == (SMOKE_RUN / name).resolve(), recorded["output_path"]
