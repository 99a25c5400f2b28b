"""nbval on the committed smoke run: every executed notebook is run again and its outputs must
match (after tests/nbval_sanitize.cfg). The notebooks are copied to a temporary directory first,
so re-running them writes nothing into the repository."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOKE_RUN = ROOT / "papermill_runs" / "smoke"
SOURCES = ROOT / "notebooks"
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
NOTEBOOKS = sorted(p.name for p in SOURCES.glob("[0-9][0-9]_*.ipynb"))


def code_sources(path: Path) -> list[str]:
    """Code cells, without the cell papermill injects for the run's parameters."""
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_smoke_run_is_current_and_executed(name):
    executed = SMOKE_RUN / name
    assert executed.exists(), f"{name} is missing from the committed smoke run; see README (make smoke-run)"
    assert code_sources(executed) == code_sources(SOURCES / name), f"the smoke run of {name} is stale: make smoke-run"
    nb = nbformat.read(executed, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{name} was not fully executed"
    assert sum(len(c.outputs) for c in code) > 0, f"{name} has no outputs: nbval would pass trivially"
    manifest = json.loads((SMOKE_RUN / "manifest.json").read_text())
    assert manifest["profile"] == "smoke" and manifest["status"] == "completed"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_smoke_run_outputs_reproduce_under_nbval(name, fer2013_path, tmp_path):
    shutil.copy(SMOKE_RUN / name, tmp_path / name)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE),
         "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path), name],
        cwd=tmp_path, capture_output=True, text=True,
        env={**__import__("os").environ, "LIGHTFER_DATA": str(Path(fer2013_path).resolve())},
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
