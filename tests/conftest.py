"""Shared fixtures and the test tiers. Tests that need the real FER2013 skip when it is not
configured, unless LIGHTFER_REQUIRE_DATA=1 (CI), where a missing dataset fails them.

Tiers (pytest markers, given here from what a test uses, so they cannot drift): `data` needs
FER2013 (the fer2013_path fixture), `notebooks` replays the smoke run (the replay fixture),
`network` fetches from PyPI (marked in its file; LIGHTFER_OFFLINE=1 skips it), `unit` is the rest:
no data, no network (`make test-fast`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightfer_utils import CLASS_NAMES
from lightfer_utils.data import SPLITS


def pytest_collection_modifyitems(items):
    for item in items:
        if "fer2013_path" in item.fixturenames:
            item.add_marker(pytest.mark.data)
        if "replay" in item.fixturenames:
            item.add_marker(pytest.mark.notebooks)
        if item.get_closest_marker("network") and os.environ.get("LIGHTFER_OFFLINE") == "1":
            item.add_marker(pytest.mark.skip(reason="LIGHTFER_OFFLINE=1: no PyPI access"))
        if not any(item.get_closest_marker(tier) for tier in ("data", "notebooks", "network")):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LIGHTFER_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def fer2013_path() -> Path:
    configured = os.environ.get("LIGHTFER_DATA")
    if configured and Path(configured).exists():
        return Path(configured)
    reason = f"FER2013 not configured (LIGHTFER_DATA={configured!r}); see docs/data.md"
    if os.environ.get("LIGHTFER_REQUIRE_DATA") == "1":
        pytest.fail(f"LIGHTFER_REQUIRE_DATA=1 but {reason}")
    pytest.skip(reason)


def random_faces(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 48, 48), dtype=np.uint8)


def pixels_text(image: np.ndarray) -> str:
    return " ".join(str(v) for v in image.reshape(-1))


def write_contest_csv(path: Path, images: np.ndarray, labels: list[int], usage: list[str]) -> None:
    lines = ["emotion,pixels,Usage"]
    lines += [f"{label},{pixels_text(image)},{split}" for image, label, split in zip(images, labels, usage)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def good_csv(tmp_path) -> tuple[Path, np.ndarray, list[int], list[str]]:
    """A valid contest CSV of 21 faces: 7 classes x 3 splits."""
    images = random_faces(21)
    labels = [i % 7 for i in range(21)]
    usage = [SPLITS[i // 7] for i in range(21)]
    path = tmp_path / "fer2013.csv"
    write_contest_csv(path, images, labels, usage)
    return path, images, labels, usage


@pytest.fixture
def image_folder(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """A folder tree with lossless PNG faces, prefixed and unprefixed names."""
    root = tmp_path / "fer_folder"
    faces = random_faces(9, seed=1)
    names = [
        "train/angry/Training_1.png", "train/happy/Training_2.png", "train/neutral/img3.png",
        "test/sad/PublicTest_4.png", "test/fear/PrivateTest_5.png", "test/disgust/img6.png",
        "test/surprise/PublicTest_7.png", "train/surprise/Training_8.png", "test/happy/PrivateTest_9.png",
    ]
    written = {}
    for name, face in zip(names, faces):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face, mode="L").save(path)
        written[name] = face
    return root, written


__all__ = ["CLASS_NAMES", "random_faces", "pixels_text", "write_contest_csv"]
