"""In-memory splits and small models for the method tests and benchmarks (no workspace, no DVC).

The pipeline reads splits from the versioned store; tests and benchmarks of the algorithms only need
the same `LoadedSplit` shape, built here deterministically from a dataset source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forgetflow.data.store import LoadedSplit


def take(split: LoadedSplit, rows) -> LoadedSplit:
    """Rows of a split, by boolean mask or index array."""
    return LoadedSplit(split.images[rows], split.labels[rows], split.sample_ids[rows])


def concat(*splits: LoadedSplit) -> LoadedSplit:
    return LoadedSplit(np.concatenate([s.images for s in splits]), np.concatenate([s.labels for s in splits]), np.concatenate([s.sample_ids for s in splits]))


@dataclass
class Splits:
    train: LoadedSplit
    val: LoadedSplit
    test: LoadedSplit
    mean: list[float]
    std: list[float]


def _stratified(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices split per class: (rest, held out) with `fraction` of each class held out."""
    held = []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        held.append(rows[: int(round(fraction * len(rows)))])
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held), held


def make_splits(source: str = "digits", *, seed: int = 0, train_size: int | None = None, test_size: int | None = None, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Splits:
    """Stratified train/val/test from a source (the official test split when the source has one)."""
    from forgetflow.data.sources import load_source

    raw = load_source(source)
    rng = np.random.default_rng(seed)
    ids = np.arange(len(raw.labels), dtype=np.int64)
    if raw.official_split is not None:
        pool, test = ids[raw.official_split == "train"], ids[raw.official_split == "test"]
    else:
        rest, held = _stratified(raw.labels, test_fraction, rng)
        pool, test = ids[rest], ids[held]
    if train_size is not None and train_size < len(pool):
        pool = np.sort(rng.choice(pool, int(train_size / (1 - val_fraction)), replace=False))
    if test_size is not None and test_size < len(test):
        test = np.sort(rng.choice(test, test_size, replace=False))
    rest, held = _stratified(raw.labels[pool], val_fraction, rng)
    train, val = pool[rest], pool[held]

    def split(rows):
        return LoadedSplit(raw.images[rows], raw.labels[rows], rows)

    pixels = raw.images[train].astype(np.float64) / 255.0
    mean = pixels.mean(axis=(0, 1, 2)).tolist()
    std = pixels.std(axis=(0, 1, 2)).tolist()
    return Splits(split(train), split(val), split(test), mean, std)


def small_cnn_spec(splits: Splits, width: int = 16):
    from forgetflow.models import ModelSpec

    h, _, c = splits.train.images.shape[1:]
    return ModelSpec("small_cnn", c, int(splits.train.labels.max()) + 1, h, width=width, mean=splits.mean, std=splits.std)


def train_small(splits: Splits, *, width: int = 16, epochs: int = 10, seed: int = 0, train: LoadedSplit | None = None, progress: bool = False):
    """A small CNN trained with the project recipe (cosine SGD) for `epochs` epochs."""
    from forgetflow.params import TrainParams
    from forgetflow.training import train_model

    recipe = TrainParams(epochs=epochs, seed=seed)
    return train_model(small_cnn_spec(splits, width), recipe, train or splits.train, splits.val, seed=seed, progress=progress)


def timer_spent_after(checks: int):
    """A `Timer` class whose budget counts as spent after `checks` budget checks: a deterministic
    stand-in for the clock, to test where a method looks at its budget."""
    from forgetflow.methods.base import Timer

    class SpentAfterChecks(Timer):
        seen = 0

        def over_budget(self) -> bool:
            SpentAfterChecks.seen += 1
            return SpentAfterChecks.seen > checks

    return SpentAfterChecks
