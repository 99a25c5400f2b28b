"""Checks on the real FER2013 (skipped unless LIGHTFER_DATA is configured)."""

from __future__ import annotations

import numpy as np

from lightfer_utils import CLASS_NAMES
from lightfer_utils import data as fer
from lightfer_utils.cli import main as lightfer
from lightfer_utils.explore import exact_duplicates, near_constant_images

# The published class counts of the contest CSV (also in the folder distribution's README).
PUBLISHED_COUNTS = {
    "angry": (3995, 467, 491), "disgust": (436, 56, 55), "fear": (4097, 496, 528),
    "happy": (7215, 895, 879), "sad": (4830, 653, 594), "surprise": (3171, 415, 416),
    "neutral": (4965, 607, 626),
}


def test_counts_match_the_published_split(fer2013_path):
    data = fer.load_fer2013(fer2013_path, progress=False)
    counts = data.counts()
    for name in CLASS_NAMES:
        assert tuple(counts.loc[name, list(fer.SPLITS)]) == PUBLISHED_COUNTS[name], name
    assert counts.loc["total", "all"] == 35887
    assert data.images.shape == (35887, 48, 48) and data.images.dtype == np.uint8


def test_known_quirks_are_found(fer2013_path):
    data = fer.load_fer2013(fer2013_path, progress=False)
    assert len(near_constant_images(data)) == 12
    duplicates = exact_duplicates(data)
    assert duplicates["group"].nunique() > 1000  # FER2013 repeats faces
    if data.csv_rows[0] < 0:  # folder form: the same id in two class folders, told apart by path
        sources = set(data.sources.tolist())
        assert {"train/neutral/Training_52789098.jpg", "train/surprise/Training_52789098.jpg"} <= sources


def test_second_load_uses_the_cache(fer2013_path, monkeypatch):
    first = fer.load_fer2013(fer2013_path, progress=False)

    def no_reading(*args, **kwargs):
        raise AssertionError("the source was read again: the cache was not used")

    monkeypatch.setattr(fer, "read_folder", no_reading)
    monkeypatch.setattr(fer, "read_csv", no_reading)
    second = fer.load_fer2013(fer2013_path, progress=False)
    assert second.sha256 == first.sha256 and np.array_equal(second.images, first.images)


def test_folder_and_csv_readers_agree_on_genuine_pixels(fer2013_path, tmp_path):
    original = fer.load_fer2013(fer2013_path, progress=False)
    target = tmp_path / "fer2013.csv"
    assert lightfer(["data", "to-csv", str(fer2013_path), str(target)]) == 0
    from_csv = fer.load_fer2013(target, progress=False)
    assert from_csv.sha256 == original.sha256
    assert lightfer(["data", "to-csv", str(fer2013_path), str(target)]) == 2  # never overwritten silently
