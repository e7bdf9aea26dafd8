"""The fault drills' private world: own Kafka and Redis ports, a small champion, service processes.

Nothing here touches the shared stack: the broker, Redis, replay server and every metrics port
are moved to a private port block, the run folder is a temporary one, MLflow is a sqlite file.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from ops.stack.processes import (
    ManagedProcess,
    child_env,
    port_open,
    tickwatch_command,
    wait_until,
)
from ops.stack.services import Kafka, Redis
from tickwatch.settings import Settings

log = logging.getLogger(__name__)
WATCHDOG_SINCE = re.compile(r"WATCHDOG: .* hung for \d+s \(since (\d+) ms")
PORT_BASE = 19_090  # broker +2, controller +3, redis +4, replay +5, metrics +11..+15
SERVICES = ("produce", "features", "score", "sink")
CHAMPION_DAYS, CHAMPION_EPOCHS, CHAMPION_SEED = 8, 3, 7


def private_settings(
    base: Settings, run_dir: Path, models_dir: Path, speed: float, port_base: int = PORT_BASE
) -> Settings:
    """`base` moved onto private ports, `run_dir` and the sqlite registry under `models_dir`."""
    p = port_base
    return base.model_copy(
        update={
            "run_dir": run_dir,
            "topic_prefix": "drill-",
            "kafka": base.kafka.model_copy(
                update={"bootstrap_servers": f"127.0.0.1:{p + 2}", "controller_port": p + 3}
            ),
            "redis": base.redis.model_copy(update={"host": "127.0.0.1", "port": p + 4, "db": 0}),
            "replay": base.replay.model_copy(
                update={
                    "host": "127.0.0.1",
                    "port": p + 5,
                    "speed": speed,
                    "days": 1,
                    "history_days": 0,
                    "fault_hooks": True,
                    "csv_path": None,
                    "required_key": None,
                }
            ),
            "polygon": base.polygon.model_copy(update={"api_key": None, "channels": ["AM", "T"]}),
            "prometheus": base.prometheus.model_copy(
                update={
                    "producer_metrics_port": p + 11,
                    "features_metrics_port": p + 12,
                    "score_metrics_port": p + 13,
                    "sink_metrics_port": p + 14,
                    "replay_metrics_port": p + 15,
                }
            ),
            "mlflow": base.mlflow.model_copy(
                update={"tracking_uri": f"sqlite:///{(models_dir / 'mlflow.db').resolve()}"}
            ),
        }
    )


def for_run(settings: Settings, name: str, db: int) -> Settings:
    """Settings of one pipeline run: its own topic prefix and Redis db."""
    return settings.model_copy(
        update={
            "topic_prefix": f"drill-{name}-",
            "redis": settings.redis.model_copy(update={"db": db}),
        }
    )


def ensure_champion(settings: Settings, models_dir: Path) -> bool:
    """Train and register a small champion in `models_dir` unless one exists; True if trained."""
    from ops.demo import champion_exists

    if (models_dir / "mlflow.db").exists() and champion_exists(settings):
        return False
    from model_workers.dataset import frame_from_bars
    from model_workers.train import train_and_register
    from producers.market_sim import labels_to_frame, simulate

    models_dir.mkdir(parents=True, exist_ok=True)
    train_settings = settings.model_copy(update={"run_dir": models_dir})
    sim = simulate(settings.symbols, CHAMPION_DAYS, CHAMPION_SEED)
    log.info(
        "training a small champion (%d days, %d epochs) in %s",
        CHAMPION_DAYS,
        CHAMPION_EPOCHS,
        models_dir,
    )
    train_and_register(
        train_settings,
        frame_from_bars(sim.bars),
        labels_to_frame(sim.labels),
        "drill-sim",
        epochs=CHAMPION_EPOCHS,
    )
    return True


@dataclass
class PrivateStack:
    """A Kafka broker and a Redis server of our own; `stop()` ends what `start()` started."""

    settings: Settings
    kafka: Kafka = field(init=False)
    redis: Redis = field(init=False)

    def __post_init__(self) -> None:
        self.kafka, self.redis = Kafka(self.settings), Redis(self.settings)

    def start(self) -> None:
        for svc in (self.kafka, self.redis):
            host, _, port = svc.endpoint.rpartition(":")
            if port_open(host, int(port)) and svc.proc.pid() is None:
                raise RuntimeError(f"port {port} is taken by something else; drills need it")
            svc.start(timeout_s=120)

    def restart_kafka(self) -> None:
        """Stop the broker (SIGTERM: controlled shutdown) and start it on the same log dirs."""
        self.kafka.proc.stop(timeout_s=30)
        self.kafka.start(timeout_s=120)

    def stop_redis(self) -> None:
        """Shut Redis down saving its data (a maintenance restart), then wait for it to exit."""
        import redis

        with contextlib.suppress(redis.ConnectionError):  # the server closes it as it exits
            redis.Redis(self.settings.redis.host, self.settings.redis.port).shutdown(save=True)
        wait_until(lambda: self.redis.proc.pid() is None, 30)
        self.redis.proc.stop(timeout_s=5)

    def start_redis(self) -> None:
        self.redis.start(timeout_s=60)

    def stop(self) -> None:
        for svc in (self.redis, self.kafka):
            svc.proc.stop(timeout_s=30)


@dataclass
class Services:
    """The replay server and the four workers of one run, as background processes."""

    settings: Settings
    procs: dict[str, ManagedProcess] = field(default_factory=dict)

    def ready_port(self, name: str) -> int:
        p = self.settings.prometheus
        return {
            "replay-server": self.settings.replay.port,
            "produce": p.producer_metrics_port,
            "features": p.features_metrics_port,
            "score": p.score_metrics_port,
            "sink": p.sink_metrics_port,
        }[name]

    def start(self, name: str, timeout_s: float = 180.0) -> None:
        """Start one service and wait for its port (metrics, or the replay server's)."""
        proc = self.procs.get(name) or ManagedProcess(f"drill-{name}", self.settings.run_dir)
        self.procs[name] = proc
        args = ["score", "--instance", "drill"] if name == "score" else [name]
        proc.start([*tickwatch_command(), *args], env=child_env(self.settings, "INFO"))
        port = self.ready_port(name)
        if not wait_until(lambda: port_open("127.0.0.1", port) or proc.pid() is None, timeout_s):
            raise RuntimeError(f"{name} did not open port {port}; see {proc.log_file}")
        if proc.pid() is None:
            raise RuntimeError(f"{name} exited at start; see {proc.log_file}")

    def kill9_and_restart(self, name: str) -> None:
        """Kill -9, as a crash would, wait for its port to close, and start it again."""
        port = self.ready_port(name)
        self.procs[name].kill9()
        wait_until(lambda: not port_open("127.0.0.1", port), 20)
        self.start(name)

    def dead(self) -> list[str]:
        """Names of started services that are no longer running."""
        return [n for n, p in self.procs.items() if p.pid() is None]

    def restart_dead(self) -> list[str]:
        """Restart every service that died, as a supervisor would; says who and why."""
        return [note for note, _ in self.restart_dead_since()]

    def restart_dead_since(self) -> list[tuple[str, int | None]]:
        """`restart_dead`, each note with when its trouble began: a watchdog exit's hang start
        (its log says), else None (the death was seen just now)."""
        notes = []
        for name in self.dead():
            tail = self.procs[name].log_file.read_text(errors="replace")[-4000:]
            hung = WATCHDOG_SINCE.findall(tail)
            why = "watchdog exit" if "WATCHDOG" in tail else "crashed"
            log.error("%s: %s; restarting it", name, why)
            self.start(name)
            notes.append((f"{name}: {why}", int(hung[-1]) if hung else None))
        return notes

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop(timeout_s=15)
