"""Data layer: both FER2013 forms, validation of every bad-record kind, cache, FER+, subsets."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import pixels_text, random_faces, write_contest_csv
from lightfer_utils import CLASS_NAMES
from lightfer_utils import data as fer


def test_csv_reads_every_record_exactly(good_csv):
    path, images, labels, usage = good_csv
    data = fer.load_fer2013(path, use_cache=False, progress=False)
    assert len(data) == 21 and data.source_rows == 21
    np.testing.assert_array_equal(data.images, images)
    assert data.labels.tolist() == labels
    assert [fer.SPLITS[u] for u in data.usage] == usage
    assert data.sources[0] == "line 2"  # the header is line 1
    assert data.csv_rows.tolist() == list(range(21))
    assert len(data.sha256) == 64


def test_gzipped_csv_matches_plain(good_csv, tmp_path):
    path, *_ = good_csv
    gz = tmp_path / "fer2013.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    plain = fer.load_fer2013(path, use_cache=False, progress=False)
    zipped = fer.load_fer2013(gz, use_cache=False, progress=False)
    assert zipped.sha256 == plain.sha256


@pytest.fixture
def csv_with_bad_rows(tmp_path) -> Path:
    """Three good rows and one planted bad row of each kind, at known line numbers."""
    good = random_faces(3)
    face = pixels_text(good[0])
    rows = [
        f"0,{pixels_text(good[0])},Training",  # line 2
        f"3,{' '.join(['7'] * 2303)},Training",  # line 3: 2303 pixels
        f"1,{face} 12,PublicTest",  # line 4: 2305 pixels
        f"2,{face.rsplit(' ', 1)[0]} 1.5,Training",  # line 5: non-integer pixel
        f"4,{face.rsplit(' ', 1)[0]} 256,Training",  # line 6: out of range
        f"4,{face.rsplit(' ', 1)[0]} -3,Training",  # line 7: negative
        f"9,{face},Training",  # line 8: unknown label
        f"x,{face},Training",  # line 9: label not an integer
        f"5,{face},Validation",  # line 10: unknown Usage
        f"6,{face}",  # line 11: missing field
        f"5,{pixels_text(good[1])},PublicTest",  # line 12
        f"6,{pixels_text(good[2])},PrivateTest",  # line 13
    ]
    path = tmp_path / "bad.csv"
    path.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    return path


EXPECTED_PROBLEMS = {
    "line 3": "expected 2304 pixel values, found 2303",
    "line 4": "expected 2304 pixel values, found 2305",
    "line 5": "pixel value '1.5' is not an integer",
    "line 6": "pixel value 256 is outside 0..255",
    "line 7": "pixel value -3 is outside 0..255",
    "line 8": "emotion 9 is not a FER2013 label (0..6)",
    "line 9": "emotion 'x' is not an integer label",
    "line 10": "Usage 'Validation' is not one of Training, PublicTest, PrivateTest",
    "line 11": "expected 3 fields, found 2",
}


def test_strict_mode_names_every_bad_row(csv_with_bad_rows):
    with pytest.raises(fer.DataValidationError) as caught:
        fer.load_fer2013(csv_with_bad_rows, use_cache=False, progress=False)
    assert {p.source: p.reason for p in caught.value.problems} == EXPECTED_PROBLEMS
    assert "9 invalid record(s)" in str(caught.value) and "line 6: pixel value 256" in str(caught.value)


def test_lenient_mode_drops_and_counts(csv_with_bad_rows):
    data = fer.load_fer2013(csv_with_bad_rows, strict=False, use_cache=False, progress=False)
    assert len(data) == 3 and data.source_rows == 12
    assert data.sources.tolist() == ["line 2", "line 12", "line 13"]
    assert data.csv_rows.tolist() == [0, 10, 11]
    assert len(data.problems) == len(EXPECTED_PROBLEMS)


def test_csv_without_usage_column_is_rejected(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("emotion,pixels\n0," + " ".join(["1"] * 2304) + "\n")
    with pytest.raises(fer.DataLayoutError, match="lacks column"):
        fer.load_fer2013(path, use_cache=False, progress=False)


def test_folder_reads_pixels_labels_and_splits(image_folder):
    root, written = image_folder
    data = fer.load_fer2013(root, use_cache=False, progress=False)
    assert len(data) == 9
    by_source = {s: i for i, s in enumerate(data.sources)}
    for name, face in written.items():
        index = by_source[name]
        np.testing.assert_array_equal(data.images[index], face)
        assert CLASS_NAMES[data.labels[index]] == name.split("/")[1]
    split_of = {s: fer.SPLITS[u] for s, u in zip(data.sources, data.usage)}
    assert split_of["train/neutral/img3.png"] == "Training"  # no prefix under train/
    assert split_of["test/disgust/img6.png"] == "PrivateTest"  # no prefix under test/
    assert split_of["test/sad/PublicTest_4.png"] == "PublicTest"
    assert split_of["test/fear/PrivateTest_5.png"] == "PrivateTest"
    assert (data.csv_rows == -1).all()


def test_folder_problems_are_named_by_file(image_folder):
    root, _ = image_folder
    (root / "train/angry/Training_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "train/angry/Training_empty.jpg").write_bytes(b"")
    Image.fromarray(random_faces(1)[0]).resize((64, 64)).save(root / "train/happy/Training_big.png")
    (root / "train/angry/notes.txt").write_text("hello")
    (root / "train/contempt").mkdir()
    Image.fromarray(random_faces(1)[0]).save(root / "train/contempt/Training_x.png")
    truncated = root / "test/sad/PublicTest_cut.jpg"
    buffer = truncated.with_suffix(".tmp.jpg")
    Image.fromarray(random_faces(1)[0]).save(buffer, quality=95)
    truncated.write_bytes(buffer.read_bytes()[:200])
    buffer.unlink()
    with pytest.raises(fer.DataValidationError) as caught:
        fer.load_fer2013(root, use_cache=False, progress=False)
    reasons = {p.source: p.reason for p in caught.value.problems}
    assert reasons["train/happy/Training_big.png"] == "image is 64x64, expected 48x48"
    assert reasons["train/angry/Training_broken.jpg"].startswith("unreadable image")
    assert reasons["train/angry/Training_empty.jpg"].startswith("unreadable image")
    assert reasons["test/sad/PublicTest_cut.jpg"].startswith("unreadable image")
    assert reasons["train/angry/notes.txt"] == "not an image file (unknown extension)"
    assert reasons["train/contempt/Training_x.png"] == "unknown class folder 'contempt'"
    assert len(reasons) == 6
    lenient = fer.load_fer2013(root, strict=False, use_cache=False, progress=False)
    assert len(lenient) == 9 and len(lenient.problems) == 6


def test_rgb_image_is_read_as_gray(image_folder):
    root, _ = image_folder
    face = random_faces(1, seed=5)[0]
    Image.fromarray(np.stack([face] * 3, axis=-1), mode="RGB").save(root / "train/angry/Training_rgb.png")
    data = fer.load_fer2013(root, use_cache=False, progress=False)
    index = data.sources.tolist().index("train/angry/Training_rgb.png")
    np.testing.assert_array_equal(data.images[index], face)


def test_folder_to_csv_round_trip_keeps_pixels(image_folder, tmp_path):
    root, _ = image_folder
    folder = fer.load_fer2013(root, use_cache=False, progress=False)
    target = fer.write_csv(folder, tmp_path / "out.csv.gz")
    again = fer.load_fer2013(target, use_cache=False, progress=False)
    assert again.sha256 == folder.sha256
    with pytest.raises(FileExistsError):
        fer.write_csv(folder, target)


def test_cache_is_reused_and_invalidated(image_folder, tmp_path, monkeypatch):
    root, written = image_folder
    cache = tmp_path / "cache"
    first = fer.load_fer2013(root, cache_dir=cache, progress=False)
    assert len(list(cache.glob("*.npz"))) == 1
    with monkeypatch.context() as patch:
        patch.setattr(fer, "read_folder", cache_only)
        second = fer.load_fer2013(root, cache_dir=cache, progress=False)
    assert second.sha256 == first.sha256 and second.sources.tolist() == first.sources.tolist()
    # Changing a file changes the fingerprint: the cache is not reused for different data.
    changed = root / "train/angry/Training_1.png"
    Image.fromarray(255 - written["train/angry/Training_1.png"]).save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = fer.load_fer2013(root, cache_dir=cache, progress=False)
    assert third.sha256 != first.sha256
    # The changed data's cache is written, and the next load is served from it, not the files.
    assert len(list(cache.glob("*.npz"))) == 2
    monkeypatch.setattr(fer, "read_folder", cache_only)
    assert fer.load_fer2013(root, cache_dir=cache, progress=False).sha256 == third.sha256


def cache_only(*args, **kwargs):
    raise AssertionError("the source was read: no cache was used")


def test_cache_of_an_older_reader_is_not_reused(image_folder, tmp_path, monkeypatch):
    root, _ = image_folder
    cache = tmp_path / "cache"
    fer.load_fer2013(root, cache_dir=cache, progress=False)
    monkeypatch.setattr(fer, "READER_VERSION", fer.READER_VERSION + 1)
    read = []
    real_reader = fer.read_folder
    monkeypatch.setattr(fer, "read_folder", lambda *a, **k: read.append(1) or real_reader(*a, **k))
    fer.load_fer2013(root, cache_dir=cache, progress=False)
    assert read == [1] and len(list(cache.glob("*.npz"))) == 2


def test_damaged_cache_is_rebuilt(image_folder, tmp_path):
    root, _ = image_folder
    cache = tmp_path / "cache"
    first = fer.load_fer2013(root, cache_dir=cache, progress=False)
    next(cache.glob("*.npz")).write_bytes(b"garbage")
    assert fer.load_fer2013(root, cache_dir=cache, progress=False).sha256 == first.sha256


def test_data_path_precedence(monkeypatch, good_csv, image_folder, tmp_path):
    csv_path, *_ = good_csv
    folder, _ = image_folder
    monkeypatch.setenv("LIGHTFER_DATA", str(folder))
    assert fer.resolve_data_path(csv_path) == csv_path  # the parameter wins
    assert fer.resolve_data_path(None) == folder  # then the environment
    monkeypatch.delenv("LIGHTFER_DATA")
    monkeypatch.setattr(fer, "DEFAULT_DATA_PATH", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="LIGHTFER_DATA"):
        fer.resolve_data_path(None)


def test_directory_holding_fer2013_csv_uses_csv_reader(good_csv):
    path, *_ = good_csv
    assert fer.detect_form(path.parent) == ("csv", path)


def test_unrecognised_directory_is_rejected(tmp_path):
    with pytest.raises(fer.DataLayoutError, match="neither fer2013.csv nor"):
        fer.load_fer2013(tmp_path, use_cache=False)


def test_stratified_subset_keeps_every_class_and_split(good_csv):
    path, *_ = good_csv
    data = fer.load_fer2013(path, use_cache=False, progress=False)
    subset = fer.stratified_subset(data, 0.5, seed=3)
    assert len(subset) == 21  # one record per (split, class): min_per_class keeps each
    big = data.subset(np.repeat(np.arange(21), 10))
    small = fer.stratified_subset(big, 0.2, seed=3)
    assert len(small) == 42
    assert np.bincount(small.labels, minlength=7).tolist() == [6] * 7
    assert fer.stratified_subset(big, 0.2, seed=3).sources.tolist() == small.sources.tolist()


# --------------------------------------------------------------------------- FER+


def write_ferplus(path: Path, votes: list[list[int]], usage: list[str]) -> None:
    lines = [",".join(fer.FERPLUS_COLUMNS)]
    for i, (row, split) in enumerate(zip(votes, usage)):
        lines.append(f"{split},fer{i:07d}.png," + ",".join(map(str, row)))
    path.write_text("\n".join(lines) + "\n")


# votes: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
FERPLUS_VOTES = {
    0: [0, 0, 0, 1, 8, 1, 0, 0, 0, 0],  # anger majority (single votes dropped)
    1: [6, 4, 0, 0, 0, 0, 0, 0, 0, 0],  # neutral 6 vs happiness 4
    2: [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face: dropped
    3: [0, 0, 0, 0, 0, 0, 0, 0, 9, 1],  # unknown: dropped
    4: [3, 3, 2, 2, 0, 0, 0, 0, 0, 0],  # no majority: dropped
    5: [0, 0, 0, 0, 0, 0, 0, 7, 3, 0],  # contempt: no FER2013 class, dropped
}


def test_ferplus_majority_and_soft_labels(good_csv, tmp_path):
    path, _, _, usage = good_csv
    data = fer.load_fer2013(path, use_cache=False, progress=False)
    votes = [FERPLUS_VOTES.get(i, [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]) for i in range(21)]
    plus_file = tmp_path / "fer2013new.csv"
    write_ferplus(plus_file, votes, usage)
    plus = fer.read_ferplus(plus_file, data)
    assert plus.dropped == {"no majority": 1, "unknown": 1, "NF": 1, "contempt": 1, "invalid in FER2013": 0}
    assert plus.csv_rows[:2].tolist() == [0, 1]
    assert plus.hard[0] == CLASS_NAMES.index("angry") and plus.hard[1] == CLASS_NAMES.index("neutral")
    assert (plus.hard[2:] == CLASS_NAMES.index("happy")).all()
    np.testing.assert_allclose(plus.soft[0], np.eye(7)[0])  # the single sadness/disgust votes are outliers
    np.testing.assert_allclose(plus.soft[1], [0, 0, 0, 0.4, 0, 0, 0.6], rtol=1e-6)
    relabelled = fer.with_ferplus(data, plus)
    assert len(relabelled) == 17 and relabelled.soft_labels.shape == (17, 7)
    assert relabelled.labels.tolist() == plus.hard.tolist()


def test_ferplus_must_line_up_with_the_contest_csv(good_csv, tmp_path, image_folder):
    path, _, _, usage = good_csv
    data = fer.load_fer2013(path, use_cache=False, progress=False)
    votes = [[0, 10, 0, 0, 0, 0, 0, 0, 0, 0]] * 21
    short = tmp_path / "short.csv"
    write_ferplus(short, votes[:20], usage[:20])
    with pytest.raises(fer.DataLayoutError, match="has 20 rows but the contest CSV"):
        fer.read_ferplus(short, data)
    shifted = tmp_path / "shifted.csv"
    write_ferplus(shifted, votes, ["PublicTest"] + usage[1:])
    with pytest.raises(fer.DataLayoutError, match="line 2: Usage 'PublicTest' differs"):
        fer.read_ferplus(shifted, data)
    folder = fer.load_fer2013(image_folder[0], use_cache=False, progress=False)
    with pytest.raises(fer.DataLayoutError, match="image-folder form"):
        fer.read_ferplus(short, folder)


def test_ferplus_skips_rows_dropped_from_fer2013(tmp_path):
    images = random_faces(3)
    path = tmp_path / "fer2013.csv"
    write_contest_csv(path, images, [0, 9, 2], ["Training"] * 3)  # row 1 has a bad label
    data = fer.load_fer2013(path, strict=False, use_cache=False, progress=False)
    plus_file = tmp_path / "fer2013new.csv"
    write_ferplus(plus_file, [[0, 10, 0, 0, 0, 0, 0, 0, 0, 0]] * 3, ["Training"] * 3)
    plus = fer.read_ferplus(plus_file, data)
    assert plus.csv_rows.tolist() == [0, 2] and plus.dropped["invalid in FER2013"] == 1


def test_a_fifo_and_a_huge_png_in_a_data_folder_are_named_problems_not_hangs_or_tracebacks(image_folder):
    """Made here: a FIFO (reading it would block for ever) and a PNG whose header claims 20000x20000
    pixels (Pillow refuses it as a decompression bomb before decoding)."""
    import os
    import struct
    import zlib

    root, _ = image_folder
    os.mkfifo(root / "train/angry/Training_fifo.png")
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))  # noqa: E731
    (root / "train/happy/Training_huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    with pytest.raises(fer.DataValidationError) as caught:
        fer.load_fer2013(root, use_cache=False, progress=False)
    reasons = {p.source: p.reason for p in caught.value.problems}
    assert reasons.pop("train/angry/Training_fifo.png") == "not a regular file (a FIFO, socket or device)"
    assert reasons.pop("train/happy/Training_huge.png").startswith("unreadable image (DecompressionBombError: Image size "
                                                                   "(400000000 pixels) exceeds limit")
    assert not reasons


def test_a_csv_field_over_the_csv_limit_is_one_named_line(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n0," + "1 " * 70000 + ",Training\n")
    with pytest.raises(fer.DataLayoutError, match=r"fer2013.csv line 2: not a CSV record \(field larger than field limit"):
        fer.load_fer2013(path, use_cache=False, progress=False)
