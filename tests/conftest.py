"""Hermetic test environment: every tool writes under one temporary folder, nothing global.

Set before Prefect, MLflow or DVC are imported: their settings are read at import time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="forgetflow-tests-"))
os.environ.update(
    {
        "PREFECT_HOME": str(_SESSION_DIR / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(_SESSION_DIR / "prefect-results"),
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(_SESSION_DIR / "dvc-site"),
        "DVC_GLOBAL_CONFIG_DIR": str(_SESSION_DIR / "dvc-global"),
        "DVC_SYSTEM_CONFIG_DIR": str(_SESSION_DIR / "dvc-system"),
        "GX_ANALYTICS_ENABLED": "False",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
        "GIT_PYTHON_REFRESH": "quiet",
        "FORGETFLOW_DEVICE": "cpu",
        "TQDM_DISABLE": "1",
    }
)
for key in ("FORGETFLOW_WORKSPACE", "FORGETFLOW_MLFLOW_TRACKING_URI", "FORGETFLOW_DVC_REMOTE", "FORGETFLOW_SEED", "PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
    os.environ.pop(key, None)
(_SESSION_DIR / "prefect").mkdir(parents=True, exist_ok=True)

REPO_PARAMS = yaml.safe_load((Path(__file__).resolve().parent.parent / "params.yaml").read_text())

# Small and fast, but the real recipe code: a narrow CNN, few epochs.
FAST_PARAMS = {
    "data": {"val_fraction": 0.1, "test_fraction": 0.2, "shard_size": 256, "samples_per_subject": 4, "split_seed": 0},
    "model": {"arch": "small_cnn", "width": 8, "dropout": 0.0},
    "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005, "schedule": "cosine", "final_lr_ratio": 0.01,
              "epochs": 3, "batch_size": 64, "augment": False, "crop_padding": 1, "hflip": False, "store_layer_stats": True, "seed": 0},
}


def make_workspace(path: Path, **overrides) -> Path:
    """A workspace folder with fast params.yaml (sections in `overrides` replace the defaults)."""
    path.mkdir(parents=True, exist_ok=True)
    params = {**FAST_PARAMS, **overrides}
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture
def workspace(tmp_path) -> Path:
    return make_workspace(tmp_path / "ws")


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole session (starting one costs ~10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def pytest_collection_modifyitems(config, items):
    """The real-servers module first (about 7 of the suite's minutes, its tests in order): under
    scripts/test.sh's two workers, one runs it while the other works through the rest."""
    items.sort(key=lambda item: item.path.name != "test_service_servers.py")
