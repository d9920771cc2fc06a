"""The ingestion API of `uingest serve` (shared/docs/ingestion-protocol.md), on Starlette.

Endpoints: ``POST /api/{training,testing,anomaly,split}/data`` (one message, application/cbor or
application/json; Edge Impulse's DataForwarder also posts to ``split``), ``POST
/api/{training,testing,anomaly,split}/files`` (multipart/form-data, parts named ``data``) and ``GET
/api/health`` (no key needed, answers ``ok``). What is checked: collector_rules; where it is stored:
datafolder.

Choices where the real service is unknown or where we are stricter:

- Status codes: 401 missing/wrong x-api-key; 404 unknown category; 413 body over ``max_body`` (Content-Length
  or streamed count), or a message too large to check (its fields other than the values over
  large_messages.FIELDS_LIMIT, or one row over ROW_LIMIT); 415 unsupported Content-Type; 421 missing
  x-file-name on /data; 409 duplicate under x-disallow-duplicates (the status the service uses is not
  documented: 409 is our choice); 507 when the server's disk is full (nothing of the request stored; logged
  at most once a minute; storing resumes by itself when there is space again); 400 everything else that is
  wrong with the request or message (bad label, file name, x-metadata, body, signature, a multipart body
  cut before its closing boundary).
- With an HMAC key the server *rejects* unsigned (alg none) and badly signed messages (400 "signature ...");
  the real service stores them marked. Without one, signatures are recorded as "unchecked" ("none" for alg
  none). "invalid" is part of the index vocabulary but never stored by this server.
- ``max_body`` limits the whole request body, for /files too (all parts together).
- /files answers 200 with a per-part result; the top-level ``success`` is true only when every part was
  stored, and when it is false the top-level ``error`` gives the failed parts' reasons (what the uploader
  shows). Its ``sampleId`` is the index line's ``sample_id``. A part that fails its own check (type, label,
  message, signature, duplicate) fails alone; the others are stored together, all or none
  (DataFolder.commit_all). A request that is bad as a whole (cut body, bad header, too big, full disk)
  stores none of its files.
- Label files, parts of the same request as Edge Impulse's uploader and SDK send them: a
  ``structured_labels.labels`` part (multi-label samples) is kept in the index as ``structured_labels``,
  ``bounding_boxes.labels`` as ``bounding_boxes`` (``x-bounding-boxes`` gives them to the files the file
  does not name), ``label_map.labels`` as ``label_map``. A label file that fails its check, or names a file
  not in the request, refuses the whole request (400, nothing stored), as do segments that do not cover the
  rows of the file they label (collector_rules.LabelFileRejected).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
import os
import queue
import threading

from starlette.exceptions import HTTPException
from starlette.formparsers import parse_options_header
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .collector_rules import (
    CONTENT_TYPES,
    LABEL_FILES,
    MESSAGE_FIELDS,
    MESSAGE_KINDS,
    LabelFileRejected,
    Rejected,
    check_file,
    check_file_name,
    check_label,
    check_segments_cover,
    check_segments_fit,
    file_kind,
    header_text,
    infer_label,
    parse_bounding_boxes,
    parse_metadata,
    validate_message,
)
from .common import FILE_CATEGORIES
from .datafolder import DataFolder, is_disk_full

log = logging.getLogger("uingest.serve")

_TRUE = ("1", "true", "yes", "on")
INFORMATIONAL_MAX = 200  # characters kept of x-upload-source and x-device-type
LABEL_FILE_MAX = 1024 * 1024  # a label file's bytes: some 20,000 segments or boxes, held in memory and the index


def header(request: Request, name: str, default=None):
    """The first header called name (lower case), as Starlette's request.headers.get reads it (latin-1), or
    default. From a table made once a request: request.headers.get scans every header for each name, and
    raises and catches a KeyError inside for each missing one (a tenth of the event loop's time at 1000
    windows/s)."""
    table = request.scope.get("uingest_headers")
    if table is None:  # reversed: the first of a repeated header is the one kept, as Starlette's
        table = request.scope["uingest_headers"] = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(request.scope["headers"])
        }
    return table.get(name, default)


def api_key_problem(request: Request, api_key: bytes | None, query: bool = False):
    """None when the request may go on, else "missing" or "invalid". api_key None: the server needs none
    (--no-auth). The key is the x-api-key header, or with query the ``key`` query parameter (EventSource
    cannot send headers). Compared in constant time."""
    if api_key is None:
        return None
    given = header(request, "x-api-key")
    if given:
        given_bytes = given.encode("latin-1")  # a header's bytes as they came
    elif query and request.query_params.get("key"):
        given_bytes = request.query_params["key"].encode()
    else:
        return "missing"
    return None if hmac.compare_digest(given_bytes, api_key) else "invalid"


def _flag(request: Request, name: str) -> bool:
    return header(request, name, "").strip().lower() in _TRUE


def _state(request: Request, label=None, nbytes=None) -> None:
    """What the request log line shows (serve's middleware): the label and the bytes received."""
    st = request.scope.setdefault("state", {})
    if label is not None:
        st["uingest_label"] = label
    if nbytes is not None:
        st["uingest_bytes"] = nbytes


# The worker threads that check and store (one pool per process, made on first use). A trip through asyncio's
# executor costs under half of one through anyio.to_thread (its cancel scope, capacity limiter and run-variable
# look-ups: 25 against 60 us in a micro-benchmark; anyio's trip was 120 us a window of the event loop's 340 in the
# 1000 windows/s profile); 40 threads, anyio's default, for the group commit: on a disk that many windows wait on
# one flush at once (datafolder's syncfs, or their fsyncs where there is none).
WORKER_THREADS = 40
_workers: concurrent.futures.ThreadPoolExecutor | None = None
_workers_lock = threading.Lock()


async def in_worker(fn, *args):
    """fn(*args) in a worker thread, off the event loop."""
    global _workers
    if _workers is None:
        with _workers_lock:
            if _workers is None:
                _workers = concurrent.futures.ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="uingest-worker")
    return await asyncio.get_running_loop().run_in_executor(_workers, fn, *args)


COMMITTER_BODY_MAX = 64 * 1024  # /data bodies up to this are checked and stored by the committer


class _Committer:
    """The one thread that checks and stores the small /data windows, every device's (one per process, started
    on first use), where the data folder flushes its filesystem once for many files (syncfs): it takes every
    window waiting, checks each (its own failure its own reply), stores those that pass in one group
    (DataFolder.commit_each: one flush for their files, one for their names and index lines), and wakes each
    event loop once for all their replies. A worker thread per window, which the larger bodies, /files and
    folders that fsync each file still take, cost at 1000 windows/s on a disk a fifth of the server's time in
    the kernel's futexes: the GIL, the group commit's lock and its flush's condition passed between up to 40
    threads."""

    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0  # groups stored (tests, the bench)

    def submit(self, folder: DataFolder, check) -> asyncio.Future:
        """A future of the stored record (or the Rejected or OSError that kept it out) of the sample check()
        returns (a commit_each item; it runs in the committer's thread and raises Rejected for a bad window)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._thread is None or not self._thread.is_alive():  # first use, or (a bug) it ended: a new one
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="uingest-committer", daemon=True)
                    self._thread.start()
        self._jobs.put((folder, check, future, loop))
        return future

    def _run(self) -> None:
        while True:
            jobs = [self._jobs.get()]
            outcomes: list = []
            try:  # never the thread's end: every window waiting on it would wait for ever
                while True:
                    try:
                        jobs.append(self._jobs.get_nowait())
                    except queue.Empty:
                        break
                outcomes = [None] * len(jobs)
                self._store(jobs, outcomes)
            except BaseException as e:
                log.exception("error while storing samples")
                outcomes = outcomes or [None] * len(jobs)
                outcomes = [_as_error(e) if o is None else o for o in outcomes]
            self.batches += 1
            replies: dict = {}
            for (_, _, future, loop), outcome in zip(jobs, outcomes):
                replies.setdefault(loop, []).append((future, outcome))
            for loop, settled in replies.items():
                try:
                    loop.call_soon_threadsafe(_settle, settled)
                except RuntimeError:  # that loop is closed: no one waits for these replies
                    pass

    @staticmethod
    def _store(jobs: list, outcomes: list) -> None:
        folders: dict = {}  # folder -> [(job index, sample)]
        for i, (folder, check, _, _) in enumerate(jobs):
            try:
                folders.setdefault(folder, []).append((i, check()))
            except BaseException as e:  # this window's own reply; the others go on
                outcomes[i] = _as_error(e)
        for folder, checked in folders.items():
            for (i, _), outcome in zip(checked, folder.commit_each([sample for _, sample in checked])):
                outcomes[i] = outcome


def _as_error(e: BaseException) -> Exception:
    """e as a request's error: a BaseException that is not an Exception (SystemExit, KeyboardInterrupt) raised in
    a handler would stop the event loop, so it becomes a RuntimeError (a 500)."""
    if isinstance(e, Exception):
        return e
    error = RuntimeError("storing was interrupted: %r" % e)
    error.__cause__ = e
    return error


def _settle(settled: list) -> None:
    for future, outcome in settled:
        if future.done():  # its request was cancelled
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


_committer = _Committer()


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class _ClosingDelimiter:
    """Watches a multipart body go by for its closing delimiter (CRLF "--" boundary "--"). The multipart
    parser does not say whether the body reached it, and a body cut before it must store nothing."""

    def __init__(self, boundary: bytes):
        self.delimiter = b"\r\n--" + boundary + b"--"
        self.tail = b"\r\n"  # a body may start with its closing delimiter (no parts)
        self.seen = False

    def feed(self, chunk: bytes) -> None:
        if not self.seen:
            window = self.tail + chunk
            self.seen = self.delimiter in window
            self.tail = window[-(len(self.delimiter) - 1) :]


class Ingestion:
    """The ingestion routes, bound to one configuration and one data folder."""

    def __init__(self, folder: DataFolder, api_key: bytes | None, hmac_key, max_body: int, memory_limit: int):
        self.folder = folder
        self.api_key = api_key
        self.hmac_key = hmac_key
        self.max_body = max_body
        self.memory_limit = memory_limit

    def routes(self) -> list[Route]:
        return [
            Route("/api/health", self.health, methods=["GET"]),
            Route("/api/{category}/data", self.data, methods=["POST"]),
            Route("/api/{category}/files", self.files, methods=["POST"]),
        ]

    # --- checks shared by both endpoints

    def _check_length(self, request: Request) -> None:
        cl = header(request, "content-length")
        if cl is not None and cl.strip().isdigit() and int(cl) > self.max_body:
            raise Rejected(413, "body of %s bytes is over the limit of %d bytes" % (cl.strip(), self.max_body))

    def _too_big(self) -> Rejected:
        return Rejected(413, "body is over the limit of %d bytes" % self.max_body)

    def _admit(self, request: Request):
        """Checks every upload passes first: category, key, size. Returns the
        category and the media type of the body."""
        category = request.path_params["category"]
        if category not in FILE_CATEGORIES:
            raise Rejected(404, "unknown category %r" % category)
        problem = api_key_problem(request, self.api_key)
        if problem:
            # "Invalid API key": the service's words, which its clients show
            raise Rejected(401, "missing x-api-key header" if problem == "missing" else "Invalid API key")
        self._check_length(request)
        return category, header(request, "content-type", "").split(";")[0].strip().lower()

    @staticmethod
    def _told(request: Request, fields: dict) -> dict:
        """fields with what the client told about itself, as Edge Impulse's uploader and SDK send it:
        x-upload-source as upload_source, x-device-type as device_type when the sample names none (a file)."""
        told = {}
        for name, field in (("x-upload-source", "upload_source"), ("x-device-type", "device_type")):
            raw = header(request, name)
            if raw and raw.strip():
                try:
                    raw = header_text(raw, name)
                except Rejected:  # not percent-encoded UTF-8: informational, kept as it came
                    pass
                told[field] = raw.strip()[:INFORMATIONAL_MAX]
            else:
                told[field] = None
        out = dict(fields, upload_source=told["upload_source"])
        if not out.get("device_type"):
            out["device_type"] = told["device_type"]
        return out

    @staticmethod
    def _header_label(request: Request):
        """(no_label, label from x-label or None)."""
        no_label = _flag(request, "x-no-label")
        raw = header(request, "x-label")
        if raw is not None and raw.strip():
            return no_label, check_label(header_text(raw, "x-label"))
        return no_label, None

    @staticmethod
    def _label_for(no_label: bool, header_label, file_name: str):
        if header_label is not None:
            return header_label
        if no_label:
            return None
        return infer_label(file_name)

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
                _state(request, nbytes=count)
                if count > self.max_body:
                    raise self._too_big()
                if spool is None and count > self.memory_limit:
                    spool, path = self.folder.spool_file()
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
            return await in_worker(_read_file, path), path  # off the event loop: it may be large
        except BaseException:
            if spool is not None:
                spool.close()
            if path is not None:
                os.unlink(path)
            raise

    async def data(self, request: Request) -> Response:
        path = None
        try:
            category, media = self._admit(request)
            fmt = CONTENT_TYPES.get(media)
            if fmt is None:
                raise Rejected(415, "unsupported Content-Type %r: send application/cbor or application/json" % media)
            raw_name = header(request, "x-file-name")
            if raw_name is None or not raw_name.strip():
                raise Rejected(421, "missing x-file-name header")
            file_name = check_file_name(header_text(raw_name, "x-file-name").strip())
            no_label, header_label = self._header_label(request)
            label = self._label_for(no_label, header_label, file_name)
            _state(request, label=label)
            metadata = parse_metadata(header(request, "x-metadata"))
            body, path = await self._receive_body(request)
            disallow = _flag(request, "x-disallow-duplicates")

            def checked():  # the sample to store, or Rejected: run off the event loop
                return dict(
                    category=category,
                    label=label,
                    ext=fmt,
                    data=body,
                    fields=self._told(request, validate_message(body, fmt, self.hmac_key)),
                    file_name=file_name,
                    metadata=metadata,
                    disallow_duplicates=disallow,
                    src_path=path,
                )

            if path is None and len(body) <= COMMITTER_BODY_MAX and self.folder.flushes_its_filesystem:
                record = await _committer.submit(self.folder, checked)
            else:  # a large body's check takes long, and fsyncs, one a file, are best run side by side: in a
                # worker thread of its own, with the others' going on
                record = await in_worker(lambda: self.folder.commit(**checked()))
            path = None  # in place: renamed, or copied and removed
            return PlainTextResponse(os.path.basename(record["file"]))
        except Rejected as e:
            return PlainTextResponse(e.line, status_code=e.status)
        except ClientDisconnect:
            return PlainTextResponse("client disconnected", status_code=400)
        except Exception as e:
            if is_disk_full(e):  # while the body was spooled to the data dir
                return PlainTextResponse(self.folder.disk_full().line, status_code=507)
            log.exception("error while storing a sample")
            return PlainTextResponse("internal server error", status_code=500)
        finally:
            if path is not None:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    # --- /api/{category}/files

    def _limited_request(self, request: Request, closing: _ClosingDelimiter | None) -> Request:
        count = 0

        async def receive():
            nonlocal count
            message = await request.receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                count += len(body)
                _state(request, nbytes=count)
                if count > self.max_body:
                    raise self._too_big()
                if closing is not None:
                    closing.feed(body)
            return message

        return Request(request.scope, receive)

    def _check_part(self, category, header_label, no_label, metadata, disallow, name, data, extra=None) -> dict:
        """Validate one uploaded file (runs in a worker thread): the sample to commit; raises Rejected. extra: its
        structured_labels, bounding_boxes and label_map, for the index. A file kept as it is is stored under the
        extension its bytes say (an image named .jpg holding PNG bytes: .png; .txt: .csv); the index keeps the
        name it was sent under (file_name)."""
        check_file_name(name)
        ext, kind = file_kind(name)
        label = self._label_for(no_label, header_label, name)
        if kind in MESSAGE_KINDS:
            fields = validate_message(data, kind, self.hmac_key)
            rows = fields["rows"]
        else:
            ext, rows = check_file(data, kind)  # rows of a CSV, frames of a WAV: what structured labels cover
            fields = dict.fromkeys(MESSAGE_FIELDS)
        segments = (extra or {}).get("structured_labels")
        check_segments_fit(segments, rows, name)  # LabelFileRejected: the request is refused whole
        check_segments_cover(segments, rows, name)
        return dict(
            category=category,
            label=label,
            ext=ext,
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
                _state(request, label=header_label)
            metadata = parse_metadata(header(request, "x-metadata"))
            boxes = parse_bounding_boxes(header(request, "x-bounding-boxes"))
            disallow = _flag(request, "x-disallow-duplicates")
            boundary = parse_options_header(header(request, "content-type", ""))[1].get(b"boundary")
            closing = _ClosingDelimiter(boundary) if boundary else None  # none: the parser refuses it
            try:
                form = await self._limited_request(request, closing).form(max_files=1000, max_fields=1000)
            except HTTPException as e:
                raise Rejected(400, "invalid multipart body: %s" % e.detail)
            if closing is not None and not closing.seen:  # cut: all or nothing
                raise Rejected(400, "invalid multipart body: it ends before its closing boundary")
            parts = [v for k, v in form.multi_items() if k == "data"]
            # label files (collector_rules.LABEL_FILES), parts of the same request as the files they name: one
            # that fails its check refuses the whole request, so nothing is stored without its labels
            labelled: dict = {field: {} for field, _ in LABEL_FILES.values()}  # index field -> {file name: ...}
            for part in [p for p in parts if getattr(p, "filename", None) in LABEL_FILES]:
                field, parse = LABEL_FILES[part.filename]
                if (part.size or 0) > LABEL_FILE_MAX:
                    too_big = "%s is over %d bytes, the most this server reads of a label file"
                    raise Rejected(413, too_big % (part.filename, LABEL_FILE_MAX))
                # parsed in a worker thread: a label file of a few MB must not hold other devices' posts
                labelled[field].update(await in_worker(parse, await part.read()))
                parts.remove(part)
            if not parts:
                raise Rejected(400, "no part named 'data' in the multipart body")
            names = {getattr(p, "filename", None) for p in parts}
            for label_file, (field, _) in LABEL_FILES.items():
                unknown = sorted(set(labelled[field]) - names)
                if unknown:
                    raise Rejected(400, "%s names files not in this request: %s" % (label_file, unknown))
            results: list = []  # per part: a result, or the index of its sample in samples
            samples = []
            for part in parts:
                name = getattr(part, "filename", None)
                if name is None:
                    results.append({"success": False, "fileName": None, "error": "part 'data' has no filename"})
                    continue
                data = await part.read()
                extra = {}
                if name in labelled["structured_labels"]:
                    extra["structured_labels"] = sorted(
                        labelled["structured_labels"][name], key=lambda s: s["endIndex"]
                    )
                file_boxes = labelled["bounding_boxes"].get(name, boxes)  # its own boxes win over x-bounding-boxes
                if file_boxes is not None:
                    extra["bounding_boxes"] = file_boxes
                if name in labelled["label_map"]:
                    extra["label_map"] = labelled["label_map"][name]
                try:
                    sample = await in_worker(
                        self._check_part, category, header_label, no_label, metadata, disallow, name, data, extra
                    )
                except LabelFileRejected:
                    raise  # its label file fails against it: nothing of the request is stored
                except Rejected as e:
                    results.append({"success": False, "fileName": name, "error": e.line})
                    continue
                sample["fields"] = self._told(request, sample["fields"])
                results.append(len(samples))
                samples.append(sample)
            # the files that passed their checks, stored all or none
            outcomes = await in_worker(self.folder.commit_all, samples) if samples else []
            labels = []
            for i, r in enumerate(results):
                if isinstance(r, dict):
                    continue
                outcome, name = outcomes[r], samples[r]["file_name"]
                if isinstance(outcome, Rejected):
                    results[i] = {"success": False, "fileName": name, "error": outcome.line}
                else:
                    labels.append(outcome["label"])
                    results[i] = {"success": True, "fileName": name, "sampleId": outcome["sample_id"], "projectId": 1}
            if header_label is None and labels:
                _state(request, label=",".join(sorted({str(x) for x in labels})))
            reply: dict = {"success": all(r["success"] for r in results), "files": results}
            failed = [r for r in results if not r["success"]]
            if failed:
                # Edge Impulse's uploader reads the top-level error of a reply that is not a success (before the
                # files'): without one it shows a bare "Error"
                shown = ["%s: %s" % (r["fileName"] or "(no file name)", r["error"]) for r in failed[:5]]
                more = " (+%d more: see files)" % (len(failed) - 5) if len(failed) > 5 else ""
                reply["error"] = failed[0]["error"] if len(failed) == 1 else "; ".join(shown) + more
            return JSONResponse(reply)
        except Rejected as e:
            return JSONResponse({"success": False, "error": e.line}, status_code=e.status)
        except ClientDisconnect:
            return JSONResponse({"success": False, "error": "client disconnected"}, status_code=400)
        except Exception as e:
            if is_disk_full(e):
                return JSONResponse({"success": False, "error": self.folder.disk_full().line}, status_code=507)
            log.exception("error while storing files")
            return JSONResponse({"success": False, "error": "internal server error"}, status_code=500)
        finally:
            if form is not None:
                await form.close()
