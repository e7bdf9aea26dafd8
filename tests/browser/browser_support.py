"""The dashboard in a real browser: Debian's chromium driven by Playwright, against the whole
pipeline on the replay feed (built as `make demo` builds it, as tests/e2e does).

Chromium is installed with apt-get by `ensure_chromium` when missing (never `playwright install`).
The replay streams its live day at `LIVE_SPEED` while the tests run, so anomalies, bars and
throughput arrive while the page is open.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright
from pydantic import SecretStr

from ops import stack
from ops.demo import Pipeline, _run_step, champion_exists
from ops.stack.browser import LAUNCH_ARGS, ensure_chromium
from ops.stack.processes import port_open
from ops.stack.redis_claim import claim_redis_db, release_redis_db
from tickwatch.kafka import delete_prefixed_topics, ensure_topics
from tickwatch.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from api_support import free_port  # noqa: E402

HISTORY_DAYS, LIVE_DAYS = 6, 1
LIVE_SPEED = 60.0  # simulated minutes per real minute: the live day lasts 6.5 minutes
API_KEY = "browser-key-3b9d"
ARTEFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"


@dataclass
class Live:
    """The running pipeline: its settings and the API's base URL."""

    settings: Settings
    url: str

    def get(self, path: str, **params: object) -> dict:
        resp = httpx.get(
            f"{self.url}{path}", params=params, headers={"X-API-Key": API_KEY}, timeout=10
        )
        resp.raise_for_status()
        return resp.json()


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Stack up, a champion trained on the replay's history, every service running."""
    base = Settings(_env_file=None)
    started = stack.up(base)
    tmp = tmp_path_factory.mktemp("browser")
    prefix = f"br{uuid.uuid4().hex[:8]}-"
    db = claim_redis_db(base, prefix)
    # the default port when free, so Prometheus (which scrapes it) sees this API as up
    api_port = base.api.port if not port_open("127.0.0.1", base.api.port) else free_port()
    s = base.model_copy(
        update={
            "topic_prefix": prefix,
            "run_dir": tmp / "run",
            "redis": base.redis.model_copy(update={"db": db}),
            "mlflow": base.mlflow.model_copy(update={"tracking_uri": f"sqlite:///{tmp}/mlflow.db"}),
            "replay": base.replay.model_copy(
                update={
                    "port": free_port(),
                    "speed": LIVE_SPEED,
                    "days": LIVE_DAYS,
                    "history_days": HISTORY_DAYS,
                }
            ),
            "model": base.model.model_copy(update={"epochs": 3}),
            "api": base.api.model_copy(update={"api_key": SecretStr(API_KEY), "port": api_port}),
        }
    )
    r = redis.Redis(s.redis.host, s.redis.port, db=db)
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
        yield Live(s, f"http://127.0.0.1:{s.api.port}")
    finally:
        pipeline.stop()
        delete_prefixed_topics(s)
        r.flushdb()
        release_redis_db(s, db)
        if started:
            stack.down(base, only=started)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless chromium (the system's, installed by the project's set-up when missing)."""
    executable = ensure_chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(executable), args=list(LAUNCH_ARGS))
        yield b
        b.close()


@dataclass
class Recorded:
    """What a page did: console errors, uncaught exceptions, requests to other origins."""

    origin: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def on_console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.console_errors.append(f"{msg.text} ({msg.location.get('url')})")

    def on_request(self, request: Request) -> None:
        url = request.url
        self.urls.append(url)
        ours = (f"{self.origin}/", f"blob:{self.origin}/", "data:")
        if not url.startswith(ours):
            self.foreign.append(url)


@pytest.fixture
def page(browser: Browser, live: Live) -> Iterator[tuple[Page, Recorded]]:
    """A fresh browser context and page on the API's origin; fails on any foreign request."""
    origin = live.url
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    pg = context.new_page()
    rec = Recorded(origin)
    pg.on("console", rec.on_console)
    pg.on("pageerror", lambda exc: rec.page_errors.append(str(exc)))
    pg.on("request", rec.on_request)
    try:
        yield pg, rec
    finally:
        context.close()
    assert not rec.foreign, f"requests outside {origin}: {rec.foreign}"
