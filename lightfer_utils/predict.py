"""`lightfer predict`: emotions for every face in images, folders and videos, and the end-to-end
pipeline benchmark. No TensorFlow unless the model is a Keras file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from lightfer_utils import CLASS_NAMES, DEFAULT_MODEL_FILE
from lightfer_utils.faces import (IMAGE_SUFFIXES, VIDEO_SUFFIXES, FaceStage, ImageReadError, classify_faces,
                                  read_image, video_frame_count, video_frames)
from lightfer_utils.predictor import Predictor
from lightfer_utils.provenance import PROJECT_ROOT

DEFAULT_MODEL = PROJECT_ROOT / DEFAULT_MODEL_FILE
COLUMNS = ["file", "frame", "face", "left", "top", "right", "bottom", *(f"p_{c}" for c in CLASS_NAMES), "emotion",
           "probability"]


@dataclass
class PredictionRun:
    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "file: reason", one per bad input
    files_without_faces: list[str] = field(default_factory=list)


def expand_inputs(paths: list[str | Path]) -> tuple[list[Path], list[str]]:
    """Files named directly, and the image/video files under folders (recursive, sorted)."""
    found, problems = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    return found, problems


def _row(file: Path, frame: int, index: int, face, probabilities: np.ndarray) -> dict:
    best = int(np.argmax(probabilities))
    return {"file": str(file), "frame": frame, "face": index, **dict(zip(("left", "top", "right", "bottom"), face.box)),
            **{f"p_{c}": round(float(p), 4) for c, p in zip(CLASS_NAMES, probabilities)},
            "emotion": CLASS_NAMES[best], "probability": round(float(probabilities[best]), 4)}


def annotate(gray: np.ndarray, results: list[tuple]) -> np.ndarray:
    """A BGR copy of the frame with each face's box, emotion and probability drawn on it."""
    import cv2

    image = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    thickness = max(1, round(max(gray.shape) / 400))
    for face, probabilities in results:
        left, top, right, bottom = face.box
        best = int(np.argmax(probabilities))
        cv2.rectangle(image, (left, top), (right, bottom), (0, 255, 0), thickness)
        cv2.putText(image, f"{CLASS_NAMES[best]} {probabilities[best]:.2f}", (left, max(top - 6, 12)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thickness, (0, 255, 0), thickness)
    return image


def _frames(path: Path, every: int) -> Iterator[tuple[int, np.ndarray]]:
    if path.suffix.lower() in VIDEO_SUFFIXES:
        yield from video_frames(path, every)
    else:
        yield 0, read_image(path)


def predict_files(
    paths: list[str | Path],
    predictor: Predictor,
    stage: FaceStage,
    every: int = 1,
    annotate_dir: Path | None = None,
    progress: bool = True,
) -> PredictionRun:
    """Every face of every input; a bad file is recorded in `problems` and the run goes on."""
    import cv2
    from tqdm import tqdm

    if every < 1:
        raise ValueError(f"--every must be at least 1, got {every}")
    files, problems = expand_inputs(paths)
    run = PredictionRun(problems=problems)
    if annotate_dir is not None:
        annotate_dir.mkdir(parents=True, exist_ok=True)
    for path in tqdm(files, desc="predicting", unit="file", disable=not progress or len(files) < 2):
        is_video = path.suffix.lower() in VIDEO_SUFFIXES
        writer = None
        found = 0
        try:
            stage.reset()  # a new image or video: nothing to follow from the previous file
            frames = _frames(path, every)
            if is_video and progress:
                frames = tqdm(frames, total=-(-video_frame_count(path) // every), desc=path.name, unit="frame", leave=False)
            for frame, gray in frames:
                results = classify_faces(stage, predictor, gray)
                found += len(results)
                run.rows += [_row(path, frame, i, face, p) for i, (face, p) in enumerate(results)]
                if annotate_dir is not None:
                    drawn = annotate(gray, results)
                    if not is_video:
                        _write_new(annotate_dir / f"{path.stem}_annotated.png", lambda target: cv2.imwrite(str(target), drawn))
                    else:
                        if writer is None:
                            target = _new_path(annotate_dir / f"{path.stem}_annotated.mp4")
                            writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), 25 / every,
                                                     (gray.shape[1], gray.shape[0]))
                        writer.write(drawn)
        except ImageReadError as err:
            run.problems.append(str(err))
            continue
        finally:
            if writer is not None:
                writer.release()
        if found == 0:
            run.files_without_faces.append(str(path))
    return run


def _new_path(target: Path) -> Path:
    if target.exists():
        raise FileExistsError(f"{target} exists; choose another --annotate folder")
    return target


def _write_new(target: Path, write) -> None:
    if not write(_new_path(target)):
        raise OSError(f"could not write {target}")


def write_results(run: PredictionRun, csv_path: Path | None, json_path: Path | None, force: bool = False) -> None:
    """CSV (one row per face) and JSON (rows, bad inputs, files without a face); never replaces a
    file unless `force`."""
    import pandas as pd

    for target in (csv_path, json_path):
        if target is not None and target.exists() and not force:
            raise FileExistsError(f"{target} exists; pass --force to replace it")
    if csv_path is not None:
        pd.DataFrame(run.rows, columns=COLUMNS).to_csv(csv_path, index=False)
    if json_path is not None:
        json_path.write_text(json.dumps({"faces": run.rows, "problems": run.problems,
                                         "files_without_faces": run.files_without_faces}, indent=1))


def benchmark_frames(count: int = 4, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """640x480 gray frames, each holding the astronaut's face from scikit-image at a new place."""
    import cv2
    from skimage import data

    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)[0:260, 100:330]
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(count):
        frame = np.full((size[1], size[0]), 128, np.uint8)
        top, left = rng.integers(0, size[1] - face.shape[0]), rng.integers(0, size[0] - face.shape[1])
        frame[top:top + face.shape[0], left:left + face.shape[1]] = face
        frames.append(frame)
    return np.stack(frames)


def moving_face_frames(count: int = 100, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """Consecutive 640x480 gray frames of a video-like clip: the astronaut's face gliding along an
    ellipse, a few pixels per frame (for the face stage's full_detect_every mode)."""
    import cv2
    from skimage import data

    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)[0:260, 100:330]
    free_x, free_y = size[0] - face.shape[1], size[1] - face.shape[0]
    frames = np.full((count, size[1], size[0]), 128, np.uint8)
    for i, angle in enumerate(np.linspace(0, 2 * np.pi, count, endpoint=False)):
        left, top = int(free_x / 2 * (1 + np.cos(angle))), int(free_y / 2 * (1 + np.sin(angle)))
        frames[i, top:top + face.shape[0], left:left + face.shape[1]] = face
    return frames
