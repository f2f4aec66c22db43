"""Model architectures, chosen by name, and the trainable checkpoint format.

`model.arch` is `small_cnn` or `resnet18` (below), or `torchvision:NAME` / `MODULE:CALLABLE`
(forgetflow/architectures.py). The spec, arch included, is saved with the weights.

Every model takes uint8-range images scaled to [0, 1] (N, C, H, W) and normalises them itself,
so adversarial methods work in pixel space and a served model needs no preprocessing contract.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

CHECKPOINT_FORMAT = "forgetflow.checkpoint/1"


@dataclass
class ModelSpec:
    arch: str
    in_channels: int
    num_classes: int
    image_size: int
    width: int = 32
    dropout: float = 0.0
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.5])
    image_width: int | None = None  # None: square images (image_size x image_size)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def image_hw(self) -> tuple[int, int]:
        return (self.image_size, self.image_width or self.image_size)


class Normalize(nn.Module):
    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SmallCNN(nn.Module):
    """Three 3x3 conv blocks and a two-layer head; works for 8x8 (digits) and 28x28 (MNIST-like)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, dropout: float = 0.0):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(2 * w * 4, 4 * w),
            nn.ReLU(inplace=True),
            nn.Linear(4 * w, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def resnet18_small(in_channels: int, num_classes: int) -> nn.Module:
    """torchvision ResNet-18 for 32x32 inputs: 3x3 stride-1 stem and no max-pool (the CIFAR variant)."""
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


class ImageClassifier(nn.Module):
    """Normalisation + backbone. `spec` travels with the weights in every checkpoint."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.normalize = Normalize(spec.mean, spec.std)
        if spec.arch == "small_cnn":
            self.net = SmallCNN(spec.in_channels, spec.num_classes, spec.width, spec.dropout)
        elif spec.arch == "resnet18":
            self.net = resnet18_small(spec.in_channels, spec.num_classes)
        else:
            from forgetflow.architectures import build_network

            self.net = build_network(spec.arch, spec.in_channels, spec.num_classes, spec.image_hw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def build_model(spec: ModelSpec) -> ImageClassifier:
    return ImageClassifier(spec)


def save_checkpoint(model: ImageClassifier, path: Path, *, extra: dict | None = None, layer_stats: dict | None = None) -> Path:
    """A trainable checkpoint: state_dict + architecture spec (+ PGU layer statistics)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "spec": model.spec.as_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
        "layer_stats": layer_stats,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def load_checkpoint(path: Path, map_location: str = "cpu") -> tuple[ImageClassifier, dict]:
    """Rebuild the model from a checkpoint; returns (model in eval mode, full payload)."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        from forgetflow.errors import DataIntegrityError

        raise DataIntegrityError(f"{path} is not a forgetflow checkpoint", "checkpoints are written by forgetflow training")
    model = build_model(ModelSpec(**payload["spec"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
