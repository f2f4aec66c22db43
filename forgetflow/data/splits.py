"""Seeded, stratified train/val/test assignment."""

from __future__ import annotations

import numpy as np


def assign_splits(labels: np.ndarray, official: np.ndarray | None, *, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Return "train"/"val"/"test" per sample.

    An official test split is kept as it is; otherwise `test_fraction` is held out. `val_fraction`
    of the remaining training pool becomes the validation split (used for early stopping and
    hyperparameter selection, never test).
    """
    from sklearn.model_selection import train_test_split

    n = len(labels)
    split = np.full(n, "train", dtype=object)
    indices = np.arange(n)
    if official is None:
        pool, test = train_test_split(indices, test_size=test_fraction, stratify=labels, random_state=seed)
        split[test] = "test"
    else:
        split[official == "test"] = "test"
        pool = indices[official == "train"]
    if val_fraction > 0:
        _, val = train_test_split(pool, test_size=val_fraction, stratify=labels[pool], random_state=seed)
        split[val] = "val"
    return split
