// The participant page: stacked, time-aligned uPlot charts in the participant's local time.
// Each view asks /api/v1 for local days [start, end] with a row budget of about two points per
// pixel; the server picks the resolution as `fitpipe export --resolution auto` does.
"use strict";

(function () {
  const root = document.getElementById("participant");
  const config = JSON.parse(root.dataset.config);
  // A dragged selection is part of the view's URL too (from/to, epoch seconds), so a link shows it exactly.
  const given = new URLSearchParams(location.search);
  const exactFrom = Number(given.get("from"));
  const exactTo = Number(given.get("to"));
  const state = {
    start: config.start,
    end: config.end,
    exact: exactFrom && exactTo && exactFrom < exactTo ? [exactFrom, exactTo] : null,
    withImputed: false,
  };
  // Read by the browser tests and handy in the console: what was asked, received and drawn.
  const fp = (window.fitpipe = { config, state, charts: {}, payloads: {}, requests: [], hypnogram: [], loads: 0 });

  const COLORS = { measured: "#c8281e", band: "rgba(200, 40, 30, 0.15)", edge: "rgba(200, 40, 30, 0.45)", imputed: "#1f6fd1" };
  const STEP = { "1min": 60, "1h": 3600, "1d": 86400 };
  const STAGE_NAMES = { 1: "deep", 2: "light", 3: "rem", 4: "wake" };

  function zoneAt(ts) {
    let zone = config.zones[0].zone;
    for (const entry of config.zones) if (ts >= entry.from) zone = entry.zone;
    return zone;
  }

  const dayFormats = {};
  function localDay(ts) {
    const zone = zoneAt(ts);
    dayFormats[zone] = dayFormats[zone] || new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" });
    return dayFormats[zone].format(new Date(ts * 1000));
  }

  function addDays(day, n) {
    const d = new Date(day + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  }

  function daysBetween(a, b) {
    return Math.round((Date.parse(b + "T00:00:00Z") - Date.parse(a + "T00:00:00Z")) / 86400000);
  }

  function clampDay(day) {
    if (day < config.study_start) return config.study_start;
    return day;
  }

  // A gap longer than this between consecutive rows is drawn as a gap, not a line across it.
  function gapSeconds(payload) {
    return Math.max(2 * (STEP[payload.resolution] || 60), 120);
  }

  function withGaps(xs, columns, limit) {
    const outX = [];
    const outColumns = columns.map(() => []);
    for (let i = 0; i < xs.length; i++) {
      if (i > 0 && xs[i] - xs[i - 1] > limit) {
        outX.push(xs[i - 1] + limit / 2);
        outColumns.forEach((column) => column.push(null));
      }
      outX.push(xs[i]);
      columns.forEach((column, j) => outColumns[j].push(column[i]));
    }
    return [outX, outColumns];
  }

  // The window's edges as empty points, so every chart spans exactly the same local days.
  function framed(xs, columns, lo, hi) {
    return [[lo, ...xs, hi], columns.map((column) => [null, ...column, null])];
  }

  function split(values, imputedFlags) {
    if (!imputedFlags) return [values, values.map(() => null)];
    return [values.map((v, i) => (imputedFlags[i] ? null : v)), values.map((v, i) => (imputedFlags[i] ? v : null))];
  }

  function seriesData(chart, payload) {
    const d = payload.data;
    const field = chart.field;
    const limit = gapSeconds(payload);
    if (chart.kind === "hypnogram") return hypnogramData(payload);
    if (chart.kind === "band") {
      const rollup = payload.resolution !== "raw";
      const imputedFlags = rollup ? null : d.imputed;
      const [measured, imputed] = split(d[field], imputedFlags);
      const low = rollup ? d[field + "_min"] : measured.map(() => null);
      const high = rollup ? d[field + "_max"] : measured.map(() => null);
      return withGaps(payload.t, [high, low, measured, imputed], limit);
    }
    if (chart.kind === "line") {
      const [measured, imputed] = split(d[field], payload.resolution === "raw" ? d.imputed : null);
      return withGaps(payload.t, [measured, imputed], limit);
    }
    return [payload.t.slice(), [d[field].slice()]];
  }

  function hypnogramData(payload) {
    const d = payload.data;
    const segments = [];
    for (let i = 0; i < payload.t.length; i++) {
      if (d.is_short[i]) continue; // short wakes sit inside longer segments; the stages are the long ones
      segments.push({ start: d.start_ts[i], t: payload.t[i], stage: d.stage[i], seconds: d.seconds[i] });
    }
    segments.sort((a, b) => a.t - b.t);
    fp.hypnogram = segments;
    // Each segment a thick horizontal run at its stage's level; a run that another overlaps is cut
    // where the next begins, and a pause between segments is left empty.
    const xs = [];
    const levels = [];
    segments.forEach((s, i) => {
      const level = config.stage_levels[s.stage] || null;
      const next = segments[i + 1];
      const end = next ? Math.min(s.t + s.seconds, next.t) : s.t + s.seconds;
      xs.push(s.t, end);
      levels.push(level, level);
      if (next && next.t > end) {
        xs.push((end + next.t) / 2);
        levels.push(null);
      }
    });
    return [xs, [levels]];
  }

  function seriesOptions(chart) {
    const line = (label, stroke, extra) => Object.assign({ label, stroke, width: 1.5, spanGaps: false, points: { show: false } }, extra || {});
    switch (chart.kind) {
      case "band":
        return [
          line("max", COLORS.edge, { width: 1 }),
          line("min", COLORS.edge, { width: 1 }),
          line("mean", COLORS.measured),
          line("imputed", COLORS.imputed, { dash: [4, 3] }),
        ];
      case "line":
        return [line("measured", COLORS.measured), line("imputed", COLORS.imputed, { dash: [4, 3] })];
      case "points":
        return [line(chart.field, COLORS.measured, { paths: () => null, points: { show: true, size: 6, fill: COLORS.measured } })];
      case "bars":
        return [line(chart.field, COLORS.measured, { fill: COLORS.band, paths: uPlot.paths.bars({ size: [0.7, 40] }) })];
      default:
        return [line("stage", "#5b3fa8", { width: 7, cap: "butt" })];
    }
  }

  function plotWidth() {
    return Math.max(320, document.getElementById("charts").clientWidth - 8);
  }

  // Night charts ask for one night more than the view's days; every chart spans the view's days.
  function viewWindow(chart, payload) {
    const starts = payload.day_starts;
    return chart.night ? [starts[1], starts[starts.length - 1]] : [starts[0], starts[starts.length - 1]];
  }

  function draw(chart, figure, payload) {
    const plot = figure.querySelector('[data-role="plot"]');
    if (fp.charts[chart.id]) fp.charts[chart.id].destroy();
    delete fp.charts[chart.id];
    plot.textContent = "";
    if (!payload) return;
    const [lo, hi] = viewWindow(chart, payload);
    const [xs, columns] = seriesData(chart, payload);
    const [x, ys] = framed(xs, columns, lo, hi);
    const axes = [{}, { size: 60 }];
    const scales = { x: { time: true } };
    if (chart.kind === "bars") scales.y = { range: (u, min, max) => [0, Math.max(1, max) * 1.05] };
    if (chart.kind === "hypnogram") {
      axes[1] = { size: 60, splits: () => [1, 2, 3, 4], values: (u, splits) => splits.map((v) => STAGE_NAMES[v] || "") };
      scales.y = { range: [0.5, 4.5] };
    }
    const options = {
      width: plotWidth(),
      height: chart.kind === "hypnogram" ? 140 : 170,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), zoneAt(ts)),
      cursor: { sync: { key: "fitpipe" }, drag: { x: true, y: false, setScale: false } },
      legend: { show: chart.kind === "band" || chart.kind === "line" },
      scales,
      axes,
      series: [{}, ...seriesOptions(chart)],
      bands: chart.kind === "band" ? [{ series: [1, 2], fill: COLORS.band }] : [],
      hooks: { setSelect: [(u) => selected(u)] },
    };
    const u = new uPlot(options, [x, ...ys], plot);
    if (state.exact) u.setScale("x", { min: state.exact[0], max: state.exact[1] });
    fp.charts[chart.id] = u;
  }

  function selected(u) {
    if (u.select.width < 4) return;
    const a = u.posToVal(u.select.left, "x");
    const b = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    state.exact = [a, b];
    state.start = clampDay(localDay(a));
    state.end = localDay(Math.max(a, b - 1));
    load();
  }

  async function loadChart(chart, points) {
    const figure = document.getElementById("chart-" + chart.id);
    const message = figure.querySelector('[data-role="message"]');
    const resolution = figure.querySelector('[data-role="resolution"]');
    const imputed = state.withImputed && config.imputable.includes(chart.metric) ? "1" : "0";
    const start = chart.night ? addDays(state.start, -1) : state.start;
    const query = new URLSearchParams({ start, end: state.end, points: String(points), imputed });
    const url = `/api/v1/participants/${config.participant}/series/${chart.metric}?${query}`;
    fp.requests.push(url);
    message.textContent = "loading…";
    let payload = null;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      const body = await response.json();
      if (response.ok) payload = body;
      message.textContent = response.ok ? "" : body.error;
    } catch (err) {
      message.textContent = "could not load: " + err;
    }
    fp.payloads[chart.id] = payload;
    resolution.textContent = payload ? `${payload.resolution} · ${payload.rows.toLocaleString()} rows` : "";
    for (const format of ["csv", "parquet"]) {
      const link = figure.querySelector(`[data-role="${format}"]`);
      const download = new URLSearchParams({ start, end: state.end, resolution: payload ? payload.resolution : "auto", imputed });
      link.href = `/api/v1/participants/${config.participant}/export/${chart.metric}.${format}?${download}`;
    }
    figure.querySelector(".downloads").hidden = !payload;
    draw(chart, figure, payload);
  }

  async function load() {
    const points = Math.max(10, Math.min(20000, Math.round(plotWidth() * 2)));
    const exact = state.exact ? `&from=${Math.floor(state.exact[0])}&to=${Math.ceil(state.exact[1])}` : "";
    const query = `?start=${state.start}&end=${state.end}${exact}`;
    history.replaceState(null, "", query);
    document.getElementById("permalink").href = query;
    document.getElementById("range").textContent = state.start === state.end ? state.start : `${state.start} … ${state.end}`;
    root.dataset.state = "loading";
    await Promise.all(config.charts.map((chart) => loadChart(chart, points)));
    fp.loads += 1;
    root.dataset.loads = String(fp.loads);
    root.dataset.state = "ready";
  }

  function zoom(kind) {
    const end = state.end;
    const spans = { day: 1, week: 7, month: 30 };
    state.exact = null;
    if (kind === "study") {
      state.start = config.study_start;
      state.end = config.last_day;
    } else {
      state.start = clampDay(addDays(end, 1 - spans[kind]));
      state.end = end;
    }
    load();
  }

  function pan(direction) {
    const span = daysBetween(state.start, state.end) + 1;
    state.exact = null;
    state.start = addDays(state.start, direction * span);
    state.end = addDays(state.end, direction * span);
    load();
  }

  document.querySelectorAll("[data-zoom]").forEach((button) => button.addEventListener("click", () => zoom(button.dataset.zoom)));
  document.querySelectorAll("[data-pan]").forEach((button) => button.addEventListener("click", () => pan(Number(button.dataset.pan))));
  document.getElementById("with-imputed").addEventListener("change", (event) => {
    state.withImputed = event.target.checked;
    load();
  });
  load();
})();
