"""Usage: ws_session.py URL SCRIPT: one uingest.ws.Client through a script,
SCRIPT a JSON file {"steps": [...], "options": {...}} (a file: the unix port
crashes on an argument over 255 bytes). options are Client keyword arguments
(timeout_ms, ca_file, insecure, max_message, ping_ms, dead_ms). Steps and
what each records in `events`:

    ["connect"]          ["connected", ok, reason]
    ["text", s]          ["sent", ok]     send(s)
    ["binary", hex]      ["sent", ok]     send(bytes, BINARY)
    ["binary_n", n]      ["sent", ok]     send(n bytes: i * 7 & 255, BINARY)
    ["recv", ms]         the next message ["text" or "binary", hex] (over 32 bytes:
                         "<length>:<sha256 hex>": the 64K heap holds the client, not the log), else
                         ["closed", reason] or ["none"] after ms of polling
    ["quiet", ms]        polls for ms: each message as above, ["closed", reason] if it closes
    ["close"]            ["closed", reason]
    ["ensure", ms]       polls ensure() for up to ms until it is True: ["ensured", ok, connections]

The result (events, closed, reason) is in `result`, and printed as JSON when
run as the main program. The same program runs on CPython (the shim) and on
MicroPython."""

import json
import sys
import time
from binascii import hexlify, unhexlify
from hashlib import sha256

from uingest import ws

URL = sys.argv[1]
with open(sys.argv[2]) as f:
    SCRIPT = json.load(f)
client = ws.Client(URL, **SCRIPT.get("options", {}))
events = []


def message(m):
    data = m[1]
    if len(data) > 32:
        data = b"%d:" % len(data) + hexlify(sha256(data).digest())
    else:
        data = hexlify(data)
    return ["text" if m[0] == ws.TEXT else "binary", data.decode()]


def poll_for(ms, first_only):
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < ms:
        m = client.poll()
        if m is not None:
            events.append(message(m))
            if first_only:
                return
        elif client.closed:
            events.append(["closed", client.reason])
            return
        else:
            time.sleep_ms(1)
    if first_only:
        events.append(["none"])


for step in SCRIPT["steps"]:
    what = step[0]
    if what == "connect":
        events.append(["connected", client.connect(), client.reason])
    elif what == "text":
        events.append(["sent", client.send(step[1])])
    elif what == "binary":
        events.append(["sent", client.send(unhexlify(step[1]), ws.BINARY)])
    elif what == "binary_n":
        events.append(["sent", client.send(bytes(i * 7 & 255 for i in range(step[1])), ws.BINARY)])
    elif what == "recv":
        poll_for(step[1], True)
    elif what == "quiet":
        poll_for(step[1], False)
    elif what == "close":
        client.close()
        events.append(["closed", client.reason])
    elif what == "ensure":
        t0 = time.ticks_ms()
        while not client.ensure() and time.ticks_diff(time.ticks_ms(), t0) < step[1]:
            time.sleep_ms(5)
        events.append(["ensured", not client.closed, client.connections])
result = {"events": events, "closed": client.closed, "reason": client.reason}
client.close()  # the server is not left waiting for an answer to its close
if __name__ == "__main__":
    print(json.dumps(result))
