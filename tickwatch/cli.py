"""The `tickwatch` command: one subcommand per service or tool; each imports its service lazily."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import typer

from tickwatch.settings import Settings, get_settings

app = typer.Typer(
    help="tickwatch: minute-by-minute market anomaly detection.", no_args_is_help=True
)
stack_app = typer.Typer(help="The local stack: Kafka 4, Redis, Prometheus, MLflow.")
app.add_typer(stack_app, name="stack")
grafana_app = typer.Typer(help="Grafana dashboards and alert rules.")
app.add_typer(grafana_app, name="grafana")
features_app = typer.Typer(
    help="The features service (Faust worker with no subcommand), Feast apply and materialize.",
    invoke_without_command=True,
)
app.add_typer(features_app, name="features")


def _setup(level: str = "INFO") -> Settings:
    """Logging and the runtime folders a service needs; called by commands, never at import."""
    logging.basicConfig(
        level=os.environ.get("TICKWATCH_LOG_LEVEL", level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = get_settings()
    run = settings.run_dir.resolve()
    for var, sub in (("KERAS_HOME", "keras"), ("MPLCONFIGDIR", "matplotlib")):
        os.environ.setdefault(var, str(run / sub))
        Path(os.environ[var]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    from tickwatch.features import use_calendar

    use_calendar(settings.features.calendar)
    return settings


def _with_calendar(settings: Settings, calendar: str | None) -> Settings:
    """`settings` with another exchange calendar (a command's --calendar), made active."""
    if not calendar:
        return settings
    from tickwatch.features import use_calendar

    try:
        use_calendar(calendar)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--calendar") from None
    return settings.model_copy(
        update={"features": settings.features.model_copy(update={"calendar": calendar})}
    )


@stack_app.command("up")
def stack_up(only: list[str] = typer.Option(None, help="kafka, redis, prometheus, mlflow")) -> None:
    """Install what is missing, start every service, wait until healthy, create the topics."""
    from ops import stack
    from tickwatch.kafka import ensure_topics

    settings = _setup()
    started = stack.up(settings, only or None)
    if not only or "kafka" in only:
        created = ensure_topics(settings)
        if created:
            typer.echo(f"created topics: {', '.join(created)}")
    typer.echo(f"started: {', '.join(started) or 'nothing (already up)'}")
    _print_status(settings)


@stack_app.command("down")
def stack_down(only: list[str] = typer.Option(None)) -> None:
    """Stop the services this stack started."""
    from ops import stack

    stopped = stack.down(_setup(), only or None)
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing'}")


@stack_app.command("status")
def stack_status() -> None:
    """Print each service, its endpoint and health; exit 1 if any is unhealthy."""
    if not _print_status(_setup("WARNING")):
        raise typer.Exit(1)


def _print_status(settings: Settings) -> bool:
    from ops import stack

    ok, prometheus_up = True, False
    for name, endpoint, healthy, pid in stack.status(settings):
        ok &= healthy
        owner = f"pid {pid}" if pid else "not ours"
        typer.echo(f"{name:<11} {endpoint:<28} {'healthy' if healthy else 'DOWN':<8} {owner}")
        prometheus_up |= name == "prometheus" and healthy
    if prometheus_up:
        _print_hops(settings)
    return ok


def _print_hops(settings: Settings) -> None:
    """Each hop's p50/p99 over the last 5 minutes, as Prometheus has them."""
    from ops.hops import prometheus_hops

    hops = prometheus_hops(settings.prometheus.url)
    if not hops:
        typer.echo("hops       no hop records in the last 5 minutes")
        return
    for hop, (p50, p99) in hops.items():
        cells = [f"{x * 1000:.1f} ms" if x is not None else "-" for x in (p50, p99)]
        typer.echo(f"hop        {hop:<22} p50 {cells[0]:>10}   p99 {cells[1]:>10}   (5 min)")


@stack_app.command("topics")
def stack_topics() -> None:
    """Create missing Kafka topics and set drifted topic settings (waits for the broker)."""
    from tickwatch.kafka import ensure_topics, wait_for_broker

    settings = _setup()
    if not wait_for_broker(settings.kafka.bootstrap_servers, timeout_s=120):
        typer.echo(f"Kafka not reachable at {settings.kafka.bootstrap_servers}", err=True)
        raise typer.Exit(1)
    created = ensure_topics(settings)
    typer.echo(f"created topics: {', '.join(created) or 'none (all exist)'}")


@stack_app.command("init")
def stack_init(
    retrain: bool = typer.Option(False, help="train even if a champion is registered"),
) -> None:
    """Prepare a deployment: create topics; fetch history and train unless a champion exists."""
    from ops.stack.bootstrap import run

    steps = run(_setup(), retrain=retrain)
    typer.echo(f"ran: {', '.join(steps)}" if steps else "ready: topics exist, champion registered")


@stack_app.command("roundtrip")
def stack_roundtrip() -> None:
    """Send one message through Kafka and read it back (a smoke test of the stack)."""
    from ops.stack.roundtrip import run

    run(_setup())


@app.command()
def demo(
    polygon: bool = typer.Option(False, help="use Polygon/Massive with TICKWATCH_POLYGON__API_KEY"),
    duration: float = typer.Option(0, help="stop after this many seconds (0: until Ctrl-C)"),
    retrain: bool = typer.Option(False, help="train even if a champion is registered"),
) -> None:
    """Start the stack and the whole pipeline, train if needed, and show anomalies live."""
    from ops.demo import run

    run(_setup("WARNING"), polygon=polygon, duration_s=duration or None, retrain=retrain)


@app.command()
def bench(
    only: list[str] = typer.Argument(None, help="names like ingest, features, scoring"),
) -> None:
    """Run the benchmarks in benchmarks/ (each beside its raw baseline) and update RESULTS.md."""
    from ops.stack.services import REPO_ROOT

    _setup("WARNING")
    names = sorted(p.stem for p in (REPO_ROOT / "benchmarks").glob("bench_*.py"))
    chosen = [n for n in names if not only or n.removeprefix("bench_") in only]
    failed = []
    for name in chosen:
        typer.echo(f"==> {name}")
        rc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], cwd=REPO_ROOT).returncode
        if rc:
            failed.append(name)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


@app.command()
def drill(
    speed: float = typer.Option(150.0, help="replay speed of the faulted run (150: ~2.6 min/day)"),
    baseline_speed: float = typer.Option(0.0, help="replay speed of the baseline (0: fastest)"),
    keep: bool = typer.Option(False, help="keep the private stack's temp folder (logs)"),
    record: bool = typer.Option(True, help="write the table into benchmarks/RESULTS.md"),
) -> None:
    """Fault drills on a private stack (kill -9, broker restart, WS drop, Redis, bad frames)."""
    from ops.drill import run

    if not run(_setup(), speed=speed, baseline_speed=baseline_speed, keep=keep, record=record):
        raise typer.Exit(1)


@app.command()
def api(
    host: str = typer.Option(None, help="default: settings.api.host"),
    port: int = typer.Option(None, help="default: settings.api.port"),
) -> None:
    """Serve the query API (FastAPI under /v1, /healthz, /readyz, /metrics)."""
    from api.main import run

    run(_setup(), host=host, port=port)


@app.command()
def sink() -> None:
    """Write anomaly events from Kafka into the Redis store the API reads (idempotent)."""
    from api.sink import run

    run(_setup())


@grafana_app.command("publish")
def grafana_publish(
    url: str = typer.Option(..., help="Grafana base URL, e.g. http://localhost:3000"),
    token: str = typer.Option(..., envvar="GRAFANA_TOKEN", help="service-account token"),
    folder: str = typer.Option("tickwatch", help="folder title for the dashboards"),
) -> None:
    """Push the dashboards in grafana/dashboards and the alert rules to a Grafana."""
    from api.grafana_publish import run

    run(_setup(), url=url, token=token, folder=folder)


@app.command("replay-server")
def replay_server(
    frames: Path = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="serve this file of pre-encoded frames (one JSON array a line) to each subscriber, "
        "as fast as its socket takes them, then replay_complete (no market, no Kafka)",
    ),
    market_symbols: int = typer.Option(
        None,
        min=0,
        help="stream a synthetic whole market of this many symbols instead: every symbol's AM "
        "bar of a minute together, a minute every 60 / replay.speed s (replay.market_symbols)",
    ),
) -> None:
    """Serve the simulated (or CSV) market over the Polygon protocol: WebSocket + REST."""
    from producers.replay_server import run

    settings = _setup()
    if market_symbols is not None:
        replay = settings.replay.model_copy(update={"market_symbols": market_symbols})
        settings = settings.model_copy(update={"replay": replay})
    run(settings, frames_path=frames)


@app.command()
def produce(
    exit_at_end: bool = typer.Option(False, help="exit when the replay server's data ends"),
) -> None:
    """Stream Polygon (with a key) or the replay server (without) into Kafka."""
    from producers.polygon_ws import UpstreamRefused, run

    try:
        run(_setup(), exit_at_end=exit_at_end)
    except UpstreamRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def backfill(
    symbols: list[str] = typer.Option(None, help="default: settings.symbols"),
    start: str = typer.Option(None, help="first day, YYYY-MM-DD (default: the replay's first)"),
    end: str = typer.Option(None, help="last day, YYYY-MM-DD (default: today)"),
) -> None:
    """Fetch REST minute bars into the bars topic and the Parquet store (idempotent)."""
    import datetime as dt

    from producers.backfill import run
    from producers.market_sim import recent_start_day
    from producers.rest import RestError

    settings = _setup()
    if start is None and settings.polygon.api_key is not None:
        raise typer.BadParameter("--start is required with a Polygon key", param_hint="--start")
    replay_days = settings.replay.history_days + settings.replay.days
    first = dt.date.fromisoformat(start) if start else recent_start_day(replay_days)
    last = dt.date.fromisoformat(end) if end else dt.date.today()
    try:
        report = run(settings, symbols or settings.symbols, first, last)
    except RestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"fetched {report.fetched}, published {report.published}, "
        f"already stored {report.already_stored}, refused {report.refused}"
    )


@features_app.callback()
def features(
    ctx: typer.Context,
    bars_from_trades: bool = typer.Option(
        None,
        "--bars-from-trades/--no-bars-from-trades",
        help="build minute bars from trades (default: when the AM channel is not subscribed)",
    ),
    web_port: int = typer.Option(None, help="Faust web server port (default: off)"),
    engine: str = typer.Option(
        None, help="faust or batch (default: features.engine); batch is for whole-market loads"
    ),
    instance: str = typer.Option(None, help="batch engine: worker id (default: host name)"),
) -> None:
    """Run a features worker: bars -> rolling features -> Feast online store + features topic."""
    if ctx.invoked_subcommand is not None:
        return
    from stream_processors.worker import run

    settings = _setup()
    if engine is not None:
        if engine not in ("faust", "batch"):
            raise typer.BadParameter("engine must be faust or batch", param_hint="--engine")
        settings = settings.model_copy(
            update={"features": settings.features.model_copy(update={"engine": engine})}
        )
    run(settings, bars_from_trades=bars_from_trades, web_port=web_port, instance=instance)


@features_app.command("apply")
def features_apply() -> None:
    """Register the Feast definitions (entity, sources, views, services) in the registry."""
    from feature_repo.feature_store import apply_definitions, get_store

    settings = _setup()
    apply_definitions(get_store(settings))
    typer.echo(f"applied Feast definitions under {settings.data_dir / 'features'}")


@features_app.command("materialize")
def features_materialize() -> None:
    """Compute features for every stored bar (data_dir/bars) into the Parquet offline store."""
    from feature_repo.materialize import materialize_stored_bars

    rows = materialize_stored_bars(_setup())
    typer.echo(f"materialized {rows} feature rows")


@app.command()
def train(
    epochs: int = typer.Option(0, help="LSTM epochs (0: settings.model.epochs)"),
    seed: int = typer.Option(0, help="random seed"),
    bars: Path = typer.Option(None, help="fit on this file of bars (CSV or Parquet)"),
    labels: Path = typer.Option(None, help="CSV symbol,start,end,type of known anomalies"),
    calendar: str = typer.Option(
        None, help="exchange calendar of the bars: XNYS, CMES, 24/7, ... (features.calendar)"
    ),
) -> None:
    """Train both models on the stored history (or `--bars`), register them, promote if no worse
    than the champion."""
    from model_workers.train import run

    settings = _with_calendar(_setup(), calendar)
    out = run(settings, epochs=epochs or None, seed=seed, bars=bars, labels=labels)
    verdict = "promoted to champion" if out.promoted else "champion kept"
    typer.echo(
        f"registered iforest v{out.iforest_version}, lstm_ae v{out.lstm_version} "
        f"(validation F1 {out.f1:.3f}): {verdict}"
    )


@app.command()
def score(
    instance: str = typer.Option(None, help="worker id (transactional id suffix); default host"),
    reload_interval: float = typer.Option(10.0, help="seconds between champion-alias checks"),
) -> None:
    """Score the features topic with the champion models and emit explained anomaly events."""
    from model_workers.worker import run

    run(_setup(), instance=instance, reload_interval_s=reload_interval)


@app.command()
def backtest(
    bars: Path = typer.Option(..., help="CSV: symbol,timestamp,open,high,low,close,volume,..."),
    labels: Path = typer.Option(None, help="CSV: symbol,start,end,type"),
    out: Path = typer.Option(Path("backtest"), help="output folder"),
    model_uri: str = typer.Option(None, help="IFOREST_VERSION,LSTM_VERSION (default: champion)"),
    run_id: str = typer.Option(None, help="use the models registered by this training run"),
    train_bars: Path = typer.Option(
        None, help="fit on this file first (registry untouched); its bars warm the state"
    ),
    train_labels: Path = typer.Option(None, help="labels of --train-bars (optional)"),
    fit_days: int = typer.Option(0, help="fit on the first N trading days of --bars instead"),
    epochs: int = typer.Option(0, help="LSTM epochs when fitting (0: settings.model.epochs)"),
    calendar: str = typer.Option(
        None, help="exchange calendar of the bars: XNYS, CMES, 24/7, ... (features.calendar)"
    ),
) -> None:
    """Score a file of bars like the stream does; with labels, write the metrics report."""
    from model_workers.backtest import run

    report = run(
        _with_calendar(_setup(), calendar),
        bars,
        labels,
        out,
        model_uri=model_uri,
        run_id=run_id,
        train_bars=train_bars,
        train_labels=train_labels,
        fit_days=fit_days or None,
        epochs=epochs or None,
    )
    typer.echo(f"wrote {report}")


def main() -> None:
    app()
