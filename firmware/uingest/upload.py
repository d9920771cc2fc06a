# Posting to /api/<category>/data: the one place that turns a body (a fresh
# message.Message or an entry queued on flash; see http.post_message) with
# its label and category into a POST, with a typed outcome.
from . import http, ingest, message

# api_key, label, fmt, file_name, content type and header lines of the last send: a board sends window after
# window with the same ones, checked and formatted once (a line each was 10 us and a new object a window)
_last: list = [None, None, None, None, None, None]


def send(client, body, api_key, label=None, category="training", fmt="cbor", file_name=None):
    """POST body over client (an http.Client) to /api/<category>/data; category
    is not checked here (post_window checks it, the app's config did). Bad
    headers raise ValueError; the network never raises: the result is an
    http.Outcome (ACCEPTED, RETRY or REJECTED)."""
    c = _last
    ct = body.content_type
    if c[0] != api_key or c[1] != label or c[2] != fmt or c[3] != file_name or c[4] != ct:
        h = ingest.headers(api_key, label=label, file_name=file_name, fmt=fmt)
        h["Content-Type"] = ct  # the body's: a window queued in another format keeps its own
        c[:] = (api_key, label, fmt, file_name, ct, b"".join(("%s: %s\r\n" % (k, h[k])).encode() for k in h))
    return http.post_message(client, "/api/%s/data" % category, c[5], body)


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
