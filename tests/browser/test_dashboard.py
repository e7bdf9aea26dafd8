"""The dashboard in chromium against the live pipeline: login, charts, live anomalies and their
detail, pipeline health, and the offline API docs."""

from __future__ import annotations

import os
import shutil

import pytest
from browser_support import API_KEY, ARTEFACTS, Live, Recorded
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]
READY_MS = 60_000
LIVE_ANOMALY_MS = 300_000  # the live day lasts 6.5 min; its injected anomalies come all along
HEALTH_MS = 120_000


def sign_in(page: Page, live: Live, key: str) -> None:
    page.goto(f"{live.url}/dashboard")
    expect(page.locator("#login-view")).to_be_visible()
    page.fill("#api-key", key)
    page.click("#login button[type=submit]")


def test_a_wrong_key_gets_the_login_view_and_no_data(
    page: tuple[Page, Recorded], live: Live
) -> None:
    pg, rec = page
    statuses: dict[str, int] = {}
    pg.on("response", lambda r: statuses.__setitem__(r.url, r.status))
    sign_in(pg, live, "not-the-key")
    expect(pg.locator("#login-error")).to_contain_text("refused")
    expect(pg.locator("#login-view")).to_be_visible()
    expect(pg.locator("#dashboard-view")).to_be_hidden()
    assert pg.locator(".chart[data-symbol]").count() == 0
    v1 = {url: status for url, status in statuses.items() if "/v1/" in url}
    assert v1 and set(v1.values()) == {401}, v1
    assert pg.evaluate("sessionStorage.getItem('tickwatch.apiKey')") is None
    assert not any("not-the-key" in url for url in rec.urls), "the key went into a URL"


def test_live_charts_anomalies_detail_and_health(page: tuple[Page, Recorded], live: Live) -> None:
    pg, rec = page
    sign_in(pg, live, API_KEY)
    pg.wait_for_selector("body[data-ready='1']", timeout=READY_MS)
    expect(pg.locator("#login-view")).to_be_hidden()
    expect(pg.locator("#timezone")).to_contain_text("America/New_York")

    symbols = live.settings.symbols
    assert (
        pg.locator(".chart[data-symbol]").evaluate_all("els => els.map(e => e.dataset.symbol)")
        == symbols
    )
    pg.wait_for_function(
        "syms => syms.every(s => window.tickwatch.charts.get(s).candles.data().length > 0)",
        arg=symbols,
        timeout=READY_MS,
    )

    # An anomaly the pipeline produces while the page is open: it arrives by the SSE stream
    # (data-live), is listed in the feed and drawn as a marker on its symbol's chart.
    found = pg.wait_for_function(
        """() => {
          for (const li of document.querySelectorAll('#feed li[data-live="1"]')) {
            const chart = window.tickwatch.charts.get(li.dataset.symbol);
            const id = li.dataset.eventId;
            const drawn = chart && chart.markers.markers().some(m => m.id === id);
            if (drawn && chart.el.dataset.markerIds.split(' ').includes(id)) {
              return [id, li.dataset.symbol];
            }
          }
          return null;
        }""",
        timeout=LIVE_ANOMALY_MS,
    ).json_value()
    event_id, symbol = found
    event = live.get(f"/v1/anomalies/{event_id}")
    assert event["symbol"] == symbol

    pg.click(f"#feed li[data-event-id='{event_id}']")
    pg.wait_for_selector(f"#detail[data-event-id='{event_id}']", timeout=READY_MS)
    reasons = pg.locator("#detail-reasons .reason").evaluate_all(
        "els => els.map(e => [e.dataset.feature, e.dataset.model])"
    )
    assert sorted(reasons) == sorted([r["feature"], r["model"]] for r in event["reasons"])
    assert reasons, "the event has no reasons to show"
    scores = pg.locator("#detail-scores .hbar").evaluate_all(
        "els => els.map(e => [e.dataset.model, e.dataset.flagged])"
    )
    assert scores == [[s["model"], str(s["flagged"]).lower()] for s in event["scores"]]
    detail_bars = pg.evaluate("window.tickwatch.detail.candles.data().map(b => b.time * 1000)")
    assert event["bar_start_ms"] in detail_bars

    pg.wait_for_function(
        "() => parseFloat(document.querySelector('[data-metric=bars_per_s]')?.textContent) > 0",
        timeout=HEALTH_MS,
    )
    expect(pg.locator("#models .model")).to_have_count(2)
    expect(pg.locator("#live-status")).to_have_text("live")

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / "dashboard.png"
    pg.screenshot(path=str(shot), full_page=True)
    if os.environ.get("TICKWATCH_DASHBOARD_PNG"):  # `make screenshot` refreshes the README's
        shutil.copyfile(shot, os.environ["TICKWATCH_DASHBOARD_PNG"])
    assert not rec.page_errors, rec.page_errors
    assert not rec.console_errors, rec.console_errors
    assert not any(API_KEY in url for url in rec.urls), "the key went into a URL"


def test_docs_and_redoc_render_from_vendored_assets(
    page: tuple[Page, Recorded], live: Live
) -> None:
    pg, rec = page
    pg.goto(f"{live.url}/docs")
    pg.wait_for_selector(".swagger-ui .opblock", timeout=READY_MS)
    assert pg.locator(".swagger-ui .opblock").count() >= 10
    pg.goto(f"{live.url}/redoc")
    expect(pg.get_by_text("List anomalies, newest first").first).to_be_attached(timeout=READY_MS)
    assert not rec.page_errors, rec.page_errors
    assert not rec.console_errors, rec.console_errors
