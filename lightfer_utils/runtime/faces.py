"""The face stage: a face detector (dlib's HOG, the paper's, or MediaPipe's BlazeFace CNN), eye
points (dlib's 68-point shape predictor, iBUG 300-W, from the face-recognition-models package, or
BlazeFace's own eye keypoints), eye-line alignment, and 48x48 gray crops framed like FER2013.

Needs numpy, dlib, Pillow, OpenCV and ai-edge-litert only (no TensorFlow) and no syntax newer than
Python 3.6, so it runs in the edge install and on JetPack 4.6.
"""

import math
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

PathLike = Union[str, Path]

import numpy as np

from lightfer_utils.runtime.media import gray_of

FACE_SIZE = 48
LEFT_EYE = slice(36, 42)  # landmarks of the eye on the image's left (the subject's right eye)
RIGHT_EYE = slice(42, 48)
# dlib's HOG face detector scans an 80x80 window over an image pyramid: at scale 1 it finds faces
# from about 80 px up. To find faces of at least `min_face` px the image is scaled by 80 / min_face
# first: larger faces only -> a smaller image -> faster.
DETECTOR_WINDOW = 80
DEFAULT_MIN_FACE = 80
DETECTORS = ("hog", "blazeface")
# `lightfer predict`'s detector, chosen by `lightfer bench faces` and `bench pipeline` (docs/predict.md);
# the notebooks and the paper's tables keep HOG, the paper's
DEFAULT_DETECTOR = "blazeface"
ALIGNMENTS = ("dlib68", "eyes")
# each detector's own score threshold: dlib's 0 (docs/measurements.md), MediaPipe's 0.5
DEFAULT_MIN_SCORES = {"hog": 0.0, "blazeface": 0.5}
# BlazeFace finds faces down to about 24 px of its 192 px input: an image larger than
# TILE_FACES * min_face is also searched in overlapping tiles of that side (and of 4x, 16x it), so
# that --min-face keeps its meaning for both detectors.
TILE_FACES = 8


class Face(NamedTuple):
    box: Tuple[int, int, int, int]  # left, top, right, bottom in the original image's pixels
    landmarks: np.ndarray  # (x, y) in the original image's pixels: dlib's 68 points, or BlazeFace's 6 keypoints
    crop: np.ndarray  # uint8 [48, 48], aligned
    roll_degrees: float  # rotation applied to level the eyes
    score: float = 1.0  # the detector's score (dlib: its SVM margin; BlazeFace: a probability)


Box = Tuple[float, float, float, float]


class StageTimes:
    """Seconds spent per stage, accumulated over calls."""

    def __init__(self) -> None:
        self.detect = self.landmarks = self.align = self.classify = 0.0
        self.frames = self.faces = self.full_detections = 0

    def per_frame_ms(self) -> Dict[str, float]:
        frames = max(self.frames, 1)
        stages = {"detect": self.detect, "landmarks": self.landmarks, "align": self.align, "classify": self.classify}
        result = {f"{k}_ms": 1000 * v / frames for k, v in stages.items()}
        result["total_ms"] = sum(result.values())
        result["fps"] = 1000 / result["total_ms"] if result["total_ms"] else float("inf")
        return result


def shape_predictor_file() -> Path:
    """dlib's 68-point predictor from the face_recognition_models package, found without importing
    it (its import loads pkg_resources: half a second of a one-photo run)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("dlib's shape predictor needs the face_recognition_models package: pip install lightfer")
    return Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"


class FaceStage:
    """Detect faces, find the eyes, level them and crop 48x48 faces framed like FER2013."""

    def __init__(self, min_face: int = DEFAULT_MIN_FACE, margin: float = 0.25, predictor_path: Optional[str] = None,
                 full_detect_every: int = 0, min_score: Optional[float] = None, detector: str = "hog",
                 alignment: Optional[str] = None, threads: int = 1):
        """`min_face`: the smallest face side (px) searched for (HOG: the image is scaled by
        80 / min_face first; BlazeFace: tiles of 8 x min_face). `full_detect_every` = k > 0 is for
        consecutive video frames: between full-frame detections (every k-th frame, and whenever a face
        is lost) only the region around each face of the previous frame is searched. 0: the whole
        frame on every call (the paper). `detector`: "hog" (the paper's) or "blazeface"; `alignment`:
        "dlib68" (the 68-point predictor's eyes; HOG's default) or "eyes" (BlazeFace's keypoints, its
        default); `min_score`: the detector's threshold (default: its own)."""
        if not 20 <= min_face <= 4000:
            raise ValueError("min_face must be between 20 and 4000 px, got {}".format(min_face))
        if full_detect_every < 0:
            raise ValueError("full_detect_every must be 0 (off) or a positive number of frames, got {}".format(
                full_detect_every))
        if detector not in DETECTORS:
            raise ValueError("detector must be one of {}, got {!r}".format(", ".join(DETECTORS), detector))
        alignment = alignment or ("eyes" if detector == "blazeface" else "dlib68")
        if alignment not in ALIGNMENTS or (detector == "hog" and alignment == "eyes"):
            raise ValueError("alignment must be dlib68{} for the {} detector, got {!r}".format(
                " or eyes" if detector == "blazeface" else " (HOG finds no eye points)", detector, alignment))
        min_score = DEFAULT_MIN_SCORES[detector] if min_score is None else min_score
        if not math.isfinite(min_score) or (detector == "blazeface" and not 0 < min_score < 1):
            raise ValueError("min_score must be a finite number (BlazeFace: between 0 and 1), got {}".format(min_score))
        self.settings = dict(min_face=min_face, margin=margin, predictor_path=predictor_path,
                             full_detect_every=full_detect_every, min_score=min_score, detector=detector,
                             alignment=alignment, threads=threads)
        self.min_face, self.margin, self.min_score = min_face, margin, min_score
        self.detector_name, self.alignment, self.full_detect_every = detector, alignment, full_detect_every
        if detector == "hog":
            import dlib

            self.detector = dlib.get_frontal_face_detector()
        else:
            from lightfer_utils.runtime.blazeface import BlazeFace

            self.detector = BlazeFace("full", min_score, threads)
            self.tracker = BlazeFace("short", min_score, threads)
        if alignment == "dlib68":
            import dlib

            if predictor_path is None:
                predictor_path = shape_predictor_file()
            if not Path(predictor_path).is_file():
                raise FileNotFoundError(f"dlib shape predictor not found: {predictor_path}")
            self.shape_predictor = dlib.shape_predictor(str(predictor_path))
        self.times = StageTimes()
        self.reset()

    def copy(self) -> "FaceStage":
        """A stage with the same settings and its own detector state (one per worker thread)."""
        return FaceStage(**self.settings)

    def reset(self) -> None:
        """Forget the previous frame's faces (call before an unrelated image or a new video)."""
        self._previous = []  # type: List[Tuple[float, float, float, float]]
        self._since_full = 0

    def __call__(self, image: np.ndarray) -> List[Face]:
        """The faces of a gray [H, W] or RGB [H, W, 3] image (BlazeFace sees the colours; the eyes
        and the crops are found in gray)."""
        start = time.perf_counter()
        gray = gray_of(image)
        seen = np.ascontiguousarray(image, dtype=np.uint8) if self.detector_name == "blazeface" else gray
        found = self._track(seen) if self.full_detect_every and self._previous else None
        if found is None:
            found = self._detect(seen)
            self.times.full_detections += 1
            self._since_full = 0
        self._previous = [box for box, _, _ in found]
        self._since_full += 1
        detected = time.perf_counter()
        points = [self._landmarks(gray, box) if self.alignment == "dlib68" else keypoints for box, _, keypoints in found]
        located = time.perf_counter()
        faces = []
        for (box, score, _), landmarks in zip(found, points):
            crop, roll = self.align(gray, landmarks, box)
            rounded = (int(round(box[0])), int(round(box[1])), int(round(box[2])), int(round(box[3])))
            faces.append(Face(box=rounded, landmarks=landmarks, crop=crop, roll_degrees=roll, score=score))
        aligned = time.perf_counter()
        self.times.detect += detected - start
        self.times.landmarks += located - detected
        self.times.align += aligned - located
        self.times.frames += 1
        self.times.faces += len(faces)
        return faces

    def _landmarks(self, gray: np.ndarray, box: Box) -> np.ndarray:
        import dlib

        shape = self.shape_predictor(gray, dlib.rectangle(int(box[0]), int(box[1]), int(box[2]), int(box[3])))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def _detect(self, gray: np.ndarray) -> List[Tuple[Box, float, Optional[np.ndarray]]]:
        """(box, score, keypoints or None) of every face in the whole image."""
        if self.detector_name == "hog":
            return self._hog(gray, 0, 0, DETECTOR_WINDOW / self.min_face)
        height, width = gray.shape[:2]
        found = self._blaze(self.detector, gray, 0, 0)
        side = TILE_FACES * self.min_face
        while side < max(height, width):  # overlapping tiles for the faces too small for the whole-image pass
            step = side // 2
            for top in range(0, max(1, height - step), step):
                for left in range(0, max(1, width - step), step):
                    found += self._blaze(self.detector, gray[top:top + side, left:left + side], left, top)
            side *= 4
        return suppress_overlaps([f for f in found if f[0][2] - f[0][0] >= self.min_face / 2])

    def _blaze(self, detector, gray: np.ndarray, left: int, top: int) -> List[Tuple[Box, float, np.ndarray]]:
        offset = np.array([left, top], np.float32)
        return [((d.box[0] + left, d.box[1] + top, d.box[2] + left, d.box[3] + top), d.score, d.keypoints + offset)
                for d in detector(gray)]

    def _hog(self, gray: np.ndarray, left: int, top: int, scale: float) -> List[Tuple[Box, float, None]]:
        """dlib's boxes in a gray image (a region whose corner is at left, top), at `scale`."""
        import cv2

        if min(gray.shape) * scale < DETECTOR_WINDOW:
            return []  # too small to hold a face of the size searched for
        if scale != 1:
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=interpolation)
        rects, scores, _ = self.detector.run(np.ascontiguousarray(gray), 0, self.min_score)
        return [((left + r.left() / scale, top + r.top() / scale, left + r.right() / scale, top + r.bottom() / scale),
                 float(score), None) for r, score in zip(rects, scores)]

    def _track(self, gray: np.ndarray) -> Optional[List[Tuple[Box, float, Optional[np.ndarray]]]]:
        """Each previous face found again in the region around it, or None (time for a full detection)."""
        if self._since_full >= self.full_detect_every:
            return None
        height, width = gray.shape[:2]
        found = []
        for left, top, right, bottom in self._previous:
            side = max(right - left, bottom - top)
            x0, y0 = int(max(0, left - side / 2)), int(max(0, top - side / 2))
            x1, y1 = int(min(width, right + side / 2)), int(min(height, bottom + side / 2))
            region = gray[y0:y1, x0:x1]
            if self.detector_name == "hog":  # shrink the region so the face spans about 100 px, a little over the window
                near = self._hog(region, x0, y0, min(1.0, 100.0 / max(side, 1.0)))
            else:
                near = self._blaze(self.tracker, np.ascontiguousarray(region), x0, y0) if region.size else []
            centre = ((left + right) / 2, (top + bottom) / 2)
            distance = lambda f: abs((f[0][0] + f[0][2]) / 2 - centre[0]) + abs((f[0][1] + f[0][3]) / 2 - centre[1])  # noqa: E731
            # the same face moves less than its size and keeps about its size between frames; anything
            # else (a face cut by the region's edge missed, a false detection kept) calls for a full search
            near = [f for f in near if distance(f) < side and 0.6 * side < f[0][2] - f[0][0] < 1.6 * side]
            if not near:
                return None
            found.append(min(near, key=distance))
        return found

    def align(self, gray: np.ndarray, points: np.ndarray, box: Box) -> Tuple[np.ndarray, float]:
        """Rotate about the face centre so the eye line is level, then cut a square of the box size
        plus `margin` (FER2013 crops show the whole face with a little hair and chin) and resize."""
        import cv2

        if len(points) == 68:
            left_eye, right_eye = points[LEFT_EYE].mean(axis=0), points[RIGHT_EYE].mean(axis=0)
        else:  # BlazeFace's keypoints: its first two are the eyes
            left_eye, right_eye = sorted((points[0], points[1]), key=lambda p: p[0])
        roll = math.degrees(math.atan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0]))
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        side = max(box[2] - box[0], box[3] - box[1]) * (1 + self.margin)
        rotation = cv2.getRotationMatrix2D(centre, roll, 1.0)
        # shift so the square around the centre lands at the origin, then scale it to 48x48
        rotation[:, 2] += np.array([side / 2 - centre[0], side / 2 - centre[1]])
        scale = FACE_SIZE / side
        affine = rotation * scale
        crop = cv2.warpAffine(gray, affine, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_AREA,
                              borderMode=cv2.BORDER_REPLICATE)
        return crop, roll


def suppress_overlaps(found: List[Tuple[Box, float, Optional[np.ndarray]]], overlap: float = 0.3,
                      contained: float = 0.6) -> List[Tuple[Box, float, Optional[np.ndarray]]]:
    """The best of each group of detections of one face (from overlapping tiles): a detection is
    dropped when a better one overlaps it by more than `overlap` (IoU) or covers `contained` of it."""
    kept = []  # type: List[Tuple[Box, float, Optional[np.ndarray]]]
    for item in sorted(found, key=lambda f: -f[1]):
        box = item[0]
        area = (box[2] - box[0]) * (box[3] - box[1])
        for other, _, _ in kept:
            inter = max(0.0, min(box[2], other[2]) - max(box[0], other[0])) * max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
            other_area = (other[2] - other[0]) * (other[3] - other[1])
            if inter / max(area + other_area - inter, 1e-9) > overlap or inter / max(min(area, other_area), 1e-9) > contained:
                break
        else:
            kept.append(item)
    return kept


def crop_as_face(gray: np.ndarray) -> Face:
    """An image that already is a face crop (FER2013-style), whole, as a 48x48 face: no detection."""
    import cv2

    height, width = gray.shape
    interpolation = cv2.INTER_AREA if min(height, width) >= FACE_SIZE else cv2.INTER_LINEAR
    crop = cv2.resize(np.ascontiguousarray(gray), (FACE_SIZE, FACE_SIZE), interpolation=interpolation)
    return Face(box=(0, 0, width, height), landmarks=np.zeros((0, 2), np.float32), crop=crop, roll_degrees=0.0)


def classify_faces(stage: FaceStage, predictor, gray: np.ndarray) -> List[Tuple[Face, np.ndarray]]:
    """(face, probabilities) for every face in a gray frame; classify time goes to stage.times."""
    faces = stage(gray)  # gray or RGB
    if not faces:
        return []
    start = time.perf_counter()
    probabilities = predictor(np.stack([f.crop for f in faces]).astype(np.float32))
    stage.times.classify += time.perf_counter() - start
    return list(zip(faces, probabilities))
