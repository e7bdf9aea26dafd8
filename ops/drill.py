"""`tickwatch drill`: scripted faults on a private stack, compared with an undisturbed run.

One day of the replay goes through producer -> features -> score -> sink twice, each run with its
own topic prefix and Redis db: once undisturbed (the baseline), once with the faults of `FAULTS`
hitting mid-stream one after another. Bars, feature vectors and anomaly ids must match the
baseline exactly (none lost, none duplicated) and every dead letter must be accounted for.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaException

from ops.drill_compare import Snapshot, snapshot, store_size, topic_size
from ops.drill_stack import PrivateStack, Services, ensure_champion, for_run
from ops.stack.processes import wait_until
from producers.hostile_frames import expected_dead_letters
from tickwatch.settings import Settings
from tickwatch.topics import ANOMALIES, BARS, DEAD_LETTER, FEATURES

log = logging.getLogger(__name__)
GARBAGE_ROUNDS = 20  # rounds of hostile frames in the malformed burst
REDIS_DOWN_S = 30.0


@dataclass
class Drill:
    """What a fault acts on: one run's settings, the private stack and the run's services."""

    settings: Settings
    stack: PrivateStack
    services: Services

    def admin(self, path: str) -> None:
        url = f"http://{self.settings.replay.host}:{self.settings.replay.port}{path}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            log.info("replay server %s: %s", path, resp.read().decode())


@dataclass(frozen=True)
class Fault:
    """A named fault, what surviving it proves, and how to cause it."""

    name: str
    proves: str
    act: Callable[[Drill], None]


def redis_outage(seconds: float) -> Fault:
    """Redis stopped for `seconds`, then started again."""

    def act(d: Drill) -> None:
        d.stack.stop_redis()
        time.sleep(seconds)
        d.stack.start_redis()

    return Fault(
        f"Redis down {seconds:.0f} s",
        "Feast pushes and the sink retry until Redis is back; no service exits",
        act,
    )


FAULTS: tuple[Fault, ...] = (
    Fault(
        "kill -9 producer",
        "a restarted producer fills its gap from REST, no bar twice",
        lambda d: d.services.kill9_and_restart("produce"),
    ),
    Fault(
        "kill -9 features",
        "features state recovers from changelogs; offsets after outputs",
        lambda d: d.services.kill9_and_restart("features"),
    ),
    Fault(
        "kill -9 score",
        "transactional scoring: events and offsets commit together",
        lambda d: d.services.kill9_and_restart("score"),
    ),
    Fault(
        "kill -9 sink",
        "the sink re-reads an uncommitted batch; the store write is idempotent",
        lambda d: d.services.kill9_and_restart("sink"),
    ),
    Fault(
        "broker restart",
        "every client reconnects to a restarted broker without loss",
        lambda d: d.stack.restart_kafka(),
    ),
    Fault(
        "WebSocket drop",
        "the producer reconnects and backfills the missed minutes",
        lambda d: d.admin("/admin/drop"),
    ),
    Fault(
        "malformed burst",
        "hostile frames (multi-MB, too deep, binary, unknown) become dead letters by reason; "
        "nothing else changes",
        lambda d: d.admin(f"/admin/garbage?n={GARBAGE_ROUNDS}"),
    ),
    redis_outage(REDIS_DOWN_S),
)


@dataclass
class Mark:
    """When a fault hit: newest bar start in Kafka, wall clock, how long the action took, the
    newest bar start when it ended."""

    fault: Fault
    bar_ms: int
    wall_ms: int
    took_s: float = 0.0
    bar_end_ms: int = 0
    crashed: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    name: str
    snap: Snapshot
    marks: list[Mark]
    seconds: float


def newest_bar(settings: Settings, timeout_s: float = 60.0) -> int:
    """The newest bar start in the bars topic (retried while the broker settles)."""
    from producers.bar_watermarks import last_bar_starts

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return max(last_bar_starts(settings, timeout_s=20).values(), default=0)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def _progress(settings: Settings) -> tuple[int, ...] | None:
    """Sizes of the topics and the store; None while the broker cannot tell."""
    try:
        return (
            topic_size(settings, BARS),
            topic_size(settings, FEATURES),
            topic_size(settings, ANOMALIES),
            topic_size(settings, DEAD_LETTER),
            store_size(settings),
        )
    except KafkaException:
        return None


def settle(
    settings: Settings, settle_s: float, timeout_s: float, tick: Callable[[], None] = lambda: None
) -> tuple[int, ...] | None:
    """Wait until no topic or the store has grown for `settle_s` (calling `tick` every 2 s)."""
    deadline = time.monotonic() + timeout_s
    last, since = _progress(settings), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(2)
        tick()
        now = _progress(settings)
        if now is None or now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle_s:
            return now
    raise TimeoutError(f"{settings.topic_prefix}: still moving after {timeout_s:.0f}s: {last}")


def _charge(marks: list[Mark], deaths: list[tuple[str, int | None]]) -> None:
    """Charge each death to the fault whose window its trouble began in: a watchdog exit to the
    fault during which its call started to hang (its log line says since when: 45 s before the
    exit for a transaction call, 100 s for a sink's offset commit, often a window or two back: a
    broker restart's hang used to be blamed on the Redis outage after it), any other death to
    the newest fault."""
    for note, since_ms in deaths:
        began = [m for m in marks if since_ms is None or m.wall_ms <= since_ms]
        (began[-1] if began else marks[0]).crashed.append(note)


def _start_run(run: Settings) -> Services:
    import redis

    from tickwatch.kafka import ensure_topics

    ensure_topics(run)
    redis.Redis(run.redis.host, run.redis.port, db=run.redis.db).flushdb()
    services = Services(run)
    for name in ("replay-server", "features", "score", "sink", "produce"):
        services.start(name)
    if not wait_until(lambda: topic_size(run, BARS) > 0, 120, 1.0):
        raise RuntimeError("no bar reached Kafka within 120 s")
    return services


def run_once(
    settings: Settings,
    stack: PrivateStack,
    name: str,
    db: int,
    faults: tuple[Fault, ...] = (),
    gap_s: float = 6.0,
    settle_s: float = 12.0,
    timeout_s: float = 600.0,
) -> RunResult:
    """One pass of the replay day through the pipeline, with `faults` one after another."""
    run = for_run(settings, name, db)
    t0 = time.monotonic()
    services = _start_run(run)
    drill, marks = Drill(run, stack, services), []
    try:
        time.sleep(gap_s)
        for fault in faults:
            mark = Mark(fault, newest_bar(run), int(time.time() * 1000))
            log.info("fault: %s", fault.name)
            started = time.monotonic()
            fault.act(drill)
            mark.took_s = time.monotonic() - started
            mark.bar_end_ms = newest_bar(run)
            time.sleep(gap_s)
            marks.append(mark)
            _charge(marks, services.restart_dead_since())

        def supervise() -> None:  # a service dying late is charged to the fault it began in
            deaths = services.restart_dead_since()
            if deaths and not marks:
                early.extend(note for note, _ in deaths)
            _charge(marks, deaths)

        early: list[str] = []
        settle(run, settle_s, timeout_s - (time.monotonic() - t0), supervise)
        if early:
            raise RuntimeError(f"{name}: services died without a fault: {early}")
        return RunResult(name, snapshot(run), marks, time.monotonic() - t0)
    finally:
        services.stop()


@dataclass
class Drills:
    """Both runs and what the burst should have dead-lettered."""

    baseline: RunResult
    faulted: RunResult
    expected_burst: Counter[tuple[str, str]]


def run_drills(
    base: Settings,
    work_dir: Path,
    speed: float = 150.0,
    baseline_speed: float = 0.0,
    faults: tuple[Fault, ...] = FAULTS,
    gap_s: float = 6.0,
) -> Drills:
    """Private stack up, champion ready, baseline and faulted runs (`gap_s` before and after
    each fault); stops what it started."""
    from ops.drill_stack import private_settings

    models = work_dir / "models"
    settings = private_settings(base, work_dir / "run", models, speed)
    stack = PrivateStack(settings)
    try:
        stack.start()
        ensure_champion(settings, models)
        fast = settings.model_copy(
            update={"replay": settings.replay.model_copy(update={"speed": baseline_speed})}
        )
        baseline = run_once(fast, stack, "baseline", 1)
        faulted = run_once(settings, stack, "faulted", 2, faults, gap_s=gap_s)
    finally:
        stack.stop()
    burst = any(f.name == "malformed burst" for f in faults)
    expected = Counter(
        {
            ("producer", kind): n
            for kind, n in expected_dead_letters(GARBAGE_ROUNDS if burst else 0).items()
        }
    )
    return Drills(baseline, faulted, expected)


def run(
    settings: Settings,
    speed: float = 150.0,
    baseline_speed: float = 0.0,
    keep: bool = False,
    record: bool = True,
) -> bool:
    """The `tickwatch drill` command: run, print the tables, record them; True if all held."""
    from ops.drill_report import print_report, record_results, rows

    work = Path(tempfile.mkdtemp(prefix="tickwatch-drill-"))
    cache = settings.run_dir.resolve() / "drill-models"
    try:
        (work / "models").symlink_to(cache, target_is_directory=True)
        cache.mkdir(parents=True, exist_ok=True)
        drills = run_drills(settings, work, speed, baseline_speed)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    table = rows(drills)
    print_report(drills, table)
    if record:
        record_results(drills, table, speed)
    return all(r.ok for r in table)
