# The rare paths of a remote management session (uingest.remote): its
# sensor entry, worked out once; the hello, made at each connect; a refused hello; a recording that
# was not delivered. Loaded when needed (ws.cold), and unloaded right after:
# held, it would cost the heap of every board in remote mode for as long as
# the app runs. A sample request's checks, which run at every request, are
# uingest.remotereq's: apart, they load the least.
import json

from . import http


def setup(r, arg):
    """(send, _cbor, the name of the board's one sensor entry, the longest
    recording in rows: the RAM window's rows, or with to_flash what the
    queue's budget holds) for r (a remote.Remote); arg: (cfg, rows,
    to_flash)."""
    cfg, rows, to_flash = arg
    # send(text): the session's JSON texts as they are, or with remote_format "cbor" re-encoded by
    # uingest.remotecbor, loaded (and held) only then, which also decodes the server's messages
    send = r.ws.send
    cb = None
    if cfg.get("remote_format") == "cbor":  # absent: "json"
        from . import remotecbor as cb

        send = cb.sender(r.ws)
    s = r.app.hw.sensor
    if to_flash:
        if cfg["format"] == "cbor":
            from .cbor import max_row_bytes
        else:
            from .jsonw import max_row_bytes
        rows = (cfg["queue_budget_bytes"] - 2048) // max_row_bytes(len(s.sensors), getattr(s, "typecode", "f"))
    # named by the axes' kinds as Edge Impulse names them ("Accelerometer +
    # gyroscope"), else by the axes
    names = [n for n, _ in s.sensors]
    kinds = []
    for n in names:
        k = (
            "Accelerometer"
            if n[:3] == "acc"
            else "gyroscope"
            if n[:3] == "gyr"
            else "Microphone"
            if n == "audio"
            else None
        )
        if k is None:
            kinds = names
            break
        if k not in kinds:
            kinds.append(k)
    return send, cb, " + ".join(kinds), rows


def hello(r, _):
    """Say hello for r (a remote.Remote): made at each connect, not held
    (heap)."""
    app = r.app
    cfg = app.cfg
    rate = cfg["sample_rate_hz"]
    d = json.dumps
    r.send(
        '{"hello":{"version":3,"apiKey":%s,"deviceId":%s,"deviceType":%s,"connection":"ip","sensors":[{"name":%s,'
        '"maxSampleLengthS":%s,"frequencies":[%s]}],"supportsSnapshotStreaming":false}}'
        % (
            d(cfg["api_key"]),
            d(app.device_name or _unique_id()),
            d(app.device_type),
            d(r.sensor),
            d(r.max_rows / rate),
            d(rate),
        )
    )


def refused(r, msg):
    """A refused hello: one line; the server closes, and each next try waits
    longer (uingest.ws's backoff)."""
    r._why = "hello refused"  # said here, not again by serve()
    r.ws.close(r._why)
    why = "".join(c if " " <= c <= "~" else "?" for c in str(msg.get("err"))[:80])
    r.app.log("remote: hello refused: %s; again in ~%d s" % (why, r.ws.backoff_ms // 2000))


def finished(r, arg):
    """The last reply to a request recorded by app.record that was not
    delivered (Remote.run says sampleFinished itself); arg: (label, what
    app.record returned: an http.Outcome, None when queued, or why it was
    not sent)."""
    label, out = arg
    if isinstance(out, str):
        why = "not sent: " + out
    elif out is None:
        why = "queued on the board, sent when the service is back"
    else:
        why = "upload: %d %s%s" % (out.status, out.detail, " (queued)" if out.kind == http.RETRY else "")
    r.app.log("remote: sample %r: %s" % (label, why))
    r.send('{"sample":false,"error":%s}' % json.dumps(why))


def _unique_id():
    # the deviceId when there is neither a configured device_name nor a MAC
    try:
        from binascii import hexlify

        import machine

        return hexlify(machine.unique_id(), ":").decode()
    except (ImportError, AttributeError, TypeError, OSError):
        return "uingest-board"
