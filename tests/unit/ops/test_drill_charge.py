"""A drill charges each death to the fault it began in: a watchdog exit to where its hang began."""

from __future__ import annotations

import subprocess
import sys
import time

from ops.drill import FAULTS, Mark, _charge
from ops.drill_stack import WATCHDOG_SINCE
from tickwatch.kafka import EXIT_HUNG

HANG = """
import logging, time
from tickwatch.kafka import hang_watchdog
logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
with hang_watchdog(0.2, "transaction commit"):
    time.sleep(60)
"""


def test_a_watchdog_exit_logs_when_its_hang_began() -> None:
    before_ms = _now_ms()
    done = subprocess.run([sys.executable, "-c", HANG], capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_HUNG
    (since,) = WATCHDOG_SINCE.findall(done.stderr)
    assert before_ms <= int(since) <= _now_ms()


def test_deaths_are_charged_to_the_window_their_trouble_began_in() -> None:
    broker, redis_down = (
        next(f for f in FAULTS if f.name == "broker restart"),
        next(f for f in FAULTS if f.name.startswith("Redis down")),
    )
    marks = [Mark(broker, 0, 1_000), Mark(redis_down, 0, 50_000)]
    _charge(
        marks,
        [
            ("score: watchdog exit", 20_000),  # hung since the broker restart, exited later
            ("sink: crashed", None),  # seen just now: the newest fault
            ("features: watchdog exit", 500),  # hung before the first fault: the first one
        ],
    )
    assert marks[0].crashed == ["score: watchdog exit", "features: watchdog exit"]
    assert marks[1].crashed == ["sink: crashed"]


def _now_ms() -> int:
    return int(time.time() * 1000)
