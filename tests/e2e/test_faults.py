"""The fault drills as a test: one undisturbed and one faulted replay day on a private stack.

Faults (ops.drill.FAULTS) hit mid-stream one after another: kill -9 of the producer,
features, score and sink workers, a broker restart, a WebSocket drop, a malformed-frame burst and
Redis down (15 s here, 30 s in `tickwatch drill`: the stages retry every 2 s at most, so both hold
their batches through many retries). Nothing may be lost or duplicated and every dead letter must
be accounted for. Runs on its own broker and Redis ports (ops.drill_stack), never the shared stack.

The faulted day streams at FAULTED_SPEED (138 s for the day, `tickwatch drill` takes 156 s at its
150) with GAP_S between faults (6 s in the drill): the faults take most of it, and
`test_every_fault_hit_mid_stream` fails if a slower machine pushes one past the day's last bar
(at speed 200 and 6 s gaps, 117 s for the day, one CI run did).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from ops.drill import FAULTS, GARBAGE_ROUNDS, Drills, redis_outage, run_drills
from ops.drill_compare import dead_letter_kinds, diff
from ops.drill_report import rows
from producers.hostile_frames import hostile_frames
from tickwatch.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
FAULTED_SPEED = 170.0
GAP_S = 5.0
REDIS_DOWN_S = 15.0


@pytest.fixture(scope="module")
def drills(tmp_path_factory) -> Iterator[Drills]:
    faults = tuple(f for f in FAULTS if not f.name.startswith("Redis down"))
    yield run_drills(
        Settings(_env_file=None),
        tmp_path_factory.mktemp("drill"),
        speed=FAULTED_SPEED,
        faults=(*faults, redis_outage(REDIS_DOWN_S)),
        gap_s=GAP_S,
    )


def test_every_fault_hit_mid_stream(drills: Drills) -> None:
    """Each fault began while bars were still arriving, and bars kept arriving after the last
    one ended: none of them hit a pipeline that had nothing left to do."""
    last_bar = max(start for _, start in drills.faulted.snap.bars)
    assert len(drills.faulted.marks) == len(FAULTS)
    late = [m.fault.name for m in drills.faulted.marks if m.bar_ms >= last_bar]
    assert late == []
    assert drills.faulted.marks[-1].bar_end_ms < last_bar


def test_the_baseline_is_a_whole_day(drills: Drills) -> None:
    base = drills.baseline.snap
    per_symbol = Counter(sym for sym, _ in base.bars)
    assert set(per_symbol.values()) == {390}, per_symbol
    assert set(base.features) == set(base.bars)
    assert base.anomalies, "the baseline day flagged nothing: nothing to compare"
    assert set(base.stored) == set(base.anomalies)
    assert not base.dead_letters


def test_no_service_crashed(drills: Drills) -> None:
    """Only a deliberate watchdog exit (a hung librdkafka call, restarted) is tolerated."""
    crashed = {
        m.fault.name: [c for c in m.crashed if not c.endswith("watchdog exit")]
        for m in drills.faulted.marks
    }
    assert {k: v for k, v in crashed.items() if v} == {}


def test_the_redis_outage_stops_no_service(drills: Drills) -> None:
    """Not even by a watchdog exit: the score worker does not use Redis, the features stage and
    the sink hold their batches until it is back (a watchdog exit is charged to the fault its
    hang began in, so a broker restart's hang is not blamed on the outage after it)."""
    (outage,) = [m for m in drills.faulted.marks if m.fault.name.startswith("Redis down")]
    assert outage.crashed == []


def test_no_bar_or_feature_vector_lost_or_duplicated(drills: Drills) -> None:
    base, run = drills.baseline.snap, drills.faulted.snap
    assert diff(base.bars, run.bars).__dict__ == {"lost": 0, "dup": 0, "extra": 0}
    assert diff(base.features, run.features).__dict__ == {"lost": 0, "dup": 0, "extra": 0}


def test_no_anomaly_lost_or_duplicated_in_topic_or_store(drills: Drills) -> None:
    base, run = drills.baseline.snap, drills.faulted.snap
    assert diff(base.anomalies, run.anomalies).__dict__ == {"lost": 0, "dup": 0, "extra": 0}
    assert diff(base.anomalies, run.stored).__dict__ == {"lost": 0, "dup": 0, "extra": 0}


def test_dead_letters_are_exactly_the_malformed_burst(drills: Drills) -> None:
    got = dead_letter_kinds(drills.faulted.snap.dead_letters)
    assert got == drills.expected_burst
    # every frame of every round of the burst, the multi-MB, too-deep and binary ones included
    assert sum(got.values()) == len(hostile_frames()) * GARBAGE_ROUNDS


def test_the_report_says_every_window_held(drills: Drills) -> None:
    table = rows(drills)
    assert [r.window for r in table if not r.ok] == []
    assert table[-1].window == "overall"
