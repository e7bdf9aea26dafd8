"""End to end as a user runs it: replay, producer, features, models, sink, API, Prometheus.

One module-scoped run: the replay server serves 6 days of history and streams 1 day; `backfill`,
`features materialize` and `train` build a champion exactly as `make demo` does; then every
service runs as its own process until the day has gone through.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis
from confluent_kafka import TopicPartition

from ops import stack
from ops.demo import Pipeline, _run_step, champion_exists
from ops.drill_compare import read_values
from ops.hops import prometheus_hops
from ops.stack.redis_claim import claim_redis_db, release_redis_db
from ops.stack.services import REPO_ROOT
from producers.market_sim import BARS_PER_DAY
from tickwatch.kafka import delete_prefixed_topics, ensure_topics, make_consumer
from tickwatch.metrics import Hop
from tickwatch.schemas import AnomalyEvent, FeatureVector, MinuteBar, decode
from tickwatch.settings import Settings
from tickwatch.topics import ANOMALIES, BARS, DEAD_LETTER, FEATURES, topic_name

pytestmark = pytest.mark.e2e
HISTORY_DAYS, LIVE_DAYS = 6, 1
API_KEY = "e2e-key"


@dataclass
class Run:
    settings: Settings
    bars: list[MinuteBar]
    features: list[FeatureVector]
    anomalies: list[AnomalyEvent]
    dead_letters: int


def _count(settings: Settings, spec) -> int:
    name = topic_name(spec, settings)
    c = make_consumer(settings, f"count-{uuid.uuid4().hex[:6]}")
    parts = c.list_topics(name, timeout=10).topics[name].partitions
    total = sum(c.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in parts)
    c.close()
    return total


def _read(settings: Settings, spec, model):
    """Every committed record, read to each partition's last stable offset (read_values raises
    if a partition is not read to its end: the count includes transaction markers, so reading
    until that many records arrived always ended on its timeout, and passed)."""
    return [decode(model, raw) for raw in read_values(settings, spec)]


def _wait_stable(check, settle_s: float, timeout_s: float):
    """Poll `check()` until its value stops changing for `settle_s`; return the value."""
    deadline = time.monotonic() + timeout_s
    last, since = check(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(2)
        now = check()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle_s:
            return now
    return last


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Iterator[Run]:
    base = Settings(_env_file=None)
    started = stack.up(base)
    tmp = tmp_path_factory.mktemp("e2e")
    prefix = f"e2e{uuid.uuid4().hex[:8]}-"
    # the live day lasts four scrape intervals: at full speed it could stream between the
    # producer's start and Prometheus's first scrape of it, whose counters then never rise in
    # any window, and every rate() of its hop is 0 (the dashboard's quantile NaN)
    live_speed = LIVE_DAYS * BARS_PER_DAY / (4 * base.prometheus.scrape_interval_s / 60)
    db = claim_redis_db(base, prefix)  # never a fixed db another suite or a benchmark flushes
    s = base.model_copy(
        update={
            "topic_prefix": prefix,
            "run_dir": tmp / "run",
            "redis": base.redis.model_copy(update={"db": db}),
            "mlflow": base.mlflow.model_copy(update={"tracking_uri": f"sqlite:///{tmp}/mlflow.db"}),
            "replay": base.replay.model_copy(
                update={
                    "port": 18765,
                    "speed": live_speed,
                    "days": LIVE_DAYS,
                    "history_days": HISTORY_DAYS,
                }
            ),
            "model": base.model.model_copy(update={"epochs": 3}),
            "api": base.api.model_copy(update={"api_key": API_KEY}),
        }
    )
    r = redis.Redis(s.redis.host, s.redis.port, db=s.redis.db)
    r.flushdb()
    ensure_topics(s)
    pipeline = Pipeline(s)
    try:
        pipeline.start_source()
        _run_step(s, "backfill", "backfill")
        _run_step(s, "materialize", "features", "materialize")
        _run_step(s, "train", "train")
        assert champion_exists(s)
        pipeline.start_services()
        # the whole replay (history from the backfill + the streamed day) through to anomalies
        # (the three topics settle together: one quiet window for all, not one after another)
        n_bars, _, _ = _wait_stable(
            lambda: (_count(s, BARS), _count(s, FEATURES), _count(s, ANOMALIES)),
            settle_s=10,
            timeout_s=480,
        )
        time.sleep(2 * s.prometheus.scrape_interval_s)  # let Prometheus scrape the final state
        assert n_bars > 0
        yield Run(
            s,
            _read(s, BARS, MinuteBar),
            _read(s, FEATURES, FeatureVector),
            _read(s, ANOMALIES, AnomalyEvent),
            len(read_values(s, DEAD_LETTER)),
        )
    finally:
        pipeline.stop()
        delete_prefixed_topics(s)
        r.flushdb()
        release_redis_db(base, db)
        if started:
            stack.down(base, only=started)


def test_every_bar_of_the_replay_reaches_kafka_once(run: Run) -> None:
    keys = [(b.symbol, b.start_ms) for b in run.bars]
    assert len(keys) == len(set(keys)), "duplicate bars on the bars topic"
    per_symbol = {sym: sum(1 for k in keys if k[0] == sym) for sym in run.settings.symbols}
    expected = (HISTORY_DAYS + LIVE_DAYS) * BARS_PER_DAY
    assert per_symbol == {sym: expected for sym in run.settings.symbols}
    assert run.dead_letters == 0


def test_every_bar_gets_one_feature_vector(run: Run) -> None:
    bars = {(b.symbol, b.start_ms) for b in run.bars}
    vectors = [(f.symbol, f.bar_start_ms) for f in run.features]
    assert len(vectors) == len(set(vectors))
    assert set(vectors) == bars


def test_injected_anomalies_are_found_with_reasons(run: Run) -> None:
    labels = [json.loads(line) for line in _labels(run.settings)]
    live_start = min(b.start_ms for b in run.bars if _is_live(b, run))
    live_labels = [lab for lab in labels if lab["start"] >= live_start]
    assert live_labels, "the replay day has no injected anomalies"
    hits = sum(
        any(
            ev.symbol == lab["symbol"] and lab["start"] <= ev.bar_start_ms <= lab["end"] + 300_000
            for ev in run.anomalies
        )
        for lab in live_labels
    )
    assert hits / len(live_labels) >= 0.5, f"found {hits} of {len(live_labels)} injected anomalies"
    ids = [ev.event_id for ev in run.anomalies]
    assert len(ids) == len(set(ids)), "an anomaly was emitted twice"
    assert all(ev.reasons for ev in run.anomalies), "an anomaly without reasons"


def _labels(settings: Settings) -> list[str]:
    import pandas as pd

    df = pd.read_csv(settings.data_dir / "labels.csv")
    return [
        json.dumps({"symbol": r.symbol, "start": int(r.start), "end": int(r.end)})
        for r in df.itertuples()
    ]


def _is_live(bar: MinuteBar, run: Run) -> bool:
    days = sorted({b.start_ms // 86_400_000 for b in run.bars})
    return bar.start_ms // 86_400_000 >= days[-LIVE_DAYS]


def test_the_api_serves_every_anomaly_with_its_explanation(run: Run) -> None:
    s = run.settings
    base = f"http://127.0.0.1:{s.api.port}"
    headers = {"X-API-Key": API_KEY}
    seen: list[dict] = []
    cursor = None
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        assert client.get("/v1/anomalies").status_code == 200
        assert httpx.get(f"{base}/v1/anomalies").status_code == 401
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/anomalies", params=params).json()
            seen += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        assert {a["event_id"] for a in seen} == {ev.event_id for ev in run.anomalies}
        one = run.anomalies[0]
        detail = client.get(f"/v1/anomalies/{one.event_id}").json()
        assert detail["reasons"] and detail["symbol"] == one.symbol
        feats = client.get("/v1/symbols/AAPL/features")
        assert feats.status_code == 200, feats.text
        assert client.get("/readyz").status_code == 200


def _prometheus(run: Run, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{run.settings.prometheus.port}/api/v1/query"
    body = httpx.get(url, params={"query": promql}, timeout=10).json()
    assert body["status"] == "success", (promql, body)
    return body["data"]["result"]


def test_every_hop_is_on_the_dashboard_and_in_pipeline_health(run: Run) -> None:
    # the dashboard's hop panel over the whole run (anomalies stop well before the test runs,
    # so a one-minute window may hold none of the last two hops)
    board = json.loads((REPO_ROOT / "grafana" / "dashboards" / "pipeline-health.json").read_text())
    exprs = {
        target["legendFormat"].split()[0]: target["expr"]
        for panel in board["panels"]
        for target in panel["targets"]
        if "tickwatch_hop_latency_seconds" in target["expr"]
    }
    assert set(exprs) == {"p50", "p99"}
    by_quantile = {}
    for quantile, expr in exprs.items():
        result = _prometheus(run, expr.replace("$__rate_interval", "1h"))
        values = {s["metric"]["hop"]: float(s["value"][1]) for s in result}
        assert set(values) == set(Hop) and all(math.isfinite(v) for v in values.values()), expr
        by_quantile[quantile] = values
    p50, p99 = by_quantile["p50"], by_quantile["p99"]
    assert all(0 <= p50[hop] <= p99[hop] for hop in Hop)
    # /v1/pipeline/health: the hops with records in its window, p50 <= p99
    url = f"http://127.0.0.1:{run.settings.api.port}/v1/pipeline/health"
    body = httpx.get(url, headers={"X-API-Key": API_KEY}, timeout=10).json()
    health50, health99 = body["hop_latency_p50_s"], body["hop_latency_p99_s"]
    assert set(health50) == set(health99) <= set(Hop)
    assert all(0 <= health50[hop] <= health99[hop] for hop in health99)
    # `tickwatch stack status`'s reading (the same query over the whole run): the dashboard's
    # numbers, every hop in the pipeline's order
    status = prometheus_hops(run.settings.prometheus.url, window="1h")
    assert list(status) == [str(hop) for hop in Hop]
    for hop, (s50, s99) in status.items():
        assert s50 == pytest.approx(p50[hop], rel=0.05) and s99 == pytest.approx(p99[hop], rel=0.05)


def test_every_dashboard_panel_returns_data(run: Run) -> None:
    port = run.settings.prometheus.port
    empty = []
    for path in sorted((REPO_ROOT / "grafana" / "dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        for panel in dash.get("panels", []):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if not expr:
                    continue
                q = expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
                q = q.replace("$symbol", ".*").replace("${symbol}", ".*")
                url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(q)}"
                body = json.load(urllib.request.urlopen(url, timeout=10))
                assert body["status"] == "success", (path.name, expr)
                if not body["data"]["result"]:
                    empty.append(f"{path.stem}: {panel.get('title')}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
