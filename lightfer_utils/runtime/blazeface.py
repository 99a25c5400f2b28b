"""MediaPipe's BlazeFace face detector on LiteRT: SSD anchors, box and keypoint decoding and
weighted non-maximum suppression as MediaPipe's face_detection graphs do them. Its two models are
vendored in `detectors/` (README there: source, licence, sha256, checked at every load).

numpy, OpenCV and ai-edge-litert only; no syntax newer than Python 3.6 (the runtime side).
"""

from pathlib import Path
from typing import List, NamedTuple, Tuple

import numpy as np

from lightfer_utils.runtime.errors import ModelLoadError
from lightfer_utils.runtime.provenance import file_sha256

DETECTOR_DIR = Path(__file__).resolve().parent / "detectors"


class Variant(NamedTuple):
    file: str
    sha256: str
    size: int  # square input side
    strides: Tuple[int, ...]  # SSD feature-map strides (MediaPipe's ssd_anchors options)
    anchors_per_cell: Tuple[int, ...]  # anchors per feature-map cell, per distinct stride


VARIANTS = {
    "full": Variant("face_detection_full_range.tflite",
                    "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3", 192, (4,), (1,)),
    "short": Variant("face_detection_short_range.tflite",
                     "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633", 128, (8, 16), (2, 6)),
}
RAW_SCORE_LIMIT = 80.0  # MediaPipe clips at 100; 80 keeps exp() inside float32
NMS_OVERLAP = 0.3  # MediaPipe's min_suppression_threshold (IoU)


class Detection(NamedTuple):
    box: Tuple[float, float, float, float]  # left, top, right, bottom in the image's pixels
    score: float
    keypoints: np.ndarray  # [6, 2] x, y in pixels: two eyes, nose tip, mouth, two ear tragions


def anchors(variant: Variant) -> np.ndarray:
    """Anchor centres [N, 2] (x, y in 0..1), in the order of the model's outputs."""
    centres = []
    for stride, repeats in zip(variant.strides, variant.anchors_per_cell):
        cells = variant.size // stride
        for y in range(cells):
            for x in range(cells):
                centres.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * repeats)
    return np.array(centres, dtype=np.float32)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    left, top = np.maximum(box[0], others[:, 0]), np.maximum(box[1], others[:, 1])
    right, bottom = np.minimum(box[2], others[:, 2]), np.minimum(box[3], others[:, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    union = area(box) + area(others) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, overlap: float = NMS_OVERLAP
                 ) -> List[Tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted NMS: the best remaining detection absorbs those overlapping it by more
    than `overlap` (IoU); their boxes and keypoints are averaged by score, the best score kept."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    kept = []
    remaining = np.arange(len(scores))
    while len(remaining):
        best = remaining[0]
        similar = remaining[_iou(boxes[best], boxes[remaining]) > overlap]
        similar = similar if len(similar) else np.array([best])
        weights = scores[similar][:, None]
        box = (boxes[similar] * weights).sum(0) / weights.sum()
        points = (keypoints[similar] * weights[:, :, None]).sum(0) / weights.sum()
        kept.append((box, points, float(scores[best])))
        remaining = np.setdiff1d(remaining, similar, assume_unique=True)
        remaining = remaining[np.argsort(-scores[remaining], kind="stable")]
    return kept


class BlazeFace:
    """Faces in an image (gray [H, W] or RGB [H, W, 3] uint8), as `Detection`s above `min_score`."""

    def __init__(self, variant: str = "full", min_score: float = 0.5, threads: int = 1, folder: Path = DETECTOR_DIR):
        from ai_edge_litert.interpreter import Interpreter

        from lightfer_utils.runtime.quiet import native_stderr_hidden

        if variant not in VARIANTS:
            raise ValueError("BlazeFace variant must be one of {}, got {!r}".format(", ".join(VARIANTS), variant))
        self.variant = VARIANTS[variant]
        path = Path(folder) / self.variant.file
        if not path.is_file():
            raise ModelLoadError("{}: the face detector's model file is missing (it comes with lightfer: reinstall "
                                 "it)".format(path))
        if file_sha256(path) != self.variant.sha256:
            raise ModelLoadError("{}: the face detector's model file is changed or damaged (its sha256 differs from "
                                 "the one in blazeface.VARIANTS); reinstall lightfer".format(path))
        self.min_score = min_score
        with native_stderr_hidden():  # LiteRT's one-time XNNPACK line
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = {int(d["shape"][-1]): d["index"] for d in self.interpreter.get_output_details()}
        self.regressors, self.classificators = outputs[16], outputs[1]
        self.anchors = anchors(self.variant)

    def __call__(self, image: np.ndarray) -> List[Detection]:
        import cv2

        size = self.variant.size
        height, width = image.shape[:2]
        scale = size / max(height, width)
        resized = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                             interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        if resized.ndim == 2:
            resized = cv2.cvtColor(resized, cv2.COLOR_GRAY2RGB)
        tensor = np.zeros((1, size, size, 3), np.float32)  # letterboxed: the image at the top left
        tensor[0, :resized.shape[0], :resized.shape[1]] = resized.astype(np.float32) / 127.5 - 1.0
        self.interpreter.set_tensor(self.input, tensor)
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.regressors)[0].reshape(-1, 8, 2) / size
        logits = np.clip(self.interpreter.get_tensor(self.classificators)[0, :, 0], -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
        scores = 1.0 / (1.0 + np.exp(-logits))
        chosen = scores >= self.min_score
        if not chosen.any():
            return []
        raw, scores, centres = raw[chosen], scores[chosen], self.anchors[chosen]
        centre, half = raw[:, 0] + centres, raw[:, 1] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        keypoints = raw[:, 2:] + centres[:, None, :]
        pixels = size / scale  # normalised model coordinates -> the image's pixels
        return [Detection(tuple(float(v) for v in box * pixels), score, points * pixels)
                for box, points, score in weighted_nms(boxes[valid], keypoints[valid], scores[valid])]

