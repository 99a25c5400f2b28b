"""Dataset exploration for 01_data: counts, samples, pixel statistics, blanks, duplicates."""

from __future__ import annotations

import hashlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lightfer_utils import CLASS_NAMES
from lightfer_utils.data import SPLITS, FerData, FerPlusLabels


def class_count_figure(data: FerData) -> plt.Figure:
    counts = data.counts().drop(index="total").drop(columns="all")
    fig, ax = plt.subplots(figsize=(7, 3.2))
    counts.plot.bar(ax=ax, width=0.8)
    ax.set_xlabel("")
    ax.set_ylabel("images")
    ax.set_title("FER2013 class counts per split")
    ax.tick_params(axis="x", rotation=0)
    fig.tight_layout()
    return fig


def sample_grid(data: FerData, per_class: int = 8, seed: int = 0) -> plt.Figure:
    """A seeded random sample of faces, one row per class."""
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(CLASS_NAMES), per_class, figsize=(per_class * 0.9, len(CLASS_NAMES) * 0.95))
    for row, name in enumerate(CLASS_NAMES):
        members = np.flatnonzero(data.labels == row)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False) if len(members) else []
        for col in range(per_class):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(chosen):
                ax.imshow(data.images[chosen[col]], cmap="gray", vmin=0, vmax=255)
        axes[row, 0].text(-6, 24, name, ha="right", va="center", fontsize=9)
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.15)
    return fig


def pixel_statistics(data: FerData) -> pd.DataFrame:
    """Per split: pixel mean and std, and the spread of per-image mean brightness and contrast."""
    rows = []
    for index, split in enumerate(SPLITS):
        images = data.images[data.usage == index].reshape(-1, data.images.shape[1] * data.images.shape[2])
        if not len(images):
            continue
        pixels = images.astype(np.float64)
        image_means, image_stds = pixels.mean(axis=1), pixels.std(axis=1)
        rows.append({
            "split": split, "images": len(images), "pixel_mean": pixels.mean(), "pixel_std": pixels.std(),
            "image_mean_p5": np.percentile(image_means, 5), "image_mean_p95": np.percentile(image_means, 95),
            "image_std_median": np.median(image_stds),
        })
    return pd.DataFrame(rows).set_index("split").round(2)


def brightness_figure(data: FerData) -> plt.Figure:
    means = data.images.reshape(len(data), -1).mean(axis=1)
    fig, ax = plt.subplots(figsize=(6, 3))
    for index, split in enumerate(SPLITS):
        ax.hist(means[data.usage == index], bins=64, range=(0, 255), histtype="step", density=True, label=split)
    ax.set_xlabel("mean pixel value per image")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    return fig


def near_constant_images(data: FerData, max_std: float = 2.0) -> pd.DataFrame:
    """Blank or near-constant faces (per-image pixel std below ``max_std``)."""
    stds = data.images.reshape(len(data), -1).astype(np.float64).std(axis=1)
    index = np.flatnonzero(stds < max_std)
    return pd.DataFrame({
        "source": data.sources[index],
        "split": [SPLITS[u] for u in data.usage[index]],
        "label": [CLASS_NAMES[label] for label in data.labels[index]],
        "pixel_std": stds[index].round(2),
    })


def exact_duplicates(data: FerData) -> pd.DataFrame:
    """Every image whose pixels occur more than once, with its duplicate group id."""
    digests = np.array([hashlib.sha1(image.tobytes()).hexdigest() for image in data.images])
    _, inverse, counts = np.unique(digests, return_inverse=True, return_counts=True)
    index = np.flatnonzero(counts[inverse] > 1)
    frame = pd.DataFrame({
        "group": inverse[index],
        "source": data.sources[index],
        "split": [SPLITS[u] for u in data.usage[index]],
        "label": [CLASS_NAMES[label] for label in data.labels[index]],
    })
    frame["group"] = frame.groupby("group", sort=True).ngroup()
    return frame.sort_values(["group", "source"]).reset_index(drop=True)


def duplicate_summary(duplicates: pd.DataFrame) -> pd.DataFrame:
    """How many duplicate groups there are, and how many cross splits or disagree on the label."""
    groups = duplicates.groupby("group")
    cross_split = groups["split"].nunique() > 1
    conflicting = groups["label"].nunique() > 1
    test_leaks = groups["split"].agg(lambda s: "Training" in set(s) and bool({"PublicTest", "PrivateTest"} & set(s)))
    return pd.DataFrame({
        "count": [groups.ngroups, len(duplicates), int(cross_split.sum()), int(test_leaks.sum()), int(conflicting.sum())],
    }, index=["duplicate groups", "images in them", "groups spanning splits",
              "groups in Training and a test split", "groups with conflicting labels"])


def ferplus_agreement(data: FerData, plus: FerPlusLabels) -> pd.DataFrame:
    """Row-normalised confusion of FER2013 labels (rows) against FER+ majority labels (columns)."""
    position = {row: i for i, row in enumerate(data.csv_rows.tolist())}
    index = np.array([position[row] for row in plus.csv_rows.tolist()], dtype=np.int64)
    table = pd.crosstab(
        pd.Categorical([CLASS_NAMES[i] for i in data.labels[index]], categories=CLASS_NAMES),
        pd.Categorical([CLASS_NAMES[i] for i in plus.hard], categories=CLASS_NAMES),
        normalize="index", dropna=False,
    )
    table.index.name, table.columns.name = "FER2013", "FER+"
    return table.round(3)

