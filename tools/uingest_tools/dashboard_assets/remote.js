// uingest dashboard, remote devices: the devices on the remote management port (live, by Server-Sent Events
// on /api/dashboard/remote/events) and the Record form, which starts a recording through the
// Studio-compatible POST /v1/api/local/device/<deviceId>/start-sampling and follows it to the plotted sample.
// The API key is the one dashboard.js keeps in this tab's sessionStorage. Text only, never HTML.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  // job: the recording started from the form ({id, deviceId, stages: the stages it was seen in}), last
  // once it ended
  const remote = { snapshot: null, job: null, last: null, plottedJob: null, source: null };
  window.uingestRemote = remote;

  const key = () => sessionStorage.getItem("uingest-key");
  const headers = () => (key() ? { "x-api-key": key() } : {});

  function cell(tr, text) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    tr.appendChild(td);
    return td;
  }

  function fmtTime(iso) {
    const d = new Date(iso);
    return iso && !isNaN(d) ? d.toLocaleTimeString() : iso || "";
  }

  function stateCell(tr, d) {
    const td = cell(tr, "");
    const tag = document.createElement("span");
    const state = d.connected ? d.state : "offline";
    tag.className = "state " + state;
    tag.textContent = d.connected && d.job ? state + " (" + d.job.stage + ")" : state;
    td.appendChild(tag);
    if (d.job && d.job.progress !== null && d.job.progress !== undefined) {
      const bar = document.createElement("span");
      bar.className = "progress";
      const fill = document.createElement("span");
      fill.style.width = d.job.progress + "%";
      bar.appendChild(fill);
      td.appendChild(bar);
    }
    td.dataset.state = state;
  }

  function render(s) {
    remote.snapshot = s;
    $("remotehint").textContent = s.port
      ? "Boards connect to ws://" + location.hostname + ":" + s.port + " (remote management)."
      : "Remote management is off (uingest serve --no-remote).";
    const picked = $("recdevice").value;
    const rows = s.devices.map((d) => {
      const tr = document.createElement("tr");
      tr.dataset.deviceId = d.deviceId;
      if (d.deviceId === picked) tr.classList.add("picked");
      cell(tr, d.deviceId);
      cell(tr, d.deviceType);
      cell(tr, d.sensors.map((x) => x.name).join(", "));
      cell(tr, fmtTime(d.lastSeen)).title = d.lastSeen || "";
      stateCell(tr, d);
      tr.addEventListener("click", () => { $("recdevice").value = d.deviceId; fillSensors(); render(remote.snapshot); });
      return tr;
    });
    $("remotedevices").tBodies[0].replaceChildren(...rows);
    fillDevices(s.devices.filter((d) => d.connected));
    follow();
  }

  function fillDevices(connected) {
    const sel = $("recdevice");
    const before = sel.value;
    const ids = connected.map((d) => d.deviceId);
    if (ids.join("\n") !== Array.from(sel.options).map((o) => o.value).join("\n")) {
      sel.replaceChildren(...ids.map((id) => { const o = document.createElement("option"); o.value = o.textContent = id; return o; }));
      if (ids.includes(before)) sel.value = before;
      fillSensors();
    }
  }

  function device(id) {
    return remote.snapshot ? remote.snapshot.devices.find((d) => d.deviceId === id) : null;
  }

  function fillSensors() {
    const d = device($("recdevice").value);
    const sel = $("recsensor");
    const before = sel.value;
    const sensors = d ? d.sensors : [];
    sel.replaceChildren(...sensors.map((x) => { const o = document.createElement("option"); o.value = o.textContent = x.name; return o; }));
    if (sensors.some((x) => x.name === before)) sel.value = before;
    fillFrequencies();
  }

  function fillFrequencies() {
    const d = device($("recdevice").value);
    const sensor = d ? d.sensors.find((x) => x.name === $("recsensor").value) : null;
    const freqs = sensor ? sensor.frequencies : [];
    $("recfrequencies").replaceChildren(...freqs.map((f) => { const o = document.createElement("option"); o.value = f; return o; }));
    const input = $("recfrequency");
    if (freqs.length && !freqs.includes(Number(input.value))) input.value = freqs[0];
  }
  $("recdevice").addEventListener("change", () => { fillSensors(); if (remote.snapshot) render(remote.snapshot); });
  $("recsensor").addEventListener("change", fillFrequencies);

  function say(text, cls) {
    const p = $("recordstatus");
    p.textContent = text;
    p.className = "hint" + (cls ? " " + cls : "");
  }

  // the job started from this form: its progress, then its sample plotted
  function follow() {
    const job = remote.job;
    if (!job) return;
    const d = device(job.deviceId);
    if (!d) return;
    const seen = (stage) => { if (job.stages[job.stages.length - 1] !== stage) job.stages.push(stage); };
    if (d.job && d.job.id === job.id) {
      const j = d.job;
      seen(j.stage);
      say(j.label + " on " + job.deviceId + ": " + j.stage + (j.progress !== null && j.progress !== undefined ? " " + Math.round(j.progress) + "%" : ""), "running");
      return;
    }
    if (d.lastJob && d.lastJob.id === job.id) {
      const j = d.lastJob;
      seen(j.stage);
      if (j.stage === "finished") {
        say(j.label + " on " + job.deviceId + ": finished" + (j.sampleId !== null ? ", sample " + j.sampleId : ""), "finished");
        if (j.sampleId !== null && remote.plottedJob !== job.id && window.uingestDashboard && window.uingestDashboard.selectSample) {
          remote.plottedJob = job.id;
          window.uingestDashboard.selectSample(j.sampleId);
        }
      } else {
        say(j.label + " on " + job.deviceId + ": failed: " + (j.error || "no reason given"), "failed");
      }
      remote.last = job;
      remote.job = null;
    }
  }

  $("recordform").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("recdevice").value;
    if (!id) { say("no device connected", "failed"); return; }
    const hz = Number($("recfrequency").value);
    const body = {
      label: $("reclabel").value,
      lengthMs: Math.round(Number($("reclength").value)),
      category: $("reccategory").value,
      intervalMs: 1000 / hz,
      sensor: $("recsensor").value || undefined,
    };
    say("starting...", "running");
    fetch("/v1/api/local/device/" + encodeURIComponent(id) + "/start-sampling", {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" }, headers()),
      body: JSON.stringify(body),
      cache: "no-store",
    }).then((r) => r.json()).then((reply) => {
      if (!reply.success) { say("refused: " + reply.error, "failed"); return; }
      remote.job = { id: reply.id, deviceId: id, stages: [] };
      say(body.label + " on " + id + ": requested", "running");
      follow();
    }).catch((err) => say("failed: " + err.message, "failed"));
  });

  // live: the device list by Server-Sent Events, started again when it drops (a key typed later)
  function start() {
    if (remote.source) remote.source.close();
    fetch("/api/dashboard/remote", { headers: headers(), cache: "no-store" }).then((r) => {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then((s) => {
      render(s);
      const source = new EventSource("/api/dashboard/remote/events" + (key() ? "?key=" + encodeURIComponent(key()) : ""));
      remote.source = source;
      source.addEventListener("devices", (e) => render(JSON.parse(e.data)));
      source.addEventListener("error", () => {
        if (source.readyState === EventSource.CLOSED) { remote.source = null; setTimeout(start, 2000); }
      });
    }).catch(() => setTimeout(start, 2000));
  }
  start();
})();
