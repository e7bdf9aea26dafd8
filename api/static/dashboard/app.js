// The dashboard: login, one chart per symbol, the live anomaly feed, detail, health, models.
import { AuthError, getJson, readEvents, session } from "./api.js";
import { BarChart, timeFormats } from "./charts.js";
import { feedItem, renderHealth, renderModels, renderReasons, renderScores } from "./panels.js";

const BARS_SHOWN = 390; // one trading day of minute bars
const BARS_POLL_MS = 2000;
const HEALTH_POLL_MS = 5000;
const MODELS_POLL_MS = 60000;
const RECONNECT_MS = 2000;
const FEED_MAX = 200;
const DETAIL_MINUTES = 30; // bars either side of an event in its detail

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const state = { charts: new Map(), events: new Map(), formats: null, detail: null, run: null };

function setStatus(text, live = false) {
  $("live-status").textContent = text;
  $("live-status").classList.toggle("live", live);
}

function stop() {
  if (state.run) {
    state.run.abort.abort();
    state.run.timers.forEach(clearInterval);
  }
  state.run = null;
  state.charts.forEach((c) => c.remove());
  state.charts.clear();
  state.detail?.remove();
  state.detail = null;
  state.events.clear();
  $("charts").replaceChildren();
  $("feed").replaceChildren();
  $("detail").hidden = true;
}

function showLogin(message = "") {
  stop();
  setStatus("offline");
  $("dashboard-view").hidden = true;
  $("logout").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message;
  $("api-key").focus();
}

function refused() {
  session.clear();
  showLogin("That key was refused (401). Check TICKWATCH_API__API_KEY.");
}

// Run `task` now and every `ms`, never two at once; a 401 ends the session.
function every(ms, task) {
  let busy = false;
  const tick = async () => {
    if (busy || !state.run) return;
    busy = true;
    try {
      await task();
    } catch (err) {
      if (err instanceof AuthError) refused();
      else console.warn(err.message);
    } finally {
      busy = false;
    }
  };
  tick();
  state.run.timers.push(setInterval(tick, ms));
}

function addChart(symbol) {
  const box = document.createElement("div");
  box.className = "symbol";
  const title = document.createElement("h2");
  const price = Object.assign(document.createElement("span"), { className: "muted" });
  title.append(symbol, price);
  const chartEl = Object.assign(document.createElement("div"), { className: "chart" });
  chartEl.dataset.symbol = symbol;
  box.append(title, chartEl);
  $("charts").append(box);
  const chart = new BarChart(chartEl, state.formats);
  chart.price = price;
  state.charts.set(symbol, chart);
}

function showPrice(chart, bars) {
  const bar = bars[bars.length - 1];
  if (bar) chart.price.textContent = `${bar.close.toFixed(2)} at ${state.formats.clock(bar.start_ms)}`;
}

async function loadBars(symbol) {
  const page = await getJson(`/v1/symbols/${symbol}/bars`, { limit: BARS_SHOWN });
  const bars = page.items.reverse();
  const chart = state.charts.get(symbol);
  chart.setBars(bars);
  showPrice(chart, bars);
}

async function pollBars(symbol) {
  const chart = state.charts.get(symbol);
  if (chart.last === null) return loadBars(symbol);
  const page = await getJson(`/v1/symbols/${symbol}/bars`, { from: chart.last, limit: BARS_SHOWN });
  if (page.next_cursor) return loadBars(symbol); // a gap wider than a page: start over
  const bars = page.items.reverse();
  chart.addBars(bars);
  showPrice(chart, bars);
}

// One anomaly into the feed (ordered by bar time, newest first) and onto its symbol's chart.
function addEvent(event, live) {
  if (state.events.has(event.event_id)) return;
  state.events.set(event.event_id, event);
  state.charts.get(event.symbol)?.addAnomaly(event);
  const item = feedItem(event, state.formats, live);
  item.dataset.barMs = String(event.bar_start_ms);
  item.addEventListener("click", () => showDetail(event.event_id).catch(onDetailError));
  const feed = $("feed");
  const after = [...feed.children].find((li) => Number(li.dataset.barMs) < event.bar_start_ms);
  feed.insertBefore(item, after ?? null);
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
  if (live && state.charts.has(event.symbol)) pollBars(event.symbol).catch(() => {});
}

async function loadAnomalies() {
  const page = await getJson("/v1/anomalies", { limit: FEED_MAX });
  for (const event of page.items) addEvent(event, false);
}

async function follow(signal) {
  while (!signal.aborted) {
    try {
      await readEvents(
        "/v1/anomalies/stream",
        (name, data) => name === "anomaly" && addEvent(JSON.parse(data), true),
        signal,
        () => setStatus("live", true),
      );
    } catch (err) {
      if (err instanceof AuthError) return refused();
      if (signal.aborted) return;
      console.warn(`live stream: ${err.message}`);
    }
    setStatus("reconnecting");
    await sleep(RECONNECT_MS);
    await loadAnomalies().catch(() => {}); // what arrived while the stream was down
  }
}

function onDetailError(err) {
  if (err instanceof AuthError) refused();
  else $("detail-title").textContent = `could not load the event: ${err.message}`;
}

async function showDetail(eventId) {
  for (const li of $("feed").children) li.classList.toggle("selected", li.dataset.eventId === eventId);
  const event = await getJson(`/v1/anomalies/${eventId}`);
  const pad = DETAIL_MINUTES * 60_000;
  const page = await getJson(`/v1/symbols/${event.symbol}/bars`, {
    from: event.bar_start_ms - pad,
    to: event.bar_start_ms + pad,
    limit: 2 * DETAIL_MINUTES + 1,
  });
  const box = $("detail");
  box.hidden = false;
  box.dataset.eventId = eventId;
  $("detail-title").textContent =
    `${event.symbol} ${event.severity} at ${state.formats.full(event.bar_start_ms)} (close ${event.close.toFixed(2)})`;
  state.detail ??= new BarChart($("detail-chart"), state.formats);
  state.detail.anomalies = new Map([[eventId, event]]);
  state.detail.setBars(page.items.reverse());
  state.detail.chart.timeScale().fitContent();
  renderScores($("detail-scores"), event.scores);
  renderReasons($("detail-reasons"), event.reasons);
  $("detail-rules").textContent = event.rules.length
    ? `Rule baselines that also fired: ${event.rules.join(", ")}`
    : "No rule baseline fired.";
  state.charts.get(event.symbol)?.focus(event.bar_start_ms);
}

async function start() {
  let info;
  try {
    info = await getJson("/v1/symbols");
  } catch (err) {
    if (err instanceof AuthError) return refused();
    return showLogin(`The API did not answer: ${err.message}`);
  }
  stop();
  state.run = { abort: new AbortController(), timers: [] };
  state.formats = timeFormats(info.timezone);
  $("timezone").textContent = `times in ${info.timezone} (${state.formats.zoneName()}), the exchange's`;
  $("login-view").hidden = true;
  $("dashboard-view").hidden = false;
  $("logout").hidden = false;
  setStatus("connecting");
  info.symbols.forEach(addChart);
  follow(state.run.abort.signal);
  try {
    await Promise.all([...info.symbols.map(loadBars), loadAnomalies()]);
  } catch (err) {
    if (err instanceof AuthError) return refused();
    console.warn(err.message);
  }
  for (const symbol of info.symbols) every(BARS_POLL_MS, () => pollBars(symbol));
  every(HEALTH_POLL_MS, async () => {
    try {
      const health = await getJson("/v1/pipeline/health");
      renderHealth($("health"), health);
      $("health-window").textContent = `(last ${health.window}, from Prometheus)`;
      $("health-error").textContent = "";
    } catch (err) {
      if (err instanceof AuthError) throw err;
      $("health-error").textContent = `unavailable: ${err.message}`;
    }
  });
  every(MODELS_POLL_MS, async () => renderModels($("models"), (await getJson("/v1/models")).models, state.formats));
  document.body.dataset.ready = "1";
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  session.save($("api-key").value.trim());
  $("api-key").value = "";
  start();
});
$("logout").addEventListener("click", () => {
  session.clear();
  delete document.body.dataset.ready;
  showLogin();
});

window.tickwatch = state; // for the browser console and the browser tests
if (session.key()) start();
else showLogin();
