"""Dataset sources: each returns every image as uint8 (N, H, W, C) with integer labels.

`manifest` (a CSV of the user's own images with real subject IDs) and `imagefolder` (with an
optional `subjects.csv`) carry their subjects; the others get synthetic ones at import.

torchvision sources read a local folder and never download unless asked (`download=True`),
because forgetflow runs where the network may be closed.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from forgetflow.errors import DataSourceError

SOURCES = ("digits", "fashion-mnist", "mnist", "cifar10", "imagefolder", "manifest")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class RawDataset:
    name: str
    images: np.ndarray  # uint8, (N, H, W, C)
    labels: np.ndarray  # int64, (N,)
    class_names: list[str]
    official_split: np.ndarray | None  # "train"/"test" per sample, or None when the source has none
    description: dict = field(default_factory=dict)
    subjects: np.ndarray | None = None  # real subject IDs per sample; None: synthetic ones at import
    given_split: np.ndarray | None = None  # manifest: "train"/"val"/"test" or "" (assign) per sample


def load_source(source: str, path: str | Path | None = None, *, cache_dir: Path | None = None, download: bool = False, resize: tuple[int, int] | None = None) -> RawDataset:
    """`resize` ((H, W), from `data.resize`) applies to the file-based sources: imagefolder, manifest."""
    if source == "digits":
        return _digits()
    if source in ("fashion-mnist", "mnist"):
        return _mnist_like(source, path, cache_dir, download)
    if source == "cifar10":
        return _cifar10(path, download)
    if source == "imagefolder":
        return _imagefolder(path, resize)
    if source == "manifest":
        if path is None:
            raise DataSourceError("manifest needs a CSV file", "pass it: forgetflow data import manifest FILE.csv")
        from forgetflow.data.user_manifest import load_manifest

        return load_manifest(path, resize=resize)
    raise DataSourceError(f"unknown dataset source {source!r}", f"choose one of: {', '.join(SOURCES)}")


def _digits() -> RawDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # sklearn's digits are 0..16 intensities; scale to the full uint8 range so every source shares [0, 255].
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return RawDataset(
        name="digits",
        images=images,
        labels=bunch.target.astype(np.int64),
        class_names=[str(c) for c in bunch.target_names],
        official_split=None,
        description={"source": "sklearn.datasets.load_digits", "scaling": "x * 255 / 16, rounded"},
    )


_MNIST_FILES = {
    "train-images-idx3-ubyte": "train images",
    "train-labels-idx1-ubyte": "train labels",
    "t10k-images-idx3-ubyte": "test images",
    "t10k-labels-idx1-ubyte": "test labels",
}


def _copy_atomically(open_source, target: Path) -> None:
    """Write through a temporary file of this process's own and rename it into place, so that
    processes staging the same dataset side by side (benchmark workers, parallel tests) never share
    a temporary file nor read a half-written one."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as dst, open_source() as src:
            shutil.copyfileobj(src, dst)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from its other users
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stage_idx_files(source: str, folder: Path, cache_dir: Path) -> Path:
    """Lay out IDX files (plain or .gz) the way torchvision expects: <root>/<Class>/raw/<name>."""
    class_dir = "FashionMNIST" if source == "fashion-mnist" else "MNIST"
    raw = cache_dir / class_dir / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    missing = []
    for name in _MNIST_FILES:
        target = raw / name
        if target.exists():
            continue
        plain, packed = folder / name, folder / f"{name}.gz"
        if plain.exists():
            _copy_atomically(lambda: open(plain, "rb"), target)
        elif packed.exists():
            _copy_atomically(lambda: gzip.open(packed, "rb"), target)
        else:
            missing.append(name)
    if missing:
        raise _missing_files(source, folder, missing)
    return cache_dir


def _missing_files(source: str, folder: Path, missing: list[str]) -> DataSourceError:
    hint = f"put {', '.join(m + '[.gz]' for m in missing)} into {folder}, or pass --path DIR, or --download where the network is open"
    if source == "fashion-mnist":
        hint += "; on Debian/Ubuntu: `apt-get install dataset-fashion-mnist` (files land in /usr/share/datasets/fashion-mnist)"
    return DataSourceError(f"{source}: dataset files not found in {folder}", hint)


def _mnist_like(source: str, path, cache_dir: Path | None, download: bool) -> RawDataset:
    from torchvision import datasets

    cls = datasets.FashionMNIST if source == "fashion-mnist" else datasets.MNIST
    cache_dir = Path(cache_dir or Path.home() / ".cache" / "forgetflow" / "sources")
    if download:
        root = cache_dir
    else:
        folder = Path(path) if path else (DEBIAN_FASHION_MNIST if source == "fashion-mnist" else cache_dir / "mnist")
        if not folder.is_dir():
            raise _missing_files(source, folder, list(_MNIST_FILES))
        root = _stage_idx_files(source, folder, cache_dir)
    try:
        train = cls(root=str(root), train=True, download=download)
        test = cls(root=str(root), train=False, download=download)
    except RuntimeError as exc:  # torchvision: "Dataset not found" or a failed download
        raise DataSourceError(f"{source}: torchvision could not load the dataset: {exc}", "check the files or the network") from exc
    images = np.concatenate([train.data.numpy(), test.data.numpy()])[..., None].astype(np.uint8)
    labels = np.concatenate([train.targets.numpy(), test.targets.numpy()]).astype(np.int64)
    split = np.array(["train"] * len(train) + ["test"] * len(test))
    return RawDataset(source, images, labels, list(train.classes), split, {"source": f"torchvision.datasets.{cls.__name__}", "root": str(root)})


def _cifar10(path, download: bool) -> RawDataset:
    from torchvision import datasets

    root = Path(path) if path else Path.home() / ".cache" / "forgetflow" / "sources" / "cifar10"
    try:
        train = datasets.CIFAR10(root=str(root), train=True, download=download)
        test = datasets.CIFAR10(root=str(root), train=False, download=download)
    except RuntimeError as exc:
        raise DataSourceError(
            f"cifar10: dataset not found under {root} ({exc})",
            "extract cifar-10-python.tar.gz there (folder cifar-10-batches-py), pass --path DIR, or use --download where the network is open",
        ) from exc
    images = np.concatenate([train.data, test.data]).astype(np.uint8)
    labels = np.concatenate([np.asarray(train.targets), np.asarray(test.targets)]).astype(np.int64)
    split = np.array(["train"] * len(train) + ["test"] * len(test))
    return RawDataset("cifar10", images, labels, list(train.classes), split, {"source": "torchvision.datasets.CIFAR10", "root": str(root)})


def _imagefolder(path, resize: tuple[int, int] | None = None) -> RawDataset:
    """Any torchvision ImageFolder (one sub-folder per class); images must share one size unless
    `resize` is given. `DIR/subjects.csv` (path,subject_id), when present, names every image's subject."""
    if path is None:
        raise DataSourceError("imagefolder needs a folder", "pass it: forgetflow data import imagefolder PATH")
    folder = Path(path)
    if not folder.is_dir():
        raise DataSourceError(f"imagefolder: {folder} is not a directory", "pass a folder with one sub-folder per class")
    from torchvision import datasets

    from forgetflow.data.images import duplicates, read_image, stack_images
    from forgetflow.data.user_manifest import load_subjects_csv

    try:
        ds = datasets.ImageFolder(str(folder))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataSourceError(f"imagefolder: {exc}", "each class needs a sub-folder holding image files") from exc
    relpaths = [Path(file_path).relative_to(folder).as_posix() for file_path, _ in ds.samples]
    subjects = load_subjects_csv(folder, relpaths)  # checked before any image is decoded
    arrays = []
    for relpath, (file_path, _) in zip(relpaths, ds.samples):
        # Read with PIL directly: torchvision's loader converts every image to RGB.
        try:
            arrays.append(read_image(Path(file_path), resize))
        except Exception as exc:  # PIL raises OSError, ValueError, DecompressionBombError, ...
            raise DataSourceError(f"imagefolder: {relpath} is not an image PIL can read ({exc})", "remove or replace the file") from exc
    images, channels = stack_images(arrays, relpaths, what=f"imagefolder {folder.name}")
    same = [f"{relpaths[j]} = {relpaths[i]}" for i, j in duplicates(images)]
    if same:
        raise DataSourceError(f"imagefolder {folder.name}: {len(same)} image(s) duplicate another one pixel for pixel: {'; '.join(same[:5])}", "keep one file of each (erasure identifies an image by its pixels)")
    labels = np.asarray([t for _, t in ds.samples], dtype=np.int64)
    description = {"source": "torchvision.datasets.ImageFolder", "root": str(folder)}
    if subjects is not None or resize is not None or channels.startswith("RGB ("):
        # Only imports that use the new options describe them: older imports keep their md5.
        description.update(channels=channels, resize=list(resize) if resize else None, subjects_file="subjects.csv" if subjects is not None else None)
    return RawDataset(folder.name, images, labels, list(ds.classes), None, description, subjects=subjects)
