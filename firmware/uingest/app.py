# The main loop: boot, validate the config, set up the board, join Wi-Fi,
# then sample a window, sign it, post it; what cannot be posted waits on
# flash and is sent oldest first when the link is back. A Recorder samples
# (in RAM, or a flashrecorder.FlashRecorder), the Outbox posts and queues,
# the App holds the labels, console, button, LED, watchdog and status line.
import gc
import sys
import time

from micropython import const

from . import http
from .message import Message
from .sampler import Sampler
from .store import Store
from .window import Window

_CHUNK_BYTES = const(2048)  # RAM per chunk of a window recorded to flash


class Console:
    """Commands typed on the serial REPL while the loop runs: 'label NAME',
    'status'. Polled, never blocking."""

    def __init__(self):
        try:
            import select

            self._poll = select.poll()
            self._poll.register(sys.stdin, select.POLLIN)
            self._buf = ""
        except (ImportError, AttributeError, OSError, TypeError, ValueError):
            self._poll = None

    def line(self):
        """A complete line typed so far, or None. Reads only the characters
        already there: a half-typed command never blocks sampling."""
        if self._poll is None:
            return None
        while self._poll.poll(0):
            ch = sys.stdin.read(1)
            if not ch:  # end of input (a closed pipe on the unix port)
                self._poll = None
                break
            if ch in "\r\n":
                line, self._buf = self._buf.strip(), ""
                if line:
                    return line
            elif len(self._buf) < 80:
                self._buf += ch
        return None


class Recorder:
    """Samples each window into one Window in RAM. A recorder is chosen once,
    at start: this one, or flashrecorder.FlashRecorder for a window too long
    for the heap. Both have .window, record(sensor, feed) (sample the next
    window, feeding the watchdog with feed() when it is not None; rows: this
    many instead of a whole window; returns the window) and close()."""

    def __init__(self, window, sampler):
        self.window = window
        self.sampler = sampler
        self.rows = window.capacity

    def record(self, sensor, feed=None, rows=None):
        w = self.window
        w.clear(rows or self.rows)  # rows: a remote request's length, at most the window's
        if hasattr(sensor, "fill"):
            sensor.fill(w)  # audio: DMA-sized reads straight into the window
        else:
            self.sampler.start()
            self.sampler.fill(w, sensor, feed)
        return w

    def close(self):
        pass


class Outbox:
    """Windows on their way to the server, built on upload.send: a fresh
    window is posted, or queued on flash when the post says RETRY, when the
    link is down, when the server asked for a pause (Retry-After) or when
    older windows still wait; one the server rejects is kept aside with the
    reason. The queue drains oldest first. counts (per outcome) and lost
    (windows the flash could not take) are for the status line. cfg gives
    the API key and the format; n, in the methods, is the number of the
    window being sent or just sampled, for the log lines."""

    def __init__(self, client, store, cfg, log, led, feed):
        self.client = client
        self.store = store
        self.cfg = cfg
        self.log = log
        self._led = led  # led(on): lit while a window is being sent
        self._feed = feed  # the watchdog: a long backlog outlasts its timeout
        self.counts = {http.ACCEPTED: 0, http.RETRY: 0, http.REJECTED: 0}
        self.lost = 0
        self._hold_until = None  # ticks_ms before which the server asked us not to send (Retry-After)
        self.last = None  # the outcome of the last send(): an http.Outcome, None when it was queued

    def _post(self, body, label, category):
        self._led(True)
        try:
            # imported at the first post, as ingest was: loaded at boot, upload
            # and ingest made the whole app's smallest heap 2 KB larger (ROMFS)
            from . import upload

            return upload.send(self.client, body, self.cfg["api_key"], label, category, self.cfg["format"])
        finally:
            self._led(False)

    def send(self, msg, label, category, up, n):
        """Post window n (a prepared message.Message) when up (the link) and
        nothing waits before it, else queue it. Returns whether the queue may
        be drained now (see drain)."""
        up = up and not self._holding()
        self.last = None
        if up and len(self.store) == 0:
            out = self.last = self._post(msg, label, category)
            self._count(out, n)
            if out.kind == http.RETRY:
                self._queue(msg, label, category, n)
            elif out.kind == http.REJECTED:
                self._queue(msg, label, category, n, "%d %s" % (out.status, out.detail))
                self.log("window %d rejected (%d): %s" % (n, out.status, out.detail))
        else:
            self._queue(msg, label, category, n)  # keep the order: older windows go first
        return up

    def _queue(self, msg, label, category, n, rejected=None):
        """Put a window on flash (or aside, with the server's reason); a full
        or failing flash loses this window, says so, and the app goes on."""
        try:
            if rejected is None:
                self.store.put(msg, label, category)
            else:
                self.store.keep_rejected(msg, label, category, rejected)
        except (OSError, ValueError) as e:  # ValueError: a header too long, a message over the whole budget
            self.lost += 1
            self.log("window %d lost: cannot write the queue on flash (%s)" % (n, _errno(e)))

    def drain(self, n):
        """Send queued windows, oldest first, until the queue is empty or the
        network says 'later' (also a Retry-After from the post just made)."""
        if self._holding():
            return
        while True:
            entry = self.store.oldest()
            if entry is None:
                return
            try:
                out = self._post(entry, entry.meta["label"], entry.meta["category"])
            except ValueError as e:
                # queued under rules this firmware no longer sends (an older
                # firmware's label): set aside, not retried at every boot
                self.store.reject(entry, "not sent: %s" % e)
                self.log("queued %s set aside: %s" % (entry.name, e))
                continue
            self._feed()
            self._count(out, n)
            if out.kind == http.ACCEPTED:
                self.store.delete(entry)
            elif out.kind == http.REJECTED:
                self.store.reject(entry, "%d %s" % (out.status, out.detail))
                self.log("queued %s rejected (%d): %s" % (entry.name, out.status, out.detail))
            else:
                return

    def _holding(self):
        if self._hold_until is None:
            return False
        if time.ticks_diff(self._hold_until, time.ticks_ms()) > 0:
            return True
        self._hold_until = None
        return False

    def _count(self, out, n):
        self.counts[out.kind] += 1
        if out.kind == http.RETRY:
            self.log("window %d: will retry: %s" % (n, out.detail))
            if out.retry_after_ms:
                # the server asked for a pause: windows queue up meanwhile
                self._hold_until = time.ticks_add(time.ticks_ms(), out.retry_after_ms)
                self.log("server asks to wait %d s" % (out.retry_after_ms // 1000))


class App:
    def __init__(self, cfg, hw, link, device_type, log=print, wdt=None):
        self.cfg = cfg
        self.device_type = device_type
        self.hw = hw
        self.link = link
        self.log = log
        self.labels = cfg["labels"]
        self.label = cfg["label"]
        sensor = hw.sensor
        rate = cfg["sample_rate_hz"]
        rows = int(cfg["window_ms"] * rate / 1000)
        typecode = getattr(sensor, "typecode", "f")
        row_bytes = len(sensor.sensors) * (2 if typecode == "h" else 4)
        to_flash = cfg["record_to_flash"]
        if to_flash == "auto":
            gc.collect()
            free = gc.mem_free()  # -1 (or CPython's 0): not known, so RAM
            to_flash = free > 0 and rows * row_bytes > free // 4
        # Recorded to flash, a window passes through RAM one chunk at a time:
        # it may be longer than the heap (10 s of 16 kHz audio: 320 KB).
        chunk_rows = min(rows, max(1, _CHUNK_BYTES // row_bytes)) if to_flash else rows
        window = Window(sensor.sensors, 1000 / rate, chunk_rows, typecode)
        sampler = Sampler(rate)
        client = http.Client(cfg["url"], cfg["timeout_ms"], cfg["ca_file"], cfg["insecure"])
        store = Store(cfg["queue_dir"], cfg["queue_budget_bytes"], log)  # makes queue_dir, where a recording goes
        self.outbox = Outbox(client, store, cfg, log, self._led, self.feed)
        if to_flash:
            from .flashrecorder import FlashRecorder

            self.recorder = FlashRecorder(cfg["queue_dir"] + "/recording.raw", window, rows, sampler)
        else:
            self.recorder = Recorder(window, sampler)
        self.device_name = cfg["device_name"] or link.mac() or getattr(hw, "device_name", None)
        self.windows = 0
        self.skipped = 0  # windows the encoder refused (a NaN sample, ...)
        self._pressed = False
        self.wdt = wdt  # machine.WDT on boards: fed between windows and inside long ones
        self.console = Console()
        b = hw.button
        if b is not None and hasattr(b, "irq"):
            # a press during sampling is caught by the interrupt, acted on
            # between windows; the handler only sets a flag (no allocation)
            b.irq(handler=self._on_press, trigger=getattr(b, "IRQ_FALLING", 2))  # pressed pulls to ground
        self.remote = None
        if cfg["mode"] != "stream":  # a stream-only board never loads the socket
            from .remote import Remote

            self.remote = Remote(self, cfg, rows, to_flash)

    def _on_press(self, pin):
        self._pressed = True

    # -- labels ---------------------------------------------------------------
    def set_label(self, label):
        if label not in self.labels:
            self.log("label: %r is not one of %s" % (label, ",".join(self.labels)))
            return
        self.label = label
        if hasattr(self.hw.sensor, "set_label"):
            self.hw.sensor.set_label(label)  # synthetic sensors follow the label
        self.log("label: now %s" % label)

    def _inputs(self):
        if self._pressed:
            self._pressed = False
            i = self.labels.index(self.label)
            self.set_label(self.labels[(i + 1) % len(self.labels)])
        cmd = self.console.line()
        if cmd:
            if cmd.startswith("label "):
                self.set_label(cmd[6:].strip())
            elif cmd == "status":
                self.log(self.status())
            else:
                self.log("commands: 'label NAME' (one of %s), 'status'" % ",".join(self.labels))

    # -- one window -----------------------------------------------------------
    def _led(self, on):
        led = self.hw.led
        if led is not None:
            led.on() if on else led.off()

    def step(self):
        """One turn of the loop. Mode "stream": sample one window, then send
        it and whatever waits on flash. "both": the same, the remote session
        served between windows and from inside them (the sampler's tick), a
        request recorded between two. "remote": the session only, idle on
        the socket until a request comes."""
        self._inputs()
        r = self.remote
        cfg = self.cfg
        if r is None:
            self.record(self.label, cfg["category"], cfg["hmac_key"])
            return
        r.serve()
        if r.pending:
            r.run()
        elif cfg["mode"] == "both":
            self.record(self.label, cfg["category"], cfg["hmac_key"], None, r.tick)
        else:
            time.sleep_ms(20)

    def record(self, label, category, hmac_key, rows=None, tick=None, uploading=None):
        """Sample a window (rows: fewer than a whole one), sign it with
        hmac_key, send it and whatever waits on flash. tick() is called
        inside the window (else the watchdog's feed), uploading() before the
        post. Returns the post's http.Outcome, None when the window was
        queued, or why it was skipped (a str)."""
        feed = tick or (self.feed if self.wdt is not None else None)
        window = self.recorder.record(self.hw.sensor, feed, rows)
        gc.collect()  # sampling leaves garbage; free it before the upload needs RAM
        self.windows += 1
        try:
            msg = Message(window, self.cfg["format"], hmac_key, self.device_type, self.device_name, _unix_time())
            msg.prepare()  # signs once: a sample the format cannot carry shows up here
        except ValueError as e:
            self.skipped += 1
            self.log("window %d skipped: %s" % (self.windows, e))
            return str(e)
        if uploading is not None:
            uploading()
        out = self.outbox
        up = out.send(msg, label, category, self.link.ensure(), self.windows)
        msg = None  # not held while the queue drains
        if up:
            out.drain(self.windows)
        gc.collect()
        return out.last

    def feed(self):
        if self.wdt is not None:
            self.wdt.feed()

    def status(self):
        out = self.outbox
        return (
            "status: windows=%d sent=%d retry=%d rejected=%d queued=%d dropped=%d skipped=%d lost=%d"
            " label=%s %s%s free=%d"
            % (
                self.windows,
                out.counts[http.ACCEPTED],
                out.counts[http.RETRY],
                out.counts[http.REJECTED],
                len(out.store),
                out.store.dropped,
                self.skipped,
                out.lost,
                self.label,
                self.link.status(),
                "" if self.remote is None else " " + self.remote.status(),
                gc.mem_free(),
            )
        )

    def close(self):
        self.outbox.client.close()
        self.recorder.close()
        if self.remote is not None:
            self.remote.ws.close()


def _errno(e):
    return "errno %d" % e.args[0] if e.args and isinstance(e.args[0], int) else str(e).split("\n")[0][:80]


def _window_over_budget(cfg, sensor):
    """The config problem when one window, encoded, may not fit the queue's
    budget (a RETRY could then never keep it), else None."""
    rows = int(cfg["window_ms"] * cfg["sample_rate_hz"] / 1000)
    if cfg["format"] == "cbor":
        from .cbor import max_row_bytes
    else:
        from .jsonw import max_row_bytes
    # the longest the rows can be, plus room for the message head and the queue's header line
    need = rows * max_row_bytes(len(sensor.sensors), getattr(sensor, "typecode", "f")) + 2048
    if need > cfg["queue_budget_bytes"]:
        return (
            "config: queue_budget_bytes: a window may take %d bytes encoded (window_ms %d at %s Hz), over the"
            " budget of %d: raise queue_budget_bytes or shorten window_ms"
            % (need, cfg["window_ms"], cfg["sample_rate_hz"], cfg["queue_budget_bytes"])
        )
    return None


def _unix_time():
    # iat only with a clock that is really set: the unix port's is the host's;
    # a board's counts from 2000 and is right only after NTP.
    t = time.time()
    if time.gmtime(0)[0] == 2000:
        t += 946684800
    return int(t) if t > 1577836800 else None  # after 2020-01-01


def _load_config(path):
    """Load and validate the config, then unload the validator: it is needed
    once at boot, and its tables would hold heap for as long as the app runs."""
    from . import config

    try:
        cfg = config.load(path)
        cfg["_summary"] = config.describe(cfg)
        return cfg
    finally:
        sys.modules.pop("uingest.config", None)
        import uingest

        if hasattr(uingest, "config"):
            delattr(uingest, "config")
        gc.collect()


def main(config_path="config.json", max_windows=None, board=None, log=print):
    """Boot and run; returns an exit status (0 after Ctrl-C or max_windows)."""
    try:
        cfg = _load_config(config_path)
    except ValueError as e:  # config.ConfigError
        for line in getattr(e, "problems", [str(e)]):
            log(line)
        return 2
    if board is None:
        import board  # the board's definition, deployed next to main.py
    try:
        hw = board.setup(cfg)
    except (OSError, ValueError) as e:
        log("board: %s" % e)
        return 3
    problem = _window_over_budget(cfg, hw.sensor)
    if problem:  # before the watchdog: a board that cannot run says so once, not at every reset
        log(problem)
        return 2
    from . import wifi

    link = wifi.link(cfg)
    wdt = None
    wdt_ms = getattr(hw, "wdt_timeout_ms", None) or 0  # None (unix-sim) or 0 (config): no watchdog
    if wdt_ms:
        from machine import WDT

        wdt = WDT(timeout=wdt_ms)
    gc.collect()  # imports and boot leave garbage: clear it before the long-lived buffers are placed
    app = App(cfg, hw, link, board.DEVICE_TYPE, log, wdt)
    log(
        "uingest: %s record=%s mode=%s"
        % (cfg.pop("_summary"), "ram" if type(app.recorder) is Recorder else "flash", cfg["mode"])
    )
    try:
        while max_windows is None or app.windows < max_windows:
            n = app.windows
            try:
                app.step()
            except (OSError, MemoryError) as e:
                # a sensor or the flash failed this once, or the heap was too fragmented for one allocation (a
                # TLS handshake, a remote request's checks): say so, free what the step left, keep sampling
                log("window %d: %s; going on" % (app.windows, _errno(e)))
                gc.collect()
                time.sleep_ms(1000)
            app.feed()
            if app.remote is None or app.windows != n:  # "remote" idles: a line per recording
                log(app.status())
    except KeyboardInterrupt:
        if wdt is None:
            log("uingest: stopped (Ctrl-C)")
        else:
            # machine.WDT cannot be stopped: say what will happen, and how to avoid it
            log(
                "uingest: stopped (Ctrl-C); the watchdog cannot be stopped and resets the board within %d s"
                " (config wdt_timeout_ms: 0 turns it off)" % (wdt_ms // 1000)
            )
    finally:
        app.close()
    return 0
