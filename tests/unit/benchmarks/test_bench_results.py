"""Benchmark results: verdict rows land in RESULTS.md, results.json and README alike; a tail
percentile of fewer than 100 values is the max with its n."""

from __future__ import annotations

import json
import math
import random
import shutil

from benchmarks.common import tail, tail_cell, tail_text
from benchmarks.e2e_report import Step, decision_verdict, section, verdict
from ops.hops import stat
from ops.readme_tables import MEASURED, NOT_RERUN, README, verdict_table
from ops.results import ResultFiles, Verdict, write_section


def _ms(x: float) -> str:
    return f"{x:.0f} ms"


def test_a_tail_of_fewer_than_100_values_is_their_max_with_n() -> None:
    few, many = [5.0, 1.0, 9.0], [float(i) for i in range(1, 201)]
    assert tail(few) == (9.0, "max of 3")
    assert tail_text(few, _ms) == "max 9 ms (n=3)"
    assert tail_cell(few, 99, _ms) == "max 9 ms (n=3)"
    assert tail_cell(few, 50, _ms) == "-"  # no median of 3 values either
    assert tail(many) == (198.0, "p99")
    assert tail_text(many, _ms) == "p99 198 ms"
    assert tail_cell(many, 50, _ms) == "101 ms"  # nearest rank
    assert tail_text([], _ms) == "none" and tail_cell([], 99, _ms) == "-"


def test_a_section_its_summary_and_the_readme_row_come_from_one_call(tmp_path) -> None:
    files = ResultFiles(tmp_path / "RESULTS.md", tmp_path / "results.json", tmp_path / "README.md")
    shutil.copy(README, files.readme)
    row = Verdict("API, cached reads", "p99 3.0 ms, 0 of 10 failed", "bare 1.4 ms", "10 ms", "met")
    write_section("api", "Query API", "the body", [row], files=files)
    write_section("detection", "Detection", "no verdict rows", files=files)

    summaries = json.loads(files.summaries.read_text())
    assert summaries["api"]["rows"] == [row.__dict__]
    date = summaries["api"]["date"]
    markdown = files.markdown.read_text()
    assert f"_{date}, " in markdown and verdict_table([row.__dict__]) in markdown
    assert "no verdict rows" in markdown and summaries["detection"]["rows"] == []
    readme = files.readme.read_text()
    assert f"| {row.verdict} | {date}, `make bench` |" in readme
    measured = readme.split("<!-- gen:measured -->")[1].split("<!-- /gen:measured -->")[0]
    # every other quoted section: no run wrote it yet
    assert measured.count(NOT_RERUN) == len(MEASURED) - 1


def _step(speed: float, fed: float, anomalies: list[float]) -> Step:
    rnd = random.Random(speed)
    return Step(
        speed,
        5,
        bars_s=speed / 60 * 5 * fed,
        trades_s=1000.0,
        vectors_out=200,
        bars_in=200,
        scored=200,
        vectors_total=200,
        features_ms=[rnd.uniform(20, 100) for _ in range(200)],
        anomalies_ms=anomalies,
        bare_ms=[rnd.uniform(2, 20) for _ in range(500)],
    )


def test_the_e2e_verdict_follows_the_figures_and_quotes_no_other_section() -> None:
    held, broke = _step(480, 1.0, [230.0, 680.0]), _step(15360, 0.36, [7_000.0])
    row = verdict([held, broke])
    assert row.verdict == "broke at speed 15360 (anomaly p99, feed behind)"
    assert "held to speed 480" in row.figure and "max 680 ms (n=2)" in row.figure
    assert verdict([held]).verdict == "held at every speed"
    text = section([held, broke], 20, 4, 5, 5)
    assert "max 680 (n=2)" in text and "well inside" not in text
    assert "not measured here" in text
    assert "features (Faust engine)" in text
    assert "features (Batch engine)" in section([held], 20, 4, 5, 5, engine="batch")


def _decided(step: Step, under_100ms: int, over: int) -> Step:
    """`step` with a window's ingest -> decision histogram: `under_100ms` vectors in the
    50-100 ms bucket and `over` in the 100-250 ms one."""
    n = under_100ms + over
    step.decision = stat({0.05: 0.0, 0.1: float(under_100ms), 0.25: float(n), math.inf: float(n)})
    return step


def test_the_decision_goal_reads_each_goal_speeds_p99_and_its_sample_count() -> None:
    fast = [_decided(_step(60, 1.0, []), 200, 0), _decided(_step(480, 1.0, [50.0]), 995, 5)]
    row = decision_verdict(fast)
    assert row.verdict == "met"
    assert "speed 60: p99" in row.figure and "over 1000 vectors" in row.figure
    # 2% of the vectors beyond 100 ms: the p99 is in the slower bucket
    slow = [fast[0], _decided(_step(480, 1.0, []), 980, 20)]
    assert decision_verdict(slow).verdict == "broke"
    # fewer than 100 vectors give their max, and the verdict reads that figure: within the
    # goal it holds every vector, beyond it the goal broke; a goal speed not run is said
    few = [_decided(_step(60, 1.0, []), 50, 0), fast[1]]
    assert decision_verdict(few).verdict == "met"
    assert "max <= 100.0 ms (n=50)" in decision_verdict(few).figure
    few_slow = [_decided(_step(60, 1.0, []), 49, 1), fast[1]]
    assert decision_verdict(few_slow).verdict == "broke"
    assert "max <= 250.0 ms (n=50)" in decision_verdict(few_slow).figure
    assert decision_verdict(fast[:1]).verdict == "not run at every goal speed"
