// The chart page: candles, volume beneath, composite sentiment as a line.
// Plain SVG, no library, so it works offline. Data comes from the JSON API.
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const REFRESH_MS = 2000;
  const RANGES = { "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400 };
  const svg = document.getElementById("chart");
  const statusEl = document.getElementById("status");
  const form = document.getElementById("controls");
  let timer = null;

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, content, cls, anchor) {
    const node = el("text", { x, y, class: cls || "axis", "text-anchor": anchor || "start" }, parent);
    node.textContent = content;
    return node;
  }

  function utcInput(value) {
    // datetime-local inputs carry no zone: they are read as UTC, like the API.
    return value ? new Date(value + "Z") : null;
  }

  function window_() {
    const range = document.getElementById("range").value;
    if (range === "custom") {
      const start = utcInput(document.getElementById("start").value);
      const end = utcInput(document.getElementById("end").value);
      return { start, end, live: false };
    }
    const end = new Date();
    return { start: new Date(end - RANGES[range] * 1000), end, live: true };
  }

  function fmtTime(date) {
    return date.toISOString().slice(11, 19);
  }

  function fmtPrice(value) {
    const digits = Math.abs(value) >= 1000 ? 1 : Math.abs(value) >= 1 ? 2 : 6;
    return value.toFixed(digits);
  }

  function draw(rows, kind) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const width = svg.clientWidth || 1000;
    const height = svg.clientHeight || 620;
    const left = 10, right = 70, top = 24;
    const priceH = height * 0.56, volH = height * 0.16, sentH = height * 0.16, gap = 10;
    const volTop = top + priceH + gap, sentTop = volTop + volH + gap;
    const plotW = width - left - right;
    if (!rows.length) {
      text(svg, width / 2, height / 2, "No bars in this range", "panel-title", "middle");
      return;
    }
    const n = rows.length;
    const step = plotW / n;
    const bodyW = Math.max(1, Math.min(14, step * 0.7));
    // A bar whose prints set no price (by the trade-condition rules) has null
    // prices: it shows its volume and no candle.
    const priced = rows.filter((r) => r.high !== null && r.low !== null);
    const lows = priced.map((r) => r.low), highs = priced.map((r) => r.high);
    let pMin = lows.length ? Math.min(...lows) : 0, pMax = highs.length ? Math.max(...highs) : 1;
    if (pMax === pMin) { pMax += 0.01; pMin -= 0.01; }
    const pad = (pMax - pMin) * 0.05;
    pMin -= pad; pMax += pad;
    const y = (p) => top + (pMax - p) / (pMax - pMin) * priceH;
    const vMax = Math.max(...rows.map((r) => r.volume), 1e-12);
    const x = (i) => left + step * (i + 0.5);

    const titles = { tick: "100-trade bars", quote: "1-second quotes (mid-price)" };
    text(svg, left, top - 8, titles[kind] || "1-second bars", "panel-title");
    for (let k = 0; k <= 4; k++) {
      const p = pMin + (pMax - pMin) * k / 4;
      el("line", { x1: left, x2: left + plotW, y1: y(p), y2: y(p), class: "grid" }, svg);
      text(svg, left + plotW + 6, y(p) + 4, fmtPrice(p));
    }
    const candles = el("g", { id: "candles" }, svg);
    const volumes = el("g", { id: "volumes" }, svg);
    rows.forEach((r, i) => {
      const bodied = r.open !== null && r.close !== null;
      const dir = !bodied || r.close >= r.open ? "up" : "down";
      if (r.high !== null && r.low !== null) {
        const g = el("g", { class: "candle " + dir, "data-time": r.timestamp }, candles);
        el("line", { x1: x(i), x2: x(i), y1: y(r.high), y2: y(r.low), "stroke-width": 1 }, g);
        if (bodied) {
          const yTop = y(Math.max(r.open, r.close));
          const h = Math.max(1, Math.abs(y(r.open) - y(r.close)));
          el("rect", { x: x(i) - bodyW / 2, y: yTop, width: bodyW, height: h }, g);
        }
        const title = el("title", {}, g);
        title.textContent = `${r.timestamp}  O ${r.open} H ${r.high} L ${r.low} C ${r.close}  V ${r.volume}`;
      }
      const vh = (r.volume / vMax) * volH;
      el("rect", { x: x(i) - bodyW / 2, y: volTop + volH - vh, width: bodyW, height: Math.max(vh, 0.5), class: "volume " + dir }, volumes);
    });
    text(svg, left, volTop + 12, kind === "quote" ? "Quotes" : "Volume", "panel-title");
    text(svg, left + plotW + 6, volTop + 12, fmtPrice(vMax));

    const sy = (s) => sentTop + (100 - s) / 200 * sentH;
    el("line", { x1: left, x2: left + plotW, y1: sy(0), y2: sy(0), class: "zero" }, svg);
    text(svg, left, sentTop + 12, "Sentiment", "panel-title");
    text(svg, left + plotW + 6, sy(100) + 10, "+100");
    text(svg, left + plotW + 6, sy(-100), "−100");
    // A gap in the line where the score is unknown (null), never a fake zero.
    let d = "", pen = false;
    rows.forEach((r, i) => {
      const s = r.composite_score;
      if (s === null || s === undefined) { pen = false; return; }
      d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + sy(s).toFixed(1) + " ";
      pen = true;
    });
    if (d) el("path", { d, class: "sentiment-line", id: "sentiment" }, svg);

    const ticks = Math.min(6, n);
    for (let k = 0; k < ticks; k++) {
      const i = Math.round((n - 1) * k / Math.max(1, ticks - 1));
      const anchor = k === 0 ? "start" : k === ticks - 1 ? "end" : "middle";
      text(svg, x(i), height - 6, fmtTime(new Date(rows[i].timestamp)), "axis", anchor);
    }
  }

  async function refresh() {
    const symbol = document.getElementById("symbol").value;
    const kind = document.getElementById("kind").value;
    const win = window_();
    if (!symbol) { statusEl.textContent = "No symbols yet: start the collector."; return; }
    if (!win.start || !win.end) { statusEl.textContent = "Pick a start and an end."; return; }
    const base = { tick: "/api/tick-candles/", quote: "/api/quote-candles/" }[kind] || "/api/second-candles/";
    const params = new URLSearchParams({ symbol, start_time: win.start.toISOString(), end_time: win.end.toISOString(), last: "5000" });
    try {
      const response = await fetch(base + "?" + params, { headers: { Accept: "application/json" } });
      const body = await response.json();
      if (!response.ok) { statusEl.textContent = body.message || response.statusText; draw([], kind); return; }
      // Quote bars have no volume: the panel shows how many quotes came.
      const rows = kind === "quote" ? body.data.map((r) => ({ ...r, volume: r.quote_count })) : body.data;
      draw(rows, kind);
      const meta = body.metadata;
      statusEl.textContent = `${body.ticker}: ${meta.count} bars, ${meta.start_time} → ${meta.end_time}` +
        (meta.truncated ? " (newest " + meta.limit + " shown)" : "") +
        (win.live && document.getElementById("live").checked ? " · live" : "");
    } catch (err) {
      statusEl.textContent = "Could not load data: " + err;
    }
  }

  function schedule() {
    if (timer) clearInterval(timer);
    timer = null;
    const win = window_();
    if (win.live && document.getElementById("live").checked) timer = setInterval(refresh, REFRESH_MS);
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
    refresh(); schedule();
  });
  form.addEventListener("change", () => { toggleCustom(); form.requestSubmit(); });
  window.addEventListener("resize", refresh);
  toggleCustom();
  refresh();
  schedule();
})();
