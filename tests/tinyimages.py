"""Tiny image sets written as real files (PNG), with manifests naming real subject IDs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

CLASSES = ("cat", "dog", "owl")


def image(index: int, label: int, *, rgb: bool, size=(12, 12)) -> np.ndarray:
    """A learnable image: the class sets the brightness, the index adds seeded noise."""
    rng = np.random.default_rng(index)
    base = (50 + 70 * label + rng.integers(0, 40, size)).astype(np.uint8)
    return np.stack([base, base // 2, 255 - base], axis=-1) if rgb else base


def write_manifest(folder: Path, n: int = 36, *, rgb_every: int = 0, subjects_per_person: int = 3, splits: dict[int, str] | None = None, size=(12, 12), name: str = "faces.csv") -> Path:
    """`n` PNGs under folder/imgs and a manifest path,label,subject_id[,split]; image i shows class
    i % 3 and belongs to person-(i // subjects_per_person). `rgb_every=k` makes every k-th image RGB
    (0: all grayscale); `splits` names the split of some rows (the others are left empty)."""
    from PIL import Image

    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = i % len(CLASSES)
        rgb = bool(rgb_every) and i % rgb_every == 0
        Image.fromarray(image(i, label, rgb=rgb, size=size), "RGB" if rgb else "L").save(folder / "imgs" / f"{i:03d}.png")
        row = {"path": f"imgs/{i:03d}.png", "label": CLASSES[label], "subject_id": f"person-{i // subjects_per_person}"}
        if splits is not None:
            row["split"] = splits.get(i, "")
        rows.append(row)
    return write_rows(folder / name, rows)


def write_rows(path: Path, rows: list[dict]) -> Path:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
