"""`lightfer predict`: emotions for every face in images, folders and videos, and the end-to-end
pipeline benchmark's frames. No TensorFlow unless the model is a Keras file; no syntax newer
than Python 3.6.

A batch never loses finished work: every input's rows are written to the CSV and JSON Lines
outputs (and flushed) as soon as that input is done, a bad input becomes one "skipped" line and
the batch goes on, an interrupt keeps every finished input, and `--resume` skips the inputs the
outputs already hold. Outputs are checked before the first image is read.
"""

import csv
import io
import json
import sys
from pathlib import Path
from typing import Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from lightfer_utils import CLASS_NAMES
from lightfer_utils.runtime.safe_text import csv_cell, path_text, terminal_text
from lightfer_utils.runtime.faces import FaceStage, classify_faces, crop_as_face
from lightfer_utils.runtime.media import (DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, VIDEO_SUFFIXES, gray_of, read_image,
                                          video_frame_count, video_frame_rate, video_frames)
from lightfer_utils.runtime.predictor import Predictor

# the box as corners and as x, y, w, h (the peers' convention); score: the face detector's
COLUMNS = ["file", "frame", "face", "left", "top", "right", "bottom", "x", "y", "w", "h", "score",
           *("p_" + c for c in CLASS_NAMES), "emotion", "probability"]
PathLike = Union[str, Path]
STDOUT = Path("-")  # as --csv or --json: standard output


class InputFile(NamedTuple):
    path: Path
    annotated: Path  # where its annotated copy goes, relative to --annotate: unique within a run


class PredictionRun:
    """What a batch did; rows are also kept here for the summary table."""

    def __init__(self) -> None:
        self.rows = []  # type: List[dict]
        self.problems = []  # type: List[str]  # "file: reason", one per skipped input
        self.files_without_faces = []  # type: List[str]
        self.done = 0  # inputs finished in this run
        self.already_done = 0  # inputs skipped because the outputs held them (--resume)
        self.total = 0
        self.interrupted = False


def expand_inputs(paths: Sequence[PathLike]) -> List[InputFile]:
    """Files named directly, and the image/video files under folders (recursive, sorted), each
    once. A path that does not exist is refused before any work. Annotated copies keep the
    path below the folder given (prefixed with the folder's name), so their names are unique."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError("no such file or folder: {}".format(", ".join(missing)))
    special = [str(p) for p in paths if not (Path(p).is_dir() or Path(p).is_file())]
    if special:  # reading a FIFO or a device would block for ever
        raise ValueError("not a regular file or folder (a FIFO, socket or device): {}".format(", ".join(special)))
    found, seen = [], set()  # type: List[InputFile], Set[Path]
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            members = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            named = [(p, Path(path.resolve().name) / p.relative_to(path)) for p in members]
        else:
            named = [(path, Path(path.name))]
        for file, relative in named:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                found.append(InputFile(file, relative))
    return found


def annotated_path(annotate_dir: Path, item: InputFile) -> Path:
    suffix = ".mp4" if item.path.suffix.lower() in VIDEO_SUFFIXES else ".png"
    return annotate_dir / item.annotated.parent / (item.annotated.stem + "_annotated" + suffix)


def check_outputs(csv_path: Optional[Path], json_path: Optional[Path], annotate_dir: Optional[Path],
                  inputs: Sequence[InputFile], force: bool = False, resume: bool = False, make_dirs: bool = False) -> None:
    """Refuse, before the first image, every output that could not be written or would replace
    something: a missing folder (unless make_dirs), a folder named as a file, the same file
    twice, an existing file without --force or --resume, annotated copies that would collide."""
    if force and resume:
        raise ValueError("--force replaces the outputs and --resume continues them: choose one")
    if csv_path == STDOUT and json_path == STDOUT:
        raise ValueError("--csv - and --json - both name standard output: give one of them a file")
    if resume and STDOUT in (csv_path, json_path):
        raise ValueError("--resume continues a file; standard output (-) cannot be continued")
    files = [p for p in (csv_path, json_path) if p is not None and p != STDOUT]
    if len(files) == 2 and files[0].resolve() == files[1].resolve():
        raise ValueError("--csv and --json name the same file {}: give each its own".format(files[0]))
    for target in files:
        if target.is_dir():
            raise ValueError("{} is a folder; --csv and --json take a file name".format(target))
        if target.exists() and not target.is_file():
            raise ValueError("{} is not a regular file (a device, FIFO or socket); --csv and --json write files".format(target))
        if not target.parent.is_dir():
            if target.parent.exists():
                raise ValueError("{} is not a folder".format(target.parent))
            if not make_dirs:
                raise FileNotFoundError("folder {} does not exist (create it, or pass --mkdir)".format(target.parent))
            target.parent.mkdir(parents=True)
        writable_folder(target.parent)
        if target.exists() and not (force or resume):
            raise FileExistsError("{} exists; pass --force to replace it or --resume to continue it".format(target))
    if annotate_dir is not None:
        if annotate_dir.exists() and not annotate_dir.is_dir():
            raise ValueError("--annotate {} is a file; it takes a folder".format(annotate_dir))
        blocking = next((f for f in annotate_dir.parents if f.exists() and not f.is_dir()), None)
        if blocking is not None:
            raise ValueError("--annotate {}: {} is a file, not a folder".format(annotate_dir, blocking))
        if not annotate_dir.parent.is_dir() and not make_dirs:
            raise FileNotFoundError("folder {} does not exist (create it, or pass --mkdir)".format(annotate_dir.parent))
        existing = next(folder for folder in (annotate_dir, *annotate_dir.parents) if folder.exists())
        writable_folder(existing)  # where the annotated copies (and any missing folders) will be created
        targets = {}  # type: dict
        for item in inputs:
            target = annotated_path(annotate_dir, item)
            if target in targets:
                raise ValueError("{} and {} would both be annotated as {}; give them separately".format(
                    targets[target], item.path, target))
            targets[target] = item.path
            if target.exists() and not (force or resume):
                raise FileExistsError("{} exists; pass --force to replace annotated copies".format(target))


def _trim_partial_line(path: Path) -> None:
    """Drop an unfinished last line (a run killed mid-write) so appended lines start clean."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[:data.rfind(b"\n") + 1])


def _locked(path: Path, appending: bool, newline: Optional[str] = None):
    """`path` opened for writing under an exclusive lock (POSIX), emptied unless `appending`: a
    second process writing the same file is refused instead of splicing its rows into ours."""
    handle = open(str(path), "a", newline=newline, encoding="utf-8")
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        fcntl = None
    if fcntl is not None:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise FileExistsError("{} is being written by another process; wait for it, or choose another file".format(
                path)) from None
    if not appending:
        handle.truncate(0)
    return handle


def writable_folder(folder: Path) -> None:
    """Refuse a folder this process cannot create files in (read-only, no permission), before
    any work, by creating and removing a file there."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=str(folder)):
            pass
    except OSError as err:
        raise PermissionError("cannot write in {}: {}".format(folder, err.strerror or err)) from None


class ResultWriter:
    """Rows to CSV (one per face) and JSON Lines (one per face, plus one per input without a
    face or skipped), written and flushed as each input finishes."""

    def __init__(self, csv_path: Optional[Path] = None, json_path: Optional[Path] = None, resume: bool = False):
        """STDOUT as a path writes to standard output (never locked, never closed here)."""
        self.done = set()  # type: Set[str]  # inputs the outputs already hold (resume)
        self._csv = self._json = None
        self._stdout = sys.stdout if STDOUT in (csv_path, json_path) else None
        if csv_path == STDOUT:
            self._csv = self._stdout
            self._csv.write(",".join(COLUMNS) + "\r\n")
            self._csv.flush()
        elif csv_path is not None:
            appending = resume and csv_path.exists() and csv_path.stat().st_size > 0
            if appending:
                _trim_partial_line(csv_path)
                with open(str(csv_path), newline="", encoding="utf-8") as handle:
                    reader = csv.DictReader(handle)
                    if reader.fieldnames != COLUMNS:
                        raise ValueError("{} is not a lightfer predict CSV (its header differs); cannot resume it".format(csv_path))
                    self.done |= {row["file"] for row in reader}  # as written: csv_cell(path_text(path))
            self._csv = _locked(csv_path, appending, newline="")
            if not appending:
                self._csv.write(",".join(COLUMNS) + "\r\n")
                self._csv.flush()
        if json_path == STDOUT:
            self._json = self._stdout
        elif json_path is not None:
            appending = resume and json_path.exists()
            if appending:
                _trim_partial_line(json_path)
                for number, line in enumerate(json_path.read_text(encoding="utf-8").splitlines(), 1):
                    try:
                        self.done.add(csv_cell(json.loads(line)["file"]))
                    except (ValueError, KeyError, TypeError):
                        raise ValueError("{} line {} is not a lightfer predict record; cannot resume it".format(
                            json_path, number)) from None
            self._json = _locked(json_path, appending)

    def record(self, file: str, rows: List[dict], skipped: Optional[str] = None) -> None:
        if self._csv is not None and rows:
            buffer = io.StringIO()
            csv.DictWriter(buffer, fieldnames=COLUMNS).writerows(dict(row, file=csv_cell(row["file"])) for row in rows)
            self._csv.write(buffer.getvalue())  # one write per input: an interrupt cannot split it
            self._csv.flush()
        if self._json is not None:
            if skipped is not None:
                records = [{"file": file, "status": "skipped", "reason": skipped}]
            elif not rows:
                records = [{"file": file, "status": "no face"}]
            else:
                records = [dict(row, status="face") for row in rows]
            self._json.write("".join(json.dumps(r) + "\n" for r in records))
            self._json.flush()

    def close(self) -> None:
        for handle in (self._csv, self._json):
            if handle is not None and handle is not self._stdout:
                handle.close()


def _row(file: Path, frame: int, index: int, face, probabilities: np.ndarray) -> dict:
    best = int(np.argmax(probabilities))
    row = {"file": path_text(file), "frame": frame, "face": index}
    left, top, right, bottom = face.box
    row.update(left=left, top=top, right=right, bottom=bottom, x=left, y=top, w=right - left, h=bottom - top,
               score=round(float(face.score), 4))
    row.update({"p_" + c: round(float(p), 4) for c, p in zip(CLASS_NAMES, probabilities)})
    row.update(emotion=CLASS_NAMES[best], probability=round(float(probabilities[best]), 4))
    return row


def annotate(image: np.ndarray, results: list) -> np.ndarray:
    """A BGR copy of the frame (gray or RGB: its colours kept) with each face's box, emotion and
    probability drawn on it, lines and labels in proportion to the image."""
    import cv2

    drawn = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face, probabilities in results:
        left, top, right, bottom = face.box
        best = int(np.argmax(probabilities))
        cv2.rectangle(drawn, (left, top), (right, bottom), (0, 255, 0), thickness)
        cv2.putText(drawn, "{} {:.2f}".format(CLASS_NAMES[best], probabilities[best]),
                    (left, max(top - 4 * thickness, 12 * thickness)), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thickness,
                    (0, 255, 0), thickness)
    return drawn


def _frames(path: Path, every: int, max_pixels: int, color: bool) -> Iterator[Tuple[int, np.ndarray]]:
    if path.suffix.lower() in VIDEO_SUFFIXES:
        yield from video_frames(path, every, max_pixels, color)
    else:
        yield 0, read_image(path, max_pixels, color)


def _classify(image: np.ndarray, predictor: Predictor, stage: FaceStage, crops: bool) -> list:
    if crops:
        face = crop_as_face(gray_of(image))
        return [(face, predictor(face.crop[None].astype(np.float32))[0])]
    return classify_faces(stage, predictor, image)


def _predict_input(item: InputFile, predictor: Predictor, stage: FaceStage, every: int, annotate_dir: Optional[Path],
                   crops: bool, max_pixels: int, progress: bool) -> List[dict]:
    """Every face of one image or video; raises on a bad input."""
    import cv2

    path = item.path
    is_video = path.suffix.lower() in VIDEO_SUFFIXES
    target = annotated_path(annotate_dir, item) if annotate_dir is not None else None
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
    rows, writer = [], None  # type: List[dict], Optional[object]
    stage.reset()  # a new image or video: nothing to follow from the previous input
    # colour where it is used: BlazeFace sees it, annotated copies keep it
    frames = _frames(path, every, max_pixels, color=stage.detector_name == "blazeface" or target is not None)
    if is_video and progress:
        from tqdm import tqdm

        frames = tqdm(frames, total=-(-video_frame_count(path) // every), desc=path.name, unit="frame", leave=False)
    try:
        for frame, image in frames:
            results = _classify(image, predictor, stage, crops)
            rows += [_row(path, frame, i, face, p) for i, (face, p) in enumerate(results)]
            if target is None or (not is_video and not results):  # no copy of an image without a face
                continue
            drawn = annotate(image, results)
            if not is_video:
                if not cv2.imwrite(str(target), drawn):
                    raise OSError("could not write {}".format(target))
                continue
            if writer is None:  # the source's own frame rate, over the frames kept
                writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), video_frame_rate(path) / every,
                                         (image.shape[1], image.shape[0]))
            writer.write(drawn)
    finally:
        if writer is not None:
            writer.release()
    if writer is not None and not rows:  # a video without any face: no annotated copy either
        target.unlink()
    return rows


def predict_files(
    inputs: Sequence[InputFile],
    predictor: Predictor,
    stage: FaceStage,
    every: int = 1,
    annotate_dir: Optional[Path] = None,
    writer: Optional[ResultWriter] = None,
    crops: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    on_skip: Optional[Callable[[str], None]] = None,
    workers: int = 1,
) -> PredictionRun:
    """Every face of every input (from expand_inputs). A bad input is recorded (and reported to `on_skip` at once) and
    the batch goes on; each finished input goes to `writer`, in input order; Ctrl-C stops after the
    finished ones. `workers` inputs are processed at once."""
    if every < 1:
        raise ValueError("--every must be at least 1, got {}".format(every))
    run = PredictionRun()
    run.total = len(inputs)
    done = writer.done if writer is not None else set()
    todo = [item for item in inputs if csv_cell(path_text(item.path)) not in done]
    run.already_done = len(inputs) - len(todo)

    def record(item: InputFile, rows: Optional[List[dict]], error: Optional[BaseException]) -> None:
        if error is not None:
            text = " ".join(path_text(str(error)).split())[:300]  # one line: OpenCV's messages span several
            name = path_text(item.path)
            reason = text if text.startswith(name) else "{}: {}: {}".format(name, type(error).__name__, text)
            run.problems.append(reason)
            if writer is not None:
                writer.record(name, [], skipped=reason)
            if on_skip is not None:
                on_skip(reason)
        else:
            run.rows += rows
            if not rows:
                run.files_without_faces.append(path_text(item.path))
            if writer is not None:
                writer.record(path_text(item.path), rows)
        run.done += 1

    bar = _progress_bar(len(todo)) if progress and len(todo) >= 2 else None
    try:
        for item, rows, error in _results(todo, predictor, stage, every, annotate_dir, crops, max_pixels,
                                          progress and (workers == 1 or len(todo) == 1), workers):
            record(item, rows, error)
            if bar is not None:
                bar.update()
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        if bar is not None:
            bar.close()
    return run


def _progress_bar(total: int):
    from tqdm import tqdm  # imported only for a batch: a tenth of a second of a one-photo run

    return tqdm(total=total, desc="predicting", unit="file")


def _results(todo: List[InputFile], predictor: Predictor, stage: FaceStage, every: int, annotate_dir: Optional[Path],
             crops: bool, max_pixels: int, progress: bool, workers: int
             ) -> Iterator[Tuple[InputFile, Optional[List[dict]], Optional[BaseException]]]:
    """(input, rows, error) in input order; with workers > 1, that many inputs are in flight at
    once (dlib, OpenCV and ONNX Runtime release the GIL), each worker with its own face stage and
    predictor (Predictor.for_worker)."""
    def one(item: InputFile, own_predictor: Predictor, own_stage: FaceStage):
        try:
            return item, _predict_input(item, own_predictor, own_stage, every, annotate_dir, crops, max_pixels, progress), None
        except Exception as err:  # one bad input never ends the batch
            return item, None, err

    if workers <= 1 or len(todo) <= 1:  # one input gains nothing from a pool
        for item in todo:
            yield one(item, predictor, stage)
        return
    import threading
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    from itertools import islice

    local = threading.local()

    def in_worker(item: InputFile):
        if not hasattr(local, "stage"):
            local.stage = stage.copy()
            local.predictor = predictor.for_worker(workers)
        return one(item, local.predictor, local.stage)

    items = iter(todo)
    with ThreadPoolExecutor(workers) as pool:
        pending = deque(pool.submit(in_worker, item) for item in islice(items, workers))
        while pending:  # a window of `workers` inputs: an interrupt waits for those only
            result = pending.popleft().result()
            following = next(items, None)
            if following is not None:
                pending.append(pool.submit(in_worker, following))
            yield result


SHOWN_COLUMNS = ("file", "frame", "face", "left", "top", "right", "bottom", "emotion", "probability")


def face_table(rows: List[dict], shown: Sequence[str] = SHOWN_COLUMNS) -> str:
    """Result rows (dicts by column) as an aligned text table of the `shown` columns, for a terminal."""
    cells = [list(shown)] + [["{:.3f}".format(row[c]) if isinstance(row[c], float) else terminal_text(str(row[c]))
                              for c in shown] for row in rows]
    widths = [max(len(line[c]) for line in cells) for c in range(len(shown))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells)


def no_face_hint(run: PredictionRun, min_face: int, crops: bool) -> str:
    """What to try when no input had a face."""
    if crops or run.rows or not run.files_without_faces:
        return ""
    return ("no face found in any input. Faces smaller than --min-face {} px are not searched for: try a smaller "
            "--min-face (slower); if the images are face crops already (e.g. FER2013's 48x48), pass --crops".format(min_face))
