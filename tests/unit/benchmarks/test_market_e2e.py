"""The whole-market end-to-end bench's bookkeeping: a minute is done when the score group's
committed offsets pass its last vector on every partition; lost, duplicated, unscored and
overlapped minutes are counted and fail the verdict."""

from __future__ import annotations

from benchmarks.market_e2e_report import MinuteLedger, Run, overlapped, projection, verdicts
from ops.hops import HopStat

M0, M1 = 60_000 * 100, 60_000 * 101


def _ledger() -> MinuteLedger:
    """Two minutes of symbols A and B on partitions 0 and 1."""
    ledger = MinuteLedger()
    ledger.bar(M0, "A", 1_000)
    ledger.bar(M0, "B", 1_010)
    ledger.vector(M0, "A", 0, 0, 1_200)
    ledger.vector(M0, "B", 1, 0, 1_250)
    ledger.bar(M1, "A", 7_000)
    ledger.bar(M1, "B", 7_020)
    ledger.vector(M1, "A", 0, 1, 7_100)
    return ledger


def test_a_minute_is_done_at_the_first_poll_past_its_last_vector_on_every_partition() -> None:
    ledger = _ledger()
    ledger.committed(1_100, {0: -1001, 1: -1001})  # nothing committed yet
    ledger.committed(1_300, {0: 1, 1: -1001})  # A's partition only
    ledger.committed(1_320, {0: 1, 1: -1001})  # unchanged: not kept
    ledger.committed(1_400, {0: 1, 1: 1})
    assert ledger.done_ms(M0, 2) == 1_400
    m0 = ledger.minute(M0, 2)
    assert m0.latency_s == 0.39 and m0.features_s == 0.24
    assert (m0.first_bar_ms, m0.last_bar_ms, m0.vectors, m0.vector_symbols) == (1_000, 1_010, 2, 2)
    # the second minute's vector of B was never read: not done, however far the commits go
    ledger.committed(7_300, {0: 2, 1: 5})
    assert ledger.done_ms(M1, 2) is None and ledger.minute(M1, 2).latency_s is None
    assert ledger.starts() == [M0, M1]


def _run(ledger: MinuteLedger, scored: int) -> Run:
    run = Run("batch", 1, 2, minutes=[ledger.minute(M0, 2), ledger.minute(M1, 2)], scored=scored)
    run.cpu_s = {"producer": 0.2, "features": 1.0, "score": 1.0}
    return run


def test_lost_duplicated_unscored_and_unfinished_minutes_are_errors_and_fail_the_verdict() -> None:
    ledger = _ledger()
    ledger.vector(M1, "A", 0, 2, 7_150)  # A's vector of M1 twice
    ledger.committed(1_400, {0: 1, 1: 1})
    ledger.committed(7_400, {0: 3, 1: 1})
    run = _run(ledger, scored=5)
    assert run.errors() == {
        "bars lost": 0,
        "bars duplicated": 0,
        "vectors lost": 1,  # B of M1
        "vectors duplicated": 1,
        "vectors not scored": 0,
        "vectors scored twice": 2,  # 5 scored, 3 distinct vectors
        "minutes not done": 1,
        "minutes overlapped": 0,  # the last minute has none after it
    }
    assert not run.ok() and verdicts([run])[0].verdict == "not met"
    assert "vectors lost 1" in verdicts([run])[0].figure


def test_a_clean_run_within_the_goal_is_met_and_its_tail_is_a_max_with_n() -> None:
    ledger = _ledger()
    ledger.vector(M1, "B", 1, 1, 7_200)
    ledger.committed(1_400, {0: 1, 1: 1})
    ledger.committed(7_500, {0: 2, 1: 2})
    run = _run(ledger, scored=4)
    assert run.error_total == 0 and run.ok()
    row = verdicts([run])[0]
    assert row.verdict == "met" and "max 0.48 s (n=2)" in row.figure and "0 errors" in row.figure
    text = projection(run, ["features", "score"])
    # CPU over the 2 timed minutes: 1.1 s a minute, 0.5 s each for features and scoring
    assert "one core keeps up with a real-time market of 109 symbols" in text  # 2 * 60 / 1.1
    assert "2 workers per stage 0.50 s" in text  # (0.5 + 0.5) / 2, none of the 0.48 s left over


def test_a_minute_done_after_the_next_one_began_is_an_overlap() -> None:
    ledger = _ledger()
    ledger.vector(M1, "B", 1, 1, 7_200)
    ledger.committed(7_010, {0: 1, 1: 1})  # M0 done after M1's first bar (7,000)
    ledger.committed(7_500, {0: 2, 1: 2})
    minutes = [ledger.minute(M0, 2), ledger.minute(M1, 2)]
    assert overlapped(minutes) == 1
    assert not Run(
        "batch", 1, 2, minutes=minutes, scored=4, hops={"x": HopStat(0, None, None, None)}
    ).ok()
