"""The scale-out configuration (docs/scale-out.md): compose file, DVC remote options, real servers on PostgreSQL.

Docker cannot run here, so docker-compose.yml is checked by parsing it against the files it names.
The server tests start a throwaway PostgreSQL cluster from Debian's binaries (skipped without them),
run deploy/postgres/init.sql on it, and point a real `prefect server start` and `mlflow server` at it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from contextlib import contextmanager
from glob import glob
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_PATH = REPO / "docker-compose.yml"
INIT_SQL = REPO / "deploy" / "postgres" / "init.sql"
ENV_EXAMPLE = REPO / "deploy" / ".env.example"
DOCS = REPO / "docs" / "scale-out.md"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_PATH.read_text())


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _command(service: dict) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _created_databases() -> set[str]:
    return set(re.findall(r"CREATE DATABASE (\w+)", INIT_SQL.read_text(), flags=re.IGNORECASE))


def _published(service: dict) -> dict[int, int]:
    """{container port: host port (the default of `${VAR:-N}`)}."""
    published = {}
    for mapping in service.get("ports", []):
        host, container = str(mapping).rsplit(":", 1)
        default = re.fullmatch(r"\$\{\w+:-(\d+)\}|(\d+)", host)
        assert default, f"unexpected port mapping {mapping}"
        published[int(container)] = int(default.group(1) or default.group(2))
    return published


def _env_example() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


# 1. docker-compose.yml ------------------------------------------------------------------------------


def test_compose_holds_the_four_components_and_a_worker(compose):
    from importlib.metadata import version

    services = compose["services"]
    assert {"postgres", "prefect-server", "mlflow", "minio", "create-buckets", "worker"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:")
    # The server image runs the Prefect version the worker and the flows are installed with.
    assert services["prefect-server"]["image"].startswith(f"prefecthq/prefect:{version('prefect')}-")
    assert _command(services["prefect-server"])[:3] == ["prefect", "server", "start"]
    assert _option(_command(services["prefect-server"]), "--host") == "0.0.0.0"
    assert _command(services["mlflow"])[:2] == ["mlflow", "server"]
    worker = _command(services["worker"])
    assert worker[:3] == ["prefect", "worker", "start"] and _option(worker, "--type") == "process"
    # Worker and MLflow server come from the project's Dockerfile, which installs the scale-out extras.
    for name in ("worker", "mlflow"):
        assert services[name]["build"] == "." and services[name]["image"] == services["worker"]["image"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "-c constraints.txt" in dockerfile and '".[scale-out]"' in dockerfile


def test_every_dependency_is_a_service_and_waits_on_a_real_condition(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            condition = spec["condition"]
            assert condition in {"service_healthy", "service_completed_successfully"}, (name, dependency, condition)
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency} to be healthy, which has no healthcheck"
    # The bucket job is one-shot; the servers it feeds wait for it to finish.
    assert services["create-buckets"]["restart"] == "no"
    assert services["mlflow"]["depends_on"]["create-buckets"]["condition"] == "service_completed_successfully"


def test_database_urls_point_at_the_postgres_service_and_databases_init_sql_creates(compose):
    services = compose["services"]
    databases = _created_databases()
    assert databases == {"prefect", "mlflow"}
    prefect_url = urlparse(_environment(services["prefect-server"])["PREFECT_API_DATABASE_CONNECTION_URL"])
    mlflow_url = urlparse(_option(_command(services["mlflow"]), "--backend-store-uri"))
    # Explicit drivers: asyncpg comes with prefect, psycopg 3 with forgetflow[postgres].
    assert prefect_url.scheme == "postgresql+asyncpg" and mlflow_url.scheme == "postgresql+psycopg"
    for url, database in ((prefect_url, "prefect"), (mlflow_url, "mlflow")):
        assert (url.hostname, url.port, url.path.lstrip("/")) == ("postgres", 5432, database)
        assert (url.username, url.password) == ("${POSTGRES_USER}", "${POSTGRES_PASSWORD}")
    # Prefect's migrations need pg_trgm in its own database.
    after_connect = INIT_SQL.read_text().split("\\connect prefect", 1)[1]
    assert re.search(r"CREATE EXTENSION IF NOT EXISTS pg_trgm", after_connect)
    mount = [volume for volume in services["postgres"]["volumes"] if volume.startswith("./deploy/postgres/init.sql:")]
    assert mount and mount[0].split(":")[1].startswith("/docker-entrypoint-initdb.d/")


def test_storage_wiring_uses_the_buckets_the_bucket_job_creates(compose):
    services = compose["services"]
    created = set(re.findall(r"local/(\w+)", " ".join(services["create-buckets"]["entrypoint"])))
    assert created == {"mlflow", "dvc"}
    mlflow_argv = _command(services["mlflow"])
    assert urlparse(_option(mlflow_argv, "--artifacts-destination")).netloc == "mlflow"
    assert "--no-serve-artifacts" not in mlflow_argv  # served artifacts: clients need no S3 credentials
    assert _environment(services["mlflow"])["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    worker = _environment(services["worker"])
    assert urlparse(worker["FORGETFLOW_DVC_REMOTE"]).netloc == "dvc"
    assert urlparse(worker["PREFECT_API_URL"])[1:3] == ("prefect-server:4200", "/api")
    tracking = urlparse(worker["FORGETFLOW_MLFLOW_TRACKING_URI"])
    assert (tracking.hostname, tracking.port) == ("mlflow", int(_option(mlflow_argv, "--port")))
    # The MLflow server accepts the Host header the workers send (the compose service name).
    assert tracking.netloc in _option(mlflow_argv, "--allowed-hosts").split(",")


def test_the_worker_environment_loads_into_forgetflow_settings(compose, monkeypatch):
    from forgetflow.settings import Settings

    for key, value in _environment(compose["services"]["worker"]).items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.dvc_remote_config == {"endpointurl": "http://minio:9000"}
    assert settings.remote_url == "s3://dvc/forgetflow"
    assert settings.tracking_uri == "http://mlflow:5000"
    assert settings.artifact_location.startswith("mlflow-artifacts:/")
    assert str(settings.workspace) == "/workspace"


def test_published_ports_are_the_ones_the_docs_give(compose):
    services = compose["services"]
    published = {name: _published(service) for name, service in services.items() if service.get("ports")}
    assert published == {"prefect-server": {4200: 4200}, "mlflow": {5000: 5000}, "minio": {9000: 9000, 9001: 9001}}
    assert int(_option(_command(services["prefect-server"]), "--port")) == 4200
    assert _option(_command(services["minio"]), "--console-address") == ":9001"
    docs = DOCS.read_text()
    documented = {int(port) for port in re.findall(r"(?:localhost|127\.0\.0\.1):(\d+)", docs)}
    host_ports = {port for ports in published.values() for port in ports.values()}
    assert documented == host_ports, f"docs mention {sorted(documented)}, compose publishes {sorted(host_ports)}"


def test_every_variable_the_compose_file_reads_is_in_env_example():
    # `$${VAR}` is expanded inside the container, not by compose.
    referenced = set(re.findall(r"(?<!\$)\$\{([A-Za-z_]\w*)", COMPOSE_PATH.read_text()))
    example = _env_example()
    assert referenced and referenced <= set(example), f"missing from deploy/.env.example: {sorted(referenced - set(example))}"
    passwords = {key: value for key, value in example.items() if "PASSWORD" in key}
    assert passwords and all(value.startswith("change-me") for value in passwords.values())
    assert len(example["MINIO_ROOT_PASSWORD"]) >= 8  # MinIO refuses shorter root passwords


def test_scale_out_extras_name_the_packages_the_servers_need(compose):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    names = lambda specs: {re.split(r"[<>=!~\[ ]", spec, maxsplit=1)[0] for spec in specs}  # noqa: E731
    assert {"dvc-s3", "boto3"} <= names(extras["s3"])
    # The SQLAlchemy driver of the MLflow server's database URL comes with the postgres extra.
    driver = urlparse(_option(_command(compose["services"]["mlflow"]), "--backend-store-uri")).scheme.split("+")[1]
    assert driver in names(extras["postgres"])
    assert extras["scale-out"] == ["forgetflow[s3,postgres]"]


# 2. DVC remote options --------------------------------------------------------------------------------


def _remote_section(workspace: Path) -> dict:
    from dvc.repo import Repo

    with Repo(str(workspace)) as repo:
        return dict(repo.config["remote"]["forgetflow"])


def test_dvc_remote_options_from_the_environment_reach_the_workspace_config(tmp_path, monkeypatch):
    from forgetflow.data.importer import dvc_workspace
    from forgetflow.settings import load_settings

    monkeypatch.setenv("FORGETFLOW_DVC_REMOTE", str(tmp_path / "remote"))
    monkeypatch.setenv("FORGETFLOW_DVC_REMOTE_CONFIG", '{"jobs": "3", "verify": "true"}')
    settings = load_settings(tmp_path / "ws")
    settings.workspace.mkdir()
    dvc_workspace(settings).ensure()
    section = _remote_section(settings.workspace)
    assert (section["url"], section["jobs"], section["verify"]) == (str(tmp_path / "remote"), 3, True)
    # Options are replaced, not merged: a dropped option leaves the config on the next start.
    monkeypatch.setenv("FORGETFLOW_DVC_REMOTE_CONFIG", "{}")
    dvc_workspace(load_settings(tmp_path / "ws")).ensure()
    assert "jobs" not in _remote_section(settings.workspace)


def test_an_s3_remote_gets_the_endpoint_of_s3_compatible_storage(tmp_path):
    pytest.importorskip("dvc_s3", reason="dvc-s3 is not installed (pip install 'forgetflow[s3]')")
    from forgetflow.data.versioning import DvcWorkspace

    options = {"endpointurl": "http://localhost:9000", "region": "us-east-1"}
    DvcWorkspace(tmp_path, "s3://dvc/forgetflow", tmp_path / ".state", options).ensure()  # writes config only
    section = _remote_section(tmp_path)
    assert section["url"] == "s3://dvc/forgetflow"
    assert {key: section[key] for key in options} == options


def test_a_dataset_version_is_pushed_to_an_s3_compatible_endpoint(tmp_path, monkeypatch):
    """End to end through the settings: import digits with the remote on a local S3 server (moto)."""
    pytest.importorskip("dvc_s3", reason="dvc-s3 is not installed (pip install 'forgetflow[s3]')")
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed: no local S3-compatible endpoint")
    import boto3

    from conftest import make_workspace
    from forgetflow.data.importer import import_dataset
    from forgetflow.deletion.objects import object_stores
    from forgetflow.settings import load_settings
    from forgetflow.workspace import init_workspace

    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                           "FORGETFLOW_DVC_REMOTE": "s3://dvc/forgetflow", "FORGETFLOW_DVC_REMOTE_CONFIG": json.dumps({"endpointurl": endpoint})}.items():
            monkeypatch.setenv(key, value)
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="dvc")
        settings = load_settings(make_workspace(tmp_path / "ws"))
        info = import_dataset(settings, init_workspace(settings), "digits")
        keys = {item["Key"] for item in s3.list_objects_v2(Bucket="dvc", Prefix="forgetflow/")["Contents"]}
        assert f"forgetflow/files/md5/{info.md5[:2]}/{info.md5[2:]}.dir" in keys
        cache, remote = object_stores(settings)  # what erasure sweeps: the bucket, through DVC's S3 filesystem
        assert remote.all_oids() == cache.all_oids() and len(keys) == len(cache.all_oids())
    finally:
        server.stop()


def test_an_s3_remote_without_the_plugin_names_the_fix(tmp_path, monkeypatch):
    from forgetflow.data.versioning import DvcWorkspace
    from forgetflow.errors import ConfigError

    monkeypatch.setitem(sys.modules, "dvc_s3", None)  # makes `import dvc_s3` fail
    with pytest.raises(ConfigError) as raised:
        DvcWorkspace(tmp_path, "s3://dvc/forgetflow", tmp_path / ".state").ensure()
    assert "s3://dvc/forgetflow" in raised.value.message and 'forgetflow[s3]' in raised.value.hint
    assert not (tmp_path / ".dvc").exists()


def test_an_option_dvc_rejects_is_a_config_error(tmp_path):
    from forgetflow.data.versioning import DvcWorkspace
    from forgetflow.errors import ConfigError

    with pytest.raises(ConfigError, match="endpointurl") as raised:  # an S3 option on a local remote
        DvcWorkspace(tmp_path, str(tmp_path / "remote"), tmp_path / ".state", {"endpointurl": "http://x"}).ensure()
    assert "FORGETFLOW_DVC_REMOTE_CONFIG" in raised.value.hint


# 3. Real servers on PostgreSQL --------------------------------------------------------------------------

PG_USER, PG_PASSWORD = "forgetflow", "test-only-password"


def _postgres_bin() -> Path | None:
    candidates = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3]))
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode} before {url} answered:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout_s:.0f} s:\n{_tail(log)}")


class PostgresCluster:
    """A throwaway cluster: data and socket in a temporary folder, TCP on 127.0.0.1 only."""

    def __init__(self, bin_dir: Path, root: Path):
        self.bin_dir, self.root, self.port = bin_dir, root, _free_port()
        self.data = root / "data"
        # initdb refuses to run as root: then run the server tools as the `postgres` system user.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *argv, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, *argv], check=True, capture_output=True, text=True, timeout=60, **kwargs)

    def start(self) -> None:
        if self.as_user:
            shutil.chown(self.root, "postgres")
        password_file = self.root / "password"
        password_file.write_text(PG_PASSWORD + "\n")
        if self.as_user:
            shutil.chown(password_file, "postgres")
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", PG_USER, "--pwfile", str(password_file),
                  "--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} -c fsync=off"
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-o", options, "-w", "start")

    def psql(self, database: str, *args: str) -> str:
        env = {**os.environ, "PGPASSWORD": PG_PASSWORD}
        argv = [str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, "-d", database, "-v", "ON_ERROR_STOP=1", "-qAt", *args]
        return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60, env=env).stdout

    def url(self, scheme: str, database: str) -> str:
        return f"{scheme}://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"], capture_output=True, timeout=60)


def _server_environment(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_API_", "MLFLOW_TRACKING"))}
    return {**env, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster with deploy/postgres/init.sql applied (the file the compose stack runs)."""
    bin_dir = _postgres_bin()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    if os.geteuid() == 0 and not (shutil.which("runuser") and _user_exists("postgres")):
        pytest.skip("running as root without runuser and a `postgres` user: initdb refuses to run as root")
    root = Path(tempfile.mkdtemp(prefix="forgetflow-pg-"))
    cluster = PostgresCluster(bin_dir, root)
    try:
        cluster.start()
        cluster.psql("postgres", "-f", str(INIT_SQL))
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _server(argv: list[str], env: dict[str, str], log: Path, health_url: str):
    """Run a server until the block ends; fail with its log when it does not come up."""
    with log.open("w") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    try:
        _wait_http(health_url, process, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


# One server at a time: starting both at once on a 2-core machine makes each start slower.
@pytest.fixture(scope="module")
def prefect_api(postgres):
    port = _free_port()
    env = {**_server_environment(postgres.root / "prefect-home"), "PREFECT_API_DATABASE_CONNECTION_URL": postgres.url("postgresql+asyncpg", "prefect")}
    argv = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui", "--no-services", "--analytics-off"]
    with _server(argv, env, postgres.root / "prefect.log", f"http://127.0.0.1:{port}/api/health"):
        yield f"http://127.0.0.1:{port}/api"


@pytest.fixture(scope="module")
def mlflow_server(postgres):
    """(tracking URI, artifacts destination folder)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'forgetflow[postgres]')")
    port, artifacts = _free_port(), postgres.root / "mlflow-artifacts"
    # The compose file's Host allow-list: it must still admit local clients.
    allowed_hosts = _option(_command(yaml.safe_load(COMPOSE_PATH.read_text())["services"]["mlflow"]), "--allowed-hosts")
    argv = [str(BIN / "mlflow"), "server", "--backend-store-uri", postgres.url("postgresql+psycopg", "mlflow"),
            "--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--allowed-hosts", allowed_hosts]
    import mlflow

    with _server(argv, _server_environment(postgres.root / "prefect-home"), postgres.root / "mlflow.log", f"http://127.0.0.1:{port}/health"):
        yield f"http://127.0.0.1:{port}", artifacts
    # forgetflow's tracking.configure set MLflow's process-wide URIs to this server: do not leave
    # later tests pointing at a stopped one.
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def test_init_sql_creates_both_databases_and_pg_trgm(postgres):
    cluster = postgres
    databases = set(cluster.psql("postgres", "-c", "SELECT datname FROM pg_database").split())
    assert _created_databases() <= databases
    assert cluster.psql("prefect", "-c", "SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'").strip() == "pg_trgm"


def test_prefect_server_on_postgres_keeps_a_process_pool_with_limit_one(postgres, prefect_api):
    api_url = prefect_api
    env = {**_server_environment(postgres.root / "prefect-home"), "PREFECT_API_URL": api_url}

    def prefect(*args: str) -> str:
        result = subprocess.run([str(BIN / "prefect"), *args], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"prefect {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    prefect("work-pool", "create", "gpu-test", "--type", "process")
    prefect("work-pool", "set-concurrency-limit", "gpu-test", "1")
    with urllib.request.urlopen(f"{api_url}/work_pools/gpu-test", timeout=10) as response:  # read back through the API
        pool = json.loads(response.read())
    assert (pool["name"], pool["type"], pool["concurrency_limit"]) == ("gpu-test", "process", 1)
    # And it is PostgreSQL that holds it, not a SQLite file under PREFECT_HOME.
    stored = postgres.psql("prefect", "-c", "SELECT type, concurrency_limit FROM work_pool WHERE name = 'gpu-test'")
    assert stored.strip() == "process|1"
    assert not list((postgres.root / "prefect-home").glob("*.db"))


def test_mlflow_server_on_postgres_registers_a_model_with_served_artifacts(postgres, mlflow_server, tmp_path):
    tracking_uri, artifacts = mlflow_server
    import mlflow
    from mlflow import MlflowClient

    from forgetflow.models import ModelSpec, build_model, load_checkpoint, save_checkpoint
    from forgetflow.settings import load_settings
    from forgetflow.tracking import download_checkpoint, log_and_register

    settings = load_settings(tmp_path / "ws", mlflow_tracking_uri=tracking_uri, mlflow_artifact_location="mlflow-artifacts:/forgetflow")
    spec = ModelSpec(arch="small_cnn", in_channels=1, num_classes=10, image_size=8, width=4, mean=[0.3], std=[0.4])
    model = build_model(spec)
    try:
        registration = log_and_register(
            settings, run_name="scale-out-check", model=model, checkpoint_path=save_checkpoint(model, tmp_path / "checkpoint.pt"),
            params={"lr": 0.1}, metrics={"val_accuracy": 0.5},
            datasets=[{"name": "digits", "md5": "0" * 32, "source_url": "dvc://digits"}], tags={},
        )
        client = MlflowClient(tracking_uri)
        assert client.get_run(registration.run_id).data.metrics["val_accuracy"] == 0.5
        champion = client.get_model_version_by_alias(settings.registered_model_name, "champion")
        assert champion.version == registration.version == "1"
        # The checkpoint comes back through the server's artifact proxy.
        restored, _ = load_checkpoint(download_checkpoint(settings, alias="champion", dst=tmp_path / "download"))
        assert all((a == b).all() for a, b in zip(model.state_dict().values(), restored.state_dict().values()))
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    # The server stored the files under its artifacts destination and the records in PostgreSQL.
    assert list(artifacts.rglob("checkpoint.pt"))
    versions = postgres.psql("mlflow", "-c", f"SELECT version FROM model_versions WHERE name = '{settings.registered_model_name}'")
    assert versions.split() == ["1"]
