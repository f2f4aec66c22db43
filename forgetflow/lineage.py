"""Identifiers that tie a model to its code, parameters and orchestration run."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from forgetflow import __version__


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`<package version>+g<git commit>[.dirty]` for a checkout, the package version otherwise."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--", "forgetflow", "flows", "tasks"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}" + (".dirty" if dirty else "")


def prefect_flow_run_id() -> str | None:
    """The current Prefect flow run's ID, or None outside a flow (no Prefect import otherwise)."""
    import sys

    if "prefect" not in sys.modules:
        return None
    from prefect.runtime import flow_run

    run_id = flow_run.id
    return str(run_id) if run_id else None
