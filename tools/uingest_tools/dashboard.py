"""The dashboard of `uingest serve` (read-only): ``GET /`` is a page that lists the stored samples by
category, label and device with counts, plots the newest sample's axes (or a clicked one's) against time, one
<canvas> panel per axis (drawn by the page's own script: no CDN, works offline), and updates live. Its assets are
``GET /dashboard/{dashboard.js,dashboard.css}`` (files of the package folder ``uingest_tools/dashboard_assets``).
The page and its assets hold no data and are public. The data is served as JSON by:

- ``GET /api/dashboard/summary``: counts per category, per label (split by category) and per device, the
  total, and the 50 most recent samples;
- ``GET /api/dashboard/samples?category=&label=&device=&limit=``: the newest samples matching the filters
  (``label=`` or ``device=`` with an empty value selects samples without one), at most ``limit`` (<= 1000);
- ``GET /api/dashboard/samples/{sample_id}``: one sample's axes, decoded (cbor2/json) from its stored file,
  with times in ms; over 2000 rows each axis is reduced to the min and max of 1000 buckets (peaks survive);
  422 for a stored file that is not a data acquisition message (wav, csv, images, video); the sample records
  carry its label files' labels (structured_labels, bounding_boxes, label_map), which the page lists as text;
- ``GET /api/dashboard/events``: Server-Sent Events; an ``event: summary`` (the summary JSON) when the
  stream opens and whenever samples were stored since (at most 5 a second), a comment every 15 s otherwise.

Remote devices (a separate part of the page, ``dashboard_assets/remote.js``): the devices connected to the
remote management port (remote_management), each with its type, sensors, last seen, state (idle, sampling,
uploading) and its recording's progress, and a Record form that starts a recording through the
Studio-compatible ``POST /v1/api/local/device/{deviceId}/start-sampling`` (the route a script would use):

- ``GET /api/dashboard/remote``: ``{"version", "port", "devices": [...]}``;
- ``GET /api/dashboard/remote/events``: Server-Sent Events, an ``event: devices`` (that JSON) when the
  stream opens and at every change (at most 10 a second), on the same Hub as the samples' stream.

The counts (Tally) are the dashboard's own, kept by subscribing to the data folder (``Dashboard.stored``):
it gives the samples already indexed as it opens, then each new one.

Auth choice: the dashboard's JSON endpoints need the same API key as ingestion (unless --no-auth), since
the server may listen on a LAN. It is taken from the x-api-key header or a ``key`` query parameter
(EventSource cannot send headers). The page is opened as ``/?key=K`` (or asks for the key); its script
keeps the key in the tab's sessionStorage, removes it from the address bar, and sends it as x-api-key
(``?key=`` only for the event stream). The request log line carries the path only, never the query string,
so a key in ``?key=`` is not logged. Responses forbid framing, sniffing and referrers; the page's
Content-Security-Policy allows only its own scripts and connections. No CORS headers are sent.

Open event streams must not hold up a shutdown: the server (serve._Server) closes the Hub first
(``app.state.live_streams``), which ends them.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .acquisition import InvalidMessage, check_structure, decode
from .collector_rules import MESSAGE_KINDS, Rejected
from .common import FILE_TYPES
from .ingestion import api_key_problem

ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboard_assets")
ASSETS = {  # URL name -> (file in ASSETS_DIR, media type)
    "dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "remote.js": ("remote.js", "text/javascript; charset=utf-8"),
    "remote.css": ("remote.css", "text/css; charset=utf-8"),
}
MAX_PLOT_POINTS = 2000  # per axis, in /api/dashboard/samples/{id}
SSE_KEEPALIVE = 15.0  # seconds between comments on an idle event stream
SSE_MIN_GAP = 0.2  # seconds between two summaries on one event stream
SSE_DEVICES_GAP = 0.1  # seconds between two device lists on one event stream (progress moves quickly)
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


_LEAN_FIELDS = (
    "sample_id",
    "file",
    "category",
    "label",
    "device_name",
    "device_type",
    "sensors",
    "rows",
    "interval_ms",
    "signature",
    "file_name",
    "received_at",
    "structured_labels",  # the label files' labels, shown by the sample view
    "bounding_boxes",
    "label_map",
)


def device_key(rec: dict):
    """How the dashboard names a sample's device: its device_name, else its device_type, else None (files)."""
    return rec.get("device_name") or rec.get("device_type") or None


class Tally:
    """What the dashboard shows, kept as samples are indexed: counts, and every sample's index fields
    (without sha256 and metadata). Its own lock is held only briefly, never while writing to disk."""

    def __init__(self):
        self.lock = threading.Lock()
        self.version = 0  # bumped by every add()
        self.records: list[dict] = []  # in index order
        self.by_id: dict[int, dict] = {}
        self.categories: dict[str, int] = {}
        self.labels: dict = {}  # label (None: no label) -> {category: count}
        self.devices: dict = {}  # device_key -> {"device_type", "count", "last"}

    def add(self, rec: dict) -> None:
        lean = {k: rec.get(k) for k in _LEAN_FIELDS}
        category = lean["category"] if isinstance(lean["category"], str) else "?"
        label = lean["label"] if isinstance(lean["label"], str) else None
        device = device_key(lean)
        device = device if isinstance(device, str) else None
        with self.lock:
            self.records.append(lean)
            if isinstance(lean["sample_id"], int):
                self.by_id[lean["sample_id"]] = lean
            self.categories[category] = self.categories.get(category, 0) + 1
            per = self.labels.setdefault(label, {})
            per[category] = per.get(category, 0) + 1
            d = self.devices.setdefault(device, {"device_type": None, "count": 0, "last": None})
            d["count"] += 1
            d["device_type"] = lean["device_type"] or d["device_type"]
            d["last"] = lean["received_at"] or d["last"]
            self.version += 1

    def summary(self, recent: int = 50) -> dict:
        with self.lock:
            labels = [
                {"label": k, "count": sum(v.values()), "categories": dict(v)}
                for k, v in sorted(self.labels.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
            ]
            devices = [
                {"device": k, "device_type": v["device_type"], "count": v["count"], "last_received_at": v["last"]}
                for k, v in sorted(self.devices.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
            ]
            return {
                "version": self.version,
                "total": len(self.records),
                "categories": [{"category": c, "count": n} for c, n in sorted(self.categories.items())],
                "labels": labels,
                "devices": devices,
                "recent": [dict(r) for r in self.records[-recent:][::-1]] if recent > 0 else [],
            }

    def select(self, category=None, label=(), device=(), limit: int = 100) -> list[dict]:
        """Newest first. label/device: () for any, None for samples without one."""
        out = []
        with self.lock:
            for r in reversed(self.records):
                if category is not None and r["category"] != category:
                    continue
                if label != () and r["label"] != label:
                    continue
                if device != () and device_key(r) != device:
                    continue
                out.append(dict(r))
                if len(out) >= limit:
                    break
        return out

    def get(self, sample_id: int):
        with self.lock:
            rec = self.by_id.get(sample_id)
            return dict(rec) if rec is not None else None


def sample_axes(msg_payload: dict, max_points: int = MAX_PLOT_POINTS) -> dict:
    """A message payload's values as {"t": [ms], "axes": [[...] per sensor], "downsampled": bool}.

    Up to max_points rows are returned as they are. Longer ones are cut into max_points // 2 buckets and
    each axis gives its min and max per bucket, in the order they occur, at the times of the bucket's first
    and middle rows: peaks stay visible.
    """
    values = msg_payload["values"]
    width = len(msg_payload["sensors"])
    rows = [v if isinstance(v, list) else [v] for v in values]
    interval = float(msg_payload["interval_ms"])
    n = len(rows)
    if n <= max_points:
        return {"t": [i * interval for i in range(n)], "axes": [[r[a] for r in rows] for a in range(width)]}
    buckets = max(1, max_points // 2)
    t: list[float] = []
    axes: list[list] = [[] for _ in range(width)]
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        t.append(lo * interval)
        t.append(((lo + hi - 1) // 2) * interval)
        for a in range(width):
            col = [r[a] for r in rows[lo:hi]]
            i_min = min(range(len(col)), key=col.__getitem__)
            i_max = max(range(len(col)), key=col.__getitem__)
            first, second = (i_min, i_max) if i_min <= i_max else (i_max, i_min)
            axes[a].append(col[first])
            axes[a].append(col[second])
    return {"t": t, "axes": axes, "downsampled": True}


class Hub:
    """Wakes the dashboard's event streams (asyncio, in the server's loop) from any thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._waiters: set = set()
        self.closing = False

    def subscribe(self):
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        return waiter

    def unsubscribe(self, waiter) -> None:
        with self._lock:
            self._waiters.discard(waiter)

    def notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed
                self.unsubscribe((loop, event))

    def open(self) -> None:
        self.closing = False

    def close(self) -> None:
        """End every event stream (server shutdown)."""
        self.closing = True
        self.notify()


class RemoteDevices:
    """The remote devices' part of the dashboard (the module docstring): its own routes and stream, so that
    the samples' part stays as it is. Mixed into Dashboard (its hub, _denied and _json)."""

    remote = None  # remote_management.RemoteManagement, once show_devices() was called

    def show_devices(self, source) -> None:
        """source: remote_management.RemoteManagement (snapshot(), subscribers)."""
        self.remote = source
        source.subscribers.append(self.hub.notify)

    def remote_routes(self) -> list[Route]:
        return [
            Route("/api/dashboard/remote", self.remote_devices, methods=["GET"]),
            Route("/api/dashboard/remote/events", self.remote_events, methods=["GET"]),
        ]

    def _remote_snapshot(self) -> dict:
        return self.remote.snapshot() if self.remote is not None else {"version": 0, "port": None, "devices": []}

    async def remote_devices(self, request: Request) -> Response:
        return self._denied(request) or self._json(self._remote_snapshot())

    async def remote_events(self, request: Request) -> Response:
        return self._denied(request) or self._event_stream("devices", self._remote_snapshot, SSE_DEVICES_GAP)


class Dashboard(RemoteDevices):
    """The dashboard's page, assets and read-only JSON endpoints (see the module docstring)."""

    def __init__(self, data_dir: str, api_key: bytes | None):
        """data_dir: the data folder's; give `stored` to its DataFolder as a subscriber, which brings the
        samples already indexed, then each new one."""
        self.data_dir = os.path.abspath(data_dir)
        self.api_key = api_key
        self.hub = Hub()
        self.tally = Tally()
        self.assets = {}
        for name, (file, media) in ASSETS.items():
            with open(os.path.join(ASSETS_DIR, file), "rb") as f:
                self.assets[name] = (f.read(), media)
        with open(os.path.join(ASSETS_DIR, "index.html"), "rb") as f:
            self.page_html = f.read()

    def routes(self) -> list[Route]:
        return [
            Route("/api/dashboard/summary", self.summary, methods=["GET"]),
            Route("/api/dashboard/samples", self.samples, methods=["GET"]),
            Route("/api/dashboard/samples/{sample_id:int}", self.sample, methods=["GET"]),
            Route("/api/dashboard/events", self.events, methods=["GET"]),
            Route("/", self.page, methods=["GET"]),
            Route("/dashboard/{name}", self.asset, methods=["GET"]),
        ]

    def stored(self, record: dict) -> None:
        self.tally.add(record)
        self.hub.notify()

    def _denied(self, request: Request):
        """None when the request may read the data, else the 401 response."""
        problem = api_key_problem(request, self.api_key, query=True)
        if problem is None:
            return None
        reason = "Invalid API key" if problem == "invalid" else "missing API key: send x-api-key or ?key="
        return JSONResponse({"success": False, "error": reason}, status_code=401, headers=_SECURITY_HEADERS)

    @staticmethod
    def _json(data, status_code: int = 200) -> Response:
        # ASCII JSON: any text an index line holds can be sent, even a lone surrogate stored before it was refused
        body = json.dumps(data, separators=(",", ":"))
        return Response(body, status_code=status_code, media_type="application/json", headers=_SECURITY_HEADERS)

    async def page(self, request: Request) -> Response:
        headers = dict(_SECURITY_HEADERS, **{"Content-Security-Policy": _PAGE_CSP})
        return Response(self.page_html, media_type="text/html; charset=utf-8", headers=headers)

    async def asset(self, request: Request) -> Response:
        found = self.assets.get(request.path_params["name"])
        if found is None:
            return PlainTextResponse("not found", status_code=404)
        body, media = found
        return Response(body, media_type=media, headers=_SECURITY_HEADERS)

    async def summary(self, request: Request) -> Response:
        return self._denied(request) or self._json(self.tally.summary())

    async def samples(self, request: Request) -> Response:
        denied = self._denied(request)
        if denied:
            return denied
        q = request.query_params
        try:
            limit = min(max(int(q.get("limit", "100")), 1), 1000)
        except ValueError:
            return self._json({"error": "limit must be an integer"}, 400)
        label = q["label"] if "label" in q else ()
        device = q["device"] if "device" in q else ()
        found = self.tally.select(
            category=q.get("category") or None,
            label=(label or None) if label != () else (),
            device=(device or None) if device != () else (),
            limit=limit,
        )
        return self._json({"samples": found})

    def _read_sample(self, rec: dict) -> dict:
        """Runs in a worker thread: the sample's axes, or Rejected."""
        ext = os.path.splitext(rec["file"] or "")[1].lower()
        fmt = FILE_TYPES.get(ext)
        if fmt not in MESSAGE_KINDS:
            raise Rejected(422, "sample %d is a %s file, not a data acquisition message" % (rec["sample_id"], ext))
        path = os.path.join(self.data_dir, *rec["file"].split("/"))
        try:
            with open(path, "rb") as f:
                body = f.read()
        except OSError:
            raise Rejected(404, "the file of sample %d is gone" % rec["sample_id"])
        try:
            payload = check_structure(decode(body, fmt), len(body))
        except InvalidMessage as e:
            raise Rejected(422, "sample %d cannot be read: %s" % (rec["sample_id"], e))
        plot = sample_axes(payload)
        return {
            **rec,
            "sensors": [{"name": s["name"], "units": s["units"]} for s in payload["sensors"]],
            "interval_ms": payload["interval_ms"],
            "rows": len(payload["values"]),
            "points": len(plot["t"]),
            "downsampled": plot.get("downsampled", False),
            "t": plot["t"],
            "axes": plot["axes"],
        }

    async def sample(self, request: Request) -> Response:
        denied = self._denied(request)
        if denied:
            return denied
        sample_id = request.path_params["sample_id"]
        rec = self.tally.get(sample_id)
        if rec is None:
            return self._json({"error": "no sample %d" % sample_id}, 404)
        try:
            data = await anyio.to_thread.run_sync(self._read_sample, rec)
        except Rejected as e:
            return self._json({"error": e.line}, e.status)
        return self._json(data)

    async def events(self, request: Request) -> Response:
        # bursts of uploads: one summary per SSE_MIN_GAP
        return self._denied(request) or self._event_stream("summary", self.tally.summary, SSE_MIN_GAP)

    def _event_stream(self, name: str, snapshot, gap: float) -> Response:
        """Server-Sent Events: event name with snapshot() as JSON whenever its "version" moves (at most one per
        gap seconds), a keep-alive comment when nothing did for SSE_KEEPALIVE; ends when the hub closes."""
        hub = self.hub

        async def stream():
            loop_event = hub.subscribe()
            event = loop_event[1]
            try:
                yield "retry: 2000\n\n"
                sent = None
                while not hub.closing:
                    event.clear()
                    current = snapshot()
                    if current["version"] != sent:
                        sent = current["version"]
                        yield "event: %s\ndata: %s\n\n" % (name, json.dumps(current, separators=(",", ":")))
                        await anyio.sleep(gap)
                        continue
                    with anyio.move_on_after(SSE_KEEPALIVE):
                        await event.wait()
                    if not event.is_set():
                        yield ": keep-alive\n\n"
            finally:
                hub.unsubscribe(loop_event)

        headers = dict(_SECURITY_HEADERS, **{"X-Accel-Buffering": "no"})
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
