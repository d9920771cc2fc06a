"""`uingest serve`: a local, Edge Impulse-compatible ingestion server.

Speaks the ingestion API of shared/docs/ingestion-protocol.md on Starlette + uvicorn and stores what it
accepts under a data folder:

    <data-dir>/<category>/<label>.<id>.<ext>     one file per sample, written atomically
    <data-dir>/index.jsonl                       one JSON line per stored sample

Endpoints: ``POST /api/{training,testing,anomaly,split}/data`` (one message, application/cbor or
application/json; Edge Impulse's DataForwarder also posts to ``split``), ``POST
/api/{training,testing,anomaly,split}/files`` (multipart/form-data, parts named ``data``) and ``GET
/api/health`` (no key needed, answers ``ok``).

Choices where the real service is unknown or where we are stricter:

- Status codes: 401 missing/wrong x-api-key; 404 unknown category; 413 body over ``max_body`` (Content-Length
  or streamed count); 415 unsupported Content-Type; 421 missing x-file-name on /data; 409 duplicate under
  x-disallow-duplicates (the status the service uses is not documented: 409 is our choice); 400 everything
  else that is wrong with the request or message (bad label, file name, x-metadata, body, signature).
- With an HMAC key the server *rejects* unsigned (alg none) and badly signed messages (400 "signature ...");
  the real service stores them marked. Without one, signatures are recorded as "unchecked" ("none" for alg
  none). "invalid" is part of the index vocabulary but never stored by this server.
- x-label and x-file-name are percent-decoded (Edge Impulse's Node client sends them encodeURIComponent'ed).
  A label with control characters, '/', '\\', a leading '.', or empty after stripping spaces, is refused.
- No label (x-no-label): the index says ``"label": null`` and the file is named ``unlabeled.<id>.<ext>``;
  the index, not the file name, is the truth about labels.
- Every stored name carries a unique id, so x-add-date-id is accepted and has no further effect.
- ``max_body`` limits the whole request body, for /files too (all parts together).
- Duplicates are found by the sha256 of the stored bytes; every stored sample's hash is kept in memory
  (loaded from index.jsonl at start) whether or not x-disallow-duplicates was sent.
- ``split`` sends a sample to training or testing by the sha256 of its bytes (about 80/20, deterministic).
- /files answers 200 with a per-part result; the top-level ``success`` is true only when every part was
  stored. Its ``sampleId`` is the index line's ``sample_id``.
- Multi-label samples (the Python SDK's ``structured_labels``): a part whose file name is
  ``structured_labels.labels`` holds ``{"version": 1, "type": "structured-labels", "structuredLabels":
  {file name: [{"label", "startIndex", "endIndex"}, ...]}}`` for files of the same request; each segment's
  label follows the label rules, 0 <= startIndex <= endIndex < the sample's rows. They are kept in the
  index as ``structured_labels``. ``x-bounding-boxes`` (a JSON list of ``{"label", "x", "y", "width",
  "height"}``, non-negative integers) is kept as ``bounding_boxes`` for every file of the request.

Dashboard (read-only; see the ``_Dashboard`` class): ``GET /`` is a page that lists the stored samples by
category, label and device with counts, plots a sample's axes against time when it is clicked (on a
<canvas>, drawn by the page's own script: no CDN, works offline), and updates live. Its assets are
``GET /dashboard/{dashboard.js,dashboard.css}`` (files of the package folder ``uingest_tools/dashboard``).
The page and its assets hold no data and are public. The data is served as JSON by:

- ``GET /api/dashboard/summary``: counts per category, per label (split by category) and per device, the
  total, and the 50 most recent samples;
- ``GET /api/dashboard/samples?category=&label=&device=&limit=``: the newest samples matching the filters
  (``label=`` or ``device=`` with an empty value selects samples without one), at most ``limit`` (<= 1000);
- ``GET /api/dashboard/samples/{sample_id}``: one sample's axes, decoded (cbor2/json) from its stored file,
  with times in ms; over 2000 rows each axis is reduced to the min and max of 1000 buckets (peaks survive);
  422 for a stored file that is not a data acquisition message (wav, csv, images);
- ``GET /api/dashboard/events``: Server-Sent Events; an ``event: summary`` (the summary JSON) when the
  stream opens and whenever samples were stored since (at most 5 a second), a comment every 15 s otherwise.

Auth choice: the dashboard's JSON endpoints need the same API key as ingestion (unless --no-auth), since
the server may listen on a LAN. It is taken from the x-api-key header or a ``key`` query parameter
(EventSource cannot send headers). The page is opened as ``/?key=K`` (or asks for the key); its script
keeps the key in the tab's sessionStorage, removes it from the address bar, and sends it as x-api-key
(``?key=`` only for the event stream). The request log line carries the path only, never the query string,
so a key in ``?key=`` is not logged. Responses forbid framing, sniffing and referrers; the page's
Content-Security-Policy allows only its own scripts and connections. No CORS headers are sent.

Open event streams do not hold up a shutdown: the server used by ``main`` and ``ServerThread`` (``_Server``)
ends them first, then uvicorn finishes the other requests as usual. (A plain ``uvicorn`` run of the app
would wait for open dashboards to disconnect.)

A sample is acknowledged only after its file is fsynced and renamed into place and its index line is
written and fsynced, so stopping the server (Ctrl-C, SIGTERM: uvicorn lets running requests finish) loses
no acknowledged sample. Temp files left by a crash (``.upload-*.tmp``, ``.store-*.tmp``) are removed at start.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.parse

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .acquisition import InvalidMessage, check_structure, decode, verify_signature

log = logging.getLogger("uingest.serve")

DEFAULT_MAX_BODY = 100 * 1024 * 1024
MEMORY_LIMIT = 1024 * 1024  # /data bodies above this are streamed to a temp file in the data dir
CATEGORIES = ("training", "testing", "anomaly", "split")
CONTENT_TYPES = {"application/cbor": "cbor", "application/json": "json"}
# extension -> kind; kinds cbor/json are validated as messages, the others are sanity-checked and kept as-is
FILE_TYPES = {
    ".cbor": "cbor",
    ".json": "json",
    ".wav": "wav",
    ".csv": "csv",
    ".jpg": "jpg",
    ".jpeg": "jpg",
    ".png": "png",
}
INDEX = "index.jsonl"
NO_LABEL_NAME = "unlabeled"
MAX_LABEL_BYTES = 128
MAX_NAME_BYTES = 255
_LABEL_PREFIX = re.compile(r"[a-zA-Z0-9\s\-_]+", re.ASCII)
_TRUE = ("1", "true", "yes", "on")


class Rejected(Exception):
    """The request cannot be accepted: status and a one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _one_line(text: str) -> str:
    return " ".join(str(text).splitlines()) or "error"


def _has_control(s: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in s)


def _header_text(value: str) -> str:
    """A header as text: raw UTF-8 bytes accepted, then percent-decoded (encodeURIComponent)."""
    raw = value.encode("latin-1")
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return urllib.parse.unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise Rejected(400, "header is not valid percent-encoded UTF-8: %r" % value)


def check_label(label: str) -> str:
    """Return the label, stripped of surrounding spaces, or raise Rejected(400)."""
    if _has_control(label):
        raise Rejected(400, "label must not contain control characters: %r" % label)
    label = label.strip()
    if not label:
        raise Rejected(400, "label is empty")
    if "/" in label or "\\" in label:
        raise Rejected(400, "label must not contain '/' or '\\': %r" % label)
    if label.startswith("."):
        raise Rejected(400, "label must not start with '.': %r" % label)
    if len(label.encode()) > MAX_LABEL_BYTES:
        raise Rejected(400, "label is longer than %d bytes" % MAX_LABEL_BYTES)
    return label


def check_file_name(name: str) -> str:
    """Return name if it is a plain file name (no path), else raise Rejected(400)."""
    if not name:
        raise Rejected(400, "file name is empty")
    if "/" in name or "\\" in name or "\0" in name or name in (".", "..") or _has_control(name):
        raise Rejected(400, "invalid file name %r: must be a plain name without '/', '\\', '..' or controls" % name)
    if len(name.encode()) > MAX_NAME_BYTES:
        raise Rejected(400, "file name is longer than %d bytes" % MAX_NAME_BYTES)
    return name


def infer_label(file_name: str) -> str:
    """Longest prefix of file_name made of ASCII letters, digits, whitespace, '-' and '_'."""
    m = _LABEL_PREFIX.match(file_name)
    label = m.group(0) if m else ""
    if not label.strip():
        raise Rejected(400, "cannot infer a label from file name %r: send x-label or x-no-label" % file_name)
    return check_label(label)


def _flag(request: Request, name: str) -> bool:
    return request.headers.get(name, "").strip().lower() in _TRUE


def _json_or_none(raw):
    """raw (str or bytes) as JSON, or None when it is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep ([[[[...); bad UTF-8 is a ValueError
        return None


def _parse_metadata(request: Request):
    raw = request.headers.get("x-metadata")
    if raw is None:
        return None
    meta = _json_or_none(raw)
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise Rejected(400, "x-metadata must be a JSON object of string values")
    return meta


def _parse_bounding_boxes(request: Request):
    raw = request.headers.get("x-bounding-boxes")
    if raw is None:
        return None
    boxes = _json_or_none(raw)
    ok = isinstance(boxes, list) and all(
        isinstance(b, dict)
        and isinstance(b.get("label"), str)
        and all(isinstance(b.get(k), int) and not isinstance(b.get(k), bool) and b[k] >= 0 for k in _BOX_KEYS)
        for b in boxes
    )
    if not ok:
        raise Rejected(400, 'x-bounding-boxes must be a JSON list of {"label", "x", "y", "width", "height"}')
    return [dict(label=check_label(b["label"]), **{k: b[k] for k in _BOX_KEYS}) for b in boxes]


_BOX_KEYS = ("x", "y", "width", "height")
STRUCTURED_LABELS_NAME = "structured_labels.labels"


def parse_structured_labels(data: bytes) -> dict:
    """{file name: [segment, ...]} from a structured_labels.labels part, or Rejected(400)."""
    doc = _json_or_none(data)
    per_file = doc.get("structuredLabels") if isinstance(doc, dict) else None
    if not (
        isinstance(doc, dict)
        and doc.get("version") == 1
        and doc.get("type") == "structured-labels"
        and isinstance(per_file, dict)
    ):
        raise Rejected(
            400,
            '%s must be {"version": 1, "type": "structured-labels", "structuredLabels": {file: [...]}}'
            % STRUCTURED_LABELS_NAME,
        )
    out = {}
    for name, segments in per_file.items():
        if not isinstance(segments, list) or not segments:
            raise Rejected(400, "%s: %s: expected a non-empty list of segments" % (STRUCTURED_LABELS_NAME, name))
        clean = []
        for seg in segments:
            if not isinstance(seg, dict) or not isinstance(seg.get("label"), str):
                raise Rejected(400, "%s: %s: each segment needs a label string" % (STRUCTURED_LABELS_NAME, name))
            start, end = seg.get("startIndex"), seg.get("endIndex")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)) or not 0 <= start <= end:
                raise Rejected(
                    400, "%s: %s: needs integers 0 <= startIndex <= endIndex" % (STRUCTURED_LABELS_NAME, name)
                )
            clean.append({"label": check_label(seg["label"]), "startIndex": start, "endIndex": end})
        out[name] = clean
    return out


def split_category(sha256_hex: str) -> str:
    """'training' for about 80% of hashes, 'testing' for the rest."""
    return "training" if int(sha256_hex[:8], 16) % 10 < 8 else "testing"


def validate_message(body: bytes, fmt: str, hmac_key=None) -> dict:
    """Check one data acquisition message; return its index fields or raise Rejected(400)."""
    try:
        msg = decode(body, fmt)
        payload = check_structure(msg)
    except InvalidMessage as e:
        raise Rejected(400, str(e))
    alg = msg["protected"]["alg"]
    if hmac_key:
        if alg != "HS256":
            raise Rejected(400, "signature missing: alg is %r but this server requires HS256" % alg)
        try:
            ok = verify_signature(body, fmt, hmac_key, msg)
        except InvalidMessage as e:
            raise Rejected(400, "signature cannot be checked: %s" % e)
        if not ok:
            raise Rejected(400, "signature does not match the server's HMAC key")
        signature = "valid"
    else:
        signature = "none" if alg == "none" else "unchecked"
    return {
        "device_name": payload.get("device_name"),
        "device_type": payload["device_type"],
        "sensors": [s["name"] for s in payload["sensors"]],
        "rows": len(payload["values"]),
        "interval_ms": payload["interval_ms"],
        "signature": signature,
    }


def check_file(data: bytes, kind: str) -> None:
    """Light sanity check of a file kept as-is; raise Rejected(400)."""
    if not data:
        raise Rejected(400, "file is empty")
    if kind == "wav" and not (data[:4] == b"RIFF" and data[8:12] == b"WAVE"):
        raise Rejected(400, "not a WAV file (no RIFF....WAVE header)")
    if kind == "png" and not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise Rejected(400, "not a PNG file")
    if kind == "jpg" and not data.startswith(b"\xff\xd8\xff"):
        raise Rejected(400, "not a JPEG file")
    if kind == "csv":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected(400, "CSV file is not UTF-8 text")


_NO_MESSAGE = dict.fromkeys(("device_name", "device_type", "sensors", "rows", "interval_ms", "signature"))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
)


def device_key(rec: dict):
    """How the dashboard names a sample's device: its device_name, else its device_type, else None (files)."""
    return rec.get("device_name") or rec.get("device_type") or None


class _Tally:
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


class Store:
    """The data folder: atomic sample files plus index.jsonl. Thread-safe; commits are serialized."""

    def __init__(self, data_dir: str):
        self.data_dir = os.path.abspath(data_dir)
        os.makedirs(self.data_dir, exist_ok=True)
        self.index_path = os.path.join(self.data_dir, INDEX)
        self.tally = _Tally()
        self.listeners: list = []  # called with no argument after each commit; must not block
        self._lock = threading.Lock()
        self._hashes: set[str] = set()
        self._next_sample = 1
        self._last_us = 0
        self._index_ends_clean = True
        self._load_index()
        self._remove_stale_temps()

    def _load_index(self) -> None:
        try:
            with open(self.index_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        self._index_ends_clean = not data or data.endswith(b"\n")
        n = 0
        for line in data.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash: ignored
            if not isinstance(rec, dict):
                continue
            n += 1
            self.tally.add(rec)
            if isinstance(rec.get("sha256"), str):
                self._hashes.add(rec["sha256"])
            if isinstance(rec.get("sample_id"), int):
                n = max(n, rec["sample_id"])
        self._next_sample = n + 1

    def _remove_stale_temps(self) -> None:
        dirs = [self.data_dir] + [os.path.join(self.data_dir, c) for c in CATEGORIES]
        for d in dirs:
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                if name.endswith(".tmp") and name.startswith((".upload-", ".store-")):
                    try:
                        os.unlink(os.path.join(d, name))
                    except OSError:
                        pass

    def spool_file(self):
        """A temp file in the data dir for a body being received: (file object, path)."""
        fd, path = tempfile.mkstemp(dir=self.data_dir, prefix=".upload-", suffix=".tmp")
        return os.fdopen(fd, "wb"), path

    def _unique_id(self) -> str:
        us = time.time_ns() // 1000
        if us <= self._last_us:
            us = self._last_us + 1
        self._last_us = us
        return "%x" % us

    def is_duplicate(self, sha: str) -> bool:
        return sha in self._hashes

    def commit(
        self,
        *,
        category: str,
        label,
        ext: str,
        data: bytes,
        fields: dict,
        file_name: str,
        metadata=None,
        disallow_duplicates: bool = False,
        src_path: str | None = None,
        extra: dict | None = None,
    ) -> dict:
        """Store data (already in src_path when given) and append its index line; return the record.

        Raises Rejected(409) for a duplicate when disallow_duplicates. Returns only once the file and the
        index line are on disk.
        """
        sha = hashlib.sha256(data).hexdigest()
        if category == "split":
            category = split_category(sha)
        with self._lock:
            if disallow_duplicates and sha in self._hashes:
                raise Rejected(409, "duplicate: this sample is already stored (x-disallow-duplicates)")
            folder = os.path.join(self.data_dir, category)
            os.makedirs(folder, exist_ok=True)
            prefix = label if label is not None else NO_LABEL_NAME
            while True:
                name = "%s.%s.%s" % (prefix, self._unique_id(), ext)
                final = os.path.join(folder, name)
                if not os.path.exists(final):
                    break
            tmp = None
            try:
                if src_path is not None:
                    fd = os.open(src_path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    tmp = src_path
                else:
                    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".store-", suffix=".tmp")
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, final)
                tmp = None
                _fsync_dir(folder)
            finally:
                if tmp is not None and tmp != src_path:
                    try:
                        os.unlink(tmp)
                    except OSError:
                        pass
            record = {
                "sample_id": self._next_sample,
                "file": os.path.relpath(final, self.data_dir).replace(os.sep, "/"),
                "category": category,
                "label": label,
                **fields,
                "sha256": sha,
                "file_name": file_name,
                "metadata": metadata,
                **(extra or {}),
                "received_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            }
            try:
                line = json.dumps(record, separators=(",", ":")) + "\n"
                if not self._index_ends_clean:
                    line = "\n" + line
                with open(self.index_path, "ab") as f:
                    f.write(line.encode())
                    f.flush()
                    os.fsync(f.fileno())
                self._index_ends_clean = True
            except BaseException:
                # not indexed, so not acknowledged: don't leave an orphan behind
                self._index_ends_clean = False
                try:
                    os.unlink(final)
                except OSError:
                    pass
                raise
            self._hashes.add(sha)
            self._next_sample += 1
            self.tally.add(record)
            for listener in self.listeners:
                try:
                    listener()
                except Exception:  # the sample is stored all the same
                    log.exception("dashboard listener failed")
            return record


class _LogRequests:
    """Pure ASGI middleware: one log line per HTTP request (no header values other than the label)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            state = scope.get("state") or {}
            client = scope.get("client")
            log.info(
                "%s %s %d label=%r bytes=%d remote=%s",
                scope.get("method"),
                scope.get("path"),
                status[0],
                state.get("uingest_label"),
                state.get("uingest_bytes", 0),
                "%s:%s" % tuple(client) if client else "-",
            )


class _App:
    """The request handlers, bound to one configuration and one Store."""

    def __init__(self, store: Store, api_key, hmac_key, no_auth: bool, max_body: int, memory_limit: int):
        self.store = store
        self.api_key = api_key.encode() if isinstance(api_key, str) else api_key
        self.hmac_key = hmac_key
        self.no_auth = no_auth
        self.max_body = max_body
        self.memory_limit = memory_limit

    # --- checks shared by both endpoints

    def _auth(self, request: Request) -> None:
        if self.no_auth:
            return
        given = request.headers.get("x-api-key")
        if not given:
            raise Rejected(401, "missing x-api-key header")
        if not hmac.compare_digest(given.encode("latin-1"), self.api_key):
            raise Rejected(401, "invalid API key")

    def _check_length(self, request: Request) -> None:
        cl = request.headers.get("content-length")
        if cl is not None and cl.strip().isdigit() and int(cl) > self.max_body:
            raise Rejected(413, "body of %s bytes is over the limit of %d bytes" % (cl.strip(), self.max_body))

    def _too_big(self) -> Rejected:
        return Rejected(413, "body is over the limit of %d bytes" % self.max_body)

    def _header_label(self, request: Request):
        """(no_label, label from x-label or None)."""
        no_label = _flag(request, "x-no-label")
        raw = request.headers.get("x-label")
        if raw is not None and raw.strip():
            return no_label, check_label(_header_text(raw))
        return no_label, None

    def _label_for(self, no_label: bool, header_label, file_name: str):
        if header_label is not None:
            return header_label
        if no_label:
            return None
        return infer_label(file_name)

    @staticmethod
    def _state(request: Request, label=None, nbytes=None) -> None:
        st = request.scope.setdefault("state", {})
        if label is not None:
            st["uingest_label"] = label
        if nbytes is not None:
            st["uingest_bytes"] = nbytes

    # --- /api/health

    async def health(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    # --- /api/{category}/data

    async def _receive_body(self, request: Request):
        """The whole body: (bytes, spool path or None). Over memory_limit, it goes through a temp file."""
        chunks: list[bytes] = []
        count = 0
        spool = path = None
        try:
            async for chunk in request.stream():
                count += len(chunk)
                self._state(request, nbytes=count)
                if count > self.max_body:
                    raise self._too_big()
                if spool is None and count > self.memory_limit:
                    spool, path = self.store.spool_file()
                    spool.writelines(chunks)
                    chunks = []
                if spool is not None:
                    spool.write(chunk)
                else:
                    chunks.append(chunk)
            if spool is None:
                return b"".join(chunks), None
            spool.close()
            spool = None
            with open(path, "rb") as f:
                return f.read(), path
        except BaseException:
            if spool is not None:
                spool.close()
            if path is not None:
                os.unlink(path)
            raise

    def _admit(self, request: Request):
        """Checks every upload passes first: category, key, size. Returns the
        category and the media type of the body."""
        category = request.path_params["category"]
        if category not in CATEGORIES:
            raise Rejected(404, "unknown category %r" % category)
        self._auth(request)
        self._check_length(request)
        return category, request.headers.get("content-type", "").split(";")[0].strip().lower()

    async def data(self, request: Request) -> Response:
        path = None
        try:
            category, media = self._admit(request)
            fmt = CONTENT_TYPES.get(media)
            if fmt is None:
                raise Rejected(415, "unsupported Content-Type %r: send application/cbor or application/json" % media)
            raw_name = request.headers.get("x-file-name")
            if raw_name is None or not raw_name.strip():
                raise Rejected(421, "missing x-file-name header")
            file_name = check_file_name(_header_text(raw_name).strip())
            no_label, header_label = self._header_label(request)
            label = self._label_for(no_label, header_label, file_name)
            self._state(request, label=label)
            metadata = _parse_metadata(request)
            body, path = await self._receive_body(request)
            fields = await anyio.to_thread.run_sync(validate_message, body, fmt, self.hmac_key)
            record = await anyio.to_thread.run_sync(
                lambda: self.store.commit(
                    category=category,
                    label=label,
                    ext=fmt,
                    data=body,
                    fields=fields,
                    file_name=file_name,
                    metadata=metadata,
                    disallow_duplicates=_flag(request, "x-disallow-duplicates"),
                    src_path=path,
                )
            )
            path = None  # renamed into place
            return PlainTextResponse(os.path.basename(record["file"]))
        except Rejected as e:
            return PlainTextResponse(_one_line(e.reason), status_code=e.status)
        except ClientDisconnect:
            return PlainTextResponse("client disconnected", status_code=400)
        except Exception:
            log.exception("error while storing a sample")
            return PlainTextResponse("internal server error", status_code=500)
        finally:
            if path is not None:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    # --- /api/{category}/files

    def _limited_request(self, request: Request) -> Request:
        count = 0

        async def receive():
            nonlocal count
            message = await request.receive()
            if message["type"] == "http.request":
                count += len(message.get("body", b""))
                self._state(request, nbytes=count)
                if count > self.max_body:
                    raise self._too_big()
            return message

        return Request(request.scope, receive)

    def _store_part(self, category, header_label, no_label, metadata, disallow, name, data, extra=None) -> dict:
        """Validate and store one uploaded file; runs in a worker thread. extra: its structured_labels
        and bounding_boxes, for the index."""
        check_file_name(name)
        ext = os.path.splitext(name)[1].lower()
        kind = FILE_TYPES.get(ext)
        if kind is None:
            raise Rejected(400, "unsupported file type %r: send .cbor, .json, .wav, .csv, .jpg or .png" % ext)
        label = self._label_for(no_label, header_label, name)
        if kind in ("cbor", "json"):
            fields = validate_message(data, kind, self.hmac_key)
        else:
            check_file(data, kind)
            fields = dict(_NO_MESSAGE)
        segments = (extra or {}).get("structured_labels")
        rows = fields.get("rows")
        if segments and rows is not None and segments[-1]["endIndex"] >= rows:
            raise Rejected(
                400, "structured labels reach row %d; the sample has %d rows" % (segments[-1]["endIndex"], rows)
            )
        return self.store.commit(
            category=category,
            label=label,
            ext=ext[1:],
            data=data,
            fields=fields,
            file_name=name,
            metadata=metadata,
            disallow_duplicates=disallow,
            extra=extra,
        )

    async def files(self, request: Request) -> Response:
        form = None
        try:
            category, media = self._admit(request)
            if media != "multipart/form-data":
                raise Rejected(415, "unsupported Content-Type %r: send multipart/form-data" % media)
            no_label, header_label = self._header_label(request)
            if header_label is not None:
                self._state(request, label=header_label)
            metadata = _parse_metadata(request)
            boxes = _parse_bounding_boxes(request)
            disallow = _flag(request, "x-disallow-duplicates")
            try:
                form = await self._limited_request(request).form(max_files=1000, max_fields=1000)
            except HTTPException as e:
                raise Rejected(400, "invalid multipart body: %s" % e.detail)
            parts = [v for k, v in form.multi_items() if k == "data"]
            structured = {}
            for part in [p for p in parts if getattr(p, "filename", None) == STRUCTURED_LABELS_NAME]:
                structured.update(parse_structured_labels(await part.read()))
                parts.remove(part)
            if not parts:
                raise Rejected(400, "no part named 'data' in the multipart body")
            unknown = sorted(set(structured) - {getattr(p, "filename", None) for p in parts})
            if unknown:
                raise Rejected(400, "%s names files not in this request: %s" % (STRUCTURED_LABELS_NAME, unknown))
            results = []
            labels = []
            for part in parts:
                name = getattr(part, "filename", None)
                if name is None:
                    results.append({"success": False, "fileName": None, "error": "part 'data' has no filename"})
                    continue
                data = await part.read()
                extra = {}
                if name in structured:
                    extra["structured_labels"] = sorted(structured[name], key=lambda s: s["endIndex"])
                if boxes is not None:
                    extra["bounding_boxes"] = boxes
                try:
                    record = await anyio.to_thread.run_sync(
                        self._store_part, category, header_label, no_label, metadata, disallow, name, data, extra
                    )
                except Rejected as e:
                    results.append({"success": False, "fileName": name, "error": _one_line(e.reason)})
                    continue
                labels.append(record["label"])
                results.append({"success": True, "fileName": name, "sampleId": record["sample_id"], "projectId": 1})
            if header_label is None and labels:
                self._state(request, label=",".join(sorted({str(x) for x in labels})))
            return JSONResponse({"success": all(r["success"] for r in results), "files": results})
        except Rejected as e:
            return JSONResponse({"success": False, "error": _one_line(e.reason)}, status_code=e.status)
        except ClientDisconnect:
            return JSONResponse({"success": False, "error": "client disconnected"}, status_code=400)
        except Exception:
            log.exception("error while storing files")
            return JSONResponse({"success": False, "error": "internal server error"}, status_code=500)
        finally:
            if form is not None:
                await form.close()


# --- dashboard

DASHBOARD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboard")
DASHBOARD_ASSETS = {  # URL name -> (file in DASHBOARD_DIR, media type)
    "dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
MAX_PLOT_POINTS = 2000  # per axis, in /api/dashboard/samples/{id}
SSE_KEEPALIVE = 15.0  # seconds between comments on an idle event stream
SSE_MIN_GAP = 0.2  # seconds between two summaries on one event stream
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


class _Hub:
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


class _Dashboard:
    """The dashboard's page, assets and read-only JSON endpoints (see the module docstring)."""

    def __init__(self, store: Store, api_key, no_auth: bool):
        self.store = store
        self.api_key = api_key.encode() if isinstance(api_key, str) else api_key
        self.no_auth = no_auth
        self.hub = _Hub()
        store.listeners.append(self.hub.notify)
        self.assets = {}
        for name, (file, media) in DASHBOARD_ASSETS.items():
            with open(os.path.join(DASHBOARD_DIR, file), "rb") as f:
                self.assets[name] = (f.read(), media)
        with open(os.path.join(DASHBOARD_DIR, "index.html"), "rb") as f:
            self.page_html = f.read()

    def _denied(self, request: Request):
        """None when the request may read the data, else the 401 response."""
        if self.no_auth:
            return None
        given = request.headers.get("x-api-key")
        if given:
            given_bytes = given.encode("latin-1")  # as _App._auth reads it
        else:
            given = request.query_params.get("key")
            given_bytes = given.encode() if given else b""
        if given and hmac.compare_digest(given_bytes, self.api_key):
            return None
        reason = "invalid API key" if given else "missing API key: send x-api-key or ?key="
        return JSONResponse({"error": reason}, status_code=401, headers=_SECURITY_HEADERS)

    @staticmethod
    def _json(data, status_code: int = 200) -> Response:
        return JSONResponse(data, status_code=status_code, headers=_SECURITY_HEADERS)

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
        return self._denied(request) or self._json(self.store.tally.summary())

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
        found = self.store.tally.select(
            category=q.get("category") or None,
            label=(label or None) if label != () else (),
            device=(device or None) if device != () else (),
            limit=limit,
        )
        return self._json({"samples": found})

    def _read_sample(self, rec: dict) -> dict:
        """Runs in a worker thread: the sample's axes, or Rejected."""
        ext = os.path.splitext(rec["file"] or "")[1].lower()
        fmt = {".cbor": "cbor", ".json": "json"}.get(ext)
        if fmt is None:
            raise Rejected(422, "sample %d is a %s file, not a data acquisition message" % (rec["sample_id"], ext))
        path = os.path.join(self.store.data_dir, *rec["file"].split("/"))
        try:
            with open(path, "rb") as f:
                body = f.read()
        except OSError:
            raise Rejected(404, "the file of sample %d is gone" % rec["sample_id"])
        try:
            payload = check_structure(decode(body, fmt))
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
        rec = self.store.tally.get(sample_id)
        if rec is None:
            return self._json({"error": "no sample %d" % sample_id}, 404)
        try:
            data = await anyio.to_thread.run_sync(self._read_sample, rec)
        except Rejected as e:
            return self._json({"error": _one_line(e.reason)}, e.status)
        return self._json(data)

    async def events(self, request: Request) -> Response:
        denied = self._denied(request)
        if denied:
            return denied
        hub, tally = self.hub, self.store.tally

        async def stream():
            loop_event = hub.subscribe()
            event = loop_event[1]
            try:
                yield "retry: 2000\n\n"
                sent = None
                while not hub.closing:
                    event.clear()
                    if tally.version != sent:
                        summary = tally.summary()
                        sent = summary["version"]
                        yield "event: summary\ndata: %s\n\n" % json.dumps(summary, separators=(",", ":"))
                        await anyio.sleep(SSE_MIN_GAP)  # bursts of uploads: one summary per gap
                        continue
                    with anyio.move_on_after(SSE_KEEPALIVE):
                        await event.wait()
                    if not event.is_set():
                        yield ": keep-alive\n\n"
            finally:
                hub.unsubscribe(loop_event)

        headers = dict(_SECURITY_HEADERS, **{"X-Accel-Buffering": "no"})
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def create_app(
    data_dir,
    api_key=None,
    hmac_key=None,
    no_auth=False,
    max_body=DEFAULT_MAX_BODY,
    *,
    memory_limit=MEMORY_LIMIT,
) -> Starlette:
    """The ingestion server as an ASGI app storing into data_dir.

    api_key is required unless no_auth. With hmac_key, messages must carry a valid HS256 signature.
    memory_limit: /data bodies larger than this are received into a temp file in data_dir.
    """
    if not no_auth and not api_key:
        raise ValueError("api_key is required unless no_auth=True")
    if max_body < 1:
        raise ValueError("max_body must be positive")
    handlers = _App(Store(data_dir), api_key, hmac_key or None, no_auth, int(max_body), int(memory_limit))
    dash = _Dashboard(handlers.store, api_key, no_auth)
    app = Starlette(
        routes=[
            Route("/api/health", handlers.health, methods=["GET"]),
            Route("/api/dashboard/summary", dash.summary, methods=["GET"]),
            Route("/api/dashboard/samples", dash.samples, methods=["GET"]),
            Route("/api/dashboard/samples/{sample_id:int}", dash.sample, methods=["GET"]),
            Route("/api/dashboard/events", dash.events, methods=["GET"]),
            Route("/api/{category}/data", handlers.data, methods=["POST"]),
            Route("/api/{category}/files", handlers.files, methods=["POST"]),
            Route("/", dash.page, methods=["GET"]),
            Route("/dashboard/{name}", dash.asset, methods=["GET"]),
        ],
        middleware=[Middleware(_LogRequests)],
    )
    app.state.store = handlers.store
    app.state.dashboard_hub = dash.hub
    return app


class _Server(uvicorn.Server):
    """uvicorn's server, ending the dashboard's event streams before its graceful shutdown (which waits for
    every open response) so that they cannot hold it up."""

    def _hub(self):
        state = getattr(self.config.app, "state", None)
        return getattr(state, "dashboard_hub", None)

    async def startup(self, sockets=None) -> None:
        hub = self._hub()
        if hub is not None:
            hub.open()
        await super().startup(sockets)

    async def shutdown(self, sockets=None) -> None:
        hub = self._hub()
        if hub is not None:
            hub.close()
        await super().shutdown(sockets)


class ServerThread:
    """Run an app with uvicorn in a background thread (for tests and demos).

    port=0 picks a free port; .port and .url are known once start() returns.
    With ssl_certfile (PEM: certificate chain, and the key unless ssl_keyfile names it) it serves https.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, ssl_certfile=None, ssl_keyfile=None):
        self.app = app
        self.host = host
        self.port = port
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        self.server = None
        self._thread = None
        self._sock = None

    @property
    def url(self) -> str:
        return "%s://%s:%d" % ("https" if self.ssl_certfile else "http", self.host, self.port)

    def start(self, timeout: float = 10.0) -> ServerThread:
        # proto IPPROTO_TCP, as uvicorn's own bind does: asyncio sets TCP_NODELAY on accepted
        # connections only then, and without it kept-alive replies stall ~40 ms (Nagle + delayed ACK)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            log_level="warning",
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
        )
        self.server = _Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("uingest serve: server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _size(text: str) -> int:
    """Bytes, with an optional K, M or G suffix (powers of 1024)."""
    t = text.strip().upper().removesuffix("B")
    mult = 1
    if t[-1:] in ("K", "M", "G"):
        mult = 1024 ** ("KMG".index(t[-1]) + 1)
        t = t[:-1]
    try:
        n = int(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError("expected a size in bytes such as 1048576 or 100M, got %r" % text)
    if n < 1:
        raise argparse.ArgumentTypeError("size must be positive")
    return n


class _Terminated(Exception):
    pass


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="uingest serve", description="Local Edge Impulse-compatible ingestion server (stores samples on disk)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4810, help="port (default 4810)")
    parser.add_argument("--data-dir", default="./dataset", help="where samples are stored (default ./dataset)")
    parser.add_argument("--api-key", help="required x-api-key value; prefer the UINGEST_API_KEY environment variable")
    parser.add_argument("--no-auth", action="store_true", help="accept requests without an API key")
    parser.add_argument(
        "--hmac-key", help="require valid HS256 signatures with this key; prefer the UINGEST_HMAC_KEY variable"
    )
    parser.add_argument(
        "--max-body", type=_size, default=DEFAULT_MAX_BODY, help="largest request body, e.g. 100M (default)"
    )
    parser.add_argument(
        "--ssl-certfile", help="serve https with this PEM certificate chain (and key, unless --ssl-keyfile is given)"
    )
    parser.add_argument("--ssl-keyfile", help="PEM private key for --ssl-certfile")
    args = parser.parse_args(argv)
    if args.ssl_keyfile and not args.ssl_certfile:
        parser.error("--ssl-keyfile needs --ssl-certfile")
    api_key = args.api_key or os.environ.get("UINGEST_API_KEY") or None
    hmac_key = args.hmac_key or os.environ.get("UINGEST_HMAC_KEY") or None
    if not api_key and not args.no_auth:
        print(
            "uingest serve: no API key: pass --api-key, set UINGEST_API_KEY, or run an open server with --no-auth",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(args.data_dir, api_key=api_key, hmac_key=hmac_key, no_auth=args.no_auth, max_body=args.max_body)
    log.info(
        "storing into %s; %s; signatures %s; max body %d bytes",
        os.path.abspath(args.data_dir),
        "no authentication" if args.no_auth else "x-api-key required",
        "must verify" if hmac_key else "not checked",
        args.max_body,
    )
    shown_host = "[%s]" % args.host if ":" in args.host else args.host
    log.info(
        "dashboard: %s://%s:%d/%s",
        "https" if args.ssl_certfile else "http",
        shown_host,
        args.port,
        "" if args.no_auth else " (open it as /?key=<API key>, or type the key in the page)",
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        log_level="info",
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: uvicorn handles no signals there either
        previous = None
    try:
        _Server(config).run()
    except (KeyboardInterrupt, _Terminated):
        pass  # uvicorn has already shut down gracefully: every acknowledged sample is on disk
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
