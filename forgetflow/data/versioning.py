"""DVC adapter: the workspace is a DVC repository; each dataset directory is one tracked output.

The DVC md5 of a dataset directory (`<md5>.dir`) is the data version ID written into every
lineage record. Without Git the repository runs in `no_scm` mode; inside a Git repository root it
uses Git, and the `.dvc` files can be committed.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import yaml

from forgetflow.errors import VersioningError

REMOTE_NAME = "forgetflow"


def _quiet_dvc_environment(state_dir: Path) -> None:
    """Keep DVC from writing outside the workspace or phoning home (set before importing dvc)."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("DVC_SITE_CACHE_DIR", str(state_dir / "dvc-site-cache"))
    # DVC's INFO chatter ("Initialized DVC repository", push counts) is noise inside a pipeline,
    # and its handler can outlive the stream it was bound to (e.g. under test capture).
    logging.getLogger("dvc").setLevel(logging.WARNING)


class DvcWorkspace:
    def __init__(self, root: Path, remote_url: str, state_dir: Path):
        self.root = Path(root)
        self.remote_url = remote_url
        _quiet_dvc_environment(state_dir)

    def _repo(self):
        from dvc.repo import Repo

        return Repo(str(self.root))

    def ensure(self) -> None:
        """Initialise DVC (no-scm unless the workspace is a Git root) and configure the remote."""
        from dvc.repo import Repo

        logging.getLogger("dvc").setLevel(logging.WARNING)  # again: importing dvc may reset it
        try:
            if not (self.root / ".dvc").is_dir():
                Repo.init(str(self.root), no_scm=not (self.root / ".git").exists())
            remote = self.remote_url
            if "://" not in remote:
                Path(remote).mkdir(parents=True, exist_ok=True)
                remote = str(Path(remote).resolve())
            # The remote lives in config.local: it is a machine-specific path, not project config.
            with self._repo().config.edit("local") as config:
                config["remote"][REMOTE_NAME] = {"url": remote}
                config["core"]["remote"] = REMOTE_NAME
                config["core"]["analytics"] = False
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
