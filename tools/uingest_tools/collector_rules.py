"""The rules `uingest serve` applies to what it is sent: pure functions, no I/O, no web framework. Each
refusal is a Rejected with the HTTP status and a one-line reason.

- Labels and file names follow the firmware's own rule (uingest.ingest.check_label, check_file_name: the
  service's), so the config check, the request headers and this server agree: a label with control
  characters, '/', '\\', a leading '.', empty after stripping spaces, or over 128 UTF-8 bytes is refused.
  Header values are raw UTF-8 or percent-encoded (Edge Impulse's Node client sends x-label and x-file-name
  encodeURIComponent'ed); a '%' that is not an escape is refused, as decodeURIComponent refuses it.
- No label given: the label is inferred from the file name as the service does (its longest prefix of ASCII
  letters, digits, whitespace, '-' and '_').
- Messages (cbor, json) are checked in full (acquisition.check_structure; over DECODE_WHOLE_UP_TO bytes,
  large_messages.check_large: the same verdicts without a Python object per value) and, with an HMAC key, must
  carry a valid HS256 signature; other files are checked by their content (check_file: an image by its bytes,
  CSV and .txt by the uploader's CSV rules, WAV by its header, MP4 and AVI by their container) and kept as
  they are.
- ``split`` sends a sample to training or testing by the sha256 of its bytes (about 80/20, deterministic).
- Multi-label samples (the Python SDK's ``structured_labels``): a part whose file name is
  ``structured_labels.labels`` holds ``{"version": 1, "type": "structured-labels", "structuredLabels":
  {file name: [{"label", "startIndex", "endIndex"}, ...]}}`` for files of the same request; each segment's
  label follows the label rule, 0 <= startIndex <= endIndex < the sample's rows, every row labelled.
  ``x-bounding-boxes`` is a JSON list of ``{"label", "x", "y", "width", "height"}``, non-negative integers;
  the label files ``bounding_boxes.labels`` and ``label_map.labels`` are read as the uploader writes them
  (LABEL_FILES: parse_bounding_boxes_file, parse_label_map_file).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import urllib.parse

from .acquisition import InvalidMessage, check_structure, decode, verify_signature
from .common import FILE_TYPES, MEDIA_TYPES, firmware_module, ingest, one_line
from .large_messages import TooLargeToCheck, check_large
from .wavfile import InvalidWav
from .wavfile import parse as parse_wav

MESSAGE_KINDS = tuple(ingest.CONTENT_TYPES)  # the firmware's message formats
CONTENT_TYPES = {MEDIA_TYPES[kind]: kind for kind in MESSAGE_KINDS}  # what /data takes
STRUCTURED_LABELS_NAME = "structured_labels.labels"
BOUNDING_BOXES_NAME = "bounding_boxes.labels"
LABEL_MAP_NAME = "label_map.labels"
# the index fields validate_message gives a message; a file kept as it is has them all None
MESSAGE_FIELDS = ("device_name", "device_type", "sensors", "rows", "interval_ms", "signature")
_BOX_KEYS = ("x", "y", "width", "height")
DECODE_WHOLE_UP_TO = 256 * 1024  # larger messages are checked without decoding their values (large_messages)
_TAKEN_EXTENSIONS = ", ".join(sorted(FILE_TYPES)[:-1]) + " or " + sorted(FILE_TYPES)[-1]
_NOT_AN_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")  # decodeURIComponent's "URI malformed"


class Rejected(Exception):
    """The request cannot be accepted: status and a one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason

    @property
    def line(self) -> str:
        """The reason as the reply carries it: on one line, the spacing of any value it quotes kept."""
        return one_line(self.reason, squeeze=False)


class LabelFileRejected(Rejected):
    """A label file fails against the file it labels (its segments and the file's rows): the whole request is
    refused and nothing of it stored, as for a label file that fails its own checks."""


def header_text(value: str, header: str) -> str:
    """Header ``header`` as text: raw UTF-8 bytes accepted, then percent-decoded as decodeURIComponent does
    (what encodeURIComponent sends): a '%' not followed by two hex digits, or escapes that are not UTF-8, are
    Rejected(400), not kept as they came."""
    raw = value.encode("latin-1")
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    bad = _NOT_AN_ESCAPE.search(value)
    if bad:
        raise Rejected(
            400,
            "%s: %r is not a percent escape (two hex digits after '%%'; a '%%' itself is sent as %%25): %r"
            % (header, value[bad.start() : bad.start() + 3], value),
        )
    try:
        return urllib.parse.unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise Rejected(
            400, "%s is not valid percent-encoded UTF-8 (a '%%' itself is sent as %%25): %r" % (header, value)
        )


def check_label(label: str) -> str:
    """Return the label, stripped of surrounding spaces, or raise Rejected(400)."""
    try:
        return ingest.check_label(label)
    except ValueError as e:
        raise Rejected(400, str(e))


def check_file_name(name: str) -> str:
    """Return name if it is a plain file name (no path), else raise Rejected(400)."""
    try:
        return ingest.check_file_name(name)
    except ValueError as e:
        raise Rejected(400, str(e))


def _label_in(label: str, where: str) -> str:
    """check_label for a label in a label file, its reason led by where (the label file and the sample)."""
    try:
        return ingest.check_label(label)
    except ValueError as e:
        raise Rejected(400, "%s: %s" % (where, e))


# the service's label from a file name: the firmware's rule, as check_label is (one home for the label rules)
label_from_filename = firmware_module("filelabel").label_from_filename


def infer_label(file_name: str) -> str:
    """The label of a sample sent without one, from its file name; Rejected(400) when there is none."""
    label = label_from_filename(file_name)
    if label is None or not label.strip():
        raise Rejected(400, "cannot infer a label from file name %r: send x-label or x-no-label" % file_name)
    return check_label(label)


def file_kind(name: str) -> tuple[str, str]:
    """(extension without the dot, kind) of an uploaded file's name; Rejected(400) for a type not taken."""
    ext = os.path.splitext(name)[1].lower()
    kind = FILE_TYPES.get(ext)
    if kind is None:
        raise Rejected(400, "unsupported file type %r: send %s" % (ext, _TAKEN_EXTENSIONS))
    return ext[1:], kind


def _json_or_none(raw):
    """raw (str or bytes) as JSON, or None when it is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep ([[[[...); bad UTF-8 is a ValueError
        return None


def parse_metadata(raw):
    """The x-metadata header (None when absent): a JSON object of strings, or Rejected(400)."""
    if raw is None:
        return None
    meta = _json_or_none(raw)
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise Rejected(400, "x-metadata must be a JSON object of string values")
    return meta


def parse_bounding_boxes(raw):
    """The x-bounding-boxes header (None when absent), each box's label checked, or Rejected(400)."""
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
    return [dict(label=_label_in(b["label"], "x-bounding-boxes"), **{k: b[k] for k in _BOX_KEYS}) for b in boxes]


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
            label = _label_in(seg["label"], "%s: %s" % (STRUCTURED_LABELS_NAME, name))
            clean.append({"label": label, "startIndex": start, "endIndex": end})
        out[name] = clean
    return out


def _segments_fail(name: str, reason: str) -> LabelFileRejected:
    return LabelFileRejected(400, "%s: %s: structured labels %s" % (STRUCTURED_LABELS_NAME, name, reason))


def check_segments_fit(segments, rows, name: str) -> None:
    """Structured labels (sorted by endIndex) of file name must end inside the sample; LabelFileRejected(400).
    rows None: not a message (no rows to check against)."""
    if segments and rows is not None and segments[-1]["endIndex"] >= rows:
        raise _segments_fail(name, "reach row %d; the sample has %d rows" % (segments[-1]["endIndex"], rows))


def check_segments_cover(segments, rows, name: str) -> None:
    """Structured labels (sorted by endIndex) of file name must label every row with no gap, as the service
    requires (calculateAllStructuredLabels in edge-impulse-linux's build/shared/bounding-box-file-types.js):
    from row 0 to the last one (rows None: the last row a segment reaches). LabelFileRejected(400)."""
    if not segments:
        return
    covered = -1  # the last row labelled so far
    for seg in sorted(segments, key=lambda s: s["startIndex"]):
        if seg["startIndex"] > covered + 1:
            raise _segments_fail(name, "leave rows %d..%d without a label" % (covered + 1, seg["startIndex"] - 1))
        covered = max(covered, seg["endIndex"])
    if rows is not None and covered < rows - 1:
        raise _segments_fail(name, "leave rows %d..%d without a label" % (covered + 1, rows - 1))


def _label_file(data: bytes, name: str, doc_type: str, key: str) -> dict:
    """The {file name: ...} object of a label file {"version": 1, "type": doc_type, key: {...}}; Rejected(400)."""
    doc = _json_or_none(data)
    per_file = doc.get(key) if isinstance(doc, dict) else None
    if not (
        isinstance(doc, dict) and doc.get("version") == 1 and doc.get("type") == doc_type and isinstance(per_file, dict)
    ):
        raise Rejected(400, '%s must be {"version": 1, "type": "%s", "%s": {file: ...}}' % (name, doc_type, key))
    return per_file


def _finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_bounding_boxes_file(data: bytes) -> dict:
    """{file name: [box, ...]} from a bounding_boxes.labels part, or Rejected(400).

    Its shape is Edge Impulse's ExportBoundingBoxesFileV1 (edge-impulse-linux 1.25.2,
    build/shared/bounding-box-file-types.d.ts; the uploader's upload() in build/cli-common/make-image.js
    sends it beside each image): {"version": 1, "type": "bounding-box-labels", "boundingBoxes": {file name:
    [{"label", "x", "y", "width", "height"}]}}. Each box as the service's verifyBoundingBoxes checks it: a
    label (here also by the label rule), numbers, width and height > 0."""
    per_file = _label_file(data, BOUNDING_BOXES_NAME, "bounding-box-labels", "boundingBoxes")
    out = {}
    for name, boxes in per_file.items():
        if not isinstance(boxes, list):
            raise Rejected(400, "%s: %s: expected a list of boxes" % (BOUNDING_BOXES_NAME, name))
        clean = []
        for b in boxes:
            if not (
                isinstance(b, dict)
                and isinstance(b.get("label"), str)
                and all(_finite_number(b.get(k)) for k in _BOX_KEYS)
            ):
                raise Rejected(
                    400,
                    '%s: %s: each box needs a label and numbers "x", "y", "width", "height"'
                    % (BOUNDING_BOXES_NAME, name),
                )
            if b["width"] <= 0 or b["height"] <= 0:
                raise Rejected(400, "%s: %s: width and height must be > 0" % (BOUNDING_BOXES_NAME, name))
            label = _label_in(b["label"], "%s: %s" % (BOUNDING_BOXES_NAME, name))
            clean.append(dict(label=label, **{k: b[k] for k in _BOX_KEYS}))
        out[name] = clean
    return out


def parse_label_map_file(data: bytes) -> dict:
    """{file name: {key: label}} from a label_map.labels part, or Rejected(400).

    Its shape is Edge Impulse's ExportLabelMapFileV1 (edge-impulse-linux 1.25.2,
    build/shared/bounding-box-file-types.d.ts; the uploader sends it for an info.labels entry whose label is
    {"type": "keyvalue-labels", "labels": {...}}, build/cli-common/make-image.js): {"version": 1, "type":
    "label-map-labels", "labels": {file name: {key: label} or [label, ...]}}. A list becomes {"0": first,
    "1": ...}, as the service's parseLabelMapFile maps it. Keys and labels follow the label rule."""
    per_file = _label_file(data, LABEL_MAP_NAME, "label-map-labels", "labels")
    out = {}
    for name, labels in per_file.items():
        if isinstance(labels, list):
            labels = {str(i): v for i, v in enumerate(labels)}
        if not (isinstance(labels, dict) and labels and all(isinstance(v, str) for v in labels.values())):
            raise Rejected(
                400, "%s: %s: expected a non-empty object (or list) of label strings" % (LABEL_MAP_NAME, name)
            )
        where = "%s: %s" % (LABEL_MAP_NAME, name)
        clean = {}
        for key, label in labels.items():
            key = _label_in(key, where + ": key")  # a key is a label's name: the same rule
            if key in clean:
                raise Rejected(400, "%s: key %r given twice (keys are stripped of spaces as labels are)" % (where, key))
            clean[key] = _label_in(label, where)
        out[name] = clean
    return out


# the label files a /files request may carry: part file name -> (index field, parser)
LABEL_FILES = {
    STRUCTURED_LABELS_NAME: ("structured_labels", parse_structured_labels),
    BOUNDING_BOXES_NAME: ("bounding_boxes", parse_bounding_boxes_file),
    LABEL_MAP_NAME: ("label_map", parse_label_map_file),
}


def split_category(sha256_hex: str) -> str:
    """'training' for about 80% of hashes, 'testing' for the rest."""
    return "training" if int(sha256_hex[:8], 16) % 10 < 8 else "testing"


def validate_message(body: bytes, fmt: str, hmac_key=None, decode_whole_up_to=DECODE_WHOLE_UP_TO) -> dict:
    """Check one data acquisition message; return its index fields or raise Rejected: 400, or 413 when it is
    too large to check. Over decode_whole_up_to bytes its values are checked in the body (large_messages:
    the same verdicts in memory about the body's size, where decoding whole takes 10 to 30 times it)."""
    try:
        if len(body) > decode_whole_up_to:
            msg, rows = check_large(body, fmt)
        else:
            msg = decode(body, fmt)
            rows = len(check_structure(msg, len(body))["values"])
        payload = msg["payload"]
    except TooLargeToCheck as e:
        raise Rejected(413, str(e))
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
        "rows": rows,
        "interval_ms": payload["interval_ms"],
        "signature": signature,
    }


def image_kind(data: bytes):
    """'png' or 'jpg' from an image's first bytes, None when they are neither. Edge Impulse knows an image by
    its bytes: Studio's own exports have PNG bytes under .jpg names."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    return None


def _csv_delimiter(first_line: str) -> str:
    """',', ';' or tab: the one that splits the header line into the most fields (ties: ','), as Edge
    Impulse's uploader chose it (edge-impulse-cli cli/make-image.ts, parseCsvString)."""
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def _csv_number(text: str):
    """A CSV cell as a finite float, or None. A decimal comma is taken when there is no '.' (as the
    uploader's parseCsvString does)."""
    text = text.strip()
    if "." not in text and "," in text:
        text = text.replace(",", ".")
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def check_csv(data: bytes) -> int:
    """The rows of values of a CSV file (.csv or .txt) that passes the rules of Edge Impulse's CSV
    conversion, else Rejected(400) with the reason. The rules, from the uploader's CSV conversion (npm
    edge-impulse-cli, cli/make-image.ts makeCsv; the service's CSV wizard can be set up to take other layouts,
    which a local server cannot know): UTF-8 text; a header row of column names; a column named
    ``timestamp`` (ms) with increasing numbers, or else exactly one row of values (a sample that is not a
    time series); every other cell a number; every row as many fields as the header. Blank lines are
    skipped (the uploader drops rows of the wrong width silently: here they are refused)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Rejected(400, "CSV file is not UTF-8 text")
    lines = text.splitlines()
    delimiter = _csv_delimiter(lines[0] if lines else "")
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as e:
        raise Rejected(400, "CSV file cannot be read: %s" % e)
    if not rows:
        raise Rejected(400, "CSV file is empty: it needs a header row and a row of values")
    header = [name.strip() for name in rows[0][1]]
    if all(_csv_number(name) is not None for name in header):
        raise Rejected(400, "CSV file has no header row: its first line is numbers, not column names")
    if any(not name for name in header):
        raise Rejected(400, "CSV header row has an empty column name")
    if "timestamp" in header and len(header) == 1:
        raise Rejected(400, "CSV file has only a timestamp column: it needs a column of values")
    if len(rows) == 1:
        raise Rejected(400, "CSV file has a header row but no values")
    ts = header.index("timestamp") if "timestamp" in header else None
    if ts is None and len(rows) > 2:
        raise Rejected(400, 'CSV file has no "timestamp" column: one is needed for more than one row of values')
    last = None
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise Rejected(400, "CSV line %d has %d fields; the header has %d" % (line, len(row), len(header)))
        for name, cell in zip(header, row):
            if _csv_number(cell) is None:
                raise Rejected(400, "CSV line %d, column %r is not numeric: %r" % (line, name, cell.strip()))
        if ts is not None:
            t = _csv_number(row[ts])
            if last is not None and t <= last:
                raise Rejected(
                    400, "CSV line %d: the timestamp column must increase (%s after %s)" % (line, row[ts].strip(), last)
                )
            last = t
    return len(rows) - 1


def check_file(data: bytes, kind: str):
    """Check a file kept as-is by its content; return (the kind its bytes are, rows or None): rows of values
    for CSV, frames for WAV. An image (kind jpg or png, from its name) is known by its bytes, so a .jpg
    holding PNG bytes is 'png'. Raise Rejected(400) with the reason."""
    if not data:
        raise Rejected(400, "file is empty")
    if kind in ("jpg", "png"):
        found = image_kind(data)
        if found is None:
            raise Rejected(400, "not a JPEG or PNG image (by its bytes)")
        return found, None
    if kind == "wav":
        try:
            return kind, parse_wav(data).frames
        except InvalidWav as e:
            raise Rejected(400, str(e))
    if kind == "csv":
        return kind, check_csv(data)
    if kind == "mp4" and not (len(data) >= 12 and data[4:8] == b"ftyp" and int.from_bytes(data[:4], "big") >= 8):
        raise Rejected(400, "not an MP4 file (no ftyp box)")
    if kind == "avi" and not (data[:4] == b"RIFF" and data[8:12] == b"AVI "):
        raise Rejected(400, "not an AVI file (no RIFF....AVI header)")
    return kind, None
