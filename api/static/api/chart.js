// The chart page, on TradingView's lightweight-charts (vendored from npm,
// Apache-2.0): candles on a true time axis with crosshair, zoom and pan; volume
// (or the quote count) beneath; the composite sentiment in a pane of its own.
// Data comes from the JSON API. While showing a recent range it follows the
// pushed updates (/api/stream/, Server-Sent Events): 1-second and quote bars are
// applied as they arrive (new ones, and ones a late print revised); for resampled
// and 100-trade bars an arriving bar asks the API for the last few minutes again
// (at most once a second). Should the stream be refused (503: too many streams)
// or unavailable, the page falls back to asking every 2 s.
// Time the collectors did not observe (the API's coverage gaps) is shaded grey;
// quiet time (observed, no trade) stays white. For time bars the axis holds every
// bucket of the window, so both take their true width.
(function () {
  "use strict";

  const LWC = window.LightweightCharts;
  const REFRESH_MS = 2000;
  const REVISION_SECONDS = 330; // a late print may revise a bar this long after
  const RANGES = { "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400 };
  const INTERVALS = { second: "1s", "second-1m": "1m", "second-5m": "5m" };
  const host = document.getElementById("chart");
  const statusEl = document.getElementById("status");
  const form = document.getElementById("controls");
  let timer = null;
  let events = null; // the EventSource while live
  let refetch = null; // a pending refetch of the recent window
  let pending = null; // events that arrived while the window was being read
  let loaded = null; // what the chart shows: {key, bars: Map(time -> item)}

  const chart = LWC.createChart(host, {
    autoSize: true,
    layout: { background: { color: "#ffffff" }, textColor: "#333", panes: { separatorColor: "#ddd" } },
    grid: { vertLines: { color: "#f0f0f0" }, horzLines: { color: "#f0f0f0" } },
    timeScale: { timeVisible: true, secondsVisible: true, rightOffset: 2 },
    crosshair: { mode: LWC.CrosshairMode.Normal },
    localization: { timeFormatter: (t) => new Date(t * 1000).toISOString().slice(0, 19).replace("T", " ") },
  });
  const candles = chart.addSeries(LWC.CandlestickSeries, {
    upColor: "#1a9850", downColor: "#d73027", borderVisible: false,
    wickUpColor: "#1a9850", wickDownColor: "#d73027",
  });
  const volume = chart.addSeries(LWC.HistogramSeries, { priceFormat: { type: "volume" }, priceScaleId: "volume" });
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  const sentiment = chart.addSeries(LWC.LineSeries, { color: "#5e3c99", lineWidth: 2 }, 1);
  // Unobserved time: a full-height band behind the candles.
  const shade = chart.addSeries(LWC.HistogramSeries, {
    priceScaleId: "unobserved", color: "rgba(110,110,110,0.28)", priceLineVisible: false, lastValueVisible: false,
  });
  shade.priceScale().applyOptions({ scaleMargins: { top: 0, bottom: 0 }, visible: false });
  const STEPS = { second: 1, "second-1m": 60, "second-5m": 300, quote: 1 }; // tick bars: no buckets
  const MAX_FILL = 20000; // buckets the axis is filled with, at most
  const COVERAGE_MS = 15000; // how often the gaps are read again while live
  let coverageTimer = null;
  chart.panes()[1].setHeight(120);

  // What the page shows, for people (the status line) and for tests.
  window.chartState = { candles: 0, volumes: 0, sentiment: 0, last: null, updates: 0, transport: null, events: 0, unobserved: 0 };

  function utcInput(value) {
    return value ? new Date(value + "Z") : null; // datetime-local is read as UTC
  }

  function window_() {
    const range = document.getElementById("range").value;
    if (range === "custom") {
      return { start: utcInput(document.getElementById("start").value), end: utcInput(document.getElementById("end").value), live: false };
    }
    const end = new Date();
    return { start: new Date(end - RANGES[range] * 1000), end, live: true };
  }

  function source() {
    // `pushed`: the stream's kind whose events are this chart's bars as they are.
    const kind = document.getElementById("kind").value;
    if (kind === "tick") return { url: "/api/tick-candles/", params: {}, pushed: null };
    if (kind === "quote") return { url: "/api/quote-candles/", params: {}, pushed: "quote" };
    const interval = INTERVALS[kind] || "1s";
    return { url: "/api/second-candles/", params: { interval }, pushed: interval === "1s" ? "second" : null };
  }

  function seconds(iso) {
    return Math.floor(Date.parse(iso) / 1000);
  }

  function render(bars, quotes) {
    const items = [...bars.values()].sort((a, b) => a.time - b.time);
    // A bar whose prints set no price (trade-condition rules) is a gap in the
    // candles and keeps its volume.
    const candleData = items.map((b) => (b.open === null || b.high === null || b.low === null || b.close === null)
      ? { time: b.time }
      : { time: b.time, open: b.open, high: b.high, low: b.low, close: b.close });
    const volumeData = items.map((b) => ({
      time: b.time,
      value: quotes ? b.quote_count : b.volume,
      color: b.close !== null && b.open !== null && b.close < b.open ? "rgba(215,48,39,0.45)" : "rgba(26,152,80,0.45)",
    }));
    const sentimentData = items.map((b) => (b.composite_score === null || b.composite_score === undefined)
      ? { time: b.time } : { time: b.time, value: b.composite_score });
    candles.setData(candleData);
    volume.setData(volumeData);
    sentiment.setData(sentimentData);
    const shadeData = shading(items);
    shade.setData(shadeData);
    const state = window.chartState;
    state.unobserved = shadeData.filter((p) => p.value !== undefined).length;
    state.candles = candleData.filter((c) => c.open !== undefined).length;
    state.volumes = volumeData.length;
    state.sentiment = sentimentData.filter((s) => s.value !== undefined).length;
    state.last = items.length ? items[items.length - 1].time : null;
    state.updates += 1;
  }

  function shading(items) {
    // Every bucket of the shown window: shaded where a gap touches it, blank
    // (whitespace) elsewhere; over MAX_FILL buckets, the gaps' buckets only.
    const step = STEPS[document.getElementById("kind").value];
    if (!step || !loaded || !loaded.gaps) return [];
    const win = window_();
    let from = Math.floor(win.start / 1000 / step) * step;
    if (loaded.truncated && items.length) from = Math.max(from, items[0].time);
    const to = Math.ceil(win.end / 1000 / step) * step;
    const gaps = loaded.gaps.filter(([s, e]) => e > from && s < to);
    const unobserved = (t) => gaps.some(([s, e]) => s < t + step && e > t);
    const out = [];
    if ((to - from) / step <= MAX_FILL) {
      for (let t = from; t < to; t += step) out.push(unobserved(t) ? { time: t, value: 1 } : { time: t });
      return out;
    }
    const seen = new Set();
    for (const [s, e] of gaps) {
      for (let t = Math.floor(Math.max(s, from) / step) * step; t < Math.min(e, to) && out.length < MAX_FILL; t += step) {
        if (!seen.has(t)) { seen.add(t); out.push({ time: t, value: 1 }); }
      }
    }
    return out.sort((a, b) => a.time - b.time);
  }

  function gapsOf(list) {
    return list.map((g) => [Date.parse(g.start) / 1000, Date.parse(g.end) / 1000]);
  }

  async function refreshGaps() {
    // The gaps of the window as the coverage records now say (a disconnect
    // while the page is open shows up within COVERAGE_MS).
    const kind = document.getElementById("kind").value;
    if (!loaded || !STEPS[kind] || kind === "quote") return; // (quotes: the bars' own gaps)
    const win = window_();
    const params = new URLSearchParams({
      symbol: document.getElementById("symbol").value, start_time: win.start.toISOString(), end_time: win.end.toISOString(),
    });
    try {
      const response = await fetch("/api/coverage/?" + params, { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const body = await response.json();
      loaded.gaps = gapsOf(body.gaps);
      redraw();
    } catch (err) {
      // the next look will do
    }
  }

  async function fetchBars(src, symbol, start, end, last) {
    const params = new URLSearchParams({ symbol, start_time: start.toISOString(), end_time: end.toISOString(), ...src.params });
    if (last) params.set("last", String(last));
    const response = await fetch(src.url + "?" + params, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || response.statusText);
    return body;
  }

  async function load() {
    const symbol = document.getElementById("symbol").value;
    const kind = document.getElementById("kind").value;
    const win = window_();
    if (!symbol) { statusEl.textContent = "No symbols yet: start the collector."; return; }
    if (!win.start || !win.end) { statusEl.textContent = "Pick a start and an end."; return; }
    const src = source();
    pending = [];
    try {
      const body = await fetchBars(src, symbol, win.start, win.end, 5000);
      const bars = new Map();
      for (const item of body.data) bars.set(seconds(item.timestamp), { ...item, time: seconds(item.timestamp) });
      loaded = {
        key: symbol + "|" + kind, bars, quotes: kind === "quote",
        gaps: gapsOf(body.metadata.gaps || []), truncated: body.metadata.truncated,
      };
      render(bars, loaded.quotes);
      chart.timeScale().fitContent();
      const early = pending || [];
      pending = null;
      for (const [kind, message] of early) onEvent(kind, message);
      const meta = body.metadata;
      statusEl.textContent = `${body.ticker}: ${meta.count} bars, ${meta.start_time} → ${meta.end_time}` +
        (meta.truncated ? " (newest " + meta.limit + " shown)" : "") +
        (win.live && document.getElementById("live").checked ? " · live" : "");
    } catch (err) {
      pending = null;
      statusEl.textContent = "Could not load data: " + err.message;
    }
  }

  function prune() {
    const horizon = seconds(window_().start.toISOString());
    for (const time of [...loaded.bars.keys()]) if (time < horizon) loaded.bars.delete(time);
  }

  let drawing = false;
  function redraw() {
    // Many events in one frame draw once.
    if (drawing) return;
    drawing = true;
    requestAnimationFrame(() => { drawing = false; prune(); render(loaded.bars, loaded.quotes); });
  }

  async function poll() {
    // New bars and recent revisions only: the last few minutes.
    if (!loaded) return;
    const symbol = document.getElementById("symbol").value;
    const end = new Date();
    const start = new Date(end - REVISION_SECONDS * 1000);
    try {
      const body = await fetchBars(source(), symbol, start, end, 5000);
      for (const item of body.data) {
        const time = seconds(item.timestamp);
        loaded.bars.set(time, { ...item, time });
      }
      prune();
      render(loaded.bars, loaded.quotes);
    } catch (err) {
      statusEl.textContent = "Could not refresh: " + err.message;
    }
  }

  function onEvent(kind, message) {
    if (pending) { pending.push([kind, message]); return; } // applied once loaded
    window.chartState.events += 1;
    if (!loaded) return;
    const src = source();
    if (src.pushed === kind) {
      const item = JSON.parse(message.data);
      const time = seconds(item.timestamp);
      loaded.bars.set(time, { ...item, time });
      redraw();
    } else if (!refetch) {
      refetch = setTimeout(() => { refetch = null; poll(); }, 1000);
    }
  }

  function follow() {
    // The stream of the shown symbol; the browser resumes it after a drop
    // (Last-Event-ID). Refused or failing for good: ask every 2 s instead.
    const symbol = document.getElementById("symbol").value;
    const kinds = source().pushed === "quote" ? "quote" : "second";
    events = new EventSource("/api/stream/?" + new URLSearchParams({ symbols: symbol, kinds }));
    window.chartState.transport = "sse";
    events.addEventListener("second", (m) => onEvent("second", m));
    events.addEventListener("quote", (m) => onEvent("quote", m));
    events.onerror = () => {
      if (events && events.readyState === EventSource.CLOSED) {
        events = null;
        window.chartState.transport = "poll";
        timer = setInterval(poll, REFRESH_MS);
      }
    };
  }

  function schedule() {
    if (timer) clearInterval(timer);
    if (coverageTimer) clearInterval(coverageTimer);
    if (events) events.close();
    if (refetch) clearTimeout(refetch);
    timer = events = refetch = coverageTimer = null;
    window.chartState.transport = null;
    if (!window_().live || !document.getElementById("live").checked || !document.getElementById("symbol").value) return;
    coverageTimer = setInterval(refreshGaps, COVERAGE_MS);
    if (window.EventSource) follow();
    else { window.chartState.transport = "poll"; timer = setInterval(poll, REFRESH_MS); }
  }

  function toggleCustom() {
    const custom = document.getElementById("range").value === "custom";
    document.querySelectorAll("label.custom").forEach((node) => { node.style.display = custom ? "" : "none"; });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams(new FormData(form));
    params.set("live", document.getElementById("live").checked ? "1" : "0");
    history.replaceState(null, "", "?" + params);
    load(); schedule();
  });
  form.addEventListener("change", () => { toggleCustom(); form.requestSubmit(); });
  toggleCustom();
  load();
  schedule();
})();
