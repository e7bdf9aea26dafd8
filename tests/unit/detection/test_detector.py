"""The detector's pieces: tails as surprises, the budget solver, the online threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detection.detector import (
    CHANNELS,
    EVIDENCE_KINDS,
    GRID,
    INPUTS,
    MEMBERS,
    NORMAL_TAIL_CHANNELS,
    RECENT,
    TAIL_FLOOR,
    TAIL_SPAN_SHARE,
    WINDOW,
    OnlineThreshold,
    Tail,
    channel_tail_limits,
    channel_values,
    event_counts,
    evidence_kinds,
    solve_threshold,
)

MIN = 60_000


def test_tail_surprise_is_monotone_and_reads_the_normal_levels() -> None:
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal((50_000, 1)))
    tail = Tail.fit(x, 0.01)
    q99 = np.quantile(x, 0.99)
    probe = np.linspace(0, 8, 200)[:, None]
    s = tail.surprise(probe)[:, 0]
    assert np.all(np.diff(s) >= 0)
    assert abs(tail.surprise(np.array([[q99]]))[0, 0] - 2.0) < 1e-6
    assert s[-1] > 4.0  # far beyond anything normal


def test_a_volume_channel_keeps_a_normal_tail_and_the_others_their_floors() -> None:
    rng = np.random.default_rng(2)
    x = np.abs(rng.standard_normal((50_000, len(CHANNELS))))
    tail = Tail.fit(x, *channel_tail_limits())
    probe = np.full((1, len(CHANNELS)), 4.0)
    s = tail.surprise(probe)[0]
    # P(|N| >= 4) = 6.3e-5: 4.2 in log10 units; the line from q98-q99 reads a little less (a
    # normal's log tail bends down), not half of it as the floors did
    for name in NORMAL_TAIL_CHANNELS:
        assert 3.4 < s[CHANNELS.index(name)] < 4.3
    # the other channels keep the floors: a quarter of the median-to-q99 span at least
    span = np.quantile(x[:, 0], 0.99) - np.quantile(x[:, 0], 0.5)
    floored = math.log10(2.0) / max(TAIL_FLOOR, TAIL_SPAN_SHARE * span)
    assert tail.slope[CHANNELS.index("move_1")] == pytest.approx(floored, rel=0.02)
    assert s[CHANNELS.index("move_1")] < 3.4


def test_a_few_huge_outliers_do_not_flatten_the_tail() -> None:
    rng = np.random.default_rng(1)
    clean = np.abs(rng.standard_normal((20_000, 1)))
    dirty = np.vstack([clean, np.full((150, 1), 40.0)])  # 0.75% anomalies far out
    s_clean = Tail.fit(clean, 0.01).surprise(np.array([[6.0]]))[0, 0]
    s_dirty = Tail.fit(dirty, 0.01).surprise(np.array([[6.0]]))[0, 0]
    assert s_dirty > 0.7 * s_clean


def test_solver_extrapolates_the_normal_rate_to_the_budget() -> None:
    normal = 100.0 * 10.0 ** (-(GRID - 1.0))  # tenfold fewer events per unit level
    assert abs(solve_threshold(normal, 1.0) - 3.0) < 0.05
    # a real anomaly every session, far out: taking the level where the total rate meets the
    # budget would silence the detector (level 12); the fitted normal line stays near 3
    t = solve_threshold(normal + 1.0, 1.0)
    assert 3.0 <= t < 4.0


def test_event_counts_apply_the_cooldown_per_level() -> None:
    scores = np.array([5.0, 5.0, 1.5, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0])
    ts = np.arange(len(scores)) * MIN
    counts, _ = event_counts(scores, ts, 5 * MIN)
    level3 = int(np.flatnonzero(np.isclose(GRID, 3.0))[0])
    assert counts[level3] == 2  # bars 0-3 are one event, bar 10 a second


def _session(rng: np.random.Generator, day: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    scores = rng.exponential(scale, 390) / np.log(10)
    return scores, day * 86_400_000 + np.arange(390) * MIN


def test_threshold_follows_a_wilder_regime_and_recovers_from_its_state() -> None:
    rng = np.random.default_rng(2)
    calm = np.zeros(len(GRID))
    for d in range(10):
        s, t = _session(rng, d, 1.0)
        calm += event_counts(s, t, 5 * MIN)[0]
    prior = calm / 10
    online = OnlineThreshold(prior, 1.0, 20, 5 * MIN)
    start = online.threshold
    alerts_per_day = []
    for d in range(10, 40):
        s, t = _session(rng, d, 1.6)  # a wilder market: every score 60% larger
        thr = np.array([online.observe(float(x), int(tt), d) for x, tt in zip(s, t, strict=True)])
        alerts_per_day.append(int(event_counts(np.where(s > thr, 99.0, 0.0), t, 5 * MIN)[0][0]))
        if d == 25:
            saved = online.to_dict()
            copy = OnlineThreshold(prior, 1.0, 20, 5 * MIN)
            copy.load(saved)
    assert online.threshold > start + 0.5
    assert np.mean(alerts_per_day[-10:]) < np.mean(alerts_per_day[:3])
    assert np.mean(alerts_per_day[-10:]) <= 2.0
    # the restored copy goes on exactly like the original
    rng2 = np.random.default_rng(3)
    for d in range(40, 43):
        s, t = _session(rng2, d, 1.6)
        for x, tt in zip(s, t, strict=True):
            copy.observe(float(x), int(tt), d)
    fresh = OnlineThreshold(prior, 1.0, 20, 5 * MIN)
    fresh.load(saved)
    rng2 = np.random.default_rng(3)
    for d in range(40, 43):
        s, t = _session(rng2, d, 1.6)
        for x, tt in zip(s, t, strict=True):
            fresh.observe(float(x), int(tt), d)
    assert fresh.to_dict() == copy.to_dict()


def test_the_bar_interval_is_the_commonest_gap_of_a_symbols_bars() -> None:
    from detection.detector import bar_interval_minutes

    five = np.arange(0, 50) * 300_000
    assert bar_interval_minutes(np.array(["A"] * 50), five) == 5.0
    # daily bars: weekends and holidays do not move the interval off one day
    days = np.array([0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 14, 15, 17, 18]) * 86_400_000
    assert bar_interval_minutes(np.array(["A"] * len(days)), days) == 1440.0
    # two symbols' bars: only gaps within a symbol count
    both = np.r_[five, five]
    assert bar_interval_minutes(np.array(["A"] * 50 + ["B"] * 50), both) == 5.0


def test_past_its_budget_a_session_escalates_each_kind_and_the_next_session_starts_fresh() -> None:
    prior = 10.0 ** (3.0 - GRID)  # events per session: one at level 3
    online = OnlineThreshold(prior, 1.0, 20, 5 * MIN)
    base = online.threshold
    move, volume, decoupling = (EVIDENCE_KINDS.index(k) for k in ("move", "volume", "decoupling"))

    def bar(day: int, minute: int, score: float, kind: int = move) -> bool:
        t = (day * 1440 + minute) * MIN
        return score > online.observe(score, t, day, kind)

    # every spike 10 minutes apart (separate events); the first of a kind is the budget's
    spikes = [base + 0.5, base + 0.5, base + 1.2, base + 1.2]
    flags = [bar(1, 10 + 10 * i, s) for i, s in enumerate(spikes)]
    assert flags == [True, False, True, False]
    assert online.applied(move) == base + 2 * 1.0
    # another kind of evidence has its own budget: a volume spike right after still gets through
    assert bar(1, 50, base + 0.5, volume)
    # a bar of an event already raised (inside the cooldown) does not count as another
    assert bar(1, 52, base + 9.0, volume) and online.used[volume] == 1
    # past three budgets of every kind together (three events), every further one escalates too
    assert online.used[-1] == 3
    assert online.applied(volume) == base + 1.0 + 1.0
    assert not bar(1, 70, base + 0.5, decoupling)
    assert online.applied(decoupling) == base + 1.0
    assert bar(1, 80, base + 1.2, decoupling) and online.applied(decoupling) == base + 3.0
    # restored mid-session, the escalation goes on where it was
    copy = OnlineThreshold(prior, 1.0, 20, 5 * MIN)
    copy.load(online.to_dict())
    assert all(copy.applied(k) == online.applied(k) for k in range(len(EVIDENCE_KINDS)))
    # a new session: back to the session's threshold (re-solved from the counts when it starts)
    assert not bar(2, 5, 0.0)
    assert bar(2, 10, online.threshold + 0.5)
    assert online.used[move] == 1 and online.used[-1] == 1


def test_the_evidence_kind_is_the_kind_of_the_member_the_score_comes_from() -> None:
    surprise = np.zeros((3, len(MEMBERS)))
    surprise[0, MEMBERS.index("volume")] = 4.0
    surprise[1, MEMBERS.index("against_market")] = 3.0
    surprise[1, MEMBERS.index("iforest")] = 5.0  # one model alone is not the models' evidence
    surprise[2, MEMBERS.index("move_2")] = 2.0
    surprise[2, MEMBERS.index("iforest")] = surprise[2, MEMBERS.index("lstm_ae")] = 2.5
    kinds = [EVIDENCE_KINDS[k] for k in evidence_kinds(surprise)]
    assert kinds == ["volume", "decoupling", "models"]


def test_a_restart_from_a_snapshot_joins_flags_into_the_events_an_uninterrupted_run_had() -> None:
    """A restarted score worker loads a symbol's threshold snapshot and re-scores the bars before
    it (for their sequences). Those bars meet the session's later, escalated threshold, so they
    no longer flag: rebuilt from them alone, the cooldown forgets the last event and the next
    flag inside it opens an extra event. Resumed from the snapshot, it does not."""
    from detection.scorer import Cooldown

    prior = 10.0 ** (3.0 - GRID)
    base = OnlineThreshold(prior, 1.0, 20, 5 * MIN).threshold
    move = EVIDENCE_KINDS.index("move")
    # (minute, score): an event at 10, another at 20 (past the budget: escalates), a flag at 23
    # that continues the event of 20
    bars = [(5, 0.0), (10, base + 0.5), (15, 0.0), (20, base + 1.2), (23, base + 2.5), (40, 0.0)]
    restart = 4  # the snapshot holds the first four bars; the restart begins with the fifth

    def feed(online: OnlineThreshold, cooldown: Cooldown, part) -> list[int]:
        opened = []
        for minute, score in part:
            t = (1440 + minute) * MIN
            if score > online.observe(score, t, 1, move) and cooldown.admit("S", t):
                opened.append(minute)
        return opened

    def fresh() -> tuple[OnlineThreshold, Cooldown]:
        return OnlineThreshold(prior, 1.0, 20, 5 * MIN), Cooldown(5)

    uninterrupted = feed(*fresh(), bars)
    assert uninterrupted == [10, 20]

    before, cooldown = fresh()
    assert feed(before, cooldown, bars[:restart]) == [10, 20]
    restarts = {}
    for name in ("re-scored only", "resumed"):
        online, cooldown = fresh()
        online.load(before.to_dict())
        if name == "resumed":
            cooldown.resume("S", online)
        replayed = feed(online, cooldown, bars[:restart])  # silently: the worker emits nothing
        restarts[name] = feed(online, cooldown, bars[restart:])
        if name == "resumed":
            assert replayed == []  # the snapshot counted them; none is admitted again
    assert restarts["re-scored only"] == [23]  # what the fault drill once caught
    assert restarts["resumed"] == []
    assert [m for m in uninterrupted if m >= bars[restart][0]] == restarts["resumed"]


def _burst_window(rng: np.random.Generator, ref_sigma: float, recent_sigma: float) -> np.ndarray:
    """One unlinked symbol's 30-bar input window: WINDOW - RECENT bars of moves of `ref_sigma`,
    then RECENT of `recent_sigma`, every z-score taken against 60 bars of 0.2% moves."""
    sigma_60 = 0.002
    w = np.zeros((1, WINDOW, len(INPUTS)))
    r = np.concatenate(
        [rng.normal(0, ref_sigma, WINDOW - RECENT), rng.normal(0, recent_sigma, RECENT)]
    )
    w[0, :, INPUTS.index("log_return")] = r
    w[0, :, INPUTS.index("return_z")] = r / sigma_60
    w[0, :, INPUTS.index("bar_range")] = np.abs(r) + ref_sigma / 10
    w[0, :, INPUTS.index("minutes_since_last_bar")] = 1.0
    return w


def test_a_price_pinned_at_one_level_does_not_turn_its_next_moves_into_a_burst() -> None:
    rng = np.random.default_rng(7)
    burst = CHANNELS.index("burst")
    # 25 bars held at one level (moves of a tenth of a tick's size), then ordinary 0.2% moves
    pinned = channel_values(_burst_window(rng, 1e-7, 0.002), np.array([False]), False)
    # ordinary 0.1% moves, then five of 1%: a burst
    wild = channel_values(_burst_window(rng, 0.001, 0.01), np.array([False]), False)
    assert pinned[0, burst] < 3.0  # its 60-bar scale: two sigmas at most, not thousands
    assert wild[0, burst] > 5.0


def _volume_window(volume_z: float, excess: float, market_excess: float) -> np.ndarray:
    """One linked stock's input window, quiet but for its last bar's volume readings (z-scores,
    excess) and the market proxy's excess in the same minute."""
    w = np.zeros((1, WINDOW, len(INPUTS)))
    w[0, :, INPUTS.index("minutes_since_last_bar")] = 1.0
    w[0, :, INPUTS.index("market_known")] = 1.0
    w[0, :, INPUTS.index("beta")] = 1.0
    for name in ("volume_z_20", "volume_z_tod", "transactions_z_20"):
        w[0, -1, INPUTS.index(name)] = volume_z
    w[0, -1, INPUTS.index("volume_excess")] = excess
    w[0, -1, INPUTS.index("market_volume_excess")] = market_excess
    return w


def test_a_market_wide_surge_is_read_in_log_units_not_in_z_scores() -> None:
    volume = CHANNELS.index("volume")
    stock = np.array([False])  # not the proxy: linked to the market by `market_known`

    def reading(*args: float) -> float:
        return float(channel_values(_volume_window(*args), stock, False)[0, volume])

    # every log volume rose by 1.0 (the proxy's z-score may read 5 where the stock's reads 8:
    # its 20 bars estimated a wider deviation): the surge is the market's, all of it
    assert reading(8.0, 1.0, 1.0) == 0.0
    # the proxy's surge accounts for half of the stock's rise: half of its z-score is left
    assert abs(reading(8.0, 1.0, 0.5) - 4.0) < 1e-9
    # a quiet market (its excess is noise) leaves the stock's own spike nearly whole
    assert reading(8.0, 1.0, 0.05) > 7.5
    # a market whose volume fell explains nothing
    assert reading(8.0, 1.0, -0.4) == 8.0
    # the proxy's own bar: its surge is the evidence, nothing explains it away
    own = channel_values(_volume_window(8.0, 1.0, 1.0), np.array([True]), False)
    assert own[0, volume] == 8.0


def test_a_surge_over_two_bars_reads_on_volume_2_and_a_one_bar_print_does_not() -> None:
    one, two = CHANNELS.index("volume"), CHANNELS.index("volume_2")
    stock = np.array([False])
    spike = _volume_window(3.0, 1.0, 0.0)  # the newest bar only
    surge = spike.copy()
    for name in ("volume_z_20", "volume_z_tod", "transactions_z_20"):
        surge[0, -2, INPUTS.index(name)] = 3.0
    surge[0, -2, INPUTS.index("volume_excess")] = 1.0
    lone, both = (channel_values(w, stock, False)[0] for w in (spike, surge))
    assert lone[one] == both[one] == 3.0
    # two bars of 3 sigmas each are together 3 * sqrt(2): rarer than either alone
    assert abs(both[two] - 6.0 / np.sqrt(2.0)) < 1e-9
    assert abs(lone[two] - 3.0 / np.sqrt(2.0)) < 1e-9
    # a block print lifts volume, not the trade count: neither channel reads it
    surge[0, -2:, INPUTS.index("transactions_z_20")] = 0.1
    printed = channel_values(surge, stock, False)[0]
    assert abs(printed[one] - 0.1) < 1e-9 and abs(printed[two] - 0.2 / np.sqrt(2.0)) < 1e-9
