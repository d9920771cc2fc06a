// uingest dashboard: counts, sample list and a plot (one <canvas> panel per axis), kept live by Server-Sent Events.
// No dependencies. Everything from the server is put in the page with textContent, never as HTML.
"use strict";
(function () {
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const CATEGORIES = ["training", "testing", "anomaly"];
  const state = {
    key: null, filter: null, selected: null, plot: null,
    // follow: plot the newest sample of the list, also as new ones arrive, until a click picks one
    follow: true, shown: [],
    summaries: 0, source: null, pollTimer: null, known: new Set(), records: new Map(),
  };
  window.uingestDashboard = { colors: COLORS, state: state };
  const $ = (id) => document.getElementById(id);

  // --- the API key: ?key= once (then dropped from the address bar), kept in this tab's sessionStorage
  (function takeKey() {
    const url = new URL(location.href);
    const fromUrl = url.searchParams.get("key");
    if (fromUrl) {
      sessionStorage.setItem("uingest-key", fromUrl);
      url.searchParams.delete("key");
      history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
    state.key = sessionStorage.getItem("uingest-key");
  })();

  function api(path) {
    const headers = state.key ? { "x-api-key": state.key } : {};
    return fetch(path, { headers: headers, cache: "no-store" }).then((r) => {
      if (r.status === 401) { askKey(); throw new Error("unauthorized"); }
      return r.json().then((body) => {
        if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
        return body;
      });
    });
  }

  function askKey(message) {
    stopLive();
    setStatus("offline", "API key needed");
    $("keyform").hidden = false;
    $("keyerror").textContent = state.key ? "that key was refused" : (message || "");
    $("keyinput").focus();
  }

  $("keyform").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("keyinput").value;
    sessionStorage.setItem("uingest-key", state.key);
    $("keyform").hidden = true;
    start();
  });

  function setStatus(cls, text) {
    const s = $("status");
    s.className = "status " + cls;
    s.textContent = text;
  }

  // --- tables
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    if (text === null || text === undefined) { td.textContent = "none"; td.classList.add("none"); }
    else td.textContent = String(text);
    if (cls) td.classList.add(cls);
    tr.appendChild(td);
    return td;
  }

  function fill(table, items, row) {
    const body = table.tBodies[0];
    const rows = items.map((item) => {
      const tr = document.createElement("tr");
      row(tr, item);
      return tr;
    });
    body.replaceChildren(...rows);
  }

  function fmtTime(iso) {
    if (!iso) return null;
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleTimeString();
  }

  function sameFilter(a, b) {
    return a && b && a.kind === b.kind && a.value === b.value;
  }

  function filterRow(tr, filter) {
    tr.dataset.filter = filter.kind;
    if (sameFilter(filter, state.filter)) tr.classList.add("selected");
    tr.addEventListener("click", () => setFilter(sameFilter(filter, state.filter) ? null : filter));
  }

  function renderSummary(s) {
    state.summaries += 1;
    $("total").textContent = s.total;
    fill($("categories"), s.categories, (tr, c) => {
      tr.dataset.category = c.category;
      cell(tr, c.category);
      cell(tr, c.count, "num");
      filterRow(tr, { kind: "category", value: c.category, text: "category " + c.category });
    });
    fill($("labels"), s.labels, (tr, l) => {
      tr.dataset.label = l.label === null ? "" : l.label;
      cell(tr, l.label);
      for (const c of CATEGORIES) cell(tr, l.categories[c] || 0, "num");
      cell(tr, l.count, "num");
      filterRow(tr, { kind: "label", value: l.label, text: "label " + (l.label === null ? "none" : l.label) });
    });
    fill($("devices"), s.devices, (tr, d) => {
      tr.dataset.device = d.device === null ? "" : d.device;
      cell(tr, d.device);
      cell(tr, d.device_type);
      cell(tr, d.count, "num");
      const td = cell(tr, fmtTime(d.last_received_at));
      td.title = d.last_received_at || "";
      filterRow(tr, { kind: "device", value: d.device, text: "device " + (d.device === null ? "none" : d.device) });
    });
    if (state.filter) loadSamples();
    else renderSamples(s.recent);
  }

  function renderSamples(samples) {
    const first = state.known.size === 0;
    fill($("samples"), samples, (tr, r) => {
      tr.dataset.sampleId = r.sample_id;
      if (!first && !state.known.has(r.sample_id)) tr.classList.add("fresh");
      if (r.sample_id === state.selected) tr.classList.add("selected");
      cell(tr, r.sample_id, "num");
      cell(tr, fmtTime(r.received_at)).title = r.received_at || "";
      cell(tr, r.category);
      cell(tr, r.label, "wrap");
      const device = r.device_name || r.device_type;
      cell(tr, device, device && device.length > 12 ? "wrap" : null);  // a MAC may wrap, "dev-mic" not at its "-"
      cell(tr, r.sensors ? axesText(r.sensors) : (r.file || "").split(".").pop() + " file", "wrap");
      cell(tr, r.rows, "num");
      tr.title = r.file || "";
      tr.addEventListener("click", () => { setFollow(false); selectSample(r.sample_id); });
    });
    for (const r of samples) {
      state.known.add(r.sample_id);
      state.records.set(r.sample_id, r);
    }
    state.shown = samples;
    followNewest();
  }

  // while following, the newest sample in the list is the one plotted
  function followNewest() {
    if (!state.follow || !state.shown.length) return;
    const newest = Math.max(...state.shown.map((r) => r.sample_id));
    if (newest !== state.selected) selectSample(newest);
  }

  function setFollow(on) {
    state.follow = on;
    $("follow").checked = on;
    followNewest();
  }
  $("follow").addEventListener("change", () => setFollow($("follow").checked));

  // a sample's axes in the list, short enough for its column: "ch0, ch1, ch2 ... ch11 (12 axes)"
  function axesText(names) {
    return names.length <= 6 ? names.join(", ")
      : names.slice(0, 3).join(", ") + " ... " + names[names.length - 1] + " (" + names.length + " axes)";
  }

  function loadSamples() {
    const f = state.filter;
    const q = new URLSearchParams({ limit: "200" });
    if (f) q.set(f.kind, f.value === null ? "" : f.value);
    api("/api/dashboard/samples?" + q).then((body) => {
      if (sameFilter(f, state.filter)) renderSamples(body.samples);
    }).catch(() => {});
  }

  function setFilter(filter) {
    state.filter = filter;
    const tag = $("filter");
    tag.hidden = !filter;
    tag.textContent = filter ? filter.text : "";
    for (const tr of document.querySelectorAll(".counts tbody tr")) tr.classList.remove("selected");
    refresh();
  }
  $("filter").addEventListener("click", () => setFilter(null));

  // --- live updates: an EventSource on /api/dashboard/events; polling every second where that fails
  function stopLive() {
    if (state.source) { state.source.close(); state.source = null; }
    if (state.pollTimer) { clearInterval(state.pollTimer); state.pollTimer = null; }
  }

  function refresh() {
    return api("/api/dashboard/summary").then(renderSummary);
  }

  function poll() {
    setStatus("live", "live (polling)");
    state.pollTimer = setInterval(() => refresh().catch(() => setStatus("offline", "offline")), 1000);
  }

  function start() {
    stopLive();
    setStatus("connecting", "connecting");
    refresh().then(() => {
      if (!window.EventSource) { poll(); return; }
      const url = "/api/dashboard/events" + (state.key ? "?key=" + encodeURIComponent(state.key) : "");
      const source = new EventSource(url);
      state.source = source;
      source.addEventListener("open", () => setStatus("live", "live"));
      source.addEventListener("summary", (e) => {
        setStatus("live", "live");
        renderSummary(JSON.parse(e.data));
      });
      source.addEventListener("error", () => {
        if (source.readyState === EventSource.CLOSED) {
          // refused (a key that no longer works?) or gone: find out, and start over
          state.source = null;
          setStatus("offline", "offline");
          setTimeout(() => { if (!state.source && !state.pollTimer && $("keyform").hidden) start(); }, 2000);
        } else {
          setStatus("connecting", "reconnecting");
        }
      });
    }).catch((e) => {
      if (e.message !== "unauthorized") {
        setStatus("offline", "offline");
        setTimeout(start, 2000);
      }
    });
  }

  // --- the plot: one panel per axis
  function selectSample(id) {
    state.selected = id;
    state.plot = null;  // the panels keep the last drawing until this one's axes arrive, but it is not plotted
    window.uingestDashboard.plotted = null;
    for (const tr of $("samples").tBodies[0].rows) tr.classList.toggle("selected", Number(tr.dataset.sampleId) === id);
    $("plottitle").textContent = "Sample " + id;
    $("plotinfo").textContent = "loading...";
    renderLabels(state.records.get(id));  // also for files that are not plotted (images, WAV, CSV, video)
    api("/api/dashboard/samples/" + id).then((s) => {
      if (state.selected !== id) return;
      state.plot = s;
      renderLabels(s);
      $("plottitle").textContent = "Sample " + s.sample_id + ": " + (s.label === null ? "no label" : s.label) + " (" + s.category + ")";
      $("plotinfo").textContent = (s.device_name || s.device_type || "") + " - " + s.rows + " rows every " + s.interval_ms +
        " ms" + (s.downsampled ? " (min/max of " + s.points / 2 + " buckets shown)" : "") + " - " + s.file;
      renderPanels(s);
      draw();
    }).catch((e) => {
      if (state.selected !== id) return;
      state.plot = null;
      $("plotinfo").textContent = e.message === "unauthorized" ? "" : e.message;
      renderPanels(null);
    });
  }

  // a sample's labels beyond its label, as text: label map, structured labels (row segments), bounding boxes
  function renderLabels(r) {
    const lines = [];
    if (r && r.label_map) {
      lines.push("label map: " + Object.entries(r.label_map).map(([k, v]) => k + " = " + v).join(", "));
    }
    if (r && r.structured_labels) {
      lines.push("structured labels: " + r.structured_labels.map((g) =>
        "rows " + g.startIndex + "-" + g.endIndex + " " + g.label).join(", "));
    }
    if (r && r.bounding_boxes && r.bounding_boxes.length) {
      lines.push("bounding boxes: " + r.bounding_boxes.map((b) =>
        b.label + " at (" + b.x + ", " + b.y + ") " + b.width + "x" + b.height).join(", "));
    }
    const ul = $("labelinfo");
    ul.replaceChildren(...lines.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }));
    ul.hidden = lines.length === 0;
  }

  // one figure per axis (not per unit: gravity on accZ would flatten accX and accY in m/s2 too),
  // captioned with the axis' name and unit
  function renderPanels(s) {
    const figures = (s ? s.sensors : []).map((sensor, i) => {
      const fig = $("paneltemplate").content.firstElementChild.cloneNode(true);
      fig.dataset.axis = sensor.name;
      fig.querySelector(".swatch").style.background = COLORS[i % COLORS.length];
      fig.querySelector(".name").textContent = sensor.name;
      fig.querySelector(".units").textContent = sensor.units ? "(" + sensor.units + ")" : "";
      return fig;
    });
    $("panels").replaceChildren(...figures);
  }

  // round values between lo and hi, at least `want` of them, on the widest 1-2-5 step that gives that many
  function ticks(lo, hi, want) {
    const mag = Math.pow(10, Math.floor(Math.log10((hi - lo) / want)));
    let out = [];
    for (const m of [10, 5, 2, 1, 0.5]) {
      const step = m * mag;
      out = [];
      // by index, at most 50: v += step can stop moving v where step is under v's precision
      const first = Math.ceil(lo / step);
      for (let i = 0; i <= 50 && (first + i) * step <= hi + step * 1e-9; i++) {
        const v = (first + i) * step;
        out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
      }
      if (out.length >= want) break;
    }
    return out;
  }

  function fmtNum(v) {
    const a = Math.abs(v);
    return a !== 0 && (a >= 1e5 || a < 1e-3) ? v.toExponential(1) : String(Number(v.toPrecision(6)));
  }

  // the plot area's height per panel: shorter as axes add up, so a 9-axis IMU stays on a screen or two
  function panelHeight(n) {
    return n <= 3 ? 120 : n <= 8 ? 84 : 64;
  }

  function draw() {
    const s = state.plot;
    if (!s) return;
    const canvases = $("panels").querySelectorAll("canvas");
    const t = s.t, n = s.axes.length;
    const t0 = t[0], t1 = t.length > 1 ? t[t.length - 1] : t0 + 1;
    canvases.forEach((canvas, i) => drawPanel(canvas, s.axes[i], t, t0, t1, i, panelHeight(n), i === n - 1));
    window.uingestDashboard.plotted = s.sample_id;
  }

  // one axis against time, on its own y-range; time's tick labels only under the last panel
  function drawPanel(canvas, vals, t, t0, t1, i, ph, last) {
    const L = 64, R = 14, T = 8, B = last ? 38 : 8;
    const h = T + ph + B;
    canvas.style.height = h + "px";
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 640;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const pw = w - L - R;
    Object.assign(canvas.dataset, { plotLeft: L, plotTop: T, plotWidth: pw, plotHeight: ph });
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = "#fff";
    g.fillRect(0, 0, w, h);
    let lo = Infinity, hi = -Infinity;
    for (const v of vals) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (!isFinite(lo) || !isFinite(hi)) { lo = -1; hi = 1; }
    // a range of a few float steps (0.1 + 0.2 against 0.3) is drawn as one value: ticks need a step that moves v
    const flat = hi - lo <= Math.abs(hi) * 1e-9;
    const pad = flat ? (Math.abs(lo) * 0.05 || 1) : (hi - lo) * 0.05;
    lo -= pad; hi += pad;
    const x = (v) => L + ((v - t0) / (t1 - t0)) * pw;
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * ph;
    // grid and tick labels
    g.font = "11px system-ui, sans-serif";
    g.lineWidth = 1;
    g.strokeStyle = "#e6e9ef";
    g.fillStyle = "#5c6778";
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (const v of ticks(lo, hi, ph >= 80 ? 3 : 2)) {
      const yy = Math.round(y(v)) + 0.5;
      g.beginPath(); g.moveTo(L, yy); g.lineTo(L + pw, yy); g.stroke();
      g.fillText(fmtNum(v), L - 6, yy);
    }
    g.textAlign = "center";
    g.textBaseline = "top";
    for (const v of ticks(t0, t1, 5)) {
      const xx = Math.round(x(v)) + 0.5;
      g.beginPath(); g.moveTo(xx, T); g.lineTo(xx, T + ph); g.stroke();
      if (last) g.fillText(fmtNum(v), xx, T + ph + 5);
    }
    g.strokeStyle = "#9aa3b1";
    g.strokeRect(L + 0.5, T + 0.5, pw, ph);
    if (last) {
      g.fillStyle = "#1d2430";
      g.fillText("time (ms)", L + pw / 2, T + ph + 22);
    }
    // the axis' line
    g.save();
    g.beginPath(); g.rect(L, T, pw, ph); g.clip();
    g.lineWidth = 1.5;
    g.lineJoin = "round";
    g.strokeStyle = COLORS[i % COLORS.length];
    g.beginPath();
    vals.forEach((v, j) => { if (j) g.lineTo(x(t[j]), y(v)); else g.moveTo(x(t[j]), y(v)); });
    if (vals.length === 1) g.arc(x(t[0]), y(vals[0]), 2, 0, 2 * Math.PI);
    g.stroke();
    g.restore();
  }

  window.addEventListener("resize", draw);
  // remote.js plots a sample recorded from its form (following newest or not, as the user left it)
  window.uingestDashboard.selectSample = selectSample;
  start();
})();
