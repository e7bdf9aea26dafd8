"""Query API latency: cached `GET /v1/anomalies` at a fixed request rate, beside bare Redis reads.

The stage is the real API (`tickwatch api`: uvicorn, key check, metrics middleware, one-round-trip
cache lookup) in its own process, on a private redis-server seeded through the sink's store. Load
is open-loop: requests start on a fixed schedule (RATE per second for DURATION_S seconds, each on
its own task), and latency is counted from the scheduled start, so a slow server cannot hide its
queueing. The baseline is the same schedule of bare redis-py asyncio GETs of the very page bytes
the API serves, from the same client process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
import redis
from redis.asyncio import Redis as AsyncRedis

from api.anomaly_store import AnomalyStore
from api.cache import PAGE
from benchmarks.common import tail, tail_cell, tail_text
from ops.results import Verdict, met, table, write_section
from tickwatch.schemas import AnomalyEvent, ModelScore, Reason, make_event_id

RATE = 500
DURATION_S = 10.0
WARMUP_S = 1.0
SYMBOLS = ["AAPL", "GOOGL", "MSFT", "TSLA", "VOO"]
EVENTS_PER_SYMBOL = 2000
PAGE_SIZE = 50
KEY = "bench-key"
GOAL_P99_MS = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, redis.RedisError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start in {timeout_s}s")


def feast_opened(url: str) -> bool:
    """True once /readyz shows Feast answering (the API opens it in the background at start)."""
    return httpx.get(f"{url}/readyz", timeout=30).json()["checks"]["feast"]["ok"]


def seed(port: int) -> int:
    """Store EVENTS_PER_SYMBOL anomalies per symbol through the sink's write path."""
    store = AnomalyStore(redis.Redis("127.0.0.1", port), retention_days=365)
    base = 1_767_225_600_000
    for sym in SYMBOLS:
        events = [
            AnomalyEvent(
                event_id=make_event_id(sym, base + i * 60_000, "bench"),
                symbol=sym,
                bar_start_ms=base + i * 60_000,
                detected_at_ms=base + i * 60_000 + 61_000,
                severity=("low", "medium", "high", "critical")[i % 4],
                close=100 + i % 7,
                scores=[
                    ModelScore(model="iforest", version="1", score=0.8, threshold=0.6, flagged=True)
                ],
                reasons=[Reason(feature="return_z", value=8.1, contribution=0.3, model="iforest")],
            )
            for i in range(EVENTS_PER_SYMBOL)
        ]
        for i in range(0, len(events), 500):
            store.write_batch(events[i : i + 500])
    return len(SYMBOLS) * EVENTS_PER_SYMBOL


async def open_loop(call: Callable[[int], Awaitable[None]]) -> tuple[list[float], int]:
    """Start `call(i)` at RATE per second for DURATION_S; latencies (ms) from scheduled start."""
    latencies: list[float] = []
    errors = 0
    total = int(RATE * DURATION_S)
    t0 = time.perf_counter() + 0.05

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        try:
            await call(i)
            latencies.append((time.perf_counter() - scheduled) * 1000)
        except Exception:  # counted, reported beside the latencies
            errors += 1

    tasks = []
    for i in range(total):
        scheduled = t0 + i / RATE
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    return latencies, errors


def paths() -> list[str]:
    return [f"/v1/anomalies?symbol={s}&limit={PAGE_SIZE}" for s in SYMBOLS] + [
        f"/v1/anomalies?limit={PAGE_SIZE}"
    ]


async def measure(api_url: str, redis_port: int) -> dict[str, tuple[list[float], int]]:
    """Warm the cache, then run the API and the bare-Redis schedules one after the other."""
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(
        api_url, headers={"X-API-Key": KEY}, connector=connector
    ) as client:
        urls = paths()
        for url in urls:  # fills the cache; asserts the pages are real
            async with client.get(url) as resp:
                assert resp.status == 200 and len((await resp.json())["items"]) == PAGE_SIZE

        async def api_call(i: int) -> None:
            async with client.get(urls[i % len(urls)]) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(resp.status)

        warm_end = time.perf_counter() + WARMUP_S
        while time.perf_counter() < warm_end:
            await asyncio.gather(*(api_call(i) for i in range(20)))
        api = await open_loop(api_call)

    r = AsyncRedis(host="127.0.0.1", port=redis_port, max_connections=200)
    keys = [k async for k in r.scan_iter(match=f"{PAGE}*", count=1000)]
    assert len(keys) >= len(paths()), keys

    async def redis_call(i: int) -> None:
        if not await r.get(keys[i % len(keys)]):
            raise RuntimeError("missing page")

    await asyncio.gather(*(redis_call(i) for i in range(200)))
    bare = await open_loop(redis_call)
    await r.aclose()
    return {"api": api, "redis": bare}


def main() -> None:
    """Run the benchmark and write the `api` section of RESULTS.md."""
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server is required")
    workdir = tempfile.mkdtemp(prefix="tickwatch-bench-api-")
    redis_port, api_port = free_port(), free_port()
    redis_proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
    )
    env = {
        **os.environ,
        "TICKWATCH_REDIS__PORT": str(redis_port),
        "TICKWATCH_REDIS__DB": "0",
        "TICKWATCH_API__API_KEY": KEY,
        # one key sends the whole load: its rate limit (still checked on every request) must
        # never bind, not even in the unpaced warm-up, which on a quiet machine runs past 1,000/s
        "TICKWATCH_API__RATE_LIMIT_PER_S": str(RATE * 100),
        "TICKWATCH_API__RATE_LIMIT_BURST": str(RATE * 100),
        "TICKWATCH_API__CACHE_TTL_S": "600",
        "TICKWATCH_API__MAX_PAGE_SIZE": "500",
        "TICKWATCH_RUN_DIR": workdir,
    }
    api_proc = None
    try:
        wait_for(lambda: bool(redis.Redis("127.0.0.1", redis_port).ping()), 20, "redis-server")
        stored = seed(redis_port)
        api_proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from tickwatch.cli import app; app()",
                "api",
                "--port",
                str(api_port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{api_port}"
        wait_for(lambda: httpx.get(f"{url}/healthz").status_code == 200, 60, "tickwatch api")
        wait_for(lambda: feast_opened(url), 60, "the API's Feast store")  # startup work done
        results = asyncio.run(measure(url, redis_port))
    finally:
        for proc in (api_proc, redis_proc):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=20)
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, stored)


def _ms(x: float) -> str:
    return f"{x:,.2f}"


def _ms_unit(x: float) -> str:
    return f"{x:,.2f} ms"


def report(results: dict[str, tuple[list[float], int]], stored: int) -> None:
    rows = []
    for name, label in (
        ("api", f"API cached GET /v1/anomalies (limit {PAGE_SIZE})"),
        ("redis", "bare Redis GET of the same page bytes"),
    ):
        lat, errors = results[name]
        rows.append(
            [
                label,
                len(lat) + errors,
                errors,
                tail_cell(lat, 50, _ms),
                tail_cell(lat, 99, _ms),
                tail_cell(lat, 99.9, _ms),
                _ms(max(lat)) if lat else "-",
            ]
        )
    (api_lat, api_errors), (redis_lat, _) = results["api"], results["redis"]
    api_p99, api_stat = tail(api_lat)
    redis_p99, _ = tail(redis_lat)
    goal = f"{GOAL_P99_MS:g} ms p99 at {RATE} req/s, no failed request"
    verdict = met(api_p99 < GOAL_P99_MS and api_errors == 0 and api_stat == "p99")
    body = "\n\n".join(
        [
            f"Open-loop load: {RATE} requests/s for {DURATION_S:g} s each (latency from the "
            f"scheduled start), {stored:,} anomalies stored over {len(SYMBOLS)} symbols, "
            f"{len(paths())} hot queries (per symbol and all symbols) served from the Redis "
            "cache. Server: `tickwatch api` (uvicorn, one process) on loopback; client: aiohttp "
            "in another process; private redis-server. Failed requests are counted as errors "
            "and left out of the latencies.",
            table(["path", "requests", "errors", "p50 ms", "p99 ms", "p99.9 ms", "max ms"], rows),
            f"API / bare Redis, {api_stat}: {api_p99 / redis_p99:.1f}x. Goal {goal}: {verdict} "
            f"({tail_text(api_lat, _ms_unit)}, {api_errors} failed of "
            f"{len(api_lat) + api_errors}).",
        ]
    )
    summary = Verdict(
        f"API, cached `GET /v1/anomalies` at {RATE} req/s",
        f"{tail_text(api_lat, _ms_unit)}, {api_errors} of {len(api_lat) + api_errors} failed",
        f"bare Redis GET of the same bytes: {tail_text(redis_lat, _ms_unit)}",
        goal,
        verdict,
    )
    write_section("api", "Query API: cached GET /v1/anomalies", body, [summary])


if __name__ == "__main__":
    main()
