"""Reading images and videos, the untrusted input of `lightfer predict` and of image-folder data:
limits checked before decoding, any image mode to gray or RGB. Needs numpy, Pillow and OpenCV
only; no syntax newer than Python 3.6.
"""

import math
import re
from pathlib import Path
from typing import Iterator, Tuple, Union

import numpy as np

PathLike = Union[str, Path]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
# Images above this many pixels are refused before they are decoded (a 15000x15000 PNG would
# take 225 MB as gray and more while decoding); 120 MP admits every phone and DSLR photo.
DEFAULT_MAX_PIXELS = 120_000_000
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


class ImageReadError(ValueError):
    """A file that is not a readable image (or video)."""


def read_image(path: PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, color: bool = False) -> np.ndarray:
    """Any image file as 8-bit gray [H, W] (RGB(A), palette, 16-bit and gray images), or with
    `color` as RGB [H, W, 3] when it has colour; EXIF rotation applied. The file is only read; an
    image over `max_pixels` is refused before decoding."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    source = Path(path)
    if not source.is_file():
        raise ImageReadError("{}: no such file".format(source))
    if source.stat().st_size == 0:
        raise ImageReadError(f"{source}: empty file (0 bytes)")
    import warnings

    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own check then refuses beyond twice our limit, ours below
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                if image.width * image.height > max_pixels:
                    raise ImageReadError("{}: {}x{} pixels is over the limit of {:,} (--max-megapixels)".format(
                        source, image.width, image.height, max_pixels))
                image.load()
                image = ImageOps.exif_transpose(image)
                return to_rgb(image) if color and image.mode not in GRAY_MODES else to_gray(image)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as err:  # Pillow refused the header: over twice our limit
        found = re.search(r"\((\d+) pixels\)", str(err))
        size = "{:,} pixels".format(int(found.group(1))) if found else "its size"
        raise ImageReadError("{}: {} is over the limit of {:,} (--max-megapixels)".format(source, size, max_pixels)) from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{source}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated or damaged data
        raise ImageReadError(f"{source}: damaged or truncated image ({err})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


GRAY_MODES = ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F")


def _on_white(image):
    """A Pillow image with transparency composited on white; others unchanged."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        background.alpha_composite(image)
        return background
    return image


def to_rgb(image) -> np.ndarray:
    """A Pillow colour image as uint8 RGB; transparent pixels become white."""
    return np.asarray(_on_white(image).convert("RGB"), dtype=np.uint8)


def gray_of(image: np.ndarray) -> np.ndarray:
    """A gray [H, W] or RGB [H, W, 3] uint8 image as gray."""
    import cv2

    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    if image.ndim != 2:
        raise ValueError(f"expected a gray [H, W] or RGB [H, W, 3] image, got shape {image.shape}")
    return np.ascontiguousarray(image, dtype=np.uint8)


def to_gray(image) -> np.ndarray:
    """A Pillow image of any mode as uint8 gray; 16/32-bit images are scaled, not clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = values.max()
        return (values * (255.0 / top)).round().astype(np.uint8) if top > 0 else np.zeros(values.shape, np.uint8)
    return np.asarray(_on_white(image).convert("L"), dtype=np.uint8)  # transparent pixels become white


def video_frames(path: PathLike, every: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS,
                 color: bool = False) -> Iterator[Tuple[int, np.ndarray]]:
    """(frame index, gray frame, or RGB with `color`) for every `every`-th frame of a video file;
    frames over `max_pixels` are refused, by the header's size before any is decoded and by each frame's."""
    import cv2

    if not Path(path).is_file():  # a FIFO or device would block the reader
        raise ImageReadError("{}: not a regular file".format(path))
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ImageReadError(f"{path}: not a video OpenCV can read")
    try:
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > max_pixels:
            raise ImageReadError("{}: frames of {}x{} pixels are over the limit of {:,} (--max-megapixels)".format(
                path, width, height, max_pixels))
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if frame.shape[0] * frame.shape[1] > max_pixels:
                raise ImageReadError("{}: frame {} of {}x{} pixels is over the limit of {:,} (--max-megapixels)".format(
                    path, index, frame.shape[1], frame.shape[0], max_pixels))
            if index % every == 0:
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB if color else cv2.COLOR_BGR2GRAY)
            index += 1
        if index == 0:
            raise ImageReadError(f"{path}: no readable frames")
    finally:
        capture.release()


def video_frame_rate(path: PathLike) -> float:
    """The video's frames per second as its header says (25 when it says nothing usable)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        rate = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    finally:
        capture.release()
    return rate if math.isfinite(rate) and 0 < rate <= 1000 else 25.0


def video_frame_count(path: PathLike) -> int:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
