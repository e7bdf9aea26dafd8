// The side panels: anomaly feed, event detail, pipeline health, model card (plain DOM).
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};
const fixed = (x, digits = 2) => (x === null || x === undefined ? "n/a" : x.toFixed(digits));

export function feedItem(event, formats, live) {
  const li = el(
    "li",
    { title: `${event.symbol} ${event.severity} at ${formats.full(event.bar_start_ms)}` },
    el("span", { textContent: formats.full(event.bar_start_ms) }),
    el("span", { className: `sev ${event.severity}`, textContent: event.severity }),
    el("strong", { textContent: event.symbol }),
  );
  li.dataset.eventId = event.event_id;
  li.dataset.symbol = event.symbol;
  li.dataset.live = live ? "1" : "0";
  if (live) li.classList.add("new");
  return li;
}

// One labelled horizontal bar: width is |value| / scale, an optional threshold tick.
function hbar(label, value, scale, { threshold, flagged, text } = {}) {
  const track = el("div", { className: "track" });
  const fill = el("div", { className: "fill" });
  fill.style.width = `${Math.min(100, (100 * Math.abs(value)) / scale)}%`;
  if (flagged) fill.classList.add("flagged");
  if (value < 0) fill.classList.add("negative");
  track.append(fill);
  if (threshold !== undefined) {
    const tick = el("div", { className: "threshold", title: `threshold ${fixed(threshold, 3)}` });
    tick.style.left = `${Math.min(100, (100 * threshold) / scale)}%`;
    track.append(tick);
  }
  return el("div", { className: "hbar" }, el("span", { textContent: label }), track,
    el("span", { textContent: text ?? fixed(value, 3) }));
}

export function renderScores(container, scores) {
  container.replaceChildren(
    ...scores.map((s) => {
      const row = hbar(`${s.model} v${s.version}`, s.score, Math.max(s.score, s.threshold) * 1.25, {
        threshold: s.threshold,
        flagged: s.flagged,
        text: `${fixed(s.score, 3)} / ${fixed(s.threshold, 3)}`,
      });
      row.dataset.model = s.model;
      row.dataset.flagged = String(s.flagged);
      return row;
    }),
  );
}

const REASON_KIND = { iforest: "SHAP value", lstm_ae: "reconstruction error" };

// Each model's reasons as bars scaled to that model's largest (SHAP and reconstruction error
// are in different units, so the two models are never drawn on one scale).
export function renderReasons(container, reasons) {
  const models = [...new Set(reasons.map((r) => r.model))];
  const groups = models.map((model) => {
    const own = reasons.filter((r) => r.model === model);
    const scale = Math.max(...own.map((r) => Math.abs(r.contribution)), 1e-12);
    const label = el("div", { className: "muted", textContent: `${model}: ${REASON_KIND[model] ?? "contribution"}` });
    const rows = own.map((r) => {
      const row = hbar(r.feature, r.contribution, scale, { text: fixed(r.contribution, 3) });
      row.title = `${r.feature} = ${fixed(r.value, 3)}, contribution ${fixed(r.contribution, 4)}`;
      row.classList.add("reason");
      row.dataset.feature = r.feature;
      row.dataset.model = r.model;
      return row;
    });
    return el("div", { className: "reasons" }, label, ...rows);
  });
  container.replaceChildren(...groups);
  if (!reasons.length) container.replaceChildren(el("p", { className: "muted", textContent: "none" }));
}

const HEALTH_ROWS = [
  ["bars_per_s", "bars/s", (x) => fixed(x, 1)],
  ["anomalies_per_min", "anomalies/min", (x) => fixed(x, 2)],
  ["dead_letters_per_min", "dead letters/min", (x) => fixed(x, 2)],
];

export function renderHealth(container, health) {
  const rows = [];
  const add = (key, label, text) => {
    const dd = el("dd", { textContent: text });
    dd.dataset.metric = key;
    rows.push(el("dt", { textContent: label }), dd);
  };
  for (const [key, label, format] of HEALTH_ROWS) add(key, label, format(health[key]));
  for (const [stage, lag] of Object.entries(health.consumer_lag)) {
    add(`lag.${stage}`, `lag ${stage}`, `${Math.round(lag)} msgs`);
  }
  for (const [stage, s] of Object.entries(health.latency_p95_s)) {
    add(`p95.${stage}`, `p95 ${stage}`, `${fixed(s * 1000, 0)} ms`);
  }
  const up = Object.entries(health.services_up);
  const down = up.filter(([, ok]) => !ok).map(([job]) => job.replace("tickwatch-", ""));
  add("services", "services", down.length ? `down: ${down.join(", ")}` : `${up.length} up`);
  container.replaceChildren(...rows);
}

export function renderModels(container, models, formats) {
  container.replaceChildren(
    ...models.map((m) => {
      // validation metrics first (what promotion compared), then the rest, at most 8
      const rank = ([name]) => (name.startsWith("val_") ? 0 : 1);
      const metrics = Object.entries(m.metrics)
        .sort((a, b) => rank(a) - rank(b) || a[0].localeCompare(b[0]))
        .slice(0, 8);
      const table = el("table", {}, ...metrics.map(([k, v]) =>
        el("tr", {}, el("td", { textContent: k }), el("td", { textContent: fixed(v, 4) }))));
      const since = m.created_at_ms ? formats.full(m.created_at_ms) : "n/a";
      const head = m.version
        ? `${m.name} v${m.version} (${m.alias}) since ${since}`
        : `${m.name}: no version holds ${m.alias}`;
      const div = el("div", { className: "model" }, el("strong", { textContent: head }), table);
      div.dataset.model = m.name;
      return div;
    }),
  );
}
