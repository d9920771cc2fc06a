# Posting a window to /api/<category>/data: message, headers, typed outcome.
from . import http, ingest, message


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
    hdrs = ingest.headers(api_key, label=label, file_name=file_name, fmt=fmt)
    return http.post_message(client, "/api/%s/data" % category, hdrs, msg)
