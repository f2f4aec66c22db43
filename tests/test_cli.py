"""The command line: fast help, data commands, and one clear error per kind of bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from forgetflow.cli import app

from conftest import make_workspace

runner = CliRunner()


def invoke(*args):
    """Run the CLI in-process the way `forgetflow` does (ForgetflowError -> message + exit 2)."""
    from forgetflow.errors import ForgetflowError

    result = runner.invoke(app, list(args))
    if isinstance(result.exception, ForgetflowError):
        return 2, str(result.exception)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_cli_import_loads_no_heavy_library():
    code = "import sys, forgetflow.cli; heavy = [m for m in ('torch', 'mlflow', 'dvc', 'great_expectations', 'prefect', 'pandas') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_help_lists_the_commands():
    code, out = invoke("--help")
    assert code == 0
    for command in ("demo", "bootstrap", "data", "model", "init"):
        assert command in out


def test_data_import_show_and_verify(tmp_path):
    ws = str(make_workspace(tmp_path / "ws"))
    code, out = invoke("data", "import", "digits", "-w", ws)
    assert code == 0 and "1797 samples" in out and "md5" in out
    code, out = invoke("data", "show", "digits", "-w", ws)
    assert code == 0 and "subjects" in out
    code, out = invoke("data", "verify", "digits", "-w", ws)
    assert code == 0 and "ok" in out
    shard = tmp_path / "ws" / "data" / "digits" / "shards" / "shard-00001.npy"
    shard.write_bytes(shard.read_bytes()[:-3] + b"xyz")
    code, out = invoke("data", "verify", "digits", "-w", ws)
    assert code == 1 and "shard-00001.npy" in out


def test_unknown_source_names_the_choices(tmp_path):
    code, out = invoke("data", "import", "imagenet", "-w", str(tmp_path / "ws"))
    assert code == 2 and "unknown dataset source 'imagenet'" in out and "fashion-mnist" in out
    assert not (tmp_path / "ws" / "data" / "imagenet").exists()


def test_missing_fashion_mnist_files_say_how_to_get_them(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out = invoke("data", "import", "fashion-mnist", str(empty), "-w", str(tmp_path / "ws"))
    assert code == 2 and "not found" in out and "apt-get install dataset-fashion-mnist" in out
    assert not list((tmp_path / "ws" / "data").glob("fashion-mnist*"))


def test_unwritable_workspace_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out = invoke("data", "import", "digits", "-w", str(blocker / "ws"))
    assert code == 2 and "not writable" in out and "--workspace" in out


def test_unreachable_mlflow_stops_bootstrap_before_anything_is_written(tmp_path, monkeypatch):
    ws = make_workspace(tmp_path / "ws")
    monkeypatch.setenv("FORGETFLOW_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    code, out = invoke("bootstrap", "-w", str(ws))
    assert code == 2 and "unreachable" in out and "http://127.0.0.1:9" in out
    assert not (ws / "data" / "digits").exists()


def test_invalid_params_yaml_names_the_field(tmp_path):
    ws = make_workspace(tmp_path / "ws", train={"epochs": 0})
    code, out = invoke("data", "import", "digits", "-w", str(ws))
    assert code == 2 and "train.epochs" in out


@pytest.mark.parametrize("source", ["cifar10", "mnist"])
def test_other_torchvision_sources_explain_missing_files(tmp_path, source):
    code, out = invoke("data", "import", source, str(tmp_path / "nothing"), "-w", str(tmp_path / "ws"))
    assert code == 2 and source in out and "--download" in out
