"""FER2013 data layer.

Reads FER2013 in the two forms users have -- the contest CSV (``emotion,pixels,Usage``, plain or
.gz) and the image-folder layout (``train/<class>/Training_<id>.jpg``, ``test/<class>/...``) --
validates every record, caches the decoded arrays keyed by a fingerprint of the source, and
reads the FER+ relabelling (``fer2013new.csv``).

The dataset hash (``FerData.sha256``) is computed over the decoded content -- pixels, labels and
split codes in record order -- so it identifies what a model was trained on, whatever the file
form, and does not change when files are merely copied or touched.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import stat
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from lightfer_utils import CLASS_NAMES, IMAGE_SIZE, NUM_CLASSES
from lightfer_utils.runtime.atomic import atomic_write
from lightfer_utils.runtime.media import IMAGE_SUFFIXES
from lightfer_utils.runtime.provenance import PROJECT_ROOT
from lightfer_utils.runtime.provenance import cache_dir as machine_cache_dir

SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
PIXELS_PER_IMAGE = IMAGE_SIZE * IMAGE_SIZE
CSV_COLUMNS = ("emotion", "pixels", "Usage")
# Bump when the decoded output of a reader changes, so stale caches are not reused.
READER_VERSION = 1

DEFAULT_DATA_PATH = PROJECT_ROOT / "data" / "fer2013"
GET_DATA_HINT = (
    "Get FER2013 yourself (see docs/data.md): the Kaggle contest file fer2013.csv "
    "or the image-folder layout, then pass its path, set LIGHTFER_DATA, or put it at "
    f"{DEFAULT_DATA_PATH}."
)


class DataValidationError(ValueError):
    """Raised in strict mode when records are invalid; ``problems`` names each one."""

    def __init__(self, origin: str, problems: list["RecordProblem"]):
        self.problems = problems
        super().__init__(f"{len(problems)} invalid record(s) in {origin}:\n" + format_problems(problems))


class DataLayoutError(ValueError):
    """The path exists but is not a FER2013 CSV or image folder, or FER+ does not line up."""


@dataclass(frozen=True)
class RecordProblem:
    source: str  # "line 17" of a CSV, or a file path relative to the dataset root
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


def format_problems(problems: list[RecordProblem], limit: int = 20) -> str:
    lines = [f"  {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


@dataclass
class FerData:
    """Decoded FER2013 records, in a stable order (CSV row order, or sorted file paths)."""

    images: np.ndarray  # uint8 [N, 48, 48]
    labels: np.ndarray  # int64 [N], FER2013 class index (CLASS_NAMES order)
    usage: np.ndarray  # int64 [N], index into SPLITS
    sources: np.ndarray  # str [N]: "line N" (CSV) or relative file path (folder)
    csv_rows: np.ndarray  # int64 [N]: 0-based data-row index in the contest CSV, -1 for folders
    origin: str
    source_rows: int  # records in the source before validation dropped any
    problems: list[RecordProblem] = field(default_factory=list)
    soft_labels: np.ndarray | None = None  # float32 [N, 7] when FER+ soft targets are attached
    sha256: str = ""

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = content_sha256(self.images, self.labels, self.usage)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "FerData":
        soft = None if self.soft_labels is None else self.soft_labels[index]
        return replace(
            self,
            images=self.images[index],
            labels=self.labels[index],
            usage=self.usage[index],
            sources=self.sources[index],
            csv_rows=self.csv_rows[index],
            soft_labels=soft,
            sha256="",
        )

    def split(self, name: str) -> "FerData":
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return self.subset(np.flatnonzero(self.usage == SPLITS.index(name)))

    def counts(self) -> "pd.DataFrame":  # noqa: F821 - pandas imported lazily
        import pandas as pd

        table = pd.crosstab(
            pd.Categorical([CLASS_NAMES[i] for i in self.labels], categories=CLASS_NAMES),
            pd.Categorical([SPLITS[i] for i in self.usage], categories=SPLITS),
            dropna=False,
        )
        table.index.name, table.columns.name = "class", "split"
        table["all"] = table.sum(axis=1)
        table.loc["total"] = table.sum(axis=0)
        return table


def content_sha256(images: np.ndarray, labels: np.ndarray, usage: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array, dtype in ((images, np.uint8), (labels, np.int64), (usage, np.int64)):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- path resolution


def resolve_data_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The dataset path: the argument, else $LIGHTFER_DATA, else DEFAULT_DATA_PATH."""
    chosen = path or os.environ.get("LIGHTFER_DATA") or DEFAULT_DATA_PATH
    resolved = Path(chosen).expanduser()
    if not resolved.exists():
        where = "argument" if path else ("LIGHTFER_DATA" if os.environ.get("LIGHTFER_DATA") else "default")
        raise FileNotFoundError(f"FER2013 not found at {resolved} (from the {where}). {GET_DATA_HINT}")
    if not (resolved.is_file() or resolved.is_dir()):  # reading a FIFO or a device would block or never end
        raise DataLayoutError(f"{resolved} is not a regular file or folder (a FIFO, socket or device)")
    return resolved


def detect_form(path: Path) -> tuple[Literal["csv", "folder"], Path]:
    """Which reader a path needs: a CSV file, a folder holding fer2013.csv, or a folder tree."""
    if path.is_file():
        if path.name.endswith((".csv", ".csv.gz")):
            return "csv", path
        raise DataLayoutError(f"{path} is a file but not a .csv or .csv.gz contest file")
    for name in ("fer2013.csv", "fer2013.csv.gz"):
        if (path / name).is_file():
            return "csv", path / name
    if (path / "train").is_dir() or (path / "test").is_dir():
        return "folder", path
    raise DataLayoutError(
        f"{path} holds neither fer2013.csv nor train/ and test/ class folders. {GET_DATA_HINT}"
    )


# --------------------------------------------------------------------------- loading + cache


def load_fer2013(
    path: str | os.PathLike[str] | None = None,
    *,
    strict: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> FerData:
    """Load FER2013 from a contest CSV or an image folder, validating every record.

    strict=True raises DataValidationError naming every bad row or file; strict=False drops
    them and lists them in ``FerData.problems``. Decoded arrays are cached (an .npz keyed by a
    fingerprint of the source files' names, sizes and mtimes), so a second load is fast.
    """
    form, source = detect_form(resolve_data_path(path))
    fingerprint = source_fingerprint(form, source, strict)
    cache_file = Path(cache_dir or machine_cache_dir()) / f"fer2013-{fingerprint[:24]}.npz"
    if use_cache and cache_file.is_file():
        try:
            return _read_cache(cache_file, str(source))
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    reader = read_csv if form == "csv" else read_folder
    data = reader(source, strict=strict, progress=progress)
    if use_cache:
        _write_cache(cache_file, data)
    return data


def source_fingerprint(form: str, source: Path, strict: bool) -> str:
    digest = hashlib.sha256(f"v{READER_VERSION}|{form}|strict={strict}|{source.resolve()}".encode())
    if form == "csv":
        info = source.stat()
        digest.update(f"{info.st_size}|{info.st_mtime_ns}".encode())
    else:
        for relative, info in _walk_files(source):
            digest.update(f"{relative}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _walk_files(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, stat) of every non-hidden file under train/ and test/, sorted by path."""

    def walk(directory: str, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                yield from walk(entry.path, f"{prefix}{entry.name}/")
            else:
                yield prefix + entry.name, entry.stat()

    for top in ("train", "test"):
        if (root / top).is_dir():
            yield from walk(str(root / top), f"{top}/")


def _write_cache(cache_file: Path, data: FerData) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        images=data.images,
        labels=data.labels,
        usage=data.usage,
        sources=data.sources,
        csv_rows=data.csv_rows,
        source_rows=np.int64(data.source_rows),
        problem_sources=np.array([p.source for p in data.problems], dtype=str),
        problem_reasons=np.array([p.reason for p in data.problems], dtype=str),
        sha256=np.array(data.sha256),
    )
    atomic_write(cache_file, buffer.getvalue())


def _read_cache(cache_file: Path, origin: str) -> FerData:
    with np.load(cache_file, allow_pickle=False) as z:
        problems = [RecordProblem(str(s), str(r)) for s, r in zip(z["problem_sources"], z["problem_reasons"])]
        return FerData(
            images=z["images"],
            labels=z["labels"],
            usage=z["usage"],
            sources=z["sources"],
            csv_rows=z["csv_rows"],
            origin=origin,
            source_rows=int(z["source_rows"]),
            problems=problems,
            sha256=str(z["sha256"]),
        )


# --------------------------------------------------------------------------- contest CSV


def _open_text(path: Path, mode: str = "rt") -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return gzip.open(path, mode, newline="", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, newline="", encoding="utf-8")


def parse_pixels(text: str) -> np.ndarray:
    """48x48 uint8 image from the CSV's space-separated pixel string; ValueError says why not."""
    tokens = text.split()
    if len(tokens) != PIXELS_PER_IMAGE:
        raise ValueError(f"expected {PIXELS_PER_IMAGE} pixel values, found {len(tokens)}")
    try:
        values = np.array(tokens, dtype=np.int64)
    except ValueError:
        bad = next(t for t in tokens if not t.isdigit())
        raise ValueError(f"pixel value {bad!r} is not an integer") from None
    if values.min() < 0 or values.max() > 255:
        bad_value = values[(values < 0) | (values > 255)][0]
        raise ValueError(f"pixel value {bad_value} is outside 0..255")
    return values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def parse_label(text: str) -> int:
    try:
        label = int(text)
    except ValueError:
        raise ValueError(f"emotion {text!r} is not an integer label") from None
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"emotion {label} is not a FER2013 label (0..{NUM_CLASSES - 1})")
    return label


def parse_usage(text: str) -> int:
    if text not in SPLITS:
        raise ValueError(f"Usage {text!r} is not one of {', '.join(SPLITS)}")
    return SPLITS.index(text)


def read_csv(path: Path, *, strict: bool = True, progress: bool = True) -> FerData:
    """Read the contest CSV; problems are reported by file line number (header = line 1)."""
    images, labels, usage, sources, rows = [], [], [], [], []
    problems: list[RecordProblem] = []
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DataLayoutError(f"{path} is empty")
            missing = [c for c in CSV_COLUMNS if c not in header]
            if missing:
                raise DataLayoutError(f"{path}: header lacks column(s) {', '.join(missing)}; found {header}")
            col = {name: header.index(name) for name in CSV_COLUMNS}
            data_row = -1
            for data_row, row in enumerate(tqdm(reader, desc=f"reading {path.name}", unit=" rows", disable=not progress)):
                where = f"line {reader.line_num}"
                try:
                    if len(row) != len(header):
                        raise ValueError(f"expected {len(header)} fields, found {len(row)}")
                    label = parse_label(row[col["emotion"]].strip())
                    split = parse_usage(row[col["Usage"]].strip())
                    image = parse_pixels(row[col["pixels"]])
                except ValueError as err:
                    problems.append(RecordProblem(where, str(err)))
                    continue
                images.append(image)
                labels.append(label)
                usage.append(split)
                sources.append(where)
                rows.append(data_row)
    except UnicodeDecodeError as err:
        raise DataLayoutError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    except csv.Error as err:  # e.g. a field over csv's limit of 131,072 characters (a pixels field has at most 9,215)
        raise DataLayoutError(f"{path} line {reader.line_num}: not a CSV record ({err})") from None
    except (EOFError, OSError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DataLayoutError(f"{path}: damaged or truncated file ({type(err).__name__}: {err})") from None
    return _finish(path, images, labels, usage, sources, rows, data_row + 1, problems, strict)


def _finish(
    origin: Path,
    images: list[np.ndarray],
    labels: list[int],
    usage: list[int],
    sources: list[str],
    rows: list[int],
    source_rows: int,
    problems: list[RecordProblem],
    strict: bool,
) -> FerData:
    if problems and strict:
        raise DataValidationError(str(origin), problems)
    if not images:
        raise DataLayoutError(f"{origin} holds no valid FER2013 records")
    return FerData(
        images=np.stack(images).astype(np.uint8),
        labels=np.array(labels, dtype=np.int64),
        usage=np.array(usage, dtype=np.int64),
        sources=np.array(sources, dtype=str),
        csv_rows=np.array(rows, dtype=np.int64),
        origin=str(origin),
        source_rows=source_rows,
        problems=problems,
    )


def write_csv(data: FerData, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write records as a contest-format CSV (plain, or gzip when the name ends in .gz)."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True (CLI: --force) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _open_text(target, "wt") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for image, label, split in zip(data.images, data.labels, data.usage):
            writer.writerow([int(label), " ".join(map(str, image.reshape(-1).tolist())), SPLITS[split]])
    return target


# --------------------------------------------------------------------------- image folders


def split_from_name(top: str, filename: str) -> int:
    """The split is in the file-name prefix; without one, train/ is Training, test/ PrivateTest."""
    for index, split in enumerate(SPLITS):
        if filename.startswith(split + "_"):
            return index
    return SPLITS.index("Training") if top == "train" else SPLITS.index("PrivateTest")


def decode_face_file(path: Path) -> np.ndarray:
    """A 48x48 gray uint8 array from an image file; ValueError says why the file is unusable."""
    try:
        with Image.open(path) as image:
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):  # from the header: nothing is decoded yet
                raise ValueError(f"image is {image.size[0]}x{image.size[1]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}")
            image.load()
            gray = image if image.mode == "L" else image.convert("L")
            return np.asarray(gray, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"unreadable image ({type(err).__name__}: {err})") from None


def read_folder(root: Path, *, strict: bool = True, progress: bool = True) -> FerData:
    """Read train/<class>/*.jpg and test/<class>/*.jpg; problems are named by relative path."""
    images, labels, usage, sources = [], [], [], []
    problems: list[RecordProblem] = []
    files = list(_walk_files(root))
    for relative, status in tqdm(files, desc=f"decoding {root.name}", unit=" img", disable=not progress):
        if not stat.S_ISREG(status.st_mode):  # a FIFO or device would block the read for ever
            problems.append(RecordProblem(relative, "not a regular file (a FIFO, socket or device)"))
            continue
        parts = Path(relative).parts
        if len(parts) != 3:
            problems.append(RecordProblem(relative, "not inside a <split>/<class>/ folder"))
            continue
        top, class_name, filename = parts
        if class_name.lower() not in CLASS_NAMES:
            problems.append(RecordProblem(relative, f"unknown class folder {class_name!r}"))
            continue
        if Path(filename).suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(RecordProblem(relative, "not an image file (unknown extension)"))
            continue
        try:
            image = decode_face_file(root / relative)
        except ValueError as err:
            problems.append(RecordProblem(relative, str(err)))
            continue
        images.append(image)
        labels.append(CLASS_NAMES.index(class_name.lower()))
        usage.append(split_from_name(top, filename))
        sources.append(relative)
    rows = [-1] * len(images)
    return _finish(root, images, labels, usage, sources, rows, len(files), problems, strict)


# --------------------------------------------------------------------------- FER+ labels

FERPLUS_EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
FERPLUS_TO_FER2013 = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4, "surprise": 5, "neutral": 6}
FERPLUS_COLUMNS = ("Usage", "Image name", *FERPLUS_EMOTIONS, "unknown", "NF")


@dataclass
class FerPlusLabels:
    csv_rows: np.ndarray  # int64 [M]: contest-CSV data rows that keep a label
    hard: np.ndarray  # int64 [M], FER2013 class order
    soft: np.ndarray  # float32 [M, 7], FER2013 class order, rows sum to 1
    dropped: dict[str, int]


def ferplus_label(votes: np.ndarray) -> int | None:
    """FERPlus majority rule on one row of 10 vote counts (8 emotions, unknown, NF).

    As in Microsoft's FERPlus code: single votes are discarded as outliers, and a label needs
    more than half of the remaining votes. Returns the index into FERPLUS_EMOTIONS + (unknown,
    NF), or None when no emotion has a majority.
    """
    kept = np.where(votes > 1, votes, 0)
    total = kept.sum()
    if total == 0:
        return None
    top = int(np.argmax(kept))
    return top if kept[top] > 0.5 * total else None


def read_ferplus(path: str | os.PathLike[str], fer: FerData) -> FerPlusLabels:
    """Read fer2013new.csv, aligned row by row with the contest CSV that ``fer`` came from.

    Rows whose majority is unknown or not-a-face (NF) are dropped as FERPlus does; so are rows
    whose majority is contempt, which has no FER2013 class. Soft labels are the vote shares over
    the seven FER2013 emotions after outlier removal.
    """
    if (fer.csv_rows < 0).any():
        raise DataLayoutError(
            "FER+ labels refer to the contest CSV's row order, which the image-folder form does not "
            "keep: load FER2013 from fer2013.csv to use FER+."
        )
    target = Path(path)
    with _open_text(target) as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None) or []
            missing = [c for c in FERPLUS_COLUMNS if c not in header]
            if missing:
                raise DataLayoutError(f"{target}: not a FER+ file, header lacks {', '.join(missing)}")
            body = list(reader)
        except csv.Error as err:
            raise DataLayoutError(f"{target} line {reader.line_num}: not a CSV record ({err})") from None
    if len(body) != fer.source_rows:
        raise DataLayoutError(
            f"{target} has {len(body)} rows but the contest CSV {fer.origin} has {fer.source_rows}: "
            "FER+ must be aligned row by row with the original fer2013.csv"
        )
    usage_col = header.index("Usage")
    vote_cols = [header.index(c) for c in (*FERPLUS_EMOTIONS, "unknown", "NF")]
    usage_by_row = dict(zip(fer.csv_rows.tolist(), fer.usage.tolist()))
    rows, hard, soft = [], [], []
    dropped = {"no majority": 0, "unknown": 0, "NF": 0, "contempt": 0, "invalid in FER2013": 0}
    order = [FERPLUS_EMOTIONS.index(name) for name in sorted(FERPLUS_TO_FER2013, key=FERPLUS_TO_FER2013.get)]
    for row_index, row in enumerate(body):
        if row_index not in usage_by_row:
            dropped["invalid in FER2013"] += 1
            continue
        if row[usage_col].strip() != SPLITS[usage_by_row[row_index]]:
            raise DataLayoutError(
                f"{target} line {row_index + 2}: Usage {row[usage_col]!r} differs from the contest CSV's "
                f"{SPLITS[usage_by_row[row_index]]!r}; the files are not aligned"
            )
        try:
            votes = np.array([float(row[c]) for c in vote_cols])
        except ValueError:
            raise DataLayoutError(f"{target} line {row_index + 2}: vote counts are not numbers") from None
        label = ferplus_label(votes)
        names = (*FERPLUS_EMOTIONS, "unknown", "NF")
        if label is None or names[label] in ("unknown", "NF", "contempt"):
            dropped["no majority" if label is None else names[label]] += 1
            continue
        shares = np.where(votes > 1, votes, 0)[order]
        rows.append(row_index)
        hard.append(FERPLUS_TO_FER2013[names[label]])
        soft.append(shares / shares.sum())
    return FerPlusLabels(
        csv_rows=np.array(rows, dtype=np.int64),
        hard=np.array(hard, dtype=np.int64),
        soft=np.array(soft, dtype=np.float32).reshape(-1, NUM_CLASSES),
        dropped=dropped,
    )


def with_ferplus(fer: FerData, plus: FerPlusLabels) -> FerData:
    """The records that keep a FER+ label, relabelled (hard labels and soft targets)."""
    position = {row: i for i, row in enumerate(fer.csv_rows.tolist())}
    index = np.array([position[row] for row in plus.csv_rows.tolist()], dtype=np.int64)
    relabelled = fer.subset(index)
    relabelled.labels = plus.hard.copy()
    relabelled.soft_labels = plus.soft.copy()
    relabelled.sha256 = content_sha256(relabelled.images, relabelled.labels, relabelled.usage)
    return relabelled


# --------------------------------------------------------------------------- subsets


def stratified_subset(data: FerData, fraction: float, seed: int, min_per_class: int = 1) -> FerData:
    """A seeded subset keeping every split's class proportions (for smoke runs)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for split in np.unique(data.usage):
        for label in np.unique(data.labels):
            members = np.flatnonzero((data.usage == split) & (data.labels == label))
            take = min(len(members), max(min_per_class, round(fraction * len(members))))
            chosen.append(rng.choice(members, size=take, replace=False))
    return data.subset(np.sort(np.concatenate(chosen)))


LABELS = ("fer2013", "ferplus", "ferplus-soft")


def relabelled(data: FerData, labels: str, ferplus_path: str | os.PathLike[str] | None) -> FerData:
    """FER2013 with the labels asked for: its own, the FER+ majority (`ferplus`) or the FER+ vote
    shares as soft targets (`ferplus-soft`), from fer2013new.csv."""
    if labels not in LABELS:
        raise ValueError(f"labels={labels!r}; expected one of {', '.join(LABELS)}")
    if labels == "fer2013":
        return data
    if not ferplus_path:
        raise ValueError(f"labels {labels!r} need the FER+ file fer2013new.csv (ferplus_path / --ferplus)")
    plus = with_ferplus(data, read_ferplus(ferplus_path, data))
    if labels == "ferplus":
        plus.soft_labels = None
    return plus


def load_for_run(
    data_path: str | None, subset_fraction: float = 1.0, seed: int = 0, labels: str = "fer2013",
    ferplus_path: str | None = None,
) -> FerData:
    """What a notebook of a run works on: FER2013 from the path (empty: LIGHTFER_DATA, then the
    default), relabelled as asked, reduced to a stratified fraction of every split (smoke runs)."""
    data = relabelled(load_fer2013(data_path or None, progress=False), labels, ferplus_path)
    return stratified_subset(data, subset_fraction, seed=seed) if subset_fraction < 1 else data


# --------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class LoadTiming:
    data: FerData
    cold_seconds: float  # decode + validate + write the cache
    cached_seconds: list[float]


def time_loading(source: str | os.PathLike[str] | None, repeat: int = 5) -> LoadTiming:
    """A cold load of `source` into a fresh cache, then `repeat` loads from that cache."""
    import tempfile
    import time

    if repeat < 1:
        raise ValueError(f"--repeat must be at least 1, got {repeat}")
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        data = load_fer2013(source, cache_dir=cache, progress=False)
        cold = time.perf_counter() - started
        cached = []
        for _ in range(repeat):
            started = time.perf_counter()
            load_fer2013(source, cache_dir=cache, progress=False)
            cached.append(time.perf_counter() - started)
    return LoadTiming(data, cold, cached)


def random_faces(count: int, seed: int = 0) -> FerData:
    """`count` random 48x48 faces with labels cycling over the classes: for timings, which do not
    depend on what the faces show."""
    return FerData(images=np.random.default_rng(seed).integers(0, 256, (count, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8),
                   labels=np.arange(count) % NUM_CLASSES, usage=np.zeros(count, np.int64),
                   sources=np.array(["random"] * count), csv_rows=np.full(count, -1), origin="random faces",
                   source_rows=count)
