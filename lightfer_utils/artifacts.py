"""Writing a run's artifacts: figures (PNG + PDF) and tables (CSV) under the run directory."""

from __future__ import annotations

from pathlib import Path

from lightfer_utils.runtime.rundir import RunDir

import matplotlib.pyplot as plt
import pandas as pd

FIGURE_FORMATS = ("png", "pdf")


def save_figure(fig: plt.Figure, run_dir: str | Path, name: str) -> None:
    """Save as run_dir/figures/<name>.png and .pdf, without timestamps, so that a repeated run
    writes identical bytes. Returns nothing, so a notebook cell ending in it shows only the figure."""
    target = RunDir(run_dir).figures
    target.mkdir(parents=True, exist_ok=True)
    for fmt in FIGURE_FORMATS:
        metadata = {"CreationDate": None} if fmt == "pdf" else {}
        fig.savefig(target / f"{name}.{fmt}", dpi=150, bbox_inches="tight", metadata=metadata)


def save_table(table: pd.DataFrame, run_dir: str | Path, name: str) -> Path:
    path = RunDir(run_dir).table(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path)
    return path


def save_record(values: dict[str, object], run_dir: str | Path, name: str) -> Path:
    """A notebook's loose numbers (not already in a table) as a one-row table, so they leave the
    notebook as data: the replay test compares them with the smoke run's within tolerances."""
    return save_table(pd.DataFrame([values], index=pd.Index([name], name="record")), run_dir, name)


def matrix_figure(table: pd.DataFrame, title: str) -> plt.Figure:
    """A row-normalised matrix (confusion, label agreement; fractions) as an annotated heatmap in % of each row."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    sns.heatmap(table * 100, annot=True, fmt=".1f", cmap="Blues", vmin=0, vmax=100, cbar=False, ax=ax)
    ax.set_title(f"{title}\n(% of each row)")
    fig.tight_layout()
    return fig
