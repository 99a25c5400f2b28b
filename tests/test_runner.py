"""The papermill runner: parameters are checked before any notebook runs; runs never overwrite."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from lightfer_utils import runner
from lightfer_utils.parameters import ParameterError, assigned_names, check_range, parameter_schema
from lightfer_utils.cli import main as lightfer


def make_notebook(path: Path, parameters: str, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def notebooks(tmp_path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    make_notebook(folder / "01_data.ipynb", 'seed: int = 0\nrun_dir: str = "."\nstrict: bool = True',
                  'import os, pathlib\npathlib.Path(run_dir, "seen.txt").write_text(f"{seed} {os.environ[\'LIGHTFER_DATA\']}")')
    make_notebook(folder / "03_pruning.ipynb", "epochs: int = 3\nsubset_fraction: float = 1.0", "print(epochs * subset_fraction)")
    return folder


def plan(notebooks, good_csv, tmp_path, *assignments, profile="smoke", out=None):
    return runner.plan_run(profile, good_csv[0], out or tmp_path / "run", list(assignments), notebooks_dir=notebooks)


def test_plan_types_parameters_and_lists_missing_notebooks(notebooks, good_csv, tmp_path):
    p = plan(notebooks, good_csv, tmp_path, "seed=7", "subset_fraction=0.5", "strict=false")
    assert p.schema == {"seed": "int", "run_dir": "str", "strict": "bool", "epochs": "int", "subset_fraction": "float"}
    assert p.parameters == {"seed": 7, "subset_fraction": 0.5, "epochs": 1, "strict": False}
    assert p.skipped == ["02_xception_baseline", "04_quantization", "05_export", "06_jetson_benchmark", "07_tables"]
    assert p.parameters_for(notebooks / "03_pruning.ipynb") == {"epochs": 1, "subset_fraction": 0.5}


@pytest.mark.parametrize("assignment, message", [
    ("learning_rate=0.1", "unknown parameter 'learning_rate'"),
    ("seed=1.5", "parameter 'seed' expects int, got '1.5'"),
    ("strict=maybe", "parameter 'strict' expects bool, got 'maybe'"),
    ("subset_fraction=half", "parameter 'subset_fraction' expects float, got 'half'"),
    ("seed", "-p expects key=value, got 'seed'"),
    ("epochs=-5", "parameter 'epochs' must be between 1 and 100000, got -5"),
    ("subset_fraction=nan", "parameter 'subset_fraction' must be between 1e-06 and 1, got nan"),
    ("seed=4294967296", "parameter 'seed' must be between 0 and 4.29497e[+]09, got 4294967296"),
])
def test_bad_parameters_fail_before_anything_runs(notebooks, good_csv, tmp_path, assignment, message):
    with pytest.raises(ParameterError, match=message):
        plan(notebooks, good_csv, tmp_path, assignment)
    assert not (tmp_path / "run").exists()


def test_path_parameters_are_resolved_where_lightfer_run_is_called(good_csv, tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    make_notebook(folder / "02_xception_baseline.ipynb", 'resume_from: str = ""\nmodels: str = "a"', "print(resume_from)")
    (tmp_path / "models" / "a").mkdir(parents=True)
    (tmp_path / "models" / "b").mkdir()
    monkeypatch.chdir(tmp_path)
    p = runner.plan_run("smoke", good_csv[0], tmp_path / "run", ["resume_from=models/a, models/b", "models=models/a"],
                        notebooks_dir=folder)
    assert p.parameters["resume_from"] == f"{tmp_path / 'models' / 'a'},{tmp_path / 'models' / 'b'}"
    assert p.parameters["models"] == "models/a"  # not a path parameter
    with pytest.raises(ParameterError, match="'resume_from': models/c does not exist"):
        runner.plan_run("smoke", good_csv[0], tmp_path / "run", ["resume_from=models/c"], notebooks_dir=folder)
    assert not (tmp_path / "run").exists()


def test_bad_parameter_on_the_command_line_is_one_clear_line(good_csv, tmp_path, capsys):
    code = lightfer(["run", "--profile", "smoke", "--data", str(good_csv[0]), "--out", str(tmp_path / "r"), "-p", "sed=1"])
    assert code == 2
    assert "unknown parameter 'sed'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_unknown_profile_and_missing_data(notebooks, good_csv, tmp_path):
    with pytest.raises(ParameterError, match="unknown profile 'fast'"):
        plan(notebooks, good_csv, tmp_path, profile="fast")
    with pytest.raises(FileNotFoundError, match="FER2013 not found"):
        runner.plan_run("smoke", tmp_path / "missing", tmp_path / "run", [], notebooks_dir=notebooks)


def test_existing_run_directory_is_never_overwritten(notebooks, good_csv, tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(FileExistsError, match="never overwritten"):
        plan(notebooks, good_csv, tmp_path)


def test_execute_writes_notebooks_and_manifest(notebooks, good_csv, tmp_path):
    p = plan(notebooks, good_csv, tmp_path, "seed=5")
    before = os.environ.get("LIGHTFER_DATA")
    manifest = runner.execute(p)
    assert os.environ.get("LIGHTFER_DATA") == before  # set for the kernels only
    run = tmp_path / "run"
    assert (run / "seen.txt").read_text() == f"5 {good_csv[0].resolve()}"
    assert (run / "01_data.ipynb").exists() and (run / "03_pruning.ipynb").exists()
    saved = json.loads((run / "manifest.json").read_text())
    assert saved == json.loads(json.dumps(manifest, default=str))
    assert saved["status"] == "completed" and saved["profile"] == "smoke"
    assert saved["data"]["records"] == 21 and len(saved["data"]["sha256"]) == 64
    assert not Path(saved["data"]["path"]).is_absolute()  # provenance holds no host paths
    assert (runner.PROJECT_ROOT / saved["data"]["path"]).resolve() == good_csv[0].resolve()
    assert saved["parameters"]["seed"] == 5 and saved["overrides"] == {"seed": 5}
    assert {"commit", "dirty"} <= set(saved["git"]) and saved["packages"]["papermill"]
    assert saved["host"]["logical_cores"] >= 1 and saved["started"] and saved["finished"]
    statuses = {n["name"]: n["status"] for n in saved["notebooks"]}
    assert statuses["01_data"] == "completed" and statuses["07_tables"].startswith("skipped")
    recorded = nbformat.read(run / "01_data.ipynb", as_version=4).metadata["papermill"]  # papermill's own record
    assert not Path(recorded["output_path"]).is_absolute()
    assert (runner.PROJECT_ROOT / recorded["output_path"]).resolve() == (run / "01_data.ipynb").resolve()
    assert (runner.PROJECT_ROOT / recorded["input_path"]).resolve() == (notebooks / "01_data.ipynb").resolve()


def test_the_reproduce_profile_starts_from_the_shipped_models(good_csv, tmp_path):
    p = runner.plan_run("reproduce", good_csv[0], tmp_path / "run")
    sources = [Path(s) for s in p.parameters["resume_from"].split(",")]
    shipped = ("light_fer_net_deep", "mini_xception", "simple_cnn")
    assert sources == [runner.PROJECT_ROOT / "models" / name / "training" for name in shipped]
    assert all((s / "best_weights.h5").is_file() for s in sources)
    assert runner._portable(p.parameters)["resume_from"] == ",".join(f"models/{name}/training" for name in shipped)
    # every model it only measures the training cost of is one of the paper's comparison models
    assert set(p.parameters["cost_models"].split(",")) == {"vgg_style", "resnet50", "xception"}


def test_the_paper_profile_compresses_the_paper_s_xception(good_csv, tmp_path):
    p = runner.plan_run("paper", good_csv[0], tmp_path / "run")
    assert p.parameters["compress"] == "xception" and "xception" in p.parameters["models"].split(",")
    assert p.parameters["channel_keep"] == ""  # structured pruning is ours, not the paper's


def test_failing_notebook_marks_the_run_failed(tmp_path, good_csv):
    folder = tmp_path / "nbs"
    folder.mkdir()
    make_notebook(folder / "01_data.ipynb", "seed: int = 0", "raise RuntimeError('boom')")
    p = runner.plan_run("smoke", good_csv[0], tmp_path / "run", [], notebooks_dir=folder)
    with pytest.raises(runner.NotebookFailed, match=r"01_data failed: cell \d: RuntimeError: boom; see .*01_data.ipynb"):
        runner.execute(p)
    saved = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert saved["status"] == "failed" and saved["notebooks"][-1]["status"] == "failed"
    assert saved["notebooks"][-1]["error"].endswith(": RuntimeError: boom")
    recorded = nbformat.read(tmp_path / "run" / "01_data.ipynb", as_version=4).metadata["papermill"]
    assert not Path(recorded["input_path"]).is_absolute() and not Path(recorded["output_path"]).is_absolute()


def test_invalid_data_leaves_no_run_directory_behind(notebooks, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n9,1 2 3,Training\n")
    p = runner.plan_run("smoke", bad, tmp_path / "run", [], notebooks_dir=notebooks)
    with pytest.raises(ValueError, match="invalid record"):
        runner.execute(p)
    assert not (tmp_path / "run").exists()  # the corrected retry is not refused


def test_tables_on_a_run_without_tables_is_one_line_and_leaves_nothing(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert lightfer(["tables", str(tmp_path / "run")]) == 2
    assert "holds no tables/" in capsys.readouterr().err
    assert list((tmp_path / "run").iterdir()) == []
    (tmp_path / "run" / "tables").mkdir()  # a run that stopped after 01
    (tmp_path / "run" / "tables" / "class_counts.csv").write_text("split,count\n")
    assert lightfer(["tables", str(tmp_path / "run")]) == 2
    assert "has no results of 02 (model_results.csv): the tables report on 02-06" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["tables"]


def test_a_parameter_line_papermill_cannot_parse_is_an_error(tmp_path):
    make_notebook(tmp_path / "01_data.ipynb", 'data_path: str = ""  # "" = default\nseed: int = 0', "pass")
    with pytest.raises(ParameterError, match="data_path"):
        parameter_schema([tmp_path / "01_data.ipynb"])


def test_every_project_notebook_exposes_all_its_parameters():
    notebooks = sorted(runner.NOTEBOOKS_DIR.glob("0*.ipynb"))
    schema = parameter_schema(notebooks)
    assert {"data_path", "run_dir", "seed"} <= set(schema)
    for notebook in notebooks:
        assert set(assigned_names(notebook)) <= set(schema)


def test_only_runs_the_named_notebooks(notebooks, good_csv, tmp_path):
    p = runner.plan_run("smoke", good_csv[0], tmp_path / "run", [], notebooks_dir=notebooks, only=["03"])
    assert [n.stem for n in p.notebooks] == ["03_pruning"] and "seed" not in p.schema
    with pytest.raises(ParameterError, match="unknown notebook"):
        runner.plan_run("smoke", good_csv[0], tmp_path / "run2", [], notebooks_dir=notebooks, only=["09"])


def test_tables_rebuilds_07_from_a_runs_tables_and_records_the_code_that_did(tmp_path):
    import shutil

    smoke = runner.PROJECT_ROOT / "papermill_runs" / "smoke"
    run = tmp_path / "run"
    shutil.copytree(smoke / "tables", run / "tables", ignore=shutil.ignore_patterns("paper_table*"))
    shutil.copy(smoke / "manifest.json", run / "manifest.json")
    before = len(json.loads((smoke / "manifest.json").read_text()).get("tables_regenerated", []))  # the smoke run's own
    assert lightfer(["tables", str(run)]) == 0
    assert (run / "REPRODUCTION.md").is_file() and (run / "tables" / "paper_table2.md").is_file()
    regenerated = json.loads((run / "manifest.json").read_text())["tables_regenerated"]
    assert len(regenerated) == before + 1 and {"commit", "dirty"} <= set(regenerated[-1]["git"])
    assert lightfer(["tables", str(run)]) == 2  # the rebuilt notebook is not replaced without --force


def test_run_dir_cannot_point_a_run_at_another_run(good_csv, tmp_path):
    with pytest.raises(ParameterError, match="parameter 'run_dir' is set with --out, not -p"):
        runner.plan_run("smoke", good_csv[0], tmp_path / "run", [f"run_dir={tmp_path / 'finished'}"])
    assert not (tmp_path / "run").exists()


def test_a_missing_kernel_is_one_line_before_anything_is_written(tmp_path, good_csv, capsys):
    out = tmp_path / "run"
    assert lightfer(["run", "--profile", "smoke", "--data", str(good_csv[0]), "--out", str(out), "--kernel", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "no Jupyter kernel named 'nosuch' here: `python -m lightfer_utils.kernel install`" in err and not out.exists()


def test_the_notebooks_name_the_lightfer_kernel_and_setup_installs_it():
    from lightfer_utils.kernel import KERNEL_NAME, installed

    for notebook in sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb")):
        assert json.loads(notebook.read_text())["metadata"]["kernelspec"]["name"] == KERNEL_NAME, notebook.name
    assert installed(), "make setup installs the kernel: python -m lightfer_utils.kernel install"


def test_every_profile_value_is_in_its_parameter_range():
    for profile in runner.PROFILES.values():
        for name, value in profile.items():
            check_range(name, value)
    with pytest.raises(ParameterError, match="parameter 'sparsities' must be between 0 and 0.99, got 1.5"):
        check_range("sparsities", "0.5,1.5")
    with pytest.raises(ParameterError, match="parameter 'batch_sizes' takes comma-separated ints"):
        check_range("batch_sizes", "64,many")
