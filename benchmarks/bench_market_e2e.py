"""A whole-market minute end to end: 10,000 symbols' bars through producer, features and scoring.

The replay server synthesises the market (`--market-symbols`: every symbol's `AM` bar of a
minute at once, a minute every `SPACING_S`), the real producer reads it over the WebSocket into
`bars`, the features workers (batch engine, then the Faust engine) write `features`, the score
workers (the drills' small champion, warm) score every vector; Kafka between them, each stage's
workers one consumer group on topics of `PARTITIONS` partitions, all on a private stack. The
bench's own readers record every bar and vector (append time, partition, offset) and poll the
score group's committed offsets; a minute is done when they pass its last vector on every
partition (`benchmarks/market_e2e_report.py`). One worker per stage for each engine, then the
batch engine at 2 and 4 workers per stage.

Short runs: e.g. BENCH_MARKET_E2E_SYMBOLS=1000 BENCH_MARKET_E2E_MINUTES=3 BENCH_MARKET_E2E_WARM=3
BENCH_MARKET_E2E_SPACING_S=3 BENCH_MARKET_E2E_RUNS=batch1 (runs: batchN / faustN, comma-separated).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from benchmarks.bench_e2e import groups_ready
from benchmarks.bench_market_minute import bare_round_trips
from benchmarks.market_e2e_report import MinuteLedger, Run, section, verdicts
from detection.detector import WINDOW
from ops.drill_stack import PrivateStack, ensure_champion, private_settings
from ops.hops import hop_stats, scrape_all
from ops.results import write_section
from ops.stack.processes import ManagedProcess, child_env, port_open, tickwatch_command, wait_until
from producers.market_sim import WholeMarket, recent_start_day
from stream_processors.worker import features_group
from tickwatch.kafka import appended_ms, consumer_config, ensure_topics, partition_offset
from tickwatch.settings import Settings
from tickwatch.topics import BARS, FEATURES, topic_name

SYMBOLS = int(os.environ.get("BENCH_MARKET_E2E_SYMBOLS", 10_000))
TIMED_MINUTES = int(os.environ.get("BENCH_MARKET_E2E_MINUTES", 30))
SPACING_S = float(os.environ.get("BENCH_MARKET_E2E_SPACING_S", 6.0))
RUNS = os.environ.get("BENCH_MARKET_E2E_RUNS", "batch1,faust1,batch2,batch4").split(",")
PARTITIONS = 4  # 1, 2 and 4 workers per stage each get an equal share
PORT_BASE = 19_290  # broker 19292, controller 19293, Redis 19294, replay 19295, metrics 19301-05
WORKER_PORTS = {"features": PORT_BASE + 20, "score": PORT_BASE + 30}  # + worker index
COMMIT_POLL_S = 0.02
STAGES = ("producer", "features", "score")


class _Bar(msgspec.Struct):
    symbol: str
    start_ms: int


class _Vector(msgspec.Struct):
    symbol: str
    bar_start_ms: int


_bar = msgspec.json.Decoder(_Bar).decode
_vector = msgspec.json.Decoder(_Vector).decode


def now_ms() -> float:
    return time.time() * 1000


@dataclass
class Readers:
    """The bench's two readers: bars and vectors into the ledger (read_committed, no group),
    and the score group's committed offsets every COMMIT_POLL_S."""

    run: Settings
    ledger: MinuteLedger = field(default_factory=MinuteLedger)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for target in (self._read, self._poll_commits):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self.threads.append(thread)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)

    def _read(self) -> None:
        bars, vectors = topic_name(BARS, self.run), topic_name(FEATURES, self.run)
        cfg = consumer_config(self.run, "bench-market-e2e", **{"isolation.level": "read_committed"})
        consumer = Consumer(cfg)
        consumer.assign(
            [
                TopicPartition(t, p, OFFSET_BEGINNING)
                for t in (bars, vectors)
                for p in range(PARTITIONS)
            ]
        )
        try:
            while not self.stop.is_set():
                for msg in consumer.consume(5000, 0.05):
                    if msg.error() or (at := appended_ms(msg)) is None:
                        continue
                    if msg.topic() == bars:
                        b = _bar(msg.value() or b"")
                        self.ledger.bar(b.start_ms, b.symbol, at)
                    else:
                        v = _vector(msg.value() or b"")
                        self.ledger.vector(v.bar_start_ms, v.symbol, *partition_offset(msg), at)
        finally:
            consumer.close()

    def _poll_commits(self) -> None:
        group = f"{self.run.topic_prefix}tickwatch-score"
        consumer = Consumer(consumer_config(self.run, group))
        tps = [TopicPartition(topic_name(FEATURES, self.run), p) for p in range(PARTITIONS)]
        try:
            while not self.stop.wait(COMMIT_POLL_S):
                got = consumer.committed(tps, timeout=5)
                self.ledger.committed(now_ms(), {tp.partition: tp.offset for tp in got})
        finally:
            consumer.close()


@dataclass
class Pipeline:
    """One configuration's processes: replay server, producer, `workers` per stage."""

    run: Settings
    engine: str
    workers: int
    procs: dict[str, ManagedProcess] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def start(self, name: str, args: list[str], port: int, env: dict[str, str]) -> None:
        proc = ManagedProcess(f"me2e-{name}", self.run.run_dir)
        self.procs[name], self.ports[name] = proc, port
        proc.start([*tickwatch_command(), *args], env={**child_env(self.run, "INFO"), **env})
        if not wait_until(lambda: port_open("127.0.0.1", port) or proc.pid() is None, 180):
            raise RuntimeError(f"{name} did not open port {port}; see {proc.log_file}")
        if proc.pid() is None:
            raise RuntimeError(f"{name} exited at start; see {proc.log_file}")

    def start_worker(self, stage: str, i: int) -> None:
        port = WORKER_PORTS[stage] + i
        var = f"TICKWATCH_PROMETHEUS__{stage.upper()}_METRICS_PORT"
        args = (
            ["features", "--engine", self.engine]
            + (["--instance", f"me2e-{i}"] if self.engine == "batch" else [])
            if stage == "features"
            else ["score", "--instance", f"me2e-{i}"]
        )
        self.start(f"{stage}-{i}", args, port, {var: str(port)})

    def start_workers(self) -> None:
        jobs = [(stage, i) for stage in ("features", "score") for i in range(self.workers)]
        with ThreadPoolExecutor(len(jobs)) as pool:  # the slow starters in parallel
            list(pool.map(lambda job: self.start_worker(*job), jobs))
        groups = [features_group(self.run, self.engine), f"{self.run.topic_prefix}tickwatch-score"]
        admin = AdminClient({"bootstrap.servers": self.run.kafka.bootstrap_servers})
        if not wait_until(lambda: groups_ready(admin, groups, self.workers), 120, 0.5):
            raise RuntimeError(f"{groups} not stable with {self.workers} members each")

    def start_feed(self) -> None:
        self.start("replay-server", ["replay-server"], self.run.replay.port, {})
        self.start("producer", ["produce"], self.run.prometheus.producer_metrics_port, {})

    def stage_pids(self, stage: str) -> list[int]:
        return [p for n, proc in self.procs.items() if n.startswith(stage) and (p := proc.pid())]

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds (user + system, children included) of each stage's processes so far."""
        out = {}
        for stage in STAGES:
            total = 0.0
            for pid in self.stage_pids(stage):
                try:
                    t = psutil.Process(pid).cpu_times()
                    total += t.user + t.system + t.children_user + t.children_system
                except psutil.NoSuchProcess:
                    pass
            out[stage] = total
        return out

    def hop_ports(self) -> list[int]:
        return [port for name, port in self.ports.items() if name != "replay-server"]

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.pid() is None]

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop(timeout_s=20)


def run_settings(base: Settings, work: Path, name: str, db: int) -> Settings:
    """One configuration's settings: own topic prefix, run folder and Redis db; the synthetic
    market at the bench's spacing; the producer on every symbol's AM bars."""
    return base.model_copy(
        update={
            "run_dir": work / f"run-{name}",
            "topic_prefix": f"me2e-{name}-",
            "symbols": ["*"],
            "redis": base.redis.model_copy(update={"db": db}),
            "kafka": base.kafka.model_copy(update={"default_partitions": PARTITIONS}),
            "polygon": base.polygon.model_copy(update={"channels": ["AM"]}),
            "replay": base.replay.model_copy(
                update={"market_symbols": SYMBOLS, "speed": 60 / SPACING_S, "days": 1}
            ),
        }
    )


def warm_minutes(settings: Settings) -> int:
    """Minutes before the timed ones: every symbol's LSTM sequence and evidence window full
    (BENCH_MARKET_E2E_WARM overrides it for short runs)."""
    return int(os.environ.get("BENCH_MARKET_E2E_WARM", 0)) or (
        max(settings.model.sequence_length, WINDOW) + 2
    )


def measure(run: Settings, engine: str, workers: int, warm: int) -> Run:
    """Start the workers, then the feed; time minutes warm .. warm + TIMED_MINUTES - 1."""
    import redis

    ensure_topics(run)
    redis.Redis(run.redis.host, run.redis.port, db=run.redis.db).flushdb()
    result = Run(engine, workers, SYMBOLS)
    pipeline, readers = Pipeline(run, engine, workers), Readers(run)
    ledger, last = readers.ledger, warm + TIMED_MINUTES - 1
    stall_s = max(60.0, 10 * SPACING_S)
    try:
        pipeline.start_workers()
        readers.start()
        pipeline.start_feed()
        marks: dict[str, tuple[dict[str, float], dict]] = {}
        progress, seen = time.monotonic(), 0
        while "end" not in marks:
            time.sleep(0.05)
            starts = ledger.starts()
            if len(starts) > seen:
                progress, seen = time.monotonic(), len(starts)
            for mark, index in (("start", warm - 1), ("end", last)):
                done = len(starts) > index and ledger.done_ms(starts[index], SYMBOLS) is not None
                if mark not in marks and done:
                    marks[mark] = (pipeline.cpu_s(), scrape_all(pipeline.hop_ports()))
            if dead := pipeline.dead():
                raise RuntimeError(f"{dead} died; see {run.run_dir}/logs")
            if time.monotonic() - progress > stall_s:
                raise RuntimeError(f"no new minute for {stall_s:g} s; see {run.run_dir}/logs")
        (cpu0, hops0), (cpu1, hops1) = marks["start"], marks["end"]
    finally:
        readers.close()
        pipeline.stop()
    starts = ledger.starts()[warm : last + 1]
    result.minutes = [ledger.minute(s, SYMBOLS) for s in starts]
    result.cpu_s = {stage: cpu1[stage] - cpu0[stage] for stage in STAGES}
    result.hops = hop_stats(hops0, hops1)
    result.scored = result.hops["features_to_scores"].n
    result.anomalies = result.hops["features_to_anomalies"].n
    return result


def bare(run: Settings) -> list[float]:
    """The bare produce + consume round trip of three of the market's minutes."""
    ensure_topics(run, [BARS])
    market = WholeMarket(SYMBOLS, run.replay.seed, recent_start_day(1))
    return bare_round_trips(run, [market.next_minute() for _ in range(3)])


def run_all(base: Settings, work: Path) -> tuple[list[Run], int]:
    models = base.run_dir.resolve() / "drill-models"
    stack_settings = private_settings(base, work / "stack", models, 60.0, port_base=PORT_BASE)
    stack = PrivateStack(stack_settings)
    runs: list[Run] = []
    try:
        stack.start()
        ensure_champion(stack_settings, models)
        warm = warm_minutes(stack_settings)
        for i, name in enumerate(RUNS):
            found = re.fullmatch(r"(batch|faust)(\d+)", name)
            if not found:
                raise SystemExit(f"BENCH_MARKET_E2E_RUNS: {name!r} is not batchN or faustN")
            engine, workers = found[1], int(found[2])
            run = run_settings(stack_settings, work, name, i + 1)
            result = measure(run, engine, workers, warm)
            result.bare_s = bare(run_settings(stack_settings, work, f"{name}-bare", i + 1))
            runs.append(result)
            print(
                f"{result.label}: errors {result.errors()}, CPU s {result.cpu_s}; per minute, "
                f"last bar -> scored (s): {' '.join(f'{x:.2f}' for x in result.latencies)}; "
                f"-> last vector (s): {' '.join(f'{x:.2f}' for x in result.features_latencies)}",
                flush=True,
            )
    finally:
        stack.stop()
    return runs, warm


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tickwatch-bench-market-e2e-"))
    try:
        runs, warm = run_all(Settings(), work)
    finally:
        if not os.environ.get("BENCH_MARKET_E2E_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    text = section(
        runs,
        spacing_s=SPACING_S,
        warm=warm,
        partitions=PARTITIONS,
        stages=STAGES,
        cores=os.cpu_count(),
    )
    write_section("market-e2e", "A whole-market minute, end to end", text, verdicts(runs))


if __name__ == "__main__":
    main()
