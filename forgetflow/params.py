"""Typed view of params.yaml: the hyperparameters that change results."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from forgetflow.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataParams(_Strict):
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5)
    shard_size: int = Field(512, ge=1)
    samples_per_subject: int = Field(4, ge=1)
    split_seed: int = 0
    # imagefolder and manifest imports: null keeps the files' size (they must agree); N or [H, W] resizes every image.
    resize: int | list[int] | None = None

    @field_validator("resize")
    @classmethod
    def _size(cls, value):
        sizes = [value] if isinstance(value, int) else value
        if sizes is not None and (len(sizes) != 2 and not isinstance(value, int) or any(v < 1 for v in sizes)):
            raise ValueError("resize must be null, a positive N (N x N) or [H, W]")
        return value


class ModelParams(_Strict):
    # small_cnn | resnet18 | torchvision:NAME | MODULE:CALLABLE (see forgetflow/architectures.py)
    arch: str = "small_cnn"
    width: int = Field(32, ge=4)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("arch")
    @classmethod
    def _arch(cls, value: str) -> str:
        from forgetflow.architectures import check_arch

        return check_arch(value)


class TrainParams(_Strict):
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "constant", "exponential"] = "cosine"
    final_lr_ratio: float = Field(0.01, gt=0, le=1)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    augment: bool = False
    crop_padding: int = Field(1, ge=0)
    hflip: bool = False
    store_layer_stats: bool = True
    seed: int = 0


class Params(_Strict):
    model_config = ConfigDict(extra="allow")  # later stages (unlearning, gate) add their own sections

    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()

    def recipe_hash(self) -> str:
        """Hash of everything that defines a trained model given the data: model + train sections."""
        return stable_hash({"model": self.model.model_dump(), "train": self.train.model_dump()})

    def hash(self) -> str:
        return stable_hash(self.model_dump())


def stable_hash(obj) -> str:
    """Short SHA-256 of a JSON-serialisable object, independent of key order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def load_params(path: Path) -> Params:
    """Read and validate params.yaml; a missing file means the defaults."""
    if not path.exists():
        return Params()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", "fix the syntax or delete the file to use defaults") from exc
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path} has invalid values: {problems}", "see the comments in params.yaml for allowed values") from exc


def params_section(params: Params, name: str, model: type[BaseModel]):
    """Validate the extra section `name:` of a loaded Params with `model` (its defaults when absent);
    a bad value raises a ConfigError naming `name.<field>` and the problem."""
    raw = (params.model_extra or {}).get(name) or {}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{name}.{'.'.join(map(str, e['loc'])) or '*'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise ConfigError(f"params.yaml has invalid {name} values: {problems}", f"see the comments of the `{name}:` section in params.yaml") from exc
