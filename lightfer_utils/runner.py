"""`lightfer run`: execute the numbered notebooks in order with papermill.

Every parameter is checked before the first notebook starts (`lightfer_utils.parameters`), so a
notebook that gains a parameter makes it available to the runner without further code. Each run
gets its own directory holding the executed notebooks, their artifacts and ``manifest.json``; an
existing directory is never reused.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from tqdm import tqdm

from lightfer_utils.data import load_fer2013, resolve_data_path
from lightfer_utils.parameters import PATH_PARAMETERS, ParameterError, coerce, parameter_schema, resolve_path_parameter
from lightfer_utils.runtime.atomic import atomic_write
from lightfer_utils.runtime.rundir import RunDir
from lightfer_utils.runtime.provenance import (PROJECT_ROOT, git_revision, host_info, now_iso, package_versions,
                                               project_relative)

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
RUNS_DIR = PROJECT_ROOT / "papermill_runs"
NOTEBOOKS: tuple[str, ...] = (
    "01_data", "02_xception_baseline", "03_pruning", "04_quantization",
    "05_export", "06_jetson_benchmark", "07_tables",
)

# The notebooks' own defaults are the smoke scale, so that Run All in JupyterLab takes minutes;
# the full-scale profiles start from these values (a value reaches only the notebooks that declare
# that parameter).
FULL_SCALE: dict[str, Any] = {
    "subset_fraction": 1.0, "deterministic": False, "epochs": 40, "models": "light_fer_net,mini_xception,simple_cnn",
    "cost_models": "", "cost_steps": 5, "sparsities": "0.25,0.5,0.75,0.9", "channel_keep": "0.7,0.6", "prune_epochs": 4,
    "structured_epochs": 6, "latency_iterations": 200, "calibration_size": 500, "iterations": 200, "pipeline_iterations": 100,
}

# What each profile sets.
PROFILES: dict[str, dict[str, Any]] = {
    # Minutes on 2 CPU cores, seeded and deterministic, so nbval can check the outputs.
    "smoke": {"seed": 0, "subset_fraction": 0.05, "epochs": 1, "deterministic": True,
              "calibration_size": 200, "latency_iterations": 20, "sparsities": "0.5", "channel_keep": "0.5",
              "prune_epochs": 1, "structured_epochs": 1, "iterations": 20, "pipeline_iterations": 10,
              # reproduce's shape: the comparison models' training is costed, not trained (mini_xception
              # both, so Table 2's one row for a model trained and costed stays checked)
              "models": "light_fer_net,mini_xception,simple_cnn",
              "cost_models": "mini_xception,vgg_style,resnet50,xception", "cost_steps": 1},
    # The paper's experiments from the shipped models: the default light_fer_net_deep, Zhou et al.'s
    # mini_xception and the simple CNN are evaluated, not retrained; the comparison models too slow
    # for a CPU get their training cost measured; 03's variants (three sparsities plus 2:4, two
    # channel budgets with 3 distilled epochs each) are measured from the files `lightfer maintain
    # ship-variants` made with these settings. `make reproduce` runs this and publishes figures/ from it.
    "reproduce": {**FULL_SCALE, "seed": 0, "subset_fraction": 1.0, "models": "light_fer_net,mini_xception,simple_cnn",
                  "resume_from": "models/light_fer_net_deep/training,models/mini_xception/training,"
                                 "models/simple_cnn/training",
                  "cost_models": "vgg_style,resnet50,xception", "cost_steps": 5,
                  "sparsities": "0.5,0.75,0.9", "prune_epochs": 1, "structured_epochs": 3, "channel_keep": "0.8,0.7",
                  "variants_from": "models/light_fer_net_deep/variants",
                  # the paper's model as shipped (lightfer maintain ship-paper): measured by 02, timed by 06 for Tables 2-4
                  "paper_model": "light_fer_xception"},
    # The full data on a CPU machine, training from scratch: the models that train in hours there
    # (about 6 hours on 2 cores; `make train-from-scratch`).
    "cpu": {**FULL_SCALE, "seed": 0, "subset_fraction": 1.0, "epochs": 40, "models": "light_fer_net,mini_xception,simple_cnn"},
    # The paper's setting, every model of Tables 2-3 including stock Xception, and the paper's
    # compression of Xception (tfmot during fine-tuning; no structured variants, which are ours):
    # for GPU machines.
    "paper": {**FULL_SCALE, "seed": 0, "subset_fraction": 1.0, "epochs": 100,
              "models": "xception,light_fer_net,mini_xception,simple_cnn,vgg_style,resnet50",
              "compress": "xception", "channel_keep": ""},
}


@dataclass
class RunPlan:
    profile: str
    run_dir: Path
    data_path: Path
    notebooks: list[Path]
    skipped: list[str]
    schema: dict[str, str]  # parameter -> type name, from the notebooks' parameters cells
    parameters: dict[str, Any]  # profile values overridden by the user's -p values
    overrides: dict[str, Any] = field(default_factory=dict)

    def parameters_for(self, notebook: Path) -> dict[str, Any]:
        import papermill

        declared = papermill.inspect_notebook(str(notebook))
        chosen = {name: value for name, value in self.parameters.items() if name in declared}
        if "run_dir" in declared:  # notebooks run inside their run directory (cwd); their own default is interactive
            chosen["run_dir"] = "."
        return chosen


def notebook_values(profile: str, notebook: str) -> dict[str, Any]:
    """What `notebook` is given under `profile`: the profile's values, else the notebook's own defaults."""
    import papermill

    declared = papermill.inspect_notebook(str(NOTEBOOKS_DIR / f"{notebook}.ipynb"))
    return {name: PROFILES[profile].get(name, ast.literal_eval(spec["default"])) for name, spec in declared.items()}


def plan_run(
    profile: str,
    data: str | os.PathLike[str] | None,
    out: str | os.PathLike[str] | None = None,
    assignments: list[str] | tuple[str, ...] = (),
    notebooks_dir: Path = NOTEBOOKS_DIR,
    only: list[str] | tuple[str, ...] = (),
) -> RunPlan:
    """Check everything a run needs -- profile, data path, parameters, run directory.

    `only` restricts the run to some notebooks, by name or number prefix ("04", "04_quantization");
    later notebooks then read what their predecessors would have written from parameters such
    as model_path.
    """
    if profile not in PROFILES:
        raise ParameterError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    selected = list(NOTEBOOKS)
    if only:
        unknown = [o for o in only if not any(n.startswith(o) for n in NOTEBOOKS)]
        if unknown:
            raise ParameterError(f"unknown notebook(s) {', '.join(unknown)}; expected prefixes of {', '.join(NOTEBOOKS)}")
        selected = [n for n in NOTEBOOKS if any(n.startswith(o) for o in only)]
    existing = [notebooks_dir / f"{name}.ipynb" for name in selected if (notebooks_dir / f"{name}.ipynb").exists()]
    skipped = [name for name in selected if not (notebooks_dir / f"{name}.ipynb").exists()]
    schema = parameter_schema(existing)
    parameters: dict[str, Any] = {}
    for name, value in PROFILES[profile].items():
        if name in schema:
            parameters[name] = value
            if name in PATH_PARAMETERS:  # a profile names project files: relative to the project root
                parameters[name] = resolve_path_parameter(name, ",".join(str(PROJECT_ROOT / p) for p in value.split(",")))
    overrides: dict[str, Any] = {}
    for item in assignments:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(f"-p expects key=value, got {item!r}")
        if name not in schema:
            raise ParameterError(f"unknown parameter {name!r}; the notebooks take: {', '.join(sorted(schema))}")
        overrides[name] = coerce(name, raw, schema[name])
        if name in PATH_PARAMETERS:
            overrides[name] = resolve_path_parameter(name, overrides[name])
    parameters.update(overrides)
    if "data_path" in overrides:
        raise ParameterError("parameter 'data_path' is set with --data, not -p")
    if "run_dir" in overrides:  # every notebook writes into the run's own directory, never another run's
        raise ParameterError("parameter 'run_dir' is set with --out, not -p")
    run_id = f"{profile}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(out) if out else RUNS_DIR / run_id
    if run_dir.exists():
        raise FileExistsError(f"run directory {run_dir} exists; runs are never overwritten -- choose another --out")
    data_path = resolve_data_path(data).resolve()  # after the parameters: they are quicker to fix
    return RunPlan(profile, run_dir.resolve(), data_path, existing, skipped, schema, parameters, overrides)


def _write_manifest(plan: RunPlan, manifest: dict[str, Any]) -> None:
    atomic_write(RunDir(plan.run_dir).manifest, json.dumps(manifest, indent=2, default=str))


def execute(plan: RunPlan, kernel_name: str | None = None) -> dict[str, Any]:
    """Run the planned notebooks; the manifest is updated after each one. The data is loaded and
    checked before the run directory exists, so bad data leaves nothing behind to block a retry."""
    _check_kernel(plan, kernel_name)
    dataset = load_fer2013(plan.data_path, strict=bool(plan.parameters.get("strict", True)))
    plan.run_dir.mkdir(parents=True, exist_ok=False)
    manifest: dict[str, Any] = {
        "run_id": plan.run_dir.name,
        "profile": plan.profile,
        "parameters": _portable(plan.parameters),
        "overrides": _portable(plan.overrides),
        "data": {"path": project_relative(plan.data_path), "sha256": dataset.sha256, "records": len(dataset),
                 "dropped_records": len(dataset.problems)},
        "git": git_revision(),
        "packages": package_versions(),
        "host": host_info(),
        "started": now_iso(),
        "finished": None,
        "status": "running",
        "notebooks": [{"name": name, "status": "skipped: notebook not written yet"} for name in plan.skipped],
    }
    _write_manifest(plan, manifest)
    for name in plan.skipped:
        print(f"skipping {name}: notebook not written yet")
    with _environment(LIGHTFER_DATA=str(plan.data_path)):
        _execute_notebooks(plan, manifest, kernel_name)
    manifest.update(status="completed", finished=now_iso())
    _write_manifest(plan, manifest)
    return manifest


def _check_kernel(plan: RunPlan, kernel_name: str | None) -> None:
    """The Jupyter kernel the notebooks name (or --kernel) exists, before anything is written."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    names = {kernel_name} if kernel_name else {json.loads(n.read_text())["metadata"]["kernelspec"]["name"]
                                               for n in plan.notebooks}
    for name in sorted(names):
        try:
            KernelSpecManager().get_kernel_spec(name)
        except NoSuchKernel:
            raise FileNotFoundError(f"no Jupyter kernel named {name!r} here: `python -m lightfer_utils.kernel install` "
                                    "installs the notebooks' kernel (make setup does), or pass --kernel NAME") from None


def _portable(parameters: dict[str, Any]) -> dict[str, Any]:
    return {name: ",".join(project_relative(p) for p in value.split(",")) if name in PATH_PARAMETERS else value
            for name, value in parameters.items()}


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Kernels inherit these variables (LIGHTFER_DATA: executed notebooks then hold no host
    paths); the caller's environment is restored afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name in values:
            os.environ.pop(name, None)
        os.environ.update({name: value for name, value in saved.items() if value is not None})


def _execute_notebooks(plan: RunPlan, manifest: dict[str, Any], kernel_name: str | None) -> None:
    import papermill

    for notebook in tqdm(plan.notebooks, desc="notebooks", unit="nb"):
        entry: dict[str, Any] = {"name": notebook.stem, "started": now_iso()}
        manifest["notebooks"].append(entry)
        began = time.time()
        target = RunDir(plan.run_dir).notebook(notebook.stem)
        try:
            with _relative_notebook_paths(target):
                papermill.execute_notebook(str(notebook), str(target), parameters=plan.parameters_for(notebook),
                                           cwd=str(plan.run_dir), kernel_name=kernel_name, progress_bar=True)
        except Exception as err:  # papermill raises PapermillExecutionError with the cell's traceback
            entry.update(status="failed", error=notebook_error(err), seconds=round(time.time() - began, 1))
            manifest.update(status="failed", finished=now_iso())
            _write_manifest(plan, manifest)
            raise NotebookFailed(f"{notebook.stem} failed: {entry['error']}; see {target}") from None
        entry.update(status="completed", seconds=round(time.time() - began, 1))
        _write_manifest(plan, manifest)


@contextlib.contextmanager
def _relative_notebook_paths(executed: Path) -> Iterator[None]:
    """Once papermill has written the executed notebook (also when a cell failed), its recorded
    paths become project-relative."""
    try:
        yield
    finally:
        if executed.is_file():
            relative_papermill_paths(executed)


def relative_papermill_paths(executed: Path) -> None:
    """papermill records a notebook's input and output as the host's absolute paths; a run keeps
    them relative to the project, as its manifest does."""
    import nbformat

    notebook = nbformat.read(executed, as_version=4)
    recorded = notebook.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if recorded.get(key):
            recorded[key] = project_relative(recorded[key])
    atomic_write(executed, nbformat.writes(notebook))

class NotebookFailed(RuntimeError):
    """A notebook of a run raised; the message names the notebook, cell and error."""


def notebook_error(err: Exception) -> str:
    """One line for a failed notebook: papermill's message starts with a blank line and a banner."""
    if hasattr(err, "ename"):
        where = f"cell {err.exec_count}: " if getattr(err, "exec_count", None) else ""
        return f"{where}{err.ename}: {err.evalue}"
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def regenerate_tables(run_dir: str | os.PathLike[str], force: bool = False, kernel_name: str | None = None) -> Path:
    """Run only 07_tables on an existing run directory (nothing from 01-06 is re-run)."""
    import papermill

    run = Path(run_dir).resolve()
    if not run.is_dir():
        raise FileNotFoundError(f"run directory not found: {run}")
    if not RunDir(run).tables.is_dir():
        raise FileNotFoundError(f"{run} holds no tables/: not a run directory of `lightfer run`, or 01-06 did not run")
    if not RunDir(run).table(RunDir.MODEL_RESULTS).is_file():
        raise FileNotFoundError(f"{run} has no results of 02 ({RunDir(run).table(RunDir.MODEL_RESULTS).name}): the tables "
                                "report on 02-06, so run those first")
    target = RunDir(run).notebook("07_tables")
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass --force to regenerate the tables and REPRODUCTION.md")
    revision = git_revision()  # before 07 rewrites the run's files (tracked ones, in the committed smoke run)
    try:
        with _relative_notebook_paths(target):
            papermill.execute_notebook(str(NOTEBOOKS_DIR / "07_tables.ipynb"), str(target), cwd=str(run),
                                       parameters={"run_dir": "."}, kernel_name=kernel_name, progress_bar=True)
    except Exception as err:
        failed = target.with_name("07_tables.failed.ipynb")
        target.replace(failed) if target.exists() else None
        raise NotebookFailed(f"07_tables failed on {run}: {notebook_error(err)}; see {failed}") from None
    manifest_file = RunDir(run).manifest
    if manifest_file.is_file():  # the report now comes from this code, not the run's: say so
        manifest = json.loads(manifest_file.read_text())
        manifest.setdefault("tables_regenerated", []).append({"git": revision, "at": now_iso()})
        atomic_write(manifest_file, json.dumps(manifest, indent=2, default=str))
    return target
