# Ingestion API helpers: endpoints, request headers, the service's label rule.
import json

DEFAULT_URL = "https://ingestion.edgeimpulse.com"
DATA_CATEGORIES = ("training", "testing", "anomaly")
FILE_CATEGORIES = ("training", "testing", "anomaly", "split")
_CONTENT_TYPES = {"cbor": "application/cbor", "json": "application/json"}


def _label_char(ch):
    # The service's ^[a-zA-Z0-9\s-_]+ : ASCII letters and digits, whitespace, '-', '_'.
    # By code point: each short string constant would be one more name in a
    # board's RAM (its string pool), for a helper the host tools use most.
    c = ord(ch)
    return 97 <= c <= 122 or 65 <= c <= 90 or 48 <= c <= 57 or 9 <= c <= 13 or c in (32, 45, 95)


def label_from_filename(name):
    """The label the service infers from a file name: its longest prefix of
    letters, digits, whitespace, '-' and '_' ('idle.01.cbor' -> 'idle').
    None when the name starts with none of them."""
    base = name.replace("\\", "/").split("/")[-1]
    n = 0
    while n < len(base) and _label_char(base[n]):
        n += 1
    return base[:n] if n else None


def _check_value(header, value):
    if not isinstance(value, str):
        raise ValueError("%s: expected a string" % header)
    # over the UTF-8 bytes: iterating a str makes a 1-char string per character
    # (interned on MicroPython), which a tight heap notices on every request
    for c in value.encode():
        if c < 0x20 or c == 0x7F:
            raise ValueError("%s: control characters (CR, LF, ...) are not allowed in a header" % header)
        if c > 0x7E:
            raise ValueError("%s: only printable ASCII is allowed in a header" % header)
    return value


def headers(
    api_key,
    *,
    label=None,
    file_name=None,
    no_label=False,
    fmt="cbor",
    disallow_duplicates=True,
    add_date_id=False,
    metadata=None,
):
    """Request headers for one upload to /api/<category>/data.

    file_name defaults to '<label>.<fmt>' ('sample.<fmt>' without a label):
    the service refuses a /data upload that has none (421)."""
    if not isinstance(api_key, str) or not api_key:
        raise ValueError("api_key: required, the project's API key (ei_...)")
    if fmt not in _CONTENT_TYPES:
        raise ValueError("fmt: expected 'cbor' or 'json', got %r" % (fmt,))
    if label is not None and no_label:
        raise ValueError("label and no_label: give one or the other")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise ValueError("label: expected a non-empty string")
    try:
        _check_value("x-api-key", api_key)
    except ValueError:
        # Say what is wrong without echoing the key.
        raise ValueError("api_key: only printable ASCII is allowed") from None
    h = {"x-api-key": api_key, "Content-Type": _CONTENT_TYPES[fmt]}
    if label is not None:
        h["x-label"] = _check_value("x-label", label)
    if no_label:
        h["x-no-label"] = "1"
    if file_name is None:
        file_name = "%s.%s" % (label if label is not None else "sample", fmt)
    h["x-file-name"] = _check_value("x-file-name", file_name)
    if "/" in file_name or "\\" in file_name or file_name in (".", ".."):
        raise ValueError("x-file-name: a plain file name, without '/' or '\\'")
    if disallow_duplicates:
        h["x-disallow-duplicates"] = "1"
    if add_date_id:
        h["x-add-date-id"] = "1"
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ValueError("metadata: expected a dict of string keys and values")
        for k in metadata:
            if not isinstance(k, str) or not isinstance(metadata[k], str):
                raise ValueError("metadata: keys and values must be strings")
        h["x-metadata"] = _check_value("x-metadata", json.dumps(metadata, separators=(",", ":")))
    return h


def endpoint(base_url, category, kind="data"):
    """URL of /api/<category>/<kind>: kind 'data' (training, testing, anomaly)
    or 'files' (those and 'split')."""
    if kind not in ("data", "files"):
        raise ValueError("kind: expected 'data' or 'files', got %r" % (kind,))
    allowed = DATA_CATEGORIES if kind == "data" else FILE_CATEGORIES
    if category not in allowed:
        raise ValueError("category: expected one of %s for /%s, got %r" % (", ".join(allowed), kind, category))
    if not isinstance(base_url, str) or not (base_url.startswith("http://") or base_url.startswith("https://")):
        raise ValueError("base_url: expected http://... or https://...")
    return base_url.rstrip("/") + "/api/" + category + "/" + kind
