// Candlestick + volume charts (TradingView lightweight-charts, vendored) in the exchange's time.
const LC = window.LightweightCharts;
const UP = "#16a34a";
const DOWN = "#dc2626";
const SEVERITY_COLOR = { low: "#0891b2", medium: "#ca8a04", high: "#dc2626", critical: "#7e22ce" };

export function timeFormats(timeZone) {
  const make = (opts) => new Intl.DateTimeFormat("en-US", { timeZone, hourCycle: "h23", ...opts });
  const clock = make({ hour: "2-digit", minute: "2-digit" });
  const day = make({ month: "short", day: "numeric" });
  const full = make({ month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  const zone = make({ timeZoneName: "short" });
  return {
    clock: (ms) => clock.format(ms),
    full: (ms) => full.format(ms),
    day: (ms) => day.format(ms),
    zoneName: () => zone.formatToParts(Date.now()).find((p) => p.type === "timeZoneName").value,
  };
}

const toPoint = (bar) => ({
  time: bar.start_ms / 1000,
  open: bar.open,
  high: bar.high,
  low: bar.low,
  close: bar.close,
});
const toVolume = (bar) => ({
  time: bar.start_ms / 1000,
  value: bar.volume,
  color: bar.close >= bar.open ? "rgba(22,163,74,.45)" : "rgba(220,38,38,.45)",
});

// One symbol's chart; `el.dataset` mirrors what it draws (bars, marker ids) for tests and tooling.
export class BarChart {
  constructor(el, formats) {
    this.el = el;
    this.times = new Set();
    this.last = null;
    this.anomalies = new Map(); // event_id -> event
    this.chart = LC.createChart(el, {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#1d2330" },
      grid: { vertLines: { color: "#f1f5f9" }, horzLines: { color: "#f1f5f9" } },
      localization: { timeFormatter: (t) => formats.full(t * 1000) },
      timeScale: {
        timeVisible: true,
        secondsVisible: false,
        tickMarkFormatter: (t, type) => (type <= 2 ? formats.day(t * 1000) : formats.clock(t * 1000)),
      },
    });
    this.candles = this.chart.addSeries(LC.CandlestickSeries, {
      upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN,
    });
    this.candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.28 } });
    this.volume = this.chart.addSeries(LC.HistogramSeries, {
      priceFormat: { type: "volume" }, priceScaleId: "volume", lastValueVisible: false,
    });
    this.volume.priceScale().applyOptions({ scaleMargins: { top: 0.78, bottom: 0 } });
    this.markers = LC.createSeriesMarkers(this.candles, []);
    this.el.dataset.bars = "0";
    this.el.dataset.markerIds = "";
  }

  // Replace everything with `bars` (oldest first).
  setBars(bars) {
    this.candles.setData(bars.map(toPoint));
    this.volume.setData(bars.map(toVolume));
    this.times = new Set(bars.map((b) => b.start_ms));
    this.last = bars.length ? bars[bars.length - 1].start_ms : null;
    this.refresh();
  }

  // Append or replace bars at or after the newest one shown (oldest first).
  addBars(bars) {
    for (const bar of bars) {
      if (this.last !== null && bar.start_ms < this.last) continue;
      this.candles.update(toPoint(bar));
      this.volume.update(toVolume(bar));
      this.times.add(bar.start_ms);
      this.last = bar.start_ms;
    }
    this.refresh();
  }

  addAnomaly(event) {
    this.anomalies.set(event.event_id, event);
    this.refresh();
  }

  // Markers for the anomalies whose bar is on the chart (the others wait for their bar).
  refresh() {
    const shown = [...this.anomalies.values()]
      .filter((e) => this.times.has(e.bar_start_ms))
      .sort((a, b) => a.bar_start_ms - b.bar_start_ms);
    this.markers.setMarkers(
      shown.map((e) => ({
        time: e.bar_start_ms / 1000,
        position: "aboveBar",
        color: SEVERITY_COLOR[e.severity],
        shape: "arrowDown",
        text: e.severity,
        id: e.event_id,
      })),
    );
    this.el.dataset.bars = String(this.times.size);
    this.el.dataset.markerIds = shown.map((e) => e.event_id).join(" ");
  }

  focus(ms, minutes = 45) {
    this.chart.timeScale().setVisibleRange({
      from: (ms - minutes * 60_000) / 1000,
      to: (ms + minutes * 60_000) / 1000,
    });
  }

  remove() {
    this.chart.remove();
  }
}
