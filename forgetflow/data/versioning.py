"""DVC adapter: the workspace is a DVC repository; each dataset directory is one tracked output.

The DVC md5 of a dataset directory (`<md5>.dir`) is the data version ID written into every
lineage record. Without Git the repository runs in `no_scm` mode; inside a Git repository root it
uses Git, and the `.dvc` files can be committed.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
from pathlib import Path

import yaml

from forgetflow.errors import ConfigError, VersioningError

REMOTE_NAME = "forgetflow"

# DVC ships only local/http remotes; cloud schemes need a plugin package (module name, pip name).
_REMOTE_PLUGINS = {
    "s3": ("dvc_s3", '"forgetflow[s3]"'),
    "gs": ("dvc_gs", "dvc-gs"),
    "azure": ("dvc_azure", "dvc-azure"),
    "ssh": ("dvc_ssh", "dvc-ssh"),
}


def _require_remote_plugin(remote_url: str) -> None:
    """Fail early, with the fix, when the remote's scheme needs a DVC plugin that is not installed."""
    scheme = remote_url.split("://", 1)[0].lower() if "://" in remote_url else ""
    if scheme not in _REMOTE_PLUGINS:
        return
    module, package = _REMOTE_PLUGINS[scheme]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"the DVC remote {remote_url} needs the DVC {scheme} plugin ({module}), which is not installed",
            f"pip install {package}  (or point FORGETFLOW_DVC_REMOTE at a local directory)",
        ) from exc


def _quiet_dvc_environment(state_dir: Path) -> None:
    """Keep DVC from writing outside the workspace or phoning home (set before importing dvc)."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("DVC_SITE_CACHE_DIR", str(state_dir / "dvc-site-cache"))
    # DVC's INFO chatter ("Initialized DVC repository", push counts) is noise inside a pipeline,
    # and its handler can outlive the stream it was bound to (e.g. under test capture).
    logging.getLogger("dvc").setLevel(logging.WARNING)


def local_remote_for_config(remote: Path, root: Path) -> str:
    """How a local remote is written to `.dvc/config.local`: inside the workspace, as DVC's RelPath,
    which DVC writes relative to `.dvc/` and resolves against it again (dvc/config.py `_to_relpath`,
    `_resolve`), so the workspace can be moved or copied and still pushes to its own remote;
    elsewhere, the absolute path."""
    from dvc.config_schema import RelPath

    try:
        remote.relative_to(root)
    except ValueError:
        return str(remote)
    return RelPath(str(remote))


class DvcWorkspace:
    def __init__(self, root: Path, remote_url: str, state_dir: Path, remote_config: dict | None = None):
        self.root = Path(root)
        self.remote_url = remote_url
        # Extra remote options (FORGETFLOW_DVC_REMOTE_CONFIG), e.g. endpointurl for MinIO.
        self.remote_config = dict(remote_config or {})
        _quiet_dvc_environment(state_dir)

    def _repo(self):
        from dvc.repo import Repo

        return Repo(str(self.root))

    def ensure(self) -> None:
        """Initialise DVC (no-scm unless the workspace is a Git root) and configure the remote."""
        from dvc.config import ConfigError as DvcConfigError
        from dvc.repo import Repo

        logging.getLogger("dvc").setLevel(logging.WARNING)  # again: importing dvc may reset it
        _require_remote_plugin(self.remote_url)
        if "url" in self.remote_config:
            raise ConfigError("FORGETFLOW_DVC_REMOTE_CONFIG must not set 'url'", "set the remote URL with FORGETFLOW_DVC_REMOTE")
        try:
            if not (self.root / ".dvc").is_dir():
                Repo.init(str(self.root), no_scm=not (self.root / ".git").exists())
            remote = self.remote_url
            if "://" not in remote:
                Path(remote).mkdir(parents=True, exist_ok=True)
                remote = local_remote_for_config(Path(remote).resolve(), self.root.resolve())
            # The remote lives in config.local: it is machine-specific (a path, an endpoint,
            # perhaps credentials), not project config. DVC validates the options on write.
            with self._repo().config.edit("local") as config:
                config["remote"][REMOTE_NAME] = {"url": remote, **self.remote_config}
                config["core"]["remote"] = REMOTE_NAME
                config["core"]["analytics"] = False
        except DvcConfigError as exc:
            raise ConfigError(
                f"DVC rejected the remote options {sorted(self.remote_config)} for {self.remote_url}: {exc}",
                "fix FORGETFLOW_DVC_REMOTE_CONFIG (a JSON object of options `dvc remote modify` accepts for this remote type)",
            ) from exc
        except Exception as exc:  # DVC raises many types; the user needs one message
            raise VersioningError(f"could not set up DVC in {self.root}: {exc}", "check that the workspace is writable and not locked by another dvc process") from exc

    def track(self, path: Path) -> str:
        """`dvc add` + `dvc push` one directory; return its md5 (the data version ID)."""
        target = Path(path).resolve()
        relative = str(target.relative_to(self.root))
        try:
            with self._repo() as repo:
                repo.add(str(target))
                # Target the .dvc file: in a Git workspace an output path is looked up in the
                # committed tree, where a new dataset is not yet.
                repo.push(targets=[f"{target}.dvc"], remote=REMOTE_NAME)
        except Exception as exc:
            raise VersioningError(f"dvc add/push of {relative} failed: {exc}", f"check the DVC remote ({self.remote_url}) and the DVC lock in .dvc/tmp") from exc
        return self.md5(path)

    def md5(self, path: Path) -> str:
        """The md5 recorded in `<path>.dvc` (without the `.dir` suffix)."""
        dvc_file = Path(str(path) + ".dvc")
        if not dvc_file.is_file():
            raise VersioningError(f"{path} is not tracked by DVC", "run forgetflow data import first")
        outs = yaml.safe_load(dvc_file.read_text())["outs"][0]
        return outs["md5"].removesuffix(".dir")

    def status_clean(self, path: Path) -> bool:
        """True when the workspace copy of `path` matches what DVC recorded."""
        with self._repo() as repo:
            return not repo.status(targets=[f"{Path(path).resolve()}.dvc"])

    def untrack_new(self, path: Path) -> None:
        """Undo a `dvc add` whose version was rolled back (best effort: the .dvc file only)."""
        Path(str(path) + ".dvc").unlink(missing_ok=True)


def git_commit_dvc_file(workspace: Path, dvc_file: Path, message: str) -> str | None:
    """Commit only the `.dvc` pointer (and DVC's .gitignore) when the workspace is a Git root."""
    root = Path(workspace)
    if not (root / ".git").exists():
        return None
    paths = [str(dvc_file.relative_to(root))]
    gitignore = dvc_file.parent / ".gitignore"
    if gitignore.exists():
        paths.append(str(gitignore.relative_to(root)))
    try:
        subprocess.run(["git", "-C", str(root), "add", "--", *paths], check=True, capture_output=True, text=True)
        result = subprocess.run(["git", "-C", str(root), "commit", "-m", message, "--only", "--", *paths], capture_output=True, text=True)
        if result.returncode != 0:
            return None  # nothing to commit, or no Git identity: the .dvc file stays staged
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
