"""The benchmarks' pictures: real photos with hand-labelled faces and composites of their faces
at known sizes (`lightfer bench faces`: detectors are compared on faces no detector chose), and
the astronaut's face in 640x480 frames, still or moving (`lightfer bench pipeline`, notebook 06).

- scikit-image's astronaut (in every install): one face.
- insightface's group photo `t1.jpg` (six faces, 1280x886), from the insightface 2.1 source
  distribution on PyPI: fetched once into `$LIGHTFER_CACHE/photos`, checked by sha256, never
  committed. `LIGHTFER_PHOTOS` may name a folder that already holds `t1.jpg` (offline machines).

The boxes were labelled by hand (left, top, right, bottom; the face from brow to chin, ear to
ear) and checked against both detectors' boxes. No syntax newer than Python 3.6.
"""

import hashlib
import io
import os
import tarfile
import urllib.request
from pathlib import Path
from typing import Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

Box = Tuple[int, int, int, int]
SDIST = {"project": "insightface", "version": "2.1", "file": "insightface-2.1.tar.gz",
         "sha256": "776cbd36b70f5f2ae1a026101cfb80387f0b2280a0dbaf073f8d3ed69f554e01"}
GROUP_PHOTO = {"member": "insightface-2.1/insightface/data/images/t1.jpg", "name": "t1.jpg",
               "sha256": "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489"}
GROUP_FACES = [(60, 285, 166, 390), (262, 168, 362, 268), (454, 293, 572, 411), (730, 363, 833, 466),
               (873, 80, 992, 198), (1119, 290, 1229, 399)]  # type: List[Box]
ASTRONAUT_FACES = [(176, 76, 272, 172)]  # type: List[Box]
COMPOSITE_SIZES = (24, 32, 48, 64, 96, 160, 256)


class LabelledPhoto(NamedTuple):
    name: str
    image: np.ndarray  # RGB
    faces: List[Box]


def astronaut() -> LabelledPhoto:
    from skimage import data

    return LabelledPhoto("astronaut (scikit-image)", data.astronaut(), list(ASTRONAUT_FACES))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def group_photo(cache: Path) -> LabelledPhoto:
    """insightface's t1.jpg: from LIGHTFER_PHOTOS, the cache, or PyPI (checked by sha256)."""
    import cv2

    folders = [Path(os.environ["LIGHTFER_PHOTOS"])] if os.environ.get("LIGHTFER_PHOTOS") else []
    found = next((f / GROUP_PHOTO["name"] for f in folders + [cache] if (f / GROUP_PHOTO["name"]).is_file()), None)
    if found is not None:
        data = found.read_bytes()
    else:
        data = _from_sdist()
        cache.mkdir(parents=True, exist_ok=True)
        (cache / GROUP_PHOTO["name"]).write_bytes(data)
        found = cache / GROUP_PHOTO["name"]
    if _sha256(data) != GROUP_PHOTO["sha256"]:
        raise ValueError("{} is not insightface 2.1's t1.jpg (sha256 differs); remove it to fetch it again".format(found))
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return LabelledPhoto("t1.jpg (insightface 2.1)", cv2.cvtColor(image, cv2.COLOR_BGR2RGB), list(GROUP_FACES))


def _from_sdist() -> bytes:
    """t1.jpg out of insightface's source distribution, located through the package index's
    simple API (PIP_INDEX_URL, default PyPI's)."""
    import re
    from urllib.parse import urljoin

    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/") + "/{}/".format(SDIST["project"])
    try:
        with urllib.request.urlopen(index, timeout=60) as response:
            page = response.read(8 << 20).decode("utf-8", "replace")
        link = next(m.group(1) for m in re.finditer(r'href="([^"]+)"', page)
                    if m.group(1).split("#")[0].endswith("/" + SDIST["file"]))
        with urllib.request.urlopen(urljoin(index, link.split("#")[0]), timeout=120) as response:
            archive = response.read(64 << 20)
    except (OSError, ValueError, StopIteration) as err:
        raise OSError("could not fetch {} from {} ({}); put t1.jpg in a folder named by LIGHTFER_PHOTOS".format(
            SDIST["file"], index, err or "not listed")) from None
    if _sha256(archive) != SDIST["sha256"]:
        raise ValueError("{} from {} does not have the expected sha256".format(SDIST["file"], index))
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        member = tar.extractfile(GROUP_PHOTO["member"])
        if member is None:
            raise ValueError("{} holds no {}".format(SDIST["file"], GROUP_PHOTO["member"]))
        return member.read()


def face_crops(photos: Sequence[LabelledPhoto]) -> List[Tuple[np.ndarray, float]]:
    """Each labelled face with its surroundings: a square RGB crop twice the box's side, centred
    on the box (edges replicated), and the box side / crop side (0.5)."""
    import cv2

    crops = []
    for photo in photos:
        for left, top, right, bottom in photo.faces:
            side = 2 * max(right - left, bottom - top)
            cx, cy = (left + right) // 2, (top + bottom) // 2
            pad = side
            padded = cv2.copyMakeBorder(photo.image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            x0, y0 = cx - side // 2 + pad, cy - side // 2 + pad
            crops.append((padded[y0:y0 + side, x0:x0 + side], (right - left) / side))
    return crops


def background(size: Tuple[int, int], seed: int) -> np.ndarray:
    """A cluttered RGB background without people: scikit-image's coffee, cat (a face that is not
    a human's) and rocket pictures, tiled at random."""
    import cv2
    from skimage import data

    rng = np.random.default_rng(seed)
    tiles = [data.coffee(), data.chelsea(), data.rocket()]
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    step = max(size) // 3
    for top in range(0, size[1], step):
        for left in range(0, size[0], step):
            tile = cv2.resize(tiles[int(rng.integers(len(tiles)))], (step, step), interpolation=cv2.INTER_AREA)
            frame[top:top + step, left:left + step] = tile[:size[1] - top, :size[0] - left]
    return frame


def composites(faces: Sequence[Tuple[np.ndarray, float]], count: int, size: Tuple[int, int] = (1280, 960),
               per_frame: int = 6, sizes: Sequence[int] = COMPOSITE_SIZES, seed: int = 0
               ) -> Tuple[List[np.ndarray], List[List[Tuple[Box, int]]]]:
    """RGB frames with the `faces` (crop, box side / crop side) pasted at known places, each
    scaled so that its labelled box has a side from `sizes` (cycling); each frame's (box, size)
    pairs. Faces keep one face's distance from each other."""
    import cv2

    rng = np.random.default_rng(seed)
    frames, truths = [], []  # type: List[np.ndarray], List[List[Tuple[Box, int]]]
    sides = iter(np.resize(np.asarray(sizes), count * per_frame))
    for index in range(count):
        frame = background(size, seed + index)
        placed = []  # type: List[Tuple[Box, int]]
        for _ in range(per_frame):
            face_size = int(next(sides))
            crop, ratio = faces[int(rng.integers(len(faces)))]
            side = int(round(face_size / ratio))
            if side >= min(size):
                continue
            for _attempt in range(50):
                left, top = int(rng.integers(0, size[0] - side)), int(rng.integers(0, size[1] - side))
                box = (left, top, left + side, top + side)
                if all(box[2] + side <= b[0] or b[2] + side <= box[0] or box[3] + side <= b[1] or b[3] + side <= box[1]
                       for b, _ in placed):
                    break
            else:
                continue
            frame[top:top + side, left:left + side] = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA
                                                                 if side < crop.shape[0] else cv2.INTER_CUBIC)
            margin = int(round(side * (1 - ratio) / 2))  # the labelled face inside the pasted crop
            placed.append(((left + margin, top + margin, left + side - margin, top + side - margin), face_size))
        frames.append(frame)
        truths.append(placed)
    return frames, truths


def photo_truths(photos: Sequence[LabelledPhoto]) -> Tuple[List[np.ndarray], List[List[Tuple[Box, int]]]]:
    """The photos themselves as frames, each face labelled with its own side."""
    return [p.image for p in photos], [[(box, box[2] - box[0]) for box in p.faces] for p in photos]


def benchmark_frames(count: int = 4, size: Tuple[int, int] = (640, 480), face_scale: float = 2.0) -> np.ndarray:
    """640x480 gray frames, each holding the astronaut's face from scikit-image at a new place,
    scaled by `face_scale` (2.0: a ~175 px face, as a webcam close-up shows one)."""
    import cv2
    from skimage import data

    head = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)[30:230, 130:310]
    face = cv2.resize(head, None, fx=face_scale, fy=face_scale, interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(count):
        frame = np.full((size[1], size[0]), 128, np.uint8)
        top, left = rng.integers(0, size[1] - face.shape[0] + 1), rng.integers(0, size[0] - face.shape[1] + 1)
        frame[top:top + face.shape[0], left:left + face.shape[1]] = face
        frames.append(frame)
    return np.stack(frames)


def moving_face_frames(count: int = 100, size: Tuple[int, int] = (640, 480)) -> np.ndarray:
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


def alignment_agreement(images: Sequence[np.ndarray], predictor, min_face: int = 80) -> Dict[str, float]:
    """BlazeFace's faces aligned by its eye keypoints and by dlib's 68 points: how far the two roll
    angles lie apart and how often the model's top emotion is the same (`lightfer bench faces`)."""
    from lightfer_utils.runtime.faces import FaceStage

    stages = {a: FaceStage(min_face=min_face, detector="blazeface", alignment=a) for a in ("eyes", "dlib68")}
    rolls, same = [], 0
    for image in images:
        found = {}
        for name, stage in stages.items():
            stage.reset()
            found[name] = {face.box: face for face in stage(image)}
        for box, eyes in found["eyes"].items():
            dlib68 = found["dlib68"][box]  # the same detections: only the alignment differs
            rolls.append(abs(eyes.roll_degrees - dlib68.roll_degrees))
            tops = [int(np.argmax(predictor(f.crop[None].astype(np.float32))[0])) for f in (eyes, dlib68)]
            same += tops[0] == tops[1]
    return {"faces": len(rolls), "median_roll_difference_deg": float(np.median(rolls)) if rolls else float("nan"),
            "max_roll_difference_deg": float(max(rolls)) if rolls else float("nan"),
            "same_top_emotion": same / max(len(rolls), 1)}
