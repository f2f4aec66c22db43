"""Seeded, stratified train/val/test assignment."""

from __future__ import annotations

import math

import numpy as np

from forgetflow.errors import DataSourceError


def assign_splits(labels: np.ndarray, official: np.ndarray | None, *, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Return "train"/"val"/"test" per sample.

    An official test split is kept as it is; otherwise `test_fraction` is held out. `val_fraction`
    of the remaining training pool becomes the validation split (used for early stopping and
    hyperparameter selection, never test).
    """
    from sklearn.model_selection import train_test_split

    n_classes = len(np.unique(labels))

    def held_out(size: int, fraction: float) -> int:
        # Stratification needs one sample per class in the held-out part, and a pool to train on.
        count = max(math.ceil(fraction * size), n_classes)
        if size - count < n_classes:
            raise DataSourceError(
                f"dataset too small to split: {size} samples for {n_classes} classes",
                "add images (at least a few per class) or lower data.val_fraction / data.test_fraction in params.yaml",
            )
        return count

    n = len(labels)
    split = np.full(n, "train", dtype=object)
    indices = np.arange(n)
    if official is None:
        pool, test = train_test_split(indices, test_size=held_out(n, test_fraction), stratify=labels, random_state=seed)
        split[test] = "test"
    else:
        split[official == "test"] = "test"
        pool = indices[official == "train"]
    if val_fraction > 0:
        _, val = train_test_split(pool, test_size=held_out(len(pool), val_fraction), stratify=labels[pool], random_state=seed)
        split[val] = "val"
    return split
