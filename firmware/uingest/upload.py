# Posting to /api/<category>/data: the one place that turns a body (a fresh
# message.Message or an entry queued on flash; see http.post_message) with
# its label and category into a POST, with a typed outcome.
from . import http, ingest, message

# api_key, label, fmt, file_name and the headers of the last send: a board sends window after window with the
# same ones, checked and built once (http.post_message copies them, so they are never changed)
_last: list = [None, None, None, None, None]


def send(client, body, api_key, label=None, category="training", fmt="cbor", file_name=None):
    """POST body over client (an http.Client) to /api/<category>/data; category
    is not checked here (post_window checks it, the app's config did). Bad
    headers raise ValueError; the network never raises: the result is an
    http.Outcome (ACCEPTED, RETRY or REJECTED)."""
    c = _last
    if c[0] == api_key and c[1] == label and c[2] == fmt and c[3] == file_name and c[4] is not None:
        hdrs = c[4]
    else:
        hdrs = ingest.headers(api_key, label=label, file_name=file_name, fmt=fmt)
        c[0], c[1], c[2], c[3], c[4] = api_key, label, fmt, file_name, hdrs
    return http.post_message(client, "/api/%s/data" % category, hdrs, body)


def post_window(
    client,
    window,
    api_key,
    label=None,
    category="training",
    fmt="cbor",
    hmac_key=None,
    device_type=message.DEFAULT_DEVICE_TYPE,
    device_name=None,
    iat=None,
    file_name=None,
):
    """Encode, sign and POST one window over client (an http.Client).
    Misuse (bad arguments) raises ValueError; the network never raises:
    the result is an http.Outcome (ACCEPTED, RETRY or REJECTED)."""
    ingest.endpoint("http://x", category)  # validates the category
    msg = message.Message(window, fmt, hmac_key, device_type, device_name, iat)
    return send(client, msg, api_key, label, category, fmt, file_name)
