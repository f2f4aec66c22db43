"""Models and the training recipe: determinism, checkpoints, architectures, layer statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forgetflow import layer_stats
from forgetflow.data.store import LoadedSplit
from forgetflow.data.sources import load_source
from forgetflow.layer_stats import compute_layer_stats, covariance_from_stats, layer_rows, projectable_layers
from forgetflow.models import ModelSpec, build_model, load_checkpoint, save_checkpoint
from forgetflow.params import TrainParams
from forgetflow.training import augment_batch, evaluate, lr_at, predict_logits, to_tensor, train_model

RECIPE = TrainParams(epochs=2, batch_size=64, lr=0.05, seed=0)


@pytest.fixture(scope="module")
def digits():
    raw = load_source("digits")
    ids = np.arange(len(raw.labels))
    train = LoadedSplit(raw.images[:600], raw.labels[:600], ids[:600])
    val = LoadedSplit(raw.images[600:800], raw.labels[600:800], ids[600:800])
    return train, val


def spec(**kw) -> ModelSpec:
    base = dict(arch="small_cnn", in_channels=1, num_classes=10, image_size=8, width=8, mean=[0.3], std=[0.4])
    base.update(kw)
    return ModelSpec(**base)


def test_training_is_deterministic_on_cpu_for_a_seed(digits):
    train, val = digits
    first = train_model(spec(), RECIPE, train, val, seed=7, progress=False)
    second = train_model(spec(), RECIPE, train, val, seed=7, progress=False)
    for (name, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(a, b), name
    other = train_model(spec(), RECIPE, train, val, seed=8, progress=False)
    assert not torch.equal(first.model.state_dict()["net.features.0.weight"], other.model.state_dict()["net.features.0.weight"])
    assert [row["epoch"] for row in first.history] == [1, 2]


def test_training_learns(digits):
    train, val = digits
    result = train_model(spec(), RECIPE.model_copy(update={"epochs": 10}), train, val, seed=0, progress=False)
    assert evaluate(result.model, val)["accuracy"] > 80


def test_checkpoint_round_trip_keeps_predictions(digits, tmp_path):
    train, val = digits
    model = train_model(spec(), RECIPE, train, val, seed=0, progress=False).model
    path = save_checkpoint(model, tmp_path / "ckpt.pt", extra={"note": "x"})
    loaded, payload = load_checkpoint(path)
    assert payload["spec"]["arch"] == "small_cnn" and payload["extra"]["note"] == "x"
    assert torch.equal(predict_logits(model, val.images), predict_logits(loaded, val.images))


@pytest.mark.parametrize("arch,size,channels", [("small_cnn", 28, 1), ("resnet18", 32, 3)])
def test_architectures_by_name(arch, size, channels):
    model = build_model(spec(arch=arch, image_size=size, in_channels=channels, mean=[0.5] * channels, std=[0.25] * channels))
    out = model(torch.rand(2, channels, size, size))
    assert out.shape == (2, 10)
    if arch == "resnet18":
        assert model.net.conv1.kernel_size == (3, 3) and model.net.conv1.stride == (1, 1)
        assert isinstance(model.net.maxpool, torch.nn.Identity)


def test_augmentation_shifts_and_flips_within_bounds():
    x = torch.rand(16, 1, 8, 8)
    recipe = TrainParams(crop_padding=1, hflip=True)
    out = augment_batch(x, recipe, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    again = augment_batch(x, recipe, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_schedules():
    cosine = TrainParams(lr=0.1, epochs=10, schedule="cosine")
    assert lr_at(0, cosine) == pytest.approx(0.1) and lr_at(5, cosine) == pytest.approx(0.05)
    exp = TrainParams(lr=0.1, epochs=11, schedule="exponential", final_lr_ratio=0.01)
    assert lr_at(10, exp) == pytest.approx(0.001)


@pytest.mark.parametrize("channels, size, chunk", [(3, 12, 1 << 24), (3, 12, 81), (40, 4, 1 << 24)])
def test_row_gram_matches_the_float64_product_of_the_rows(channels, size, chunk, monkeypatch):
    """Per-image products (27 dims, 144 positions; one image per chunk too) and row blocks (360
    dims, 16 positions) both give the float64 sum of the unfolded rows' outer products."""
    monkeypatch.setattr(layer_stats, "GRAM_CHUNK_ELEMENTS", chunk)
    monkeypatch.setattr(layer_stats, "ROWS_PER_PRODUCT", 7)  # blocks that do not divide the rows
    conv = torch.nn.Conv2d(channels, 4, 3, padding=1)
    x = torch.randn(5, channels, size, size, generator=torch.Generator().manual_seed(0))
    rows = layer_rows(conv, x).double()
    direct = rows.T @ rows
    assert torch.allclose(layer_stats.row_gram(conv, x), direct, rtol=0, atol=1e-6 * float(direct.abs().max()))


def test_layer_stats_reconstruct_the_input_covariance(digits):
    train, _ = digits
    model = build_model(spec())
    stats = compute_layer_stats(model, train.images[:100], batch_size=32)
    layers = projectable_layers(model)
    assert set(stats["layers"]) == set(layers)
    # Direct computation for the first conv layer: unfolded 3x3 patches of the normalised input.
    x = model.normalize(to_tensor(train.images[:100]))
    rows = layer_rows(layers["net.features.0"], x).double()
    direct = rows.T @ rows
    rebuilt = covariance_from_stats(stats["layers"]["net.features.0"])
    assert torch.allclose(rebuilt, direct, rtol=1e-6, atol=1e-6 * direct.abs().max())
