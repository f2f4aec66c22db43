"""The benchmark datasets: sklearn digits (the whole set) and a stratified Fashion-MNIST pool.

Splits are fixed by seed 0, so every scenario and worker sees the same train / validation / test:
  digits:        20 % test, then 10 % of the rest as validation (the suite's tuning split);
  fashion-mnist: a class-balanced pool of `fmnist_train` images from the official train file (10 %
                 of it validation) and `fmnist_test` from the official test file.
Training samples get synthetic subjects of 4 samples each (the importer's rule), for subject
requests. The model is the small CNN (width 32 on digits, 16 on Fashion-MNIST) with SGD and a
cosine schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forgetflow.data.sources import DEBIAN_FASHION_MNIST, load_source
from forgetflow.data.store import LoadedSplit
from forgetflow.data.subjects import assign_subjects
from forgetflow.models import ModelSpec
from forgetflow.params import TrainParams


@dataclass
class Dataset:
    name: str
    train: LoadedSplit
    val: LoadedSplit
    test: LoadedSplit
    subjects: np.ndarray  # subject index per training sample
    spec: ModelSpec
    recipe: TrainParams


def _take(split_images, split_labels, index) -> LoadedSplit:
    return LoadedSplit(images=split_images[index], labels=split_labels[index], sample_ids=np.asarray(index, dtype=np.int64))


def _stratified(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices, as class-balanced as the labels allow, sorted."""
    picks = []
    classes = np.unique(labels)
    for c in classes:
        idx = np.flatnonzero(labels == c)
        picks.append(rng.choice(idx, size=min(len(idx), n // len(classes)), replace=False))
    return np.sort(np.concatenate(picks))


def load_dataset(name: str, fmnist_train: int, fmnist_test: int, epochs: int | None) -> Dataset:
    rng = np.random.default_rng(0)
    if name == "digits":
        raw = load_source("digits")
        order = rng.permutation(len(raw.labels))
        n_test = int(0.2 * len(order))
        test_idx, pool = np.sort(order[:n_test]), order[n_test:]
        n_val = int(0.1 * len(pool))
        val_idx, train_idx = np.sort(pool[:n_val]), np.sort(pool[n_val:])
        images, labels = raw.images, raw.labels
        test = _take(images, labels, test_idx)
        width, default_epochs = 32, 20
    elif name == "fashion-mnist":
        raw = load_source("fashion-mnist", DEBIAN_FASHION_MNIST)
        images, labels = raw.images, raw.labels
        official_train = np.flatnonzero(raw.official_split == "train")
        official_test = np.flatnonzero(raw.official_split == "test")
        pool = official_train[_stratified(labels[official_train], fmnist_train, rng)]
        pool = rng.permutation(pool)
        n_val = int(0.1 * len(pool))
        val_idx, train_idx = np.sort(pool[:n_val]), np.sort(pool[n_val:])
        test = _take(images, labels, official_test[_stratified(labels[official_test], fmnist_test, rng)])
        width, default_epochs = 16, 15
    else:
        raise SystemExit(f"unknown dataset {name!r}")
    train, val = _take(images, labels, train_idx), _take(images, labels, val_idx)
    subject_names = assign_subjects(len(train.labels), 4, 0)
    subjects = np.array([int(s.split("-")[1]) for s in subject_names])
    pixels = train.images.astype(np.float64) / 255.0
    h, w, c = train.images.shape[1:]
    spec = ModelSpec(arch="small_cnn", in_channels=c, num_classes=int(labels.max()) + 1, image_size=h, width=width,
                     mean=[float(pixels.mean())] * c, std=[float(pixels.std())] * c)
    recipe = TrainParams(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine", epochs=epochs or default_epochs, batch_size=64)
    return Dataset(name, train, val, test, subjects, spec, recipe)
