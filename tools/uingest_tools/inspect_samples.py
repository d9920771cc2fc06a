"""`uingest inspect`: read data acquisition messages (CBOR, JSON) and WAV files and summarise them.

For each file: format, device, sensors with units, rows, interval and rate, duration, and per axis min, max
and mean (4 significant digits). With ``--hmac-key`` the HS256 signature is checked with Python's hmac over
the file's exact bytes (acquisition.verify_signature); with ``--plot`` a PNG with one subplot per axis
against time in ms is written (matplotlib, Agg). ``--json`` prints the same facts, unrounded, as one JSON
array. A WAV file (PCM 8, 16, 24 or 32-bit, 32-bit float, plain or WAVE_FORMAT_EXTENSIBLE, one or more
channels: wavfile) is shown with its channels, sample rate and bits, one axis per channel.

The format comes from the extension (.cbor, .json, .wav), else from the first bytes. A file that is not a
message is reported on stderr as ``FILE: not a data acquisition message: REASON`` and the others are still
read. Exit status: 0 when every file was read (and every signature checked was valid), 1 otherwise, 2 for
a usage error.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys

from . import wavfile
from .acquisition import InvalidMessage, check_structure, decode, verify_signature
from .common import FILE_TYPES, ArgumentParser, add_key_options, one_line, resolve_keys
from .progress import Progress

EXTENSIONS = {ext: kind for ext, kind in FILE_TYPES.items() if kind in ("cbor", "json", "wav")}  # what is read
MAX_PLOT_POINTS = 200_000
EPILOG = """\
examples:
  uingest inspect dataset/training/idle.18a2b3c4d5e6f.cbor
  uingest inspect --hmac-key "$UINGEST_HMAC_KEY" --plot idle.png dataset/training/idle.*.cbor
  uingest inspect --json dataset/testing/*.json > summary.json

With several files and --plot out.png, one PNG per file is written: out-<file name>.png.
"""


class NotAMessage(Exception):
    """The file is not a data acquisition message (or WAV file) we can read; str() is the reason."""


class Sample:
    """What was read from one file: the message's facts and one column of numbers per axis."""

    def __init__(self, path, fmt, body, *, msg, device_name, device_type, sensors, columns, interval_ms):
        self.path = path
        self.fmt = fmt
        self.body = body
        self.msg = msg
        self.device_name = device_name
        self.device_type = device_type
        self.sensors = sensors  # [(name, units)]
        self.columns = columns  # one sequence of numbers per sensor
        self.interval_ms = interval_ms
        self.wav = None  # a WAV file's wavfile.WavInfo

    @property
    def rows(self) -> int:
        return len(self.columns[0])

    @property
    def alg(self):
        return self.msg["protected"].get("alg") if self.msg is not None else None

    @property
    def iat(self):
        return self.msg["protected"].get("iat") if self.msg is not None else None

    @property
    def rate_hz(self) -> float:
        return 1000.0 / self.interval_ms

    @property
    def duration_ms(self) -> float:
        return self.rows * self.interval_ms

    def stats(self):
        """[(name, units, min, max, mean)] per axis."""
        return [
            (name, units, min(col), max(col), math.fsum(col) / len(col))
            for (name, units), col in zip(self.sensors, self.columns)
        ]


def num(x) -> str:
    """x with 4 significant digits; large values without an exponent (123456 -> 123500)."""
    s = "%.4g" % x
    if "e+" in s:
        v = float(s)
        if abs(v) < 1e16:
            s = "%d" % v
    return s


def detect(path: str, data: bytes) -> str:
    """'cbor', 'json' or 'wav', from the extension, else from the first bytes."""
    ext = os.path.splitext(path)[1].lower()
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    head = data.lstrip(b" \t\r\n\xef\xbb\xbf")[:1]
    if head == b"{":
        return "json"
    if head and 0xA0 <= head[0] <= 0xBF:  # a CBOR map head
        return "cbor"
    raise NotAMessage("unknown format: not CBOR, JSON or WAV (by extension or content)")


def _cbor_end(data: bytes) -> int:
    import cbor2

    fp = io.BytesIO(data)
    cbor2.CBORDecoder(fp).decode()
    return fp.tell()


def read_message(path: str, data: bytes, fmt: str) -> Sample:
    try:
        msg = decode(data, fmt)
        payload = check_structure(msg, len(data))
    except InvalidMessage as e:
        raise NotAMessage(str(e).replace("body is not", "not", 1))
    if fmt == "cbor" and _cbor_end(data) != len(data):
        raise NotAMessage("%d bytes follow the CBOR message" % (len(data) - _cbor_end(data)))
    sensors = [(s["name"], s["units"]) for s in payload["sensors"]]
    values = payload["values"]
    if len(sensors) == 1:
        columns = [[row[0] if isinstance(row, list) else row for row in values]]
    else:
        columns = [[row[i] for row in values] for i in range(len(sensors))]
    return Sample(
        path,
        fmt,
        data,
        msg=msg,
        device_name=payload.get("device_name"),
        device_type=payload["device_type"],
        sensors=sensors,
        columns=columns,
        interval_ms=payload["interval_ms"],
    )


def _channel_names(n: int):
    if n == 1:
        return ["audio"]
    if n == 2:
        return ["left", "right"]
    return ["ch%d" % i for i in range(n)]


def read_wav(path: str, data: bytes) -> Sample:
    """A WAV file (wavfile: PCM 8/16/24/32-bit, 32-bit float, plain or WAVE_FORMAT_EXTENSIBLE, any number of
    channels): one axis per channel, values as stored (8-bit PCM shifted to -128..127)."""
    try:
        info = wavfile.parse(data)
        columns = wavfile.channels(data, info)
    except wavfile.InvalidWav as e:
        raise NotAMessage("not a valid WAV file: %s" % e)
    sample = Sample(
        path,
        "wav",
        data,
        msg=None,
        device_name=None,
        device_type=None,
        sensors=[(name, "wav") for name in _channel_names(info.channels)],
        columns=columns,
        interval_ms=1000.0 / info.sample_rate,
    )
    sample.wav = info
    return sample


def read(path: str) -> Sample:
    """Read one file; raise NotAMessage (or OSError) when it cannot be summarised."""
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise NotAMessage("file is empty")
    fmt = detect(path, data)
    if fmt == "wav":
        return read_wav(path, data)
    return read_message(path, data, fmt)


def check_signature(sample: Sample, key) -> tuple[str, str]:
    """(status, text): status is valid, invalid, none, unchecked or n/a; invalid is the only failure."""
    if sample.msg is None:
        return "n/a", "n/a (WAV files carry no signature)"
    if sample.alg != "HS256":
        return "none", "none (unsigned)"
    if key is None:
        return "unchecked", "HS256, not checked (give --hmac-key to verify)"
    try:
        ok = verify_signature(sample.body, sample.fmt, key, sample.msg)
    except InvalidMessage as e:
        return "invalid", "INVALID (cannot be checked: %s)" % e
    if ok:
        return "valid", "valid"
    return "invalid", "INVALID (does not match the HMAC key)"


def summary(sample: Sample, sig_text: str) -> str:
    fmt_name = "WAV file" if sample.fmt == "wav" else "%s data acquisition message" % sample.fmt.upper()
    lines = [
        sample.path,
        "  format: %s, %d bytes" % (fmt_name, len(sample.body)),
        "  device_name: %s" % (sample.device_name if sample.device_name is not None else "-"),
        "  device_type: %s" % (sample.device_type if sample.device_type is not None else "-"),
        "  sensors: %s" % ", ".join("%s (%s)" % s for s in sample.sensors),
        *(["  audio: %s" % sample.wav.describe()] if sample.wav is not None else []),
        "  rows: %d" % sample.rows,
        "  interval_ms: %s (%s Hz)" % (num(sample.interval_ms), num(sample.rate_hz)),
        "  duration: %s ms" % num(sample.duration_ms),
    ]
    if sample.iat is not None:
        lines.append("  iat: %d" % sample.iat)
    lines.append("  signature: %s" % sig_text)
    table = [("axis", "units", "min", "max", "mean")]
    table += [(n, u, num(lo), num(hi), num(mean)) for n, u, lo, hi, mean in sample.stats()]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])] + [c.rjust(w) for c, w in zip(row[2:], widths[2:])]
        lines.append(("  " + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def as_json(sample: Sample, status: str) -> dict:
    return {
        "file": sample.path,
        "format": sample.fmt,
        "bytes": len(sample.body),
        "device_name": sample.device_name,
        "device_type": sample.device_type,
        "sensors": [{"name": n, "units": u} for n, u in sample.sensors],
        "rows": sample.rows,
        "interval_ms": sample.interval_ms,
        "rate_hz": sample.rate_hz,
        "duration_ms": sample.duration_ms,
        "iat": sample.iat,
        "signature": status,
        "axes": [{"name": n, "units": u, "min": lo, "max": hi, "mean": m} for n, u, lo, hi, m in sample.stats()],
        "wav": None
        if sample.wav is None
        else {
            "channels": sample.wav.channels,
            "sample_rate": sample.wav.sample_rate,
            "bits": sample.wav.bits,
            "encoding": sample.wav.encoding,
        },
    }


PLOT_HINT = (
    "uingest inspect: --plot needs matplotlib: pip install 'uingest-tools[plot]'"
    " (pipx: pipx inject uingest-tools matplotlib)"
)


def plot(sample: Sample, out: str) -> None:
    """Write a PNG: one subplot per axis, values against time in ms."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(sample.sensors)
    step = max(1, math.ceil(sample.rows / MAX_PLOT_POINTS))
    t = [i * sample.interval_ms for i in range(0, sample.rows, step)]
    fig = Figure(figsize=(10, 1.2 + 1.8 * n), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, units), col in zip(axes, sample.sensors, sample.columns):
        ax.plot(t, col[::step], linewidth=0.8)
        ax.set_ylabel("%s (%s)" % (name, units))
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("time (ms)")
    title = "%s: %d rows, %s ms interval" % (os.path.basename(sample.path), sample.rows, num(sample.interval_ms))
    if step > 1:
        title += " (every %dth row plotted)" % step
    fig.suptitle(title)
    fig.savefig(out, format="png")


def plot_paths(files, out: str):
    """out for one file; out-<file name>.png beside it for each of several files (unique names)."""
    if len(files) == 1:
        return [out]
    base, ext = os.path.splitext(out)
    ext = ext or ".png"
    seen, paths = set(), []
    for f in files:
        stem = os.path.basename(f) or "file"
        p, k = "%s-%s%s" % (base, stem, ext), 2
        while p in seen:
            p, k = "%s-%s-%d%s" % (base, stem, k, ext), k + 1
        seen.add(p)
        paths.append(p)
    return paths


def main(argv=None) -> int:
    parser = ArgumentParser(
        prog="uingest inspect",
        description="Summarise data acquisition messages (CBOR, JSON) and WAV files; verify HS256 signatures.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="a .cbor, .json or .wav file (others: sniffed)")
    add_key_options(parser, hmac_key="verify HS256 signatures with this key")
    parser.add_argument("--plot", metavar="OUT.png", help="write a PNG with one subplot per axis against time (ms)")
    parser.add_argument("--json", action="store_true", help="print one JSON array of summaries instead of text")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    _, key = resolve_keys(args)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(PLOT_HINT, file=sys.stderr)
            return 2
    plots = plot_paths(args.files, args.plot) if args.plot else [None] * len(args.files)

    status = 0
    results = []
    bar = Progress(len(args.files), "inspect", enabled=not args.quiet and len(args.files) > 1)
    for path, out in zip(args.files, plots):
        try:
            sample = read(path)
        except NotAMessage as e:
            bar.clear()
            print("%s: not a data acquisition message: %s" % (path, one_line(e)), file=sys.stderr)
            results.append({"file": path, "error": "not a data acquisition message: %s" % one_line(e)})
            status = 1
            bar.update()
            continue
        except OSError as e:
            bar.clear()
            print("%s: cannot read: %s" % (path, one_line(e.strerror or e)), file=sys.stderr)
            results.append({"file": path, "error": "cannot read: %s" % one_line(e.strerror or e)})
            status = 1
            bar.update()
            continue
        sig_status, sig_text = check_signature(sample, key)
        if sig_status == "invalid":
            status = 1
        entry = as_json(sample, sig_status)
        bar.clear()
        if not args.json:
            print(summary(sample, sig_text), flush=True)
        if sig_status == "invalid":
            print("%s: signature %s" % (path, sig_text), file=sys.stderr)
        if out is not None:
            try:
                plot(sample, out)
                entry["plot"] = out
                if not args.json:
                    print("  plot: %s" % out, flush=True)
            except Exception as e:  # matplotlib and the file system raise many kinds
                print("%s: cannot write the plot %s: %s" % (path, out, one_line(e)), file=sys.stderr)
                status = 1
        results.append(entry)
        bar.update()
    bar.close()
    if args.json:
        print(json.dumps(results, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
