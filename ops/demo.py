"""`tickwatch demo`: set everything up, start every service, and show anomalies live."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from dataclasses import dataclass, field

from ops.stack.processes import (
    ManagedProcess,
    child_env,
    port_open,
    tickwatch_command,
    wait_until,
)
from tickwatch.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    """The pipeline's services as background processes, started in order and stopped together."""

    settings: Settings
    polygon: bool = False
    started: list[ManagedProcess] = field(default_factory=list)

    def _start(
        self, name: str, *args: str, ready_port: int | None = None, timeout_s: float = 90.0
    ) -> ManagedProcess:
        proc = ManagedProcess(f"demo-{name}", self.settings.run_dir)
        proc.stop(timeout_s=5)  # a leftover from an earlier demo
        if ready_port and port_open("127.0.0.1", ready_port):
            raise RuntimeError(
                f"{name}: port {ready_port} is already in use by another process "
                "(a demo or test still running?); stop it or change the port"
            )
        proc.start([*tickwatch_command(), *args], env=child_env(self.settings))
        self.started.append(proc)
        if ready_port and not wait_until(
            lambda: port_open("127.0.0.1", ready_port) or proc.pid() is None, timeout_s
        ):
            raise RuntimeError(f"{name} did not open port {ready_port}; see {proc.log_file}")
        if proc.pid() is None:
            raise RuntimeError(f"{name} exited at start; see {proc.log_file}")
        return proc

    def start_source(self) -> None:
        if not self.polygon:
            self._start("replay-server", "replay-server", ready_port=self.settings.replay.port)

    def start_services(self) -> None:
        s = self.settings
        self._start("features", "features", ready_port=s.prometheus.features_metrics_port)
        self._start("score", "score", ready_port=s.prometheus.score_metrics_port, timeout_s=180)
        self._start("sink", "sink", ready_port=s.prometheus.sink_metrics_port)
        self._start("api", "api", ready_port=s.api.port)
        self._start("producer", "produce", ready_port=s.prometheus.producer_metrics_port)

    def check(self) -> list[str]:
        """Names of started services that have died."""
        return [p.name for p in self.started if p.pid() is None]

    def stop(self) -> None:
        for proc in reversed(self.started):
            proc.stop(timeout_s=15)
        self.started.clear()


def champion_exists(settings: Settings) -> bool:
    """True if both models have a version under the champion alias and the forest carries a
    detector fitted by this version on this deployment's calendar and is stored with skops (a
    champion trained by older code, pickled or on another calendar, is retrained, not loaded
    and refused)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from detection.detector import is_current

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    alias = settings.mlflow.champion_alias
    try:
        for name in (settings.mlflow.iforest_model_name, settings.mlflow.lstm_model_name):
            client.get_model_version_by_alias(name, alias)
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        info = mlflow.models.get_model_info(f"models:/{settings.mlflow.iforest_model_name}@{alias}")
    except MlflowException:
        return False
    skops = (info.flavors.get("sklearn") or {}).get("serialization_format") == "skops"
    detector = (info.metadata or {}).get("detector") or {}
    return skops and is_current(detector) and detector.get("calendar") == settings.features.calendar


def _run_step(settings: Settings, title: str, *args: str) -> None:
    print(f"==> {title}", flush=True)
    subprocess.run(
        [*tickwatch_command(), *args], check=True, env={**os.environ, **child_env(settings)}
    )


def run(
    settings: Settings,
    polygon: bool = False,
    duration_s: float | None = None,
    retrain: bool = False,
) -> None:
    """Stack up, train if needed, start every service, show the live view until Ctrl-C."""
    from ops import stack
    from tickwatch.kafka import ensure_topics

    if polygon and settings.polygon.api_key is None:
        raise SystemExit("--polygon needs TICKWATCH_POLYGON__API_KEY (or .env)")
    print(f"==> dashboard: {dashboard_url(settings)} once the services run", flush=True)
    print("==> starting the local stack (Kafka 4, Redis, Prometheus, MLflow)", flush=True)
    stack.up(settings)
    ensure_topics(settings)
    if not polygon:
        _replay_status(settings)
    pipeline = Pipeline(settings, polygon=polygon)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        pipeline.start_source()
        if retrain or not champion_exists(settings):
            _run_step(settings, "fetching history from the market-data REST endpoint", "backfill")
            _run_step(settings, "computing offline features", "features", "materialize")
            _run_step(
                settings, "training the models (no champion fitted by this version yet)", "train"
            )
        pipeline.start_services()
        from ops.live_view import show

        print(
            f"==> dashboard: {dashboard_url(settings)}  (sign in with the API key, "
            "TICKWATCH_API__API_KEY)",
            flush=True,
        )
        show(settings, pipeline, duration_s=duration_s)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    finally:
        stop_despite_signals(pipeline)
        print("pipeline stopped; the stack keeps running (`make down` stops it).", flush=True)


def dashboard_url(settings: Settings) -> str:
    """Where the API serves the dashboard, as a browser on this machine opens it."""
    host = settings.api.host if settings.api.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{settings.api.port}/dashboard"


def _replay_status(settings: Settings) -> None:
    """Say where the replay resumes (an earlier demo's bars are in Kafka), or that it is done."""
    from producers.replay_feed import load_resumed, resume_note

    note = resume_note(load_resumed(settings))
    if note:
        print(f"==> {note}", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the demo like Ctrl-C does."""
    raise KeyboardInterrupt


def _still_stopping(signum: int, frame: object) -> None:
    print("still stopping the services...", flush=True)


def stop_despite_signals(pipeline: Pipeline) -> None:
    """`pipeline.stop()`, which a second Ctrl-C or SIGTERM does not cut short: one would leave
    the services it had not stopped yet running. The handlers are restored afterwards."""
    before = {sig: signal.signal(sig, _still_stopping) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        pipeline.stop()
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
