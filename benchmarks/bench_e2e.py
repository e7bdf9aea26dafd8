"""End to end: replay -> producer -> features -> score -> sink at rising speeds, beside bare Kafka.

Runs on a private stack (own broker, Redis and ports, the fault drills' small champion), so the
shared stack and its ports are never touched. For each replay speed (simulated minutes per real
minute) the replay server, producer, features and score workers start on a fresh topic prefix; for
a bounded window the bars and trades reaching Kafka are counted and a consumer of our own reads the
features and anomalies topics, timing each message from its `tw-ingest-ms` header (set when the
producer received the replay server's frame) to its consumption. The baseline is a bare
confluent-kafka producer -> consumer round trip at the same message rate on the same broker.
The speeds rise until latency breaks (features or anomaly p99 above `BREAK_P99_MS`, fewer vectors
out than bars in, or the score worker's committed offsets behind the features topic) or the list
ends. The features stage runs the configured engine (`features.engine`, Faust by default;
`TICKWATCH_FEATURES__ENGINE=batch` measures the batch engine), named in the section's text.
`BENCH_E2E_SPEEDS` (comma-separated) picks the speeds.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.common import tail
from benchmarks.e2e_report import (
    DECISION,
    WARM_S,
    Step,
    decision_verdict,
    plot,
    section,
    verdict,
)
from ops.drill_compare import topic_size
from ops.drill_stack import PrivateStack, Services, ensure_champion, private_settings
from ops.hops import hop_stats, scrape, scrape_all, window_stat
from ops.results import write_section
from ops.stack.processes import wait_until
from stream_processors.worker import features_group
from tickwatch.kafka import INGEST_HEADER, consumer_config, ensure_topics, producer_config
from tickwatch.metrics import EVENT_TO_EMIT_NAME
from tickwatch.settings import Settings
from tickwatch.topics import ANOMALIES, BARS, FEATURES, TRADES, topic_name

SPEEDS = [float(s) for s in os.environ.get("BENCH_E2E_SPEEDS", "60,480,3840,15360").split(",")]
WINDOW_S = float(os.environ.get("BENCH_E2E_WINDOW_S", 20))
MIN_WINDOW_VECTORS = 300  # a window offers at least these: a p99 over 100 is their max
DRAIN_S = 4.0  # after the feed stops: let the messages in flight arrive
BARE_S = 5.0  # length of each bare round-trip run
PORT_BASE = 19_190  # broker 19192, controller 19193, Redis 19194, replay 19195, metrics 19201-05


def now_ms() -> float:
    return time.time() * 1000


@dataclass
class Timings:
    """Ingest-to-consume latencies (ms) per topic, read by a background consumer."""

    settings: Settings
    topics: list[str]
    ms: dict[str, list[float]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.ms = {t: [] for t in self.topics}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        cfg = consumer_config(self.settings, "bench-e2e", **{"fetch.wait.max.ms": 50})
        consumer = Consumer(cfg)
        parts = [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in self.topics
            for p in consumer.list_topics(t, timeout=10).topics[t].partitions
        ]
        consumer.assign(parts)  # no group join: nothing waits on a rebalance
        try:
            while not self.stop.is_set():
                batch = consumer.consume(1000, 0)  # what is there now; never wait to fill
                if not batch:
                    batch = [m for m in (consumer.poll(0.05),) if m is not None]
                for msg in batch:
                    if msg.error():
                        continue
                    seen = now_ms()
                    ingest = dict(msg.headers() or ()).get(INGEST_HEADER)
                    if ingest:
                        self.ms[msg.topic() or ""].append(seen - int(ingest))
        finally:
            consumer.close()


def window_for(speed: float, symbols: int) -> float:
    """WINDOW_S, longer at a speed that offers fewer than MIN_WINDOW_VECTORS vectors in it (60 s
    at real time for 5 symbols): the p99 of 300 vectors rests on three of them, not on one."""
    return max(WINDOW_S, MIN_WINDOW_VECTORS / (speed / 60 * symbols))


def step_settings(base: Settings, work: Path, speed: float, db: int) -> Settings:
    """One speed's run: fresh prefix, Redis db and run folder; enough replay days for the window."""
    minutes = speed / 60 * (window_for(speed, len(base.symbols)) + 15)
    return base.model_copy(
        update={
            "run_dir": work / f"run-{speed:g}",
            "topic_prefix": f"e2e-{speed:g}-",
            "redis": base.redis.model_copy(update={"db": db}),
            "replay": base.replay.model_copy(
                update={"speed": speed, "days": max(1, math.ceil(minutes / 390))}
            ),
        }
    )


def groups_ready(admin: AdminClient, groups: list[str], members: int = 1) -> bool:
    """True once each consumer group is stable with `members` members, each one assigned
    partitions."""
    try:
        found = [f.result(10) for f in admin.describe_consumer_groups(groups).values()]
    except Exception:  # noqa: BLE001 - a group not there yet
        return False
    return all(
        g.state == ConsumerGroupState.STABLE
        and len(g.members) == members
        and all(m.assignment.topic_partitions for m in g.members)
        for g in found
    )


def committed(run: Settings, group: str, topic: str) -> int:
    """Messages of `topic` the group has committed (the scoring worker commits in transactions)."""
    consumer = Consumer(consumer_config(run, group))
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        got = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return sum(max(tp.offset, 0) for tp in got)
    finally:
        consumer.close()


def measure_pipeline(run: Settings, step: Step) -> None:
    """Start the services, time the window, stop the feed, drain, stop the workers."""
    import redis

    ensure_topics(run)
    redis.Redis(run.redis.host, run.redis.port, db=run.redis.db).flushdb()
    names = {FEATURES: topic_name(FEATURES, run), ANOMALIES: topic_name(ANOMALIES, run)}
    timings = Timings(run, list(names.values()))
    services = Services(run)
    try:
        with ThreadPoolExecutor(4) as pool:  # the slow starters in parallel
            list(pool.map(services.start, ("replay-server", "features", "score", "sink")))
        admin = AdminClient({"bootstrap.servers": run.kafka.bootstrap_servers})
        groups = [features_group(run), f"{run.topic_prefix}tickwatch-score"]
        if not wait_until(lambda: groups_ready(admin, groups), 90, 0.5):
            raise RuntimeError(f"speed {step.speed:g}: worker groups not assigned within 90 s")
        timings.thread.start()
        services.start("produce")
        if not wait_until(lambda: topic_size(run, BARS) > 0, 60, 0.2):
            raise RuntimeError(f"speed {step.speed:g}: no bar reached Kafka within 60 s")
        time.sleep(WARM_S)  # past the fresh pipeline's one-time costs
        hop_ports = [services.ready_port(n) for n in ("produce", "features", "score", "sink")]
        hops0, decisions0 = scrape_all(hop_ports), _decisions(hop_ports[2])
        t0, bars0, trades0 = time.monotonic(), topic_size(run, BARS), topic_size(run, TRADES)
        n0 = len(timings.ms[names[FEATURES]])
        time.sleep(step.window_s)
        elapsed = time.monotonic() - t0
        bars1, trades1 = topic_size(run, BARS), topic_size(run, TRADES)
        step.vectors_out = len(timings.ms[names[FEATURES]]) - n0
        step.bars_in = bars1 - bars0
        step.bars_s, step.trades_s = step.bars_in / elapsed, (trades1 - trades0) / elapsed
        step.scored = committed(run, f"{run.topic_prefix}tickwatch-score", names[FEATURES])
        step.vectors_total = topic_size(run, FEATURES)
        step.hops = hop_stats(hops0, scrape_all(hop_ports))  # the window's records, every hop
        step.decision = window_stat(decisions0, _decisions(hop_ports[2]))
        for name in ("produce", "replay-server"):
            services.procs[name].stop(timeout_s=15)
        time.sleep(DRAIN_S)
        if dead := [n for n in services.dead() if n in ("features", "score")]:
            raise RuntimeError(f"speed {step.speed:g}: {dead} died; see {run.run_dir}/logs")
    finally:
        timings.stop.set()
        services.stop()
        timings.thread.join(timeout=10)
    step.features_ms = timings.ms[names[FEATURES]]
    step.anomalies_ms = timings.ms[names[ANOMALIES]]


def _decisions(score_port: int) -> dict[float, float]:
    """The score worker's ingest -> decision histogram (every vector it scored: its ingest
    header to the scoring transaction's commit, where an anomaly event of it becomes readable)."""
    return scrape(score_port, histogram=EVENT_TO_EMIT_NAME, label="stage").get("score", {})


def measure_bare(run: Settings, rate: float, seconds: float = BARE_S) -> list[float]:
    """Bare confluent-kafka round trip at `rate` messages/s: send time to consume time (ms), of
    the messages after the first WARM_S s (as the pipeline's window starts after its own)."""
    topic = f"{run.topic_prefix}bare"
    admin = AdminClient({"bootstrap.servers": run.kafka.bootstrap_servers})
    admin.create_topics([NewTopic(topic, run.kafka.default_partitions, 1)])[topic].result(30)
    timings = Timings(run, [topic])
    timings.thread.start()
    time.sleep(1.0)  # the consumer is assigned before the first send
    producer = Producer(producer_config(run))
    pad, sent, t0 = b"x" * 180, 0, time.monotonic()
    while (elapsed := time.monotonic() - t0) < WARM_S + seconds:
        for _ in range(int(rate * elapsed) - sent):
            producer.produce(
                topic,
                pad,
                key=str(sent % 64).encode(),
                headers=[(INGEST_HEADER, str(int(now_ms())).encode())],
            )
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(30)
    wait_until(lambda: len(timings.ms[topic]) >= sent, 10, 0.05)
    timings.stop.set()
    timings.thread.join(timeout=10)
    return timings.ms[topic][int(rate * WARM_S) :]  # sent in rate order: the warm-up's first


def run_steps(base: Settings, work: Path) -> list[Step]:
    """Private stack up, champion ready, one step per speed until one breaks; all stopped after."""
    models = base.run_dir.resolve() / "drill-models"
    settings = private_settings(base, work / "stack", models, SPEEDS[0], port_base=PORT_BASE)
    settings = settings.model_copy(
        update={"replay": settings.replay.model_copy(update={"fault_hooks": False})}
    )
    stack = PrivateStack(settings)
    steps: list[Step] = []
    try:
        stack.start()
        ensure_champion(settings, models)
        for i, speed in enumerate(SPEEDS):
            run = step_settings(settings, work, speed, i + 1)
            step = Step(speed, len(run.symbols), window_s=window_for(speed, len(run.symbols)))
            measure_pipeline(run, step)
            step.bare_ms = measure_bare(run, step.msgs_s)
            steps.append(step)
            value, stat = tail(step.features_ms)
            print(
                f"speed {speed:g}: {step.bars_s:.0f} bars/s, {step.trades_s:.0f} trades/s, "
                f"features {stat} {value:.0f} ms, "
                f"vectors/bars {step.kept_up:.2f}, scored {step.scored_share:.2f}",
                flush=True,
            )
            for hop, h in step.hops.items():
                p50 = "-" if h.p50_s is None else f"{h.p50_s * 1000:.1f} ms"
                print(f"  {hop:<22} n {h.n:>6}  p50 {p50:>9}  p99 {h.p99_text()}", flush=True)
            d = step.decision
            if d is not None:
                p50 = "-" if d.p50_s is None else f"{d.p50_s * 1000:.1f} ms"
                print(f"  {DECISION:<22} n {d.n:>6}  p50 {p50:>9}  p99 {d.p99_text()}")
            bare, bare_stat = tail(step.bare_ms)
            print(f"  {'bare round trip':<22} n {len(step.bare_ms):>6}  {bare_stat} {bare:.1f} ms")
            if step.broke:
                break
    finally:
        stack.stop()
    return steps


def main() -> None:
    """Run the steps on a private stack, print the table, write the plot and the section."""
    work = Path(tempfile.mkdtemp(prefix="tickwatch-bench-e2e-"))
    keep = bool(os.environ.get("BENCH_E2E_KEEP"))
    settings = Settings()
    try:
        steps = run_steps(settings, work)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    plot(steps)
    text = section(
        steps, WINDOW_S, DRAIN_S, BARE_S, settings.kafka.linger_ms, settings.features.engine
    )
    write_section(
        "e2e",
        "End to end: replay to anomaly event, rising load",
        text,
        [verdict(steps), decision_verdict(steps)],
    )


if __name__ == "__main__":
    main()
