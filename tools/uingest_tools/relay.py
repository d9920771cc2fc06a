"""`uingest relay`: upload what `uingest serve` collected to an ingestion service (Edge Impulse by default).

Reads ``<data-dir>/index.jsonl`` (or, in a folder without one, its files laid out
``<category>/<label>.<anything>.<ext>``: see scan_folder) and posts each sample's file, one per request, to
``<url>/api/<category>/files`` (multipart/form-data, part ``data``, filename = the stored file's base name),
keeping its category and label (``x-label``, percent-encoded when it is not plain ASCII; ``x-no-label: 1``
for an unlabeled sample), with ``x-disallow-duplicates: 1`` and ``x-metadata``: the sample's own metadata
plus ``device_name`` and ``device_type``, all strings. HTTP is urllib3: one kept-alive connection, a timeout
on every socket operation, its ``Retry`` for the retries and their backoff.

Resumable: every sample the service confirmed (stored, or answered as a duplicate) is appended, and
fsynced, to ``<data-dir>/.relay-<host>.jsonl`` as ``{"sha256", "url", ...}``; a later run skips the samples
whose sha256 is listed there for the same URL. A sample stored by the service whose answer was lost (an
interruption, a dropped connection) is sent again on the next run and the service answers that it is a
duplicate: it counts as already there. One relay per state file at a time (an flock guards it).

Answers: 200 with a per-file ``success`` true: uploaded; a per-file error mentioning a duplicate, or 409:
already there; 401: stop at once (exit 2); 408, 429, 5xx, connection errors and timeouts: retried with
exponential backoff (``--attempts`` tries, ``--retry-delay`` doubling, capped at 60 s; a ``Retry-After`` on
413, 429 or 503 is waited instead, also at most 60 s), and when a sample still fails the run stops (the
service looks down: run again later); any other 4xx: the sample is reported as failed with the service's
reason and the run goes on. A file missing or changed since it was stored (sha256) is failed too. The API
key is never printed.

Exit status: 0 when every sample is there, 1 when some failed, 2 for a refused key or a usage error, 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import os
import re
import ssl
import sys
import urllib.parse

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, InvalidHeader, ReadTimeoutError
from urllib3.util.retry import Retry
from urllib3.util.ssl_match_hostname import CertificateError

from .common import DATA_CATEGORIES as CATEGORIES
from .common import (
    DEFAULT_URL,
    FILE_TYPES,
    MEDIA_TYPES,
    ArgumentParser,
    add_key_options,
    fsync_path,
    missing_api_key,
    number_option,
    one_line,
    resolve_keys,
)
from .datafolder import INDEX, read_index
from .progress import Progress

DEFAULT_TIMEOUT = 30.0
DEFAULT_ATTEMPTS = 5
DEFAULT_RETRY_DELAY = 1.0
MAX_DELAY = 60.0
RETRY_STATUSES = frozenset((408, 429, *range(500, 1000)))  # 5xx and anything above
_DUPLICATE = re.compile(r"duplicate|already exist", re.IGNORECASE)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
PART_TYPES = {ext: MEDIA_TYPES[kind] for ext, kind in FILE_TYPES.items()}  # extension -> Content-Type
EPILOG = """\
examples:
  UINGEST_API_KEY=ei_0123... uingest relay --data-dir ./dataset
  uingest relay --data-dir ./dataset --url http://127.0.0.1:4811 --api-key ei_local

Run it again at any time: samples already confirmed by that URL (listed in <data-dir>/.relay-<host>.jsonl)
are not sent again.
"""

# What became of a sample. GAVE_UP: the service kept failing (5xx, 408, 429, network) through every
# attempt, so the run stops; REFUSED: the key or the server's certificate, nothing will get through.
UPLOADED, ALREADY, FAILED, GAVE_UP, REFUSED = "uploaded", "already there", "failed", "gave up", "refused"


class UsageError(Exception):
    """Bad configuration: one line for stderr, exit status 2."""


# a reason on one line, as relay prints them: at most 300 characters (a server may answer with a whole page)
_one_line = functools.partial(one_line, limit=300, empty="no reason given")


def base_url(url: str) -> str:
    """--url checked, in the one form the state file records: no default port, no trailing slash; raise UsageError."""
    try:
        u = urllib.parse.urlsplit(url.strip())
        port = u.port
    except ValueError as e:
        raise UsageError("invalid --url %r: %s" % (url, e))
    if u.scheme not in ("http", "https") or not u.hostname:
        raise UsageError("invalid --url %r: expected http(s)://host[:port]" % url)
    if u.query or u.fragment or u.username or u.password:
        raise UsageError("invalid --url %r: give scheme, host, port and path only" % url)
    host = "[%s]" % u.hostname if ":" in u.hostname else u.hostname
    if port is not None and port != (443 if u.scheme == "https" else 80):
        host += ":%d" % port
    return "%s://%s%s" % (u.scheme, host, u.path.rstrip("/"))


def state_path(data_dir: str, base: str) -> str:
    """The state file of base (a base_url): .relay-<host>[-<port>].jsonl in data_dir."""
    u = urllib.parse.urlsplit(base)
    name = u.hostname if u.port is None else "%s-%d" % (u.hostname, u.port)
    return os.path.join(data_dir, ".relay-%s.jsonl" % re.sub(r"[^A-Za-z0-9.-]", "_", name))


class State:
    """The samples a URL has confirmed: an append-only JSON-lines file, fsynced per line, flock'ed."""

    def __init__(self, path: str, url: str):
        self.path = path
        self.url = url
        self.done: set[str] = set()
        existed = os.path.exists(path)
        self._f = open(path, "a+b")
        try:
            import fcntl

            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no lock
            pass
        except OSError:
            self._f.close()
            raise UsageError("another relay is using %s: wait for it to finish" % path)
        if not existed:
            try:
                fsync_path(os.path.dirname(path))
            except OSError:
                pass  # the state file's name made durable where the folder can be fsynced
        self._f.seek(0)
        data = self._f.read()
        self._ends_clean = not data or data.endswith(b"\n")
        for line in data.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            if isinstance(rec, dict) and rec.get("url") == url and isinstance(rec.get("sha256"), str):
                self.done.add(rec["sha256"])

    def add(self, sha: str, file: str, result: str) -> None:
        rec = {
            "sha256": sha,
            "url": self.url,
            "file": file,
            "result": result,
            "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        }
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        if not self._ends_clean:
            line = "\n" + line
        self._f.write(line.encode())
        self._f.flush()
        os.fsync(self._f.fileno())
        self._ends_clean = True
        self.done.add(sha)

    def close(self) -> None:
        self._f.close()


def load_index(data_dir: str):
    """(records, number of lines skipped). Each record has str file, sha256 and category."""
    try:
        records, skipped = read_index(data_dir)  # skipped: lines cut by a crash of the server
    except FileNotFoundError:
        raise UsageError("no %s in %s: point --data-dir at a folder written by `uingest serve`" % (INDEX, data_dir))
    except OSError as e:
        raise UsageError("cannot read %s: %s" % (os.path.join(data_dir, INDEX), e.strerror or e))
    usable = [
        rec
        for rec in records
        if isinstance(rec.get("file"), str)
        and isinstance(rec.get("sha256"), str)
        and _SHA256.match(rec["sha256"])
        and isinstance(rec.get("category"), str)
        and (rec.get("label") is None or isinstance(rec.get("label"), str))
    ]
    return usable, skipped + len(records) - len(usable)


PLAIN_CATEGORIES = ("training", "testing", "anomaly")  # the category folders of a plain folder
PLAIN_SKIPPED = (
    "relay: skipped %d file%s of the folder that %s not <category>/<label>.<anything>.<ext> with a category of "
    "training, testing or anomaly and a sample's extension"
)


def _sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def scan_folder(data_dir: str):
    """(records, number of files skipped) of a folder not written by `uingest serve` (no index.jsonl), laid out
    ``<category>/<label>.<anything>.<ext>`` as Edge Impulse's uploader and the Python SDK's upload_directory read
    it: the category is the folder (training, testing or anomaly), the label the file name up to its first '.'
    (the SDK's infer_from_filename), the extension one the service takes (common.FILE_TYPES). Hidden files and
    folders (the state file) are not samples; any other file is skipped and counted. The records carry what
    _relay_one reads of an index line; their sha256 is what the state file remembers."""
    records, skipped = [], 0
    for top, dirs, names in os.walk(data_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel_top = os.path.relpath(top, data_dir)
        for name in sorted(names):
            if name.startswith("."):
                continue
            ext = os.path.splitext(name)[1].lower()
            label = name.split(".")[0]
            if rel_top not in PLAIN_CATEGORIES or ext not in FILE_TYPES or not label.strip():
                skipped += 1
                continue
            try:
                sha = _sha256_of(os.path.join(top, name))
            except OSError:
                skipped += 1
                continue
            records.append({"file": rel_top + "/" + name, "sha256": sha, "category": rel_top, "label": label})
    return records, skipped


def header_label(label: str) -> str:
    """The label for x-label: as is when plain printable ASCII, else percent-encoded (encodeURIComponent)."""
    if all(32 <= ord(c) < 127 for c in label) and "%" not in label:
        return label
    return urllib.parse.quote(label, safe="!'()*-._~")


def metadata_for(rec: dict) -> dict:
    meta = rec.get("metadata")
    out = {k: v for k, v in meta.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(meta, dict) else {}
    for key in ("device_name", "device_type"):
        if isinstance(rec.get(key), str):
            out[key] = rec[key]
    return out


def form_fields(filename: str, data: bytes, structured_labels=None, bounding_boxes=None, label_map=None) -> list:
    """The multipart fields for urllib3: one part named 'data', and a label-file part beside it for each of the
    sample's labels that is given, as Edge Impulse's uploader sends them (edge-impulse-linux's
    build/cli-common/make-image.js): structured_labels.labels (segments), bounding_boxes.labels (boxes),
    label_map.labels (key/value labels)."""
    ctype = PART_TYPES.get(os.path.splitext(filename)[1].lower(), "application/octet-stream")
    fields = [("data", (filename, data, ctype))]
    label_files = (
        ("structured_labels.labels", "structured-labels", "structuredLabels", structured_labels),
        ("bounding_boxes.labels", "bounding-box-labels", "boundingBoxes", bounding_boxes),
        ("label_map.labels", "label-map-labels", "labels", label_map),
    )
    for name, doc_type, key, value in label_files:
        if value:
            doc = {"version": 1, "type": doc_type, key: {filename: value}}
            fields.append(("data", (name, json.dumps(doc).encode(), "application/json")))
    return fields


class _Retry(Retry):
    """urllib3's Retry on relay's schedule, and not again for a certificate that does not verify."""

    # A Retry-After is honoured on these only (urllib3 also retries a 413 that carries one: a body too large
    # stays too large)
    RETRY_AFTER_STATUS_CODES = frozenset((429, 503))

    def get_retry_after(self, response):
        try:
            return super().get_retry_after(response)
        except InvalidHeader:  # neither seconds nor a date: relay's own backoff
            return None

    def get_backoff_time(self) -> float:
        # the first retry after backoff_factor seconds (urllib3's own goes at once), doubled each time
        if not self.history:
            return 0
        return min(self.backoff_max, self.backoff_factor * 2 ** (len(self.history) - 1))

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if error is not None and _unverified(error) is not None:
            raise error  # the same certificate on every try
        return super().increment(method, url, response, error, _pool, _stacktrace)


class Target:
    """The ingestion service at base (a base_url): urllib3 keeps one connection alive, with a timeout on every
    socket operation and the retries (connection errors, timeouts, RETRY_STATUSES) and their backoff."""

    def __init__(self, base: str, timeout: float, attempts: int, retry_delay: float, ca_file=None):
        self.base, self.timeout, self.attempts = base, timeout, attempts
        context = None
        if base.startswith("https:"):
            try:
                context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as e:
                raise UsageError(
                    "cannot load --ca-file %s: %s" % (ca_file, _one_line(getattr(e, "strerror", None) or e))
                )
        retries = _Retry(
            total=attempts - 1,
            redirect=False,
            allowed_methods={"POST"},
            status_forcelist=RETRY_STATUSES,
            backoff_factor=retry_delay,
            backoff_max=MAX_DELAY,
            respect_retry_after_header=True,
            retry_after_max=int(MAX_DELAY),
            raise_on_status=False,  # the last answer is classified like any other
        )
        timeouts = urllib3.Timeout(connect=timeout, read=timeout)
        self.pool = urllib3.PoolManager(num_pools=1, retries=retries, timeout=timeouts, ssl_context=context)

    def post(self, category: str, fields: list, headers: dict):
        """Post one sample to /api/<category>/files: (UPLOADED | ALREADY | FAILED | REFUSED | GAVE_UP, reason)."""
        url = "%s/api/%s/files" % (self.base, category)
        try:
            resp = self.pool.request("POST", url, fields=fields, headers=headers, redirect=False)
        except (HTTPError, OSError) as e:
            return self._failure(e)
        kind, reason = classify(resp)
        if kind == GAVE_UP:
            reason = "gave up after %d attempts: %s" % (self.attempts, reason)
        return kind, reason

    def _failure(self, error: BaseException):
        # reasons from the error's root alone: urllib3's own texts name the pool and URL, never a header
        unverified = _unverified(error)
        if unverified is not None:
            message = getattr(unverified, "verify_message", None) or unverified
            return REFUSED, "cannot verify the server's TLS certificate: %s" % _one_line(message)
        chain = _chain(error)
        root = chain[-1]
        if _timed_out(chain):
            reason = "timed out after %g s" % self.timeout
        else:
            reason = "connection failed: %s" % _one_line(getattr(root, "strerror", None) or root or type(root).__name__)
        return GAVE_UP, "gave up after %d attempts: %s" % (self.attempts, reason)

    def close(self):
        self.pool.clear()


def _chain(error: BaseException) -> list:
    """error and what it wraps, down to what went wrong (urllib3 wraps in MaxRetryError, ProtocolError, ...)."""
    chain = [error]
    while True:
        inner = error.__cause__ or next((a for a in error.args if isinstance(a, BaseException)), None)
        if inner is None or inner in chain:
            return chain
        chain.append(inner)
        error = inner


def _unverified(error: BaseException):
    """The certificate error under error, or None."""
    root = _chain(error)[-1]
    return root if isinstance(root, (ssl.SSLCertVerificationError, CertificateError)) else None


def _timed_out(chain: list) -> bool:
    # NewConnectionError (refused, no route, no name) is a ConnectTimeoutError to urllib3: not a timeout here
    return any(isinstance(e, (TimeoutError, ReadTimeoutError)) or type(e) is ConnectTimeoutError for e in chain)


def _reason(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    try:
        obj = json.loads(text)
    except ValueError:
        return _one_line(text)
    if isinstance(obj, dict) and obj.get("error"):
        return _one_line(obj["error"])
    return _one_line(text)


def classify(resp) -> tuple:
    """(UPLOADED | ALREADY | FAILED | GAVE_UP | REFUSED, reason) for the service's last answer."""
    status, data = resp.status, resp.data
    if status == 401:
        return REFUSED, "the server refused the API key (401)"
    if 200 <= status < 300:
        try:
            obj = json.loads(data)
        except ValueError:
            return FAILED, "unexpected answer (HTTP %d, not JSON): %s" % (
                status,
                _one_line(data.decode("utf-8", "replace")),
            )
        files = obj.get("files") if isinstance(obj, dict) else None
        if not isinstance(files, list) or not files or not isinstance(files[0], dict):
            if isinstance(obj, dict) and obj.get("success") is True:
                return UPLOADED, ""
            return FAILED, "unexpected answer (HTTP %d): %s" % (status, _one_line(json.dumps(obj)))
        part = files[0]
        if part.get("success") is True:
            return UPLOADED, ""
        error = _one_line(part.get("error") or "the service did not store the file")
        if _DUPLICATE.search(error):
            return ALREADY, error
        return FAILED, error
    reason = "HTTP %d: %s" % (status, _reason(data))
    if status == 409:
        return ALREADY, reason
    if status in RETRY_STATUSES:
        return GAVE_UP, reason  # retried already: this was the last attempt
    if 400 <= status < 500:
        if _DUPLICATE.search(reason):
            return ALREADY, reason
        return FAILED, reason
    if 300 <= status < 400:
        return FAILED, "HTTP %d: redirected to %s: use that --url" % (status, resp.headers.get("location", "?"))
    return FAILED, "unexpected HTTP status %d" % status


def _within(data_dir: str, rel: str):
    path = os.path.normpath(os.path.join(data_dir, rel))
    if os.path.isabs(rel) or os.path.commonpath([data_dir, path]) != data_dir:
        return None
    return path


def relay(
    data_dir: str,
    url: str,
    api_key: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    attempts: int = DEFAULT_ATTEMPTS,
    retry_delay: float = DEFAULT_RETRY_DELAY,
    ca_file=None,
    quiet: bool = False,
    verbose: bool = False,
    out=None,
    err=None,
) -> int:
    """Upload every sample of data_dir not yet confirmed by url; return the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr

    def scrub(text: str) -> str:
        # the key is never printed by this code; a server could echo it in a reason (short test keys are left)
        return text.replace(api_key, "***") if len(api_key) >= 8 else text

    def say(stream, text):
        bar.clear()
        print(scrub(text), file=stream, flush=True)

    data_dir = os.path.abspath(data_dir)
    if not os.path.isdir(data_dir):
        raise UsageError("no such folder: %s" % data_dir)
    base = base_url(url)
    if not api_key or any(ord(c) < 33 or ord(c) > 126 for c in api_key):
        raise UsageError("the API key is empty or holds characters that cannot go in an HTTP header")
    plain = not os.path.exists(os.path.join(data_dir, INDEX))
    if plain and not any(os.path.isdir(os.path.join(data_dir, c)) for c in PLAIN_CATEGORIES):
        raise UsageError(
            "no %s in %s and no training, testing or anomaly folder: point --data-dir at a folder written by "
            "`uingest serve` or laid out <category>/<label>.<anything>.<ext>" % (INDEX, data_dir)
        )
    records, skipped = scan_folder(data_dir) if plain else load_index(data_dir)
    target = Target(base, timeout, attempts, retry_delay, ca_file)
    state = State(state_path(data_dir, base), base)
    bar = Progress(len(records), "relay", enabled=not quiet, stream=err)
    counts = {UPLOADED: 0, ALREADY: 0, FAILED: 0}
    stopped = None
    if skipped and plain:
        say(err, PLAIN_SKIPPED % (skipped, "" if skipped == 1 else "s", "is" if skipped == 1 else "are"))
    elif skipped:
        say(err, "relay: skipped %d unreadable line%s of %s" % (skipped, "" if skipped == 1 else "s", INDEX))
    done = 0
    try:
        for rec in records:
            name = rec["file"]
            if rec["sha256"] in state.done:
                counts[ALREADY] += 1
                done += 1
                bar.update()
                continue
            kind, reason = _relay_one(target, api_key, data_dir, rec)
            if kind == REFUSED:
                say(err, "relay: " + reason)
                return 2
            if kind in (UPLOADED, ALREADY):
                state.add(rec["sha256"], name, kind)
                counts[kind] += 1
                if verbose:
                    say(err, "relay: %s: %s" % (name, kind))
            else:
                counts[FAILED] += 1
                say(err, "relay: %s: failed: %s" % (name, reason))
                if kind == GAVE_UP:
                    done += 1
                    stopped = "stopped: the service is not answering; run again later to resume"
                    break
            done += 1
            bar.update(note=os.path.basename(name)[:40])
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        target.close()
        state.close()
        bar.close()
    line = "relay: uploaded %d, already there %d, failed %d" % (counts[UPLOADED], counts[ALREADY], counts[FAILED])
    if stopped:
        line += "; %d not tried (%s)" % (len(records) - done, stopped)
    print(scrub(line), file=out, flush=True)
    if stopped == "interrupted":
        return 130
    return 1 if counts[FAILED] or stopped else 0


def _relay_one(target: Target, api_key: str, data_dir: str, rec: dict):
    category = rec["category"]
    if category not in CATEGORIES:
        return FAILED, "unknown category %r (expected training, testing or anomaly)" % category
    path = _within(data_dir, rec["file"])
    if path is None:
        return FAILED, "index path leaves the data folder"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return FAILED, "cannot read the file: %s" % (e.strerror or e)
    if hashlib.sha256(data).hexdigest() != rec["sha256"]:
        return FAILED, "the file changed since it was stored (sha256 differs from index.jsonl)"
    fields = form_fields(
        os.path.basename(path), data, rec.get("structured_labels"), rec.get("bounding_boxes"), rec.get("label_map")
    )
    headers = {"x-api-key": api_key, "x-disallow-duplicates": "1"}
    if rec.get("label") is None:
        headers["x-no-label"] = "1"
    else:
        headers["x-label"] = header_label(rec["label"])
    meta = metadata_for(rec)
    if meta:
        headers["x-metadata"] = json.dumps(meta, separators=(",", ":"))
    return target.post(category, fields, headers)


def main(argv=None) -> int:
    parser = ArgumentParser(
        prog="uingest relay",
        description="Upload the samples `uingest serve` collected to an ingestion service, each once (resumable).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        required=True,
        help="folder written by `uingest serve` (holds index.jsonl), or laid out <category>/<label>.<anything>.<ext>",
    )
    add_key_options(parser, api_key="project API key")
    parser.add_argument("--url", default=DEFAULT_URL, help="ingestion service (default %s)" % DEFAULT_URL)
    parser.add_argument(
        "--timeout", type=number_option(float, 0), default=DEFAULT_TIMEOUT, help="seconds per socket operation (30)"
    )
    parser.add_argument(
        "--attempts",
        type=number_option(int, 1),
        default=DEFAULT_ATTEMPTS,
        help="tries per sample on 5xx/network errors (5)",
    )
    parser.add_argument(
        "--retry-delay",
        type=number_option(float, 0),
        default=DEFAULT_RETRY_DELAY,
        help="first backoff delay in seconds, doubled each retry, at most 60 (1)",
    )
    parser.add_argument("--ca-file", help="CA certificates (PEM) to verify an https --url with")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per sample sent")
    args = parser.parse_args(argv)
    api_key, _ = resolve_keys(args)
    if not api_key:
        print("relay: " + missing_api_key(), file=sys.stderr)
        return 2
    if os.path.isfile(args.data_dir):
        print("relay: --data-dir %s is a file: name the folder `uingest serve` wrote" % args.data_dir, file=sys.stderr)
        return 2
    try:
        return relay(
            args.data_dir,
            args.url,
            api_key,
            timeout=args.timeout,
            attempts=args.attempts,
            retry_delay=args.retry_delay,
            ca_file=args.ca_file,
            quiet=args.quiet,
            verbose=args.verbose,
        )
    except UsageError as e:
        print("relay: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
