# Ingestion API helpers: endpoints, request headers, the service's label and file-name rules.
DEFAULT_URL = "https://ingestion.edgeimpulse.com"
# /api/<category>/data and /files: split lets the service pick training or testing (80/20), as Edge Impulse's
# data forwarder does
DATA_CATEGORIES = ("training", "testing", "anomaly", "split")
FILE_CATEGORIES = DATA_CATEGORIES
CONTENT_TYPES = {"cbor": "application/cbor", "json": "application/json"}  # the message formats


def _unsafe(b):
    """True when the UTF-8 bytes b hold a character that can forge or hide text
    in a log, a terminal or a file list: C0 controls and DEL, C1 controls (C2
    80..9F), zero-width and direction marks U+200B-200F (E2 80 8B..8F), the
    line and paragraph separators and bidi embeddings U+2028-202E (E2 80
    A8..AE), bidi isolates U+2066-2069 (E2 81 A6..A9), BOM U+FEFF (EF BB BF)."""
    # over the bytes, the last three kept in one small int: no string per
    # character (iterating a str makes one), nothing allocated on a board
    s = 0
    for c in b:
        s = (s & 0xFFFF) << 8 | c  # masked first: a small int on a board (31 bits)
        if (
            c < 0x20
            or c == 0x7F
            or 0xC280 <= s & 0xFFFF <= 0xC29F
            or 0xE2808B <= s <= 0xE2808F
            or 0xE280A8 <= s <= 0xE280AE
            or 0xE281A6 <= s <= 0xE281A9
            or s == 0xEFBBBF
        ):
            return True
    return False


def check_label(label):
    """The service's label rule: return the label stripped of surrounding
    spaces, or raise ValueError (one line: why). No control or format
    characters (_unsafe), not empty, no '/' or '\\', not starting with '.',
    at most 128 UTF-8 bytes."""
    b = label.encode()
    if _unsafe(b):
        raise ValueError("label must not contain control or format characters: %r" % label)
    label = label.strip()
    if not label:
        raise ValueError("label is empty")
    if "/" in label or "\\" in label:
        raise ValueError("label must not contain '/' or '\\': %r" % label)
    if label.startswith("."):
        raise ValueError("label must not start with '.': %r" % label)
    if len(b) > 128 and len(label.encode()) > 128:  # encoded again only when it may be too long
        raise ValueError("label is longer than 128 bytes")
    return label


def check_file_name(name):
    """Return name if it is a plain file name (no path, no control or format
    characters (_unsafe), at most 255 UTF-8 bytes), else raise ValueError
    (one line: why)."""
    if not name:
        raise ValueError("file name is empty")
    b = name.encode()
    if "/" in name or "\\" in name or name in (".", "..") or _unsafe(b):
        raise ValueError("invalid file name %r: must be a plain name without '/', '\\', '..' or controls" % name)
    if len(b) > 255:
        raise ValueError("file name is longer than 255 bytes")
    return name


def check_header(header, value):
    """value, if it can go in a header as it is (printable ASCII), else ValueError."""
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


# what encodeURIComponent leaves as it is, then the hex digits
_KEPT = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()0123456789ABCDEF"


def header_text(value):
    """value as x-label and x-file-name carry it: as it is when it is printable
    ASCII without '%', else percent-encoded UTF-8, as Edge Impulse's uploader
    sends them (encodeURIComponent); the service and `uingest serve` decode it."""
    b = value.encode()
    n = 0
    for c in b:
        if c < 0x20 or c > 0x7E or c == 0x25:
            n = 1
            break
    if not n:
        return value  # every label a board usually has: nothing made
    for c in b:
        n += 1 if c in _KEPT else 3
    out = bytearray(n - 1)  # written in place: no string per character
    i = 0
    for c in b:
        if c in _KEPT:
            out[i] = c
            i += 1
        else:
            out[i] = 0x25
            out[i + 1] = _KEPT[-16 + (c >> 4)]
            out[i + 2] = _KEPT[-16 + (c & 15)]
            i += 3
    return out.decode()


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
    if fmt not in CONTENT_TYPES:
        raise ValueError("fmt: expected 'cbor' or 'json', got %r" % (fmt,))
    if label is not None and no_label:
        raise ValueError("label and no_label: give one or the other")
    try:
        check_header("x-api-key", api_key)
    except ValueError:
        # Say what is wrong without echoing the key.
        raise ValueError("api_key: only printable ASCII is allowed") from None
    h = {"x-api-key": api_key, "Content-Type": CONTENT_TYPES[fmt]}
    if label is not None:
        check_label(label)
        h["x-label"] = header_text(label)
    if no_label:
        h["x-no-label"] = "1"
    if file_name is None:
        file_name = "%s.%s" % (label if label is not None else "sample", fmt)
    try:
        check_file_name(file_name)
    except ValueError as e:
        raise ValueError("x-file-name: %s" % e) from None
    h["x-file-name"] = header_text(file_name)
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
        import json  # here, not a module global: most boards send no metadata

        h["x-metadata"] = check_header("x-metadata", json.dumps(metadata, separators=(",", ":")))
    return h


def endpoint(base_url, category, kind="data"):
    """URL of /api/<category>/<kind>: kind 'data' or 'files', category one of DATA_CATEGORIES."""
    if kind not in ("data", "files"):
        raise ValueError("kind: expected 'data' or 'files', got %r" % (kind,))
    if category not in DATA_CATEGORIES:
        raise ValueError("category: expected one of %s, got %r" % (", ".join(DATA_CATEGORIES), category))
    if not isinstance(base_url, str) or not (base_url.startswith("http://") or base_url.startswith("https://")):
        raise ValueError("base_url: expected http://... or https://...")
    return base_url.rstrip("/") + "/api/" + category + "/" + kind
