"""Device selection and seeding: one place, so no module hard-codes `.cuda()`."""

from __future__ import annotations

import os
import random


def resolve_device(setting: str = "auto") -> str:
    import torch

    if setting != "auto":
        if setting.startswith("cuda") and not torch.cuda.is_available():
            from forgetflow.errors import ConfigError

            raise ConfigError(f"device {setting!r} requested but CUDA is not available", "set FORGETFLOW_DEVICE=auto or cpu")
        return setting
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
