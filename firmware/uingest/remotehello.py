# The remote management hello (uingest.remote), made once when the session is
# set up; remote unloads this module right after, as the app does the config
# check: it would hold heap for as long as the app runs.
import json


def hello(app, cfg, rows, to_flash):
    """(the hello as JSON text, the name of the board's one sensor entry, the
    longest recording in rows: the RAM window's rows, or with to_flash what
    the queue's budget holds)."""
    s = app.hw.sensor
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
    name = " + ".join(kinds)
    rate = cfg["sample_rate_hz"]
    d = json.dumps
    text = (
        '{"hello":{"version":3,"apiKey":%s,"deviceId":%s,"deviceType":%s,"connection":"ip","sensors":[{"name":%s,'
        '"maxSampleLengthS":%s,"frequencies":[%s]}],"supportsSnapshotStreaming":false}}'
        % (d(cfg["api_key"]), d(app.device_name or _unique_id()), d(app.device_type), d(name), d(rows / rate), d(rate))
    )
    return text, name, rows


def _unique_id():
    # the deviceId when there is neither a configured device_name nor a MAC
    try:
        from binascii import hexlify

        import machine

        return hexlify(machine.unique_id(), ":").decode()
    except (ImportError, AttributeError, TypeError, OSError):
        return "uingest-board"
