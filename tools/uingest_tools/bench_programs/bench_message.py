# Benchmark of the message path, run ON MicroPython (unix port):
#   micropython -X heapsize=2M bench_message.py [repeats]
# with MICROPYPATH=<firmware or bundle>:<baselines/micropython-lib>. Prints one
# "name median_us size_bytes" line per case; the host side (uingest bench)
# turns them into a table of ratios measured in the same run.
import gc
import hashlib
import json
import sys
import time

from uingest import message
from uingest.hmac import HMAC
from uingest.window import Window

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 25
KEY = "bench-hmac-key"


def median_us(fn):
    times = []
    for _ in range(REPEATS):
        gc.collect()
        t0 = time.ticks_us()
        fn()
        times.append(time.ticks_diff(time.ticks_us(), t0))
    times.sort()
    return times[len(times) // 2]


def report(name, us, size=0):
    print(name, us, size)


def imu_window():
    w = Window((("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")), 10, 200)
    for i in range(200):
        # realistic sensor noise: values that need all float32 digits
        w.append((i * 37 % 1000) / 97.3 - 5.0, (i * 53 % 1000) / 123.7 - 4.0, 9.80665 + (i % 7) / 311.0)
    return w


def audio_window():
    w = Window((("audio", "wav"),), 0.0625, 16000, "h")
    for i in range(16000):
        w.append((i * 7919 % 20000) - 10000)
    return w


def as_dict(w, signature="0" * 64):
    # What a hand-rolled script holds: the message as Python objects.
    if w.width == 1:
        values = list(w.samples[: w.rows])
    else:
        values = [list(w.samples[r * w.width : (r + 1) * w.width]) for r in range(w.rows)]
    return {
        "protected": {"ver": "v1", "alg": "HS256"},
        "signature": signature,
        "payload": {
            "device_type": "UINGEST",
            "interval_ms": w.interval_ms,
            "sensors": [{"name": n, "units": u} for n, u in w.sensors],
            "values": values,
        },
    }


def main():
    imu = imu_window()
    fast = message.use_kernels(True)
    report("kernels", 1 if fast else 0)

    ours_cbor = message.encode(imu, "cbor", hmac_key=KEY)
    ours_json = message.encode(imu, "json", hmac_key=KEY)
    report("imu_cbor_signed", median_us(lambda: message.encode(imu, "cbor", hmac_key=KEY)), len(ours_cbor))
    report("imu_json_signed", median_us(lambda: message.encode(imu, "json", hmac_key=KEY)), len(ours_json))
    jbuf = bytearray(message.Message(imu, "json", hmac_key=KEY).max_length())  # the firmware's way, as for audio
    report(
        "imu_json_into_signed", median_us(lambda: message.encode_into(imu, jbuf, "json", hmac_key=KEY)), len(ours_json)
    )
    jbuf = None
    message.use_kernels(False)
    report("imu_cbor_signed_portable", median_us(lambda: message.encode(imu, "cbor", hmac_key=KEY)), len(ours_cbor))
    report("imu_json_signed_portable", median_us(lambda: message.encode(imu, "json", hmac_key=KEY)), len(ours_json))
    message.use_kernels(fast)

    doc = as_dict(imu)

    def json_dumps_signed():
        body = json.dumps(doc).encode()
        HMAC(KEY, body).hexdigest()
        return body

    report("imu_jsondumps_signed", median_us(json_dumps_signed), len(json_dumps_signed()))

    try:
        import hmac as mplib_hmac

        import cbor2 as mplib_cbor2
    except ImportError:
        mplib_cbor2 = None
    if mplib_cbor2 is not None and hasattr(mplib_hmac, "HMAC"):

        def mplib_signed():
            body = mplib_cbor2.dumps(doc)
            mplib_hmac.new(KEY.encode(), body, "sha256").hexdigest()
            return body

        report("imu_mplib_cbor2_signed", median_us(mplib_signed), len(mplib_signed()))
    doc = None

    # One second of 16 kHz int16 audio.
    audio = audio_window()
    a_cbor = message.encode(audio, "cbor")
    report("audio_cbor", median_us(lambda: message.encode(audio, "cbor")), len(a_cbor))
    report("audio_cbor_signed", median_us(lambda: message.encode(audio, "cbor", hmac_key=KEY)), len(a_cbor))
    report("audio_sha256_only", median_us(lambda: hashlib.sha256(a_cbor).digest()), len(a_cbor))
    # The firmware's way: one buffer made at boot, every window encoded into it.
    buf = bytearray(message.Message(audio, "cbor", hmac_key=KEY).max_length())  # the longer head
    report("audio_cbor_into", median_us(lambda: message.encode_into(audio, buf, "cbor")), len(a_cbor))
    report(
        "audio_cbor_into_signed",
        median_us(lambda: message.encode_into(audio, buf, "cbor", hmac_key=KEY)),
        len(a_cbor),
    )
    a_cbor = buf = None
    report("audio_json", median_us(lambda: message.encode(audio, "json")), len(message.encode(audio, "json")))
    adoc = as_dict(audio)
    report("audio_jsondumps", median_us(lambda: json.dumps(adoc)), len(json.dumps(adoc)))


main()
