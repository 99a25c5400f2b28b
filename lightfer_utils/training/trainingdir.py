"""The layout of a training directory (`lightfer train --out`), named once: training writes it,
shipping, the zoo, `lightfer runs`, rebuilds and the tests read it, all through these names.

Small models keep everything in the directory. A model too large to commit (the paper's
Xception: a float32 checkpoint with Adam's moments is about 250 MB) trains *live* in the machine's
cache, `$LIGHTFER_CACHE/live/NAME`, which usually survives to the next session; the directory
then is its record: `live.json` names the live directory, the small files (config, state,
history, data) are mirrored into it after every epoch, and `snapshot_fp16.npz` holds the
weights of one epoch in float16 as the fallback when the cache is gone (no optimizer state).
No TensorFlow here.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from lightfer_utils.runtime.provenance import cache_dir
from lightfer_utils.runtime.atomic import atomic_write

SMALL_FILES = ("config.json", "data.json", "state.json", "history.csv")


def _json_object(path: Path) -> dict[str, Any]:
    """A record file's JSON object; a damaged one is named with what to do."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"{path} is damaged ({err}); restore it from git or remove the run") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} is damaged (not a JSON object); restore it from git or remove the run")
    return value


class TrainingDir:
    """The paths of one training directory; nothing is created until a caller writes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"TrainingDir({str(self.root)!r})"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def data(self) -> Path:
        return self.root / "data.json"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def teacher_targets(self) -> Path:
        return self.root / "teacher_targets.npy"

    @property
    def live_marker(self) -> Path:
        return self.root / "live.json"

    @property
    def snapshot(self) -> Path:
        return self.root / "snapshot_fp16.npz"

    @property
    def snapshot_info(self) -> Path:
        return self.root / "snapshot.json"

    # the large files: in the live directory when the run has one
    @property
    def checkpoint(self) -> Path:
        return self.work.root / "checkpoint"

    @property
    def best_weights(self) -> Path:
        return self.work.root / "best_weights.h5"  # legacy HDF5: layer weights only, no optimizer state

    @property
    def live(self) -> TrainingDir | None:
        """The live directory in the cache, for a run whose record names one."""
        if not self.live_marker.is_file():
            return None
        name = _json_object(self.live_marker).get("name", "")
        if not isinstance(name, str) or not LIVE_NAME.fullmatch(name):
            raise ValueError(f"{self.live_marker}: 'name' must match {LIVE_NAME.pattern}, got {name!r}")
        return TrainingDir(live_root() / name)

    @property
    def work(self) -> TrainingDir:
        """Where training writes: the live directory, or the directory itself."""
        return self.live or self

    def read_state(self) -> dict[str, Any]:
        return _json_object(self.state) if self.state.is_file() else {}

    def write_state(self, state: dict[str, Any]) -> None:
        atomic_write(self.state, json.dumps(state, indent=2, sort_keys=True))

    def read_snapshot_info(self) -> dict[str, Any]:
        return _json_object(self.snapshot_info) if self.snapshot_info.is_file() else {}

    def mirror_to(self, record: TrainingDir) -> None:
        """Copy the small files (config, data, state, history) into `record`."""
        record.root.mkdir(parents=True, exist_ok=True)
        for name in SMALL_FILES:
            if (self.root / name).is_file():
                atomic_write(record.root / name, (self.root / name).read_bytes())


LIVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def live_root() -> Path:
    """Where live training directories are kept: $LIGHTFER_CACHE/live (default ~/.cache/lightfer/live)."""
    return cache_dir() / "live"


def make_live(record: TrainingDir, name: str) -> None:
    """Mark `record` as the record of a run that trains live in the cache under `name`."""
    if not LIVE_NAME.fullmatch(name):
        raise ValueError(f"--live: a live name is letters, digits, '_', '.' and '-', got {name!r}")
    record.root.mkdir(parents=True, exist_ok=True)
    atomic_write(record.live_marker, json.dumps({"name": name}, indent=2) + "\n")
