"""The local stack's services: Kafka 4 (KRaft, from Maven jars), Redis, Prometheus, MLflow."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from ops.stack.processes import ManagedProcess, port_open, wait_until
from tickwatch.settings import Settings

log = logging.getLogger(__name__)

STACK_DIR = Path(__file__).parent
REPO_ROOT = STACK_DIR.parent.parent
ALERT_RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"


def _host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 200 <= resp.status < 300
    except OSError:
        return False


@dataclass
class Service:
    """Base: a named service with a port, a health check and a managed process."""

    settings: Settings
    name: str = ""

    @property
    def proc(self) -> ManagedProcess:
        return ManagedProcess(self.name, self.settings.run_dir)

    @property
    def endpoint(self) -> str:
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def install(self) -> None:
        """Install what is missing (idempotent, quiet when nothing is to do)."""

    def launch(self) -> None:
        raise NotImplementedError

    def start(self, timeout_s: float = 120.0) -> bool:
        """Start unless already healthy; True if this call started it."""
        if self.healthy():
            return False
        self.install()
        self.launch()
        if not wait_until(self.healthy, timeout_s):
            tail = _tail(self.proc.log_file)
            raise RuntimeError(f"{self.name} did not become healthy in {timeout_s}s\n{tail}")
        return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def apt_install(*packages: str) -> None:
    """apt-get install the packages (needs root); update the lists once first."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    log.info("installing %s with apt-get", " ".join(packages))
    subprocess.run(
        [*prefix, "apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL
    )
    subprocess.run(
        [*prefix, "apt-get", "install", "-y", "-qq", *packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


class Kafka(Service):
    """Apache Kafka 4 in KRaft mode, one node acting as broker and controller."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "kafka")

    @property
    def endpoint(self) -> str:
        return self.settings.kafka.bootstrap_servers

    @property
    def lib_dir(self) -> Path:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        return cache / "tickwatch" / f"kafka-{self.settings.kafka.version}"

    @property
    def data_dir(self) -> Path:
        return (self.settings.run_dir / "kafka").resolve()

    def healthy(self) -> bool:
        host, port = _host_port(self.endpoint)
        if not port_open(host, port):
            return False
        from tickwatch.kafka import wait_for_broker

        return wait_for_broker(self.endpoint, timeout_s=3)

    def install(self) -> None:
        if not shutil.which("java") or not shutil.which("mvn"):
            apt_install("default-jre-headless", "maven")
        if any(self.lib_dir.glob("kafka_2.13-*.jar")):
            return
        log.info(
            "resolving Kafka %s jars with Maven into %s", self.settings.kafka.version, self.lib_dir
        )
        tmp = self.lib_dir.with_suffix(".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(STACK_DIR / "pom.xml"),
                f"-Dkafka.version={self.settings.kafka.version}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
            ],
            check=True,
        )
        tmp.rename(self.lib_dir)

    def properties(self) -> str:
        host, port = _host_port(self.endpoint)
        cport = self.settings.kafka.controller_port
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers={host}:{cport}",
                f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
                f"advertised.listeners=PLAINTEXT://{host}:{port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={self.data_dir / 'data'}",
                f"num.partitions={self.settings.kafka.default_partitions}",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                "log.retention.check.interval.ms=10000",
                "",
            ]
        )

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xms{self.settings.kafka.heap}",
            f"-Xmx{self.settings.kafka.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.yaml'}",
            "-cp",
            f"{self.lib_dir}/*",
            main,
            *args,
        ]

    def launch(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(self.properties())
        (self.data_dir / "log4j2.yaml").write_text(
            yaml.safe_dump(
                {
                    "Configuration": {
                        "Appenders": {
                            "File": {
                                "name": "F",
                                "fileName": str(self.data_dir / "server.log"),
                                "PatternLayout": {"pattern": "[%d] %p %m (%c)%n"},
                            }
                        },
                        "Loggers": {"Root": {"level": "INFO", "AppenderRef": {"ref": "F"}}},
                    }
                }
            )
        )
        if not (self.data_dir / "data" / "meta.properties").exists():
            cluster_id = (
                subprocess.run(
                    self._java("kafka.tools.StorageTool", "random-uuid"),
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                    "--standalone",
                    "--ignore-formatted",
                ),
                check=True,
                capture_output=True,
                text=True,
            )
        self.proc.start(self._java("kafka.Kafka", str(props)))


class Redis(Service):
    """Debian's redis-server, no persistence, bound to loopback."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "redis")

    @property
    def endpoint(self) -> str:
        return f"{self.settings.redis.host}:{self.settings.redis.port}"

    def healthy(self) -> bool:
        import redis

        try:
            return bool(
                redis.Redis(
                    self.settings.redis.host, self.settings.redis.port, socket_timeout=1
                ).ping()
            )
        except redis.RedisError:
            return False

    def install(self) -> None:
        if not shutil.which("redis-server"):
            apt_install("redis-server")

    def launch(self) -> None:
        data = (self.settings.run_dir / "redis").resolve()
        data.mkdir(parents=True, exist_ok=True)
        self.proc.start(
            [
                "redis-server",
                "--bind",
                self.settings.redis.host,
                "--port",
                str(self.settings.redis.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data),
                "--databases",
                "64",
                "--daemonize",
                "no",
            ]
        )


class Prometheus(Service):
    """Debian's prometheus, scraping every tickwatch service port."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "prometheus")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.settings.prometheus.port}"

    def healthy(self) -> bool:
        return _http_ok(f"{self.endpoint}/-/ready")

    def install(self) -> None:
        if not shutil.which("prometheus"):
            apt_install("prometheus")

    def config(self) -> dict:
        p = self.settings.prometheus
        targets = {
            "producer": p.producer_metrics_port,
            "replay": p.replay_metrics_port,
            "features": p.features_metrics_port,
            "score": p.score_metrics_port,
            "sink": p.sink_metrics_port,
            "api": self.settings.api.port,
        }
        cfg: dict = {
            "global": {
                "scrape_interval": f"{p.scrape_interval_s}s",
                "evaluation_interval": f"{p.scrape_interval_s}s",
            },
            "scrape_configs": [
                {
                    "job_name": "prometheus",
                    "static_configs": [{"targets": [f"127.0.0.1:{p.port}"]}],
                },
                *(
                    {
                        "job_name": f"tickwatch-{name}",
                        "static_configs": [
                            {"targets": [f"127.0.0.1:{port}"], "labels": {"service": name}}
                        ],
                    }
                    for name, port in targets.items()
                ),
            ],
        }
        if ALERT_RULES.exists():
            cfg["rule_files"] = [str(ALERT_RULES)]
        return cfg

    def write_config(self) -> Path:
        data = (self.settings.run_dir / "prometheus").resolve()
        data.mkdir(parents=True, exist_ok=True)
        cfg = data / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        return cfg

    def start(self, timeout_s: float = 120.0) -> bool:
        """Start, or, when ours is already running, rewrite its config and hot-reload it."""
        if self.healthy() and self.proc.pid() is not None:
            self.write_config()
            req = urllib.request.Request(f"{self.endpoint}/-/reload", method="POST")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(req, timeout=5).close()
            return False
        return super().start(timeout_s)

    def launch(self) -> None:
        cfg = self.write_config()
        data = cfg.parent
        self.proc.start(
            [
                "prometheus",
                f"--config.file={cfg}",
                f"--storage.tsdb.path={data / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.settings.prometheus.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=2d",
            ]
        )


class Mlflow(Service):
    """MLflow tracking server over the same sqlite store and artifact folder the clients use."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "mlflow")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.settings.mlflow.port}"

    def healthy(self) -> bool:
        return _http_ok(f"{self.endpoint}/health")

    def launch(self) -> None:
        s = self.settings
        s.mlflow_artifact_dir.mkdir(parents=True, exist_ok=True)
        backend = s.mlflow_tracking_uri
        if not backend.startswith("sqlite:"):
            backend = f"sqlite:///{(s.run_dir / 'mlflow' / 'mlflow.db').resolve()}"
        self.proc.start(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                backend,
                "--artifacts-destination",
                str(s.mlflow_artifact_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(s.mlflow.port),
                "--workers",
                "1",
            ],
            env={"MLFLOW_DISABLE_TELEMETRY": "1"},
        )


def all_services(settings: Settings) -> list[Service]:
    return [Kafka(settings), Redis(settings), Prometheus(settings), Mlflow(settings)]
