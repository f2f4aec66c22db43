"""A workspace that was moved or copied (`mv`, `cp -a`, a restored backup) keeps working at its new path.

Most of the workspace stores paths relative to itself; three places cannot:

- the MLflow SQLite store records absolute `file://<root>/mlflow/artifacts/...` locations (the
  experiment's artifact location, each run's artifact URI, each logged model's artifact location,
  each model version's source and storage location, traces' artifact-location tags);
- DVC's `.dvc/config.local` names the remote; forgetflow now writes an in-workspace remote relative
  to `.dvc/` (DVC resolves a relative path in a config file against that file's folder), but older
  workspaces hold an absolute path;
- the deletion journals under `.forgetflow/` (batches, verifications) name scratch checkpoints and
  report folders by absolute path, so a batch that was interrupted resumes from them.

`.forgetflow/workspace.json` records the root these were written for. `load_settings` calls
`follow_move`: when the recorded root is not the current one, every location under the old root is
rewritten to the same place under the new root (the MLflow store in one SQLite transaction), the
service record of the old location is dropped, and only then is the record updated. A kill in
between leaves the old record, and the next command redoes a rewrite that now finds nothing to
change. Locations outside the old root (an external artifact store, a tracking server, a remote
elsewhere) are never touched, and neither is an MLflow store outside the workspace.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from forgetflow.errors import WorkspaceError
from forgetflow.settings import Settings

logger = logging.getLogger(__name__)

RECORD_NAME = "workspace.json"
LOCK_TIMEOUT_S = 120.0
SQLITE_TIMEOUT_S = 10.0

# (table, column, extra condition): every column of the MLflow 3 schema that stores an artifact
# location. Tables or columns an older or newer schema lacks are skipped.
LOCATION_COLUMNS = (
    ("experiments", "artifact_location", ""),
    ("runs", "artifact_uri", ""),
    ("logged_models", "artifact_location", ""),
    ("model_versions", "source", ""),
    ("model_versions", "storage_location", ""),
    ("trace_tags", "value", "key = 'mlflow.artifactLocation'"),
)
# Journals under .forgetflow/ that name files by absolute path (deletion/batch.py, verification.py).
JOURNAL_DIRS = ("batches", "verifications")


@dataclass
class Relocation:
    """What a relocation changed (or, dry, would change)."""

    old_root: str
    new_root: str
    mlflow_rewritten: int = 0
    mlflow_skipped: str | None = None  # why the MLflow store was not touched
    mlflow_left: dict[str, int] = field(default_factory=dict)  # table.column -> values still naming the old root
    dvc_changes: list[str] = field(default_factory=list)
    journal_files: int = 0
    journal_paths: int = 0
    service_record_dropped: bool = False
    dry_run: bool = False

    @property
    def moved(self) -> bool:
        return self.old_root != self.new_root

    def line(self) -> str:
        verb = "would be rewritten" if self.dry_run else "rewritten"
        if not self.moved:
            if self.dvc_changes:
                return f"workspace {self.new_root} has not moved; its DVC config now names in-workspace paths relative to .dvc/"
            return f"workspace {self.new_root} has not moved: nothing to rewrite"
        return f"workspace moved from {self.old_root} to {self.new_root}: {self.mlflow_rewritten} MLflow locations {verb}"


# --- the record ---------------------------------------------------------------------------------
def record_path(settings: Settings) -> Path:
    return settings.state_dir / RECORD_NAME


def recorded_root(settings: Settings) -> str | None:
    try:
        root = json.loads(record_path(settings).read_text()).get("root")
    except (OSError, ValueError, AttributeError):
        return None
    return root if isinstance(root, str) and root else None


def _write_record(settings: Settings, moved_from: str | None) -> None:
    from forgetflow.workspace import write_atomic

    record = {"root": str(settings.workspace), "recorded_at": datetime.now(timezone.utc).isoformat()}
    if moved_from:
        record["moved_from"] = moved_from
    write_atomic(record_path(settings), json.dumps(record, indent=2) + "\n")


# --- the automatic check ------------------------------------------------------------------------
def follow_move(settings: Settings) -> Relocation | None:
    """Called for every workspace that is opened (load_settings). Cheap when nothing moved: one small
    file read. Returns the relocation it did, or None."""
    if recorded_root(settings) == str(settings.workspace):
        return None
    if not settings.state_dir.is_dir():
        return None  # not a workspace (yet): nothing was stored for any root
    with _relocation_lock(settings):
        old = recorded_root(settings)  # again: another process may have done it meanwhile
        if old == str(settings.workspace):
            return None
        if old is None:
            old = infer_old_root(settings)
        if old is None:  # infer_old_root never names the current root
            # First sight of this workspace here (new, or written before the record existed).
            _normalise_dvc_config_quietly(settings)
            try:
                _write_record(settings, None)
            except OSError:
                pass  # a read-only workspace: nothing to rewrite, so nothing is lost
            return None
        if same_folder(old, settings.workspace):
            return None  # one folder under two names (a bind mount): the stored paths still work here
        done = _relocate(settings, old, dry_run=False, report_left=False)
    logger.warning(done.line())
    return done


def relocate(settings: Settings, old_root: str | Path | None = None, *, dry_run: bool = False) -> Relocation:
    """The explicit `forgetflow workspace relocate`: rewrite what names `old_root` (default: the
    recorded root, else the one the stores show) to the workspace's current root."""
    check_is_workspace(settings)
    with _relocation_lock(settings):
        if old_root is not None:
            old = os.path.normpath(os.path.abspath(os.path.expanduser(old_root)))
        else:
            old = recorded_root(settings) or infer_old_root(settings) or str(settings.workspace)
        if old != str(settings.workspace) and same_folder(old, settings.workspace):
            raise WorkspaceError(
                f"{old} and {settings.workspace} are the same folder (a bind mount or another name): nothing moved",
                "open the workspace under one path; rewriting it for the other would break every process that uses that one",
            )
        return _relocate(settings, old, dry_run=dry_run, report_left=True)


def same_folder(old: str, new: Path) -> bool:
    try:
        return os.path.samefile(old, new)
    except OSError:
        return False  # the old path is gone (a move) or unreadable


def check_is_workspace(settings: Settings) -> None:
    root = settings.workspace
    if not root.is_dir():
        raise WorkspaceError(f"workspace {root} does not exist", "pass the moved workspace with --workspace DIR")
    if not any((root / name).exists() for name in (".forgetflow", "mlflow", ".dvc")):
        raise WorkspaceError(f"{root} is not a forgetflow workspace (no .forgetflow/, mlflow/ or .dvc/)", "pass the workspace folder itself with --workspace DIR")


def _relocate(settings: Settings, old: str, *, dry_run: bool, report_left: bool) -> Relocation:
    new = str(settings.workspace)
    done = Relocation(old_root=old, new_root=new, dry_run=dry_run)
    db = local_store(settings)
    if db is None:
        done.mlflow_skipped = f"the MLflow store {settings.tracking_uri} is not a SQLite file inside the workspace: it is left as it is"
    elif db.exists():
        if done.moved:
            done.mlflow_rewritten = rewrite_mlflow_store(db, old, new, dry_run=dry_run)
        if report_left:
            done.mlflow_left = mlflow_mentions(db, old) if (done.moved and not dry_run) else {}
    done.dvc_changes = rewrite_dvc_config(settings.workspace, old, dry_run=dry_run)
    if done.moved:
        done.journal_files, done.journal_paths = rewrite_journals(settings, old, new, dry_run=dry_run)
        done.service_record_dropped = _drop_service_record(settings, dry_run=dry_run)
    if not dry_run:
        try:
            _write_record(settings, old if done.moved else None)
        except OSError as exc:
            raise WorkspaceError(f"could not record the workspace root in {record_path(settings)} ({exc.strerror})", "make the workspace writable and run `forgetflow workspace relocate` again") from exc
    return done


class _relocation_lock:
    """One relocation at a time per workspace (parallel tasks of one flow open it together)."""

    def __init__(self, settings: Settings):
        self.path = settings.state_dir / f"{RECORD_NAME}.lock"

    def __enter__(self):
        from filelock import FileLock, Timeout

        self.lock = FileLock(str(self.path))
        try:
            self.lock.acquire(timeout=LOCK_TIMEOUT_S)
        except Timeout as exc:
            raise WorkspaceError(f"another process has been relocating the workspace for {LOCK_TIMEOUT_S:.0f} s ({self.path})", "wait for it, or stop it and run `forgetflow workspace relocate`") from exc
        except OSError:  # a read-only workspace (or one without .forgetflow/) cannot take the lock file
            self.lock = None
        return self

    def __exit__(self, *exc):
        if self.lock is not None:
            self.lock.release()


# --- finding the old root of a workspace written before the record existed ---------------------------
def infer_old_root(settings: Settings) -> str | None:
    """The root the stores were written for, read from the default layout: the experiment's artifact
    location `<root>/mlflow/artifacts` or the DVC remote `<root>/.forgetflow/dvc-remote`. A candidate
    counts only if that folder came along to the current root (so an external store that happens to
    have the same layout is never taken for a move) and no explicit setting put it there."""
    current = settings.workspace
    db = local_store(settings)
    if db is not None and db.exists() and settings.mlflow_artifact_location is None and (current / "mlflow" / "artifacts").is_dir():
        try:
            with closing(_connect(db, read_only=True)) as con:
                row = con.execute("SELECT artifact_location FROM experiments WHERE name = ?", (settings.experiment_name,)).fetchone()
        except sqlite3.Error:
            row = None
        location = _local_path(row[0]) if row and row[0] else None
        if location is not None and location.name == "artifacts" and location.parent.name == "mlflow":
            candidate = location.parent.parent
            if candidate != current:
                return str(candidate)
    if settings.dvc_remote is None and (current / ".forgetflow" / "dvc-remote").is_dir():
        for url in _dvc_remote_urls(current):
            path = Path(url)
            if path.is_absolute() and path.name == "dvc-remote" and path.parent.name == ".forgetflow" and path.parent.parent != current:
                return str(path.parent.parent)
    return None


def _local_path(location: str) -> Path | None:
    from urllib.parse import unquote, urlparse

    if location.startswith("file:"):
        path = unquote(urlparse(location).path)
        return Path(path) if path.startswith("/") else None
    return Path(location) if location.startswith("/") else None


# --- MLflow -------------------------------------------------------------------------------------
def local_store(settings: Settings) -> Path | None:
    """The MLflow SQLite file when it lies inside the workspace, else None (a server, a database,
    a SQLite file elsewhere: shared with others, never rewritten)."""
    uri = settings.tracking_uri
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    if not db.is_absolute():
        return None
    try:
        db.resolve().relative_to(settings.workspace)
    except ValueError:
        return None
    return db


def _prefix_pairs(old: str, new: str) -> list[tuple[str, str]]:
    """(old prefix, new prefix) for every form a location takes: the percent-encoded file URI
    (`Path.as_uri()`, what forgetflow gives MLflow), the raw file URI, and the plain path."""
    old_path, new_path = Path(old), Path(new)
    pairs = [(old_path.as_uri(), new_path.as_uri()), (f"file://{old}", f"file://{new}"), (old, new)]
    seen, unique = set(), []
    for pair in pairs:
        if pair[0] not in seen:
            seen.add(pair[0])
            unique.append(pair)
    return unique


def _connect(db: Path, *, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        return sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=SQLITE_TIMEOUT_S)
    return sqlite3.connect(str(db), timeout=SQLITE_TIMEOUT_S, isolation_level=None)


def _columns(con: sqlite3.Connection) -> dict[str, set[str]]:
    tables = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {table: {row[1] for row in con.execute(f'PRAGMA table_info("{table}")')} for table in tables}


def rewrite_mlflow_store(db: Path, old: str, new: str, *, dry_run: bool = False) -> int:
    """Rewrite every stored location under `old` to the same place under `new`, in one transaction;
    returns how many values changed (a dry run rolls back)."""
    if old == new:
        return 0
    try:
        con = _connect(db)
    except sqlite3.Error as exc:
        raise _store_error(db, exc) from exc
    try:
        con.execute("BEGIN IMMEDIATE")  # the write lock now, or a clear "locked" after the timeout
        columns = _columns(con)
        changed = 0
        for table, column, condition in LOCATION_COLUMNS:
            if column not in columns.get(table, ()):
                continue
            extra = f" AND {condition}" if condition else ""
            for old_prefix, new_prefix in _prefix_pairs(old, new):
                # substr, not LIKE: `_` and `%` in a path are not wildcards, and case matters. A value
                # already under the new root is skipped, so a redo is a no-op even when the new root
                # lies inside the old one.
                cursor = con.execute(
                    f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
                    f'WHERE ("{column}" = ? OR substr("{column}", 1, ?) = ?) '
                    f'AND NOT ("{column}" = ? OR substr("{column}", 1, ?) = ?){extra}',
                    (new_prefix, len(old_prefix) + 1, old_prefix, len(old_prefix) + 1, old_prefix + "/", new_prefix, len(new_prefix) + 1, new_prefix + "/"),
                )
                changed += max(cursor.rowcount, 0)
        con.execute("ROLLBACK" if dry_run else "COMMIT")
        return changed
    except sqlite3.Error as exc:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise _store_error(db, exc) from exc
    finally:
        con.close()


def mlflow_mentions(db: Path, root: str) -> dict[str, int]:
    """table.column -> how many text values still name `root` anywhere (`<root>/` inside, or `<root>`
    at the end; not only as a prefix): what a relocation leaves as recorded, e.g. a parameter a user
    logged with a path in it."""
    found = {}
    try:
        with closing(_connect(db, read_only=True)) as con:
            tables = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for row in con.execute(f'PRAGMA table_info("{table}")').fetchall():
                    column, kind = row[1], (row[2] or "").upper()
                    if not any(word in kind for word in ("CHAR", "TEXT", "CLOB", "JSON")):
                        continue
                    count = con.execute(
                        f'SELECT count(*) FROM "{table}" WHERE instr("{column}", ?) > 0 OR substr("{column}", ?) = ?', (root + "/", -len(root), root)
                    ).fetchone()[0]
                    if count:
                        found[f"{table}.{column}"] = count
    except sqlite3.Error as exc:
        raise _store_error(db, exc) from exc
    return found


def _store_error(db: Path, exc: sqlite3.Error) -> WorkspaceError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return WorkspaceError(f"the MLflow store {db} is locked by another process ({text})", "stop the process using it (an `mlflow ui`, another forgetflow command), then run `forgetflow workspace relocate`")
    if "readonly" in text or "read-only" in text:
        return WorkspaceError(f"the MLflow store {db} cannot be written ({text})", "make the workspace writable, then run `forgetflow workspace relocate`")
    return WorkspaceError(f"the MLflow store {db} cannot be rewritten ({text})", "check that it is an MLflow SQLite database (restore it from a backup if it is damaged)")


# --- DVC ----------------------------------------------------------------------------------------
_SCHEME = re.compile(r"^\w+://")


def _dvc_config_files(root: Path) -> list[Path]:
    return [path for path in (root / ".dvc" / "config", root / ".dvc" / "config.local") if path.is_file()]


def _dvc_remote_urls(root: Path) -> list[str]:
    from configobj import ConfigObj, ConfigObjError

    urls = []
    for path in _dvc_config_files(root):
        try:
            config = ConfigObj(str(path))
        except (ConfigObjError, OSError):
            continue
        urls += [str(section["url"]) for name, section in config.items() if name.startswith("remote ") and isinstance(section, dict) and "url" in section]
    return urls


def rewrite_dvc_config(root: Path, old: str, *, dry_run: bool = False) -> list[str]:
    """Make every absolute local path in `.dvc/config[.local]` (remote URLs, the cache folder) that
    lies under `old` or under the workspace relative to `.dvc/`; returns what changed."""
    from configobj import ConfigObj, ConfigObjError

    from forgetflow.workspace import write_atomic

    changes = []
    dvc_dir = root / ".dvc"
    for path in _dvc_config_files(root):
        try:
            config = ConfigObj(str(path))
        except ConfigObjError as exc:
            raise WorkspaceError(f"DVC config {path} cannot be parsed ({exc})", "fix or delete it; `forgetflow init` writes the remote again") from exc
        edited = False
        for name, section in config.items():
            key = "url" if name.startswith("remote ") else "dir" if name == "cache" else None
            if key is None or not isinstance(section, dict) or key not in section:
                continue
            stored = relative_in_workspace(str(section[key]), root, dvc_dir, old)
            if stored is not None and stored != section[key]:
                changes.append(f"{path.name}: {name} {key} {section[key]} -> {stored}")
                section[key] = stored
                edited = True
        if edited and not dry_run:
            config.filename = None
            write_atomic(path, "\n".join(config.write()) + "\n")
    return changes


def relative_in_workspace(value: str, root: Path, base: Path, old: str | None = None) -> str | None:
    """`value` (a path from a DVC config) relative to `base` when it is an absolute path under the
    workspace `root` (or under `old`, the root it was written for); None when it stays as it is."""
    if _SCHEME.match(value) or not os.path.isabs(value):
        return None
    path = Path(os.path.normpath(value))
    for prefix in (root, Path(old) if old else None):  # the current root first: what is under it stays
        if prefix is None:
            continue
        try:
            inside = root / path.relative_to(prefix)
        except ValueError:
            continue
        return Path(os.path.relpath(inside, base)).as_posix()
    return None


def _normalise_dvc_config_quietly(settings: Settings) -> None:
    """An older workspace seen for the first time: its absolute in-workspace remote becomes relative,
    so a later `mv` needs nothing from DVC. Cheap when there is nothing to do (a text search)."""
    try:
        if not any(str(settings.workspace) in path.read_text(errors="replace") for path in _dvc_config_files(settings.workspace)):
            return
        rewrite_dvc_config(settings.workspace, str(settings.workspace))
    except (OSError, WorkspaceError):
        pass  # read-only or damaged: `forgetflow workspace relocate` reports it


# --- journals and the service record -----------------------------------------------------------------
def _rewrite_value(value, old: str, new: str) -> tuple[object, int]:
    if isinstance(value, str):
        if (value == old or value.startswith(old + "/")) and not (value == new or value.startswith(new + "/")):
            return new + value[len(old):], 1
        return value, 0
    if isinstance(value, dict):
        count, out = 0, {}
        for key, item in value.items():
            out[key], n = _rewrite_value(item, old, new)
            count += n
        return out, count
    if isinstance(value, list):
        count, out = 0, []
        for item in value:
            rewritten, n = _rewrite_value(item, old, new)
            out.append(rewritten)
            count += n
        return out, count
    return value, 0


def rewrite_journals(settings: Settings, old: str, new: str, *, dry_run: bool = False) -> tuple[int, int]:
    """Paths under `old` in the batch and verification journals -> under `new` (an interrupted batch
    resumes from its scratch checkpoints). Returns (files changed, paths changed)."""
    from forgetflow.workspace import write_atomic

    files = paths = 0
    for folder in JOURNAL_DIRS:
        for path in sorted((settings.state_dir / folder).glob("*.json")):
            text = path.read_text()
            if old not in text:
                continue
            try:
                data = json.loads(text)
            except ValueError:
                continue  # a damaged journal is the flow's to report, not ours to rewrite
            data, count = _rewrite_value(data, old, new)
            if count:
                files, paths = files + 1, paths + count
                if not dry_run:
                    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))
    return files, paths


def _drop_service_record(settings: Settings, *, dry_run: bool) -> bool:
    """`.forgetflow/service.json` describes the `forgetflow serve` of the old location (its API,
    its process IDs, its lease folder): a copy must not announce requests to it or share its leases."""
    from forgetflow.service.server import service_file

    path = service_file(settings)
    if not path.exists():
        return False
    if not dry_run:
        path.unlink(missing_ok=True)
    return True
