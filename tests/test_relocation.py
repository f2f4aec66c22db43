"""A moved or copied workspace keeps working at its new path: the MLflow store's locations, the DVC
remote and the deletion journals follow it; nothing outside the workspace is rewritten.

One tiny workspace (a 36-image manifest, an adopted width-8 CNN: one DVC data version, one
registered version) is built per module; each test works on copies of it."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch

from forgetflow.settings import load_settings

from conftest import make_workspace
from test_cli import invoke
from tinyimages import write_manifest


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    from forgetflow.models import SmallCNN

    root = tmp_path_factory.mktemp("relocation")
    ws = make_workspace(root / "built" / "ws")
    csv = write_manifest(root / "src", n=36)
    code, out = invoke("data", "import", "manifest", str(csv), "-w", str(ws))
    assert code == 0, out
    torch.manual_seed(0)
    torch.save(SmallCNN(1, 3, 8).state_dict(), root / "net.pt")
    code, out = invoke("adopt", str(root / "net.pt"), "-w", str(ws))
    assert code == 0, out
    return ws


def opened_copy(built: Path, dest: Path) -> Path:
    """A workspace at `dest` that has been opened there (its stores and record name `dest`)."""
    shutil.copytree(built, dest, symlinks=True)
    load_settings(dest)
    assert store_text(dest).count(str(built)) == 0
    return dest


def store_text(ws: Path) -> str:
    con = sqlite3.connect(ws / "mlflow" / "mlflow.db")
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


def locations(ws: Path) -> list[str]:
    con = sqlite3.connect(ws / "mlflow" / "mlflow.db")
    try:
        rows = con.execute("SELECT artifact_uri FROM runs UNION ALL SELECT artifact_location FROM logged_models UNION ALL SELECT storage_location FROM model_versions").fetchall()
        rows += con.execute("SELECT artifact_location FROM experiments WHERE name = 'forgetflow'").fetchall()
    finally:
        con.close()
    return [row[0] for row in rows]


def files_under(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock")}


def test_a_moved_workspace_reads_its_models_and_data_at_the_new_path(built, tmp_path, caplog):
    old = opened_copy(built, tmp_path / "a" / "ws")
    new = tmp_path / "b" / "ws"
    new.parent.mkdir()
    shutil.move(str(old), str(new))
    assert not old.exists()

    with caplog.at_level("WARNING", logger="forgetflow.relocation"):
        settings = load_settings(new)
    assert f"workspace moved from {old} to {new}: " in caplog.text and "MLflow locations rewritten" in caplog.text
    assert str(old) not in store_text(new)
    assert locations(new) and all(loc.startswith(new.as_uri() + "/mlflow/artifacts") for loc in locations(new))
    record = json.loads((new / ".forgetflow" / "workspace.json").read_text())
    assert record["root"] == str(new) and record["moved_from"] == str(old)

    # The champion and its checkpoint load from the new place.
    import mlflow

    from forgetflow.models import load_checkpoint
    from forgetflow.tracking import configure, download_checkpoint

    path = download_checkpoint(settings, alias="champion", dst=tmp_path / "ckpt")
    model, payload = load_checkpoint(path)
    assert payload["extra"]["dataset"] == "faces"
    configure(settings)
    served = mlflow.pytorch.load_model(f"models:/{settings.registered_model_name}@champion")
    assert served(torch.zeros(2, 1, 12, 12)).shape == (2, 3)
    code, out = invoke("model", "show", "-w", str(new))
    assert code == 0 and str(old) not in out

    # The data version comes back from the new place's own remote (the old one is gone).
    from dvc.repo import Repo

    shutil.rmtree(new / "data" / "faces")
    shutil.rmtree(new / ".dvc" / "cache")
    with Repo(str(new)) as repo:
        assert repo.config["remote"]["forgetflow"]["url"] == str(new / ".forgetflow" / "dvc-remote")
        repo.pull()
    code, out = invoke("data", "verify", "faces", "-w", str(new))
    assert code == 0 and "ok" in out and "clean" in out


def test_a_copy_writes_new_artifacts_under_the_copy_only(built, tmp_path):
    from forgetflow.models import SmallCNN

    original = opened_copy(built, tmp_path / "a" / "ws")
    copy = tmp_path / "b" / "ws"
    shutil.copytree(original, copy, symlinks=True)  # cp -a: the original stays, and stays in use
    before = files_under(original)

    torch.manual_seed(1)
    torch.save(SmallCNN(1, 3, 8).state_dict(), tmp_path / "second.pt")
    code, out = invoke("adopt", str(tmp_path / "second.pt"), "--force", "-w", str(copy))
    assert code == 0 and "v2" in out, out
    from dvc.repo import Repo

    with Repo(str(copy)) as repo:
        assert repo.config["remote"]["forgetflow"]["url"] == str(copy / ".forgetflow" / "dvc-remote")
        repo.push()

    assert files_under(original) == before  # nothing new, nothing touched in the original
    assert str(original) not in store_text(copy)
    assert all(loc.startswith(copy.as_uri() + "/") for loc in locations(copy))
    settings = load_settings(copy)
    from forgetflow.tracking import configure

    configure(settings)
    from mlflow import MlflowClient

    champion = MlflowClient().get_model_version_by_alias(settings.registered_model_name, "champion")
    assert str(champion.version) == "2"
    model_id = champion.model_id or champion.source.removeprefix("models:/")
    assert (copy / "mlflow" / "artifacts" / "models" / model_id / "artifacts" / "extra_files" / "checkpoint.pt").is_file()
    # The original still names only itself.
    assert str(copy) not in store_text(original)
    assert json.loads((original / ".forgetflow" / "workspace.json").read_text())["root"] == str(original)


def test_locations_outside_the_workspace_are_left_untouched(built, tmp_path):
    from mlflow import MlflowClient

    from forgetflow.relocation import relocate
    from forgetflow.tracking import configure

    old = opened_copy(built, tmp_path / "a" / "ws")
    external = tmp_path / "bucket" / "artifacts"
    sibling = Path(str(old) + "-sibling") / "artifacts"  # shares the old root's text, not its folder
    configure(load_settings(old))
    client = MlflowClient()
    ext_run = client.create_run(client.create_experiment("external", artifact_location=external.as_uri())).info.run_id
    sib_run = client.create_run(client.create_experiment("sibling", artifact_location=sibling.as_uri())).info.run_id
    client.set_terminated(ext_run)
    client.set_terminated(sib_run)

    new = tmp_path / "b" / "ws"
    new.parent.mkdir()
    shutil.move(str(old), str(new))
    done = relocate(load_settings(new, follow_moves=False))
    assert done.moved and done.mlflow_rewritten >= 4  # experiment, run, logged model, model version

    configure(load_settings(new))
    assert client.get_experiment_by_name("external").artifact_location == external.as_uri()
    assert client.get_run(ext_run).info.artifact_uri.startswith(external.as_uri() + "/")
    assert client.get_experiment_by_name("sibling").artifact_location == sibling.as_uri()
    assert client.get_run(sib_run).info.artifact_uri.startswith(sibling.as_uri() + "/")
    assert client.get_experiment_by_name("forgetflow").artifact_location == (new / "mlflow" / "artifacts").as_uri()


def test_an_interrupted_batch_journal_and_an_older_workspace_follow_the_move(built, tmp_path):
    """A workspace from before the record (absolute DVC remote, no workspace.json) whose deletion
    journal names scratch checkpoints: the move is inferred from the stores, and all of it follows."""
    old = opened_copy(built, tmp_path / "a" / "ws")
    (old / ".forgetflow" / "workspace.json").unlink()
    config = old / ".dvc" / "config.local"
    config.write_text(config.read_text().replace("../.forgetflow/dvc-remote", str(old / ".forgetflow" / "dvc-remote")))
    journal = old / ".forgetflow" / "batches" / "batch-x.json"
    journal.parent.mkdir(exist_ok=True)
    journal.write_text(json.dumps({"batch_id": "batch-x", "closed": False, "steps": {"ladder": {"0": {"checkpoint": f"{old}/.forgetflow/batches/batch-x/a0-r0.pt", "note": "kept"}}}}))
    service = old / ".forgetflow" / "service.json"
    service.write_text(json.dumps({"api_url": "http://127.0.0.1:4200/api", "serve_pid": 1, "lease_dir": f"{old}/.forgetflow/prefect/concurrency_leases"}))

    new = tmp_path / "b" / "ws"
    new.parent.mkdir()
    shutil.move(str(old), str(new))
    code, out = invoke("workspace", "relocate", "--dry-run", "-w", str(new))
    assert code == 0 and f"moved from {old} to {new}" in out and "would be rewritten" in out and "dry run" in out
    assert str(old) in store_text(new)  # a dry run changes nothing

    code, out = invoke("workspace", "relocate", "-w", str(new))
    assert code == 0, out
    assert f"workspace moved from {old} to {new}: " in out and "MLflow locations rewritten" in out
    assert "../.forgetflow/dvc-remote" in out and "1 paths in 1 files" in out and "service.json" in out
    assert str(old) not in store_text(new)
    assert "url = ../.forgetflow/dvc-remote" in (new / ".dvc" / "config.local").read_text()
    steps = json.loads((new / ".forgetflow" / "batches" / "batch-x.json").read_text())["steps"]
    assert steps["ladder"]["0"] == {"checkpoint": f"{new}/.forgetflow/batches/batch-x/a0-r0.pt", "note": "kept"}
    assert not (new / ".forgetflow" / "service.json").exists()

    code, out = invoke("workspace", "relocate", "-w", str(new))  # idempotent
    assert code == 0 and "nothing to rewrite" in out


def test_a_kill_between_the_rewrite_and_the_record_only_redoes_a_no_op(built, tmp_path, monkeypatch):
    from forgetflow import relocation

    old = opened_copy(built, tmp_path / "a" / "ws")
    new = tmp_path / "b" / "ws"
    new.parent.mkdir()
    shutil.move(str(old), str(new))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the record was written")

    monkeypatch.setattr(relocation, "_write_record", killed)
    with pytest.raises(KeyboardInterrupt):
        load_settings(new)
    monkeypatch.undo()
    assert str(old) not in store_text(new)  # committed
    assert relocation.recorded_root(load_settings(new, follow_moves=False)) == str(old)

    done = relocation.follow_move(load_settings(new, follow_moves=False))
    assert done is not None and done.mlflow_rewritten == 0
    assert relocation.recorded_root(load_settings(new, follow_moves=False)) == str(new)
    assert relocation.follow_move(load_settings(new, follow_moves=False)) is None


def test_relocate_refuses_what_it_cannot_do_with_one_line(built, tmp_path, monkeypatch):
    from forgetflow import relocation

    code, out = invoke("workspace", "relocate", "-w", str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist" in out
    (tmp_path / "plain").mkdir()
    code, out = invoke("workspace", "relocate", "-w", str(tmp_path / "plain"))
    assert code == 2 and "is not a forgetflow workspace" in out

    old = opened_copy(built, tmp_path / "a" / "ws")
    new = tmp_path / "b" / "ws"
    new.parent.mkdir()
    shutil.move(str(old), str(new))
    monkeypatch.setattr(relocation, "SQLITE_TIMEOUT_S", 0.1)
    holder = sqlite3.connect(new / "mlflow" / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code, out = invoke("workspace", "relocate", "-w", str(new))
        assert code == 2 and "is locked by another process" in out
        code, out = invoke("model", "list", "-w", str(new))  # the automatic check says the same
        assert code == 2 and "is locked by another process" in out
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert relocation.recorded_root(load_settings(new, follow_moves=False)) == str(old)  # not recorded as done
    code, out = invoke("model", "list", "-w", str(new))
    assert code == 0 and "champion" in out


@pytest.mark.parametrize("old, new", [("/x/ws", "/x/ws2"), ("/x/ws2", "/x/ws"), ("/x/ws", "/x/ws/sub/ws"), ("/x/my ws", "/y/their_ws")])
def test_only_locations_under_the_old_root_change_and_a_redo_is_a_no_op(tmp_path, old, new):
    from forgetflow.relocation import _rewrite_value, relative_in_workspace, rewrite_mlflow_store

    db = tmp_path / "mlflow.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE runs (run_uuid TEXT, artifact_uri TEXT)")
    con.execute("CREATE TABLE params (key TEXT, value TEXT)")
    values = {
        "uri": Path(old).as_uri() + "/mlflow/artifacts/r1/artifacts",
        "raw": f"file://{old}/mlflow/artifacts/r2/artifacts",
        "path": f"{old}/mlruns/0",
        "root": old,
        "sibling": f"{old}-other/artifacts",
        "external": "s3://bucket/x/ws/artifacts",
        "server": "mlflow-artifacts:/forgetflow",
    }
    con.executemany("INSERT INTO runs VALUES (?, ?)", values.items())
    con.execute("INSERT INTO params VALUES ('data', ?)", (f"{old}/data",))  # history: not a location column
    con.commit()
    con.close()

    assert rewrite_mlflow_store(db, old, new) == 4
    assert rewrite_mlflow_store(db, old, new) == 0  # a redo after a kill before the record
    con = sqlite3.connect(db)
    after = dict(con.execute("SELECT run_uuid, artifact_uri FROM runs"))
    assert con.execute("SELECT value FROM params").fetchone()[0] == f"{old}/data"
    con.close()
    assert after == {
        **values,
        "uri": Path(new).as_uri() + "/mlflow/artifacts/r1/artifacts",
        "raw": f"file://{new}/mlflow/artifacts/r2/artifacts",
        "path": f"{new}/mlruns/0",
        "root": new,
    }

    journal = {"checkpoint": f"{old}/.forgetflow/batches/b/c.pt", "other": f"{old}-other/c.pt", "n": 3}
    rewritten, count = _rewrite_value(journal, old, new)
    assert count == 1 and rewritten == {"checkpoint": f"{new}/.forgetflow/batches/b/c.pt", "other": f"{old}-other/c.pt", "n": 3}
    assert _rewrite_value(rewritten, old, new) == (rewritten, 0)

    root = Path(new)
    assert relative_in_workspace(f"{old}/.forgetflow/dvc-remote", root, root / ".dvc", old) == "../.forgetflow/dvc-remote"
    assert relative_in_workspace(f"{new}/.forgetflow/dvc-remote", root, root / ".dvc", old) == "../.forgetflow/dvc-remote"
    assert relative_in_workspace(f"{old}-other/remote", root, root / ".dvc", old) is None
    assert relative_in_workspace("s3://bucket/remote", root, root / ".dvc", old) is None
    assert relative_in_workspace("../.forgetflow/dvc-remote", root, root / ".dvc", old) is None
