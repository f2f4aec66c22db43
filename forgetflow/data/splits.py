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
        pool, test = _split_off(indices, held_out(n, test_fraction), labels, seed)
        split[test] = "test"
    else:
        split[official == "test"] = "test"
        pool = indices[official == "train"]
    if val_fraction > 0:
        _, val = _split_off(pool, held_out(len(pool), val_fraction), labels[pool], seed)
        split[val] = "val"
    return split


def _split_off(indices: np.ndarray, size: int, labels: np.ndarray, seed: int):
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(indices, test_size=size, stratify=labels, random_state=seed)
    except ValueError as exc:  # e.g. a class with a single sample cannot be stratified
        raise DataSourceError(f"the dataset cannot be split by class: {exc}", "give every class at least a few images, or name each row's split in the manifest's `split` column") from exc


def assign_given_splits(labels: np.ndarray, given: np.ndarray, *, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Splits named per sample (a manifest's `split` column) are kept; the samples without one are
    assigned as by `assign_splits` among themselves, except that no more test samples are drawn
    when some sample is named test, and no more validation samples when some is named val."""
    given = np.asarray(given, dtype=object)
    open_rows = np.flatnonzero(~given.astype(bool))
    split = given.copy()
    if len(open_rows):
        has_test, has_val = (given == "test").any(), (given == "val").any()
        official = np.full(len(open_rows), "train", dtype=object) if has_test else None
        split[open_rows] = assign_splits(labels[open_rows], official, val_fraction=0.0 if has_val else val_fraction, test_fraction=test_fraction, seed=seed)
    if not (split == "train").any():
        raise DataSourceError("the manifest leaves no image in the train split", "name some rows `train` in the `split` column, or leave their split empty")
    return split
