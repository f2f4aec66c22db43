"""Dataset sources read through torchvision's dataset classes from local files."""

from __future__ import annotations

import numpy as np
import pytest

from forgetflow.data.importer import import_dataset
from forgetflow.data.sources import DEBIAN_FASHION_MNIST, load_source
from forgetflow.data.store import DatasetVersion
from forgetflow.errors import DataSourceError
from forgetflow.settings import load_settings
from forgetflow.workspace import init_workspace

from conftest import make_workspace


@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(), reason="needs apt-get install dataset-fashion-mnist (scripts/setup.sh installs it)")
def test_fashion_mnist_from_the_debian_package(tmp_path):
    raw = load_source("fashion-mnist", cache_dir=tmp_path / "cache")
    assert raw.images.shape == (70000, 28, 28, 1) and raw.images.dtype == np.uint8
    assert raw.class_names[0] == "T-shirt/top" and len(raw.class_names) == 10
    assert (raw.official_split == "test").sum() == 10000


def _write_images(folder, classes=("cat", "dog"), per_class=6, size=(12, 12)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, size=(*size, 3), dtype=np.uint8)).save(folder / name / f"{i}.png")


def test_imagefolder_import(tmp_path):
    _write_images(tmp_path / "pets")
    settings = load_settings(make_workspace(tmp_path / "ws"))
    info = import_dataset(settings, init_workspace(settings), "imagefolder", str(tmp_path / "pets"))
    version = DatasetVersion(settings.data_dir / "pets")
    assert info.name == "pets" and info.n_samples == 12 and version.class_names == ["cat", "dog"]
    assert version.image_shape == (12, 12, 3)
    assert sorted(version.manifest.label.unique()) == [0, 1]


def test_imagefolder_with_mixed_sizes_is_rejected(tmp_path):
    _write_images(tmp_path / "pets", classes=("a",), size=(12, 12))
    _write_images(tmp_path / "more", classes=("b",), size=(10, 10))
    (tmp_path / "more" / "b").rename(tmp_path / "pets" / "b")
    with pytest.raises(DataSourceError, match="different shapes"):
        load_source("imagefolder", tmp_path / "pets")


def test_two_workers_staging_the_same_idx_files_at_once_both_succeed(tmp_path, monkeypatch):
    """Benchmark workers start side by side on an empty cache: the second one stages the same files
    while the first is still copying. Each writes its own temporary file and renames it into place."""
    import gzip

    from forgetflow.data import sources

    folder = tmp_path / "idx"
    folder.mkdir()
    for i, name in enumerate(sources._MNIST_FILES):
        with gzip.open(folder / f"{name}.gz", "wb") as f:
            f.write(bytes([i]) * 1000)
    cache = tmp_path / "cache"
    copy = sources.shutil.copyfileobj
    interrupted = []

    def copy_while_another_worker_stages(src, dst, *args):
        if not interrupted:  # the other worker runs to the end in the middle of our first copy
            interrupted.append(True)
            sources._stage_idx_files("fashion-mnist", folder, cache)
        copy(src, dst, *args)

    monkeypatch.setattr(sources.shutil, "copyfileobj", copy_while_another_worker_stages)
    sources._stage_idx_files("fashion-mnist", folder, cache)
    raw = cache / "FashionMNIST" / "raw"
    assert interrupted
    assert sorted(p.name for p in raw.iterdir()) == sorted(sources._MNIST_FILES)  # no temporary file left
    for i, name in enumerate(sources._MNIST_FILES):
        assert (raw / name).read_bytes() == bytes([i]) * 1000
        assert (raw / name).stat().st_mode & 0o777 == 0o644  # readable by the cache's other users
