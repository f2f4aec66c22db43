"""The machine and library versions a benchmark ran on, recorded beside every result."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata


def describe() -> dict:
    versions = {}
    for package in ("torch", "torchvision", "prefect", "mlflow", "dvc", "great-expectations", "forgetflow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "versions": versions,
        "commit": commit,
    }


def markdown_line(env: dict) -> str:
    v = env["versions"]
    gpu = env["gpu"] or "no GPU"
    return f"{env['cpu']} ({env['cpu_count']} cores), {gpu}; Python {env['python']}, torch {v['torch']}, prefect {v['prefect']}, mlflow {v['mlflow']}, dvc {v['dvc']}; commit {env['commit']}"


def record(*, device: str, quick: bool, seeds, command: str) -> dict:
    """describe() plus what this run was: device, quick or full, seeds, the command line, threads."""
    import torch

    env = describe()
    env.update(device=device, quick=bool(quick), seeds=list(seeds) if seeds is not None else None, command=command, torch_threads=torch.get_num_threads())
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env
