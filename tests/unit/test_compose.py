"""docker-compose.yml: all services, official pinned images, real settings and commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ops.stack.services import Kafka, Prometheus
from tickwatch.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
PROMETHEUS_FILE = REPO / "deploy" / "prometheus" / "prometheus.yml"

INFRA = {"kafka", "redis", "prometheus", "grafana", "mlflow"}
# Each tickwatch service and the `tickwatch` subcommand it runs (the services' own CLI commands).
TICKWATCH_COMMANDS = {
    "init": ["stack", "init"],
    "replay-server": ["replay-server"],
    "producer": ["produce"],
    "features": ["features"],
    "score": ["score"],
    "sink": ["sink"],
    "api": ["api"],
}
OFFICIAL_IMAGES = {
    "kafka": "apache/kafka",
    "redis": "redis",
    "prometheus": "prom/prometheus",
    "grafana": "grafana/grafana",
    "mlflow": "ghcr.io/mlflow/mlflow",
}
TICKWATCH_IMAGE = "tickwatch:local"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_every_documented_service_is_defined(services: dict) -> None:
    missing = (INFRA | set(TICKWATCH_COMMANDS)) - set(services)
    assert not missing, f"docker-compose.yml lacks {sorted(missing)}"


def test_infrastructure_uses_official_pinned_images(services: dict) -> None:
    for name, repo in OFFICIAL_IMAGES.items():
        image, _, tag = services[name]["image"].rpartition(":")
        assert image == repo, f"{name}: {services[name]['image']} is not {repo}"
        assert tag and tag != "latest", f"{name}: pin a version tag"
    kafka_tag = services["kafka"]["image"].rpartition(":")[2]
    assert kafka_tag == Settings(_env_file=None).kafka.version


def test_tickwatch_services_build_the_one_image(services: dict) -> None:
    for name in TICKWATCH_COMMANDS:
        svc = services[name]
        assert svc["image"] == TICKWATCH_IMAGE and svc["build"] == ".", name
        assert "entrypoint" not in svc, f"{name}: the image's entrypoint is `tickwatch`"
        assert "healthcheck" in svc or svc.get("restart") == "no", f"{name}: add a healthcheck"


def test_every_tickwatch_variable_is_a_setting(
    services: dict, known_env_names: frozenset[str]
) -> None:
    for name, svc in services.items():
        unknown = {k for k in _env(svc) if k.startswith("TICKWATCH_")} - known_env_names
        assert not unknown, f"{name}: {sorted(unknown)} are not in Settings"


def test_container_addresses(services: dict) -> None:
    settings = Settings(_env_file=None)
    for name in TICKWATCH_COMMANDS:
        env = _env(services[name])
        host, port = env["TICKWATCH_KAFKA__BOOTSTRAP_SERVERS"].split(":")
        assert host in services and int(port) == 9092, name
        assert env["TICKWATCH_REDIS__HOST"] in services, name
        assert env["TICKWATCH_MLFLOW__TRACKING_URI"] == f"http://mlflow:{settings.mlflow.port}"
    assert _env(services["replay-server"])["TICKWATCH_REPLAY__HOST"] == "0.0.0.0"
    assert _env(services["producer"])["TICKWATCH_REPLAY__HOST"] == "replay-server"
    assert _env(services["api"])["TICKWATCH_API__HOST"] == "0.0.0.0"


def test_every_command_is_a_real_subcommand(services: dict, tickwatch_subcommand) -> None:
    # Fails while a service's engineer has not yet added its subcommand to tickwatch/cli.py.
    for name, expected in TICKWATCH_COMMANDS.items():
        command = [str(w) for w in services[name]["command"]]
        assert command[: len(expected)] == expected, f"{name} runs {command}"
        tickwatch_subcommand(command)


def _kafka_properties(service: dict) -> dict[str, str]:
    env = _env(service)
    return {
        k[len("KAFKA_") :].lower().replace("_", "."): v
        for k, v in env.items()
        if k.startswith("KAFKA_") and k != "KAFKA_HEAP_OPTS"
    }


def test_kafka_matches_the_local_stack(services: dict) -> None:
    stack = dict(
        line.split("=", 1)
        for line in Kafka(Settings(_env_file=None)).properties().splitlines()
        if line
    )
    compose = _kafka_properties(services["kafka"])
    assert compose["process.roles"] == "broker,controller"  # KRaft, one combined node
    assert compose["controller.quorum.voters"] == f"{compose['node.id']}@kafka:9093"
    addressing = {
        "listeners",
        "advertised.listeners",
        "controller.quorum.bootstrap.servers",
        "log.dirs",
        "listener.security.protocol.map",
    }
    for key, value in stack.items():
        if key not in addressing:
            assert compose.get(key) == value, (
                f"kafka {key}: compose {compose.get(key)!r} != {value!r}"
            )
    protocols = dict(p.split(":") for p in compose["listener.security.protocol.map"].split(","))
    assert protocols["PLAINTEXT"] == protocols["CONTROLLER"] == "PLAINTEXT"
    assert "PLAINTEXT://kafka:9092" in compose["advertised.listeners"].split(",")


def test_prometheus_scrapes_what_the_local_stack_scrapes() -> None:
    compose_cfg = yaml.safe_load(PROMETHEUS_FILE.read_text())
    stack_cfg = Prometheus(Settings(_env_file=None)).config()

    def jobs(cfg: dict) -> dict[str, tuple[int, str]]:
        out = {}
        for job in cfg["scrape_configs"]:
            (static,) = job["static_configs"]
            (target,) = static["targets"]
            out[job["job_name"]] = (int(target.rpartition(":")[2]), str(static.get("labels")))
        return out

    assert jobs(compose_cfg) == jobs(stack_cfg)
    assert compose_cfg["global"] == stack_cfg["global"]


def test_every_scrape_target_is_a_service_with_that_metrics_port(services: dict) -> None:
    cfg = yaml.safe_load(PROMETHEUS_FILE.read_text())
    for job in cfg["scrape_configs"][1:]:
        host, _, port = job["static_configs"][0]["targets"][0].rpartition(":")
        assert host in services, job["job_name"]
        health = " ".join(services[host]["healthcheck"]["test"])
        assert f"localhost:{port}/" in health, f"{host}: healthcheck does not probe port {port}"


def test_bind_mounted_files_exist(services: dict) -> None:
    # deploy/prometheus/alerts.yml and grafana/ are written by the API and dashboards work.
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"


def _compose_client() -> list[str] | None:
    """`docker compose` (v2 plugin) or a v2 `docker-compose`; None when neither is installed."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    for cmd in candidates:
        if not shutil.which(cmd[0]):
            continue
        out = subprocess.run([*cmd, "version"], capture_output=True, text=True)
        if out.returncode == 0 and "version 1." not in out.stdout:
            return cmd
    return None


def test_docker_compose_config_is_valid() -> None:
    client = _compose_client()
    if client is None:
        pytest.skip("no docker compose v2 client installed (docker-compose v1 is too old)")
    result = subprocess.run(
        [*client, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_prometheus_config_passes_promtool(tmp_path: Path, promtool: str) -> None:
    cfg = yaml.safe_load(PROMETHEUS_FILE.read_text())
    cfg["rule_files"] = [str(REPO / "deploy" / "prometheus" / "alerts.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    result = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_resolved_environment_with_env_example_parses_into_container_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _compose_client()
    if client is None:
        pytest.skip("no docker compose v2 client installed (docker-compose v1 is too old)")
    for name in ("docker-compose.yml", "Dockerfile", "deploy", "grafana"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    shutil.copy(REPO / ".env.example", tmp_path / ".env")  # a user's first .env
    result = subprocess.run(
        [*client, "config", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)["services"]
    for name in TICKWATCH_COMMANDS:
        for var in [v for v in os.environ if v.startswith("TICKWATCH_")]:
            monkeypatch.delenv(var)
        for key, value in resolved[name]["environment"].items():
            monkeypatch.setenv(key, value)
        settings = Settings(_env_file=None)
        assert settings.kafka.bootstrap_servers == "kafka:9092", name
        assert settings.redis.host == "redis", name
        assert settings.mlflow_tracking_uri == "http://mlflow:5000", name
        assert settings.polygon.api_key is None, name  # unset in .env.example: replay server
        bind = {"replay-server": "replay", "api": "api"}.get(name)
        if bind:
            assert getattr(settings, bind).host == "0.0.0.0", name
