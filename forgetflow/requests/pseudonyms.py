"""Subject identifiers are stored as salted hashes, never in clear text.

A subject token is HMAC-SHA256(salt, subject_id). The salt is 32 random bytes created on first use
in the workspace config `<workspace>/.forgetflow/requests.json` (file mode 0600, git-ignored with
the rest of `.forgetflow/`). With the salt, forgetflow can still match a token against the manifest
(resolution hashes the manifest's subject IDs the same way); without it, the ledger cannot be
reversed by hashing guessed IDs such as `subj-000123`. Losing the salt makes recorded subject
requests unresolvable, so back it up with the workspace.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

from forgetflow.errors import WorkspaceError

CONFIG_NAME = "requests.json"
TOKEN_PREFIX = "hmac-sha256:"


def config_path(state_dir: Path) -> Path:
    return Path(state_dir) / CONFIG_NAME


def workspace_salt(state_dir: Path, *, create: bool = True) -> bytes:
    """The workspace's subject salt, created (mode 0600) the first time it is needed.

    With `create=False` a missing salt is an error: a new salt would silently stop every recorded
    subject token from matching.
    """
    path = config_path(state_dir)
    if not path.exists() and not create:
        raise WorkspaceError(f"the subject salt {path} is missing, so recorded subject requests cannot be matched", "restore <workspace>/.forgetflow/requests.json from a backup")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", preserve_lock_file=True):
            if not path.exists():
                _create(path)
    try:
        config = json.loads(path.read_text())
        salt = bytes.fromhex(config["subject_salt"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WorkspaceError(f"the request config {path} is unreadable or has no valid subject_salt", "restore it from a backup; without it recorded subject requests cannot be resolved") from exc
    if len(salt) < 16:
        raise WorkspaceError(f"the subject salt in {path} is too short ({len(salt)} bytes)", "restore the file from a backup")
    return salt


def _create(path: Path) -> None:
    config = {"subject_salt": secrets.token_hex(32), "created_at": datetime.now(timezone.utc).isoformat(), "note": "salt for subject-ID hashes in the request ledger; keep secret, back up with the workspace"}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (json.dumps(config, indent=2) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)  # whatever the umask said
    os.replace(tmp, path)


def subject_token(salt: bytes, subject_id: str) -> str:
    return TOKEN_PREFIX + hmac.new(salt, subject_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
