"""uingest.app under CPython with fakes: the button, the REPL label command,
a rejected window kept aside, the queue used while the link is down."""

import json
import os
import sys

import cbor2
import pytest

from helpers import f32
from uingest import app, config
from uingest.filewindow import FileWindow
from uingest.flashrecorder import FlashRecorder
from uingest.sensors import synthetic, tone
from uingest.sensors.hardware import Hardware
from uingest.sensors.synthetic import SyntheticIMU
from uingest_tools.loopback import FakeServer, reply


class FakeButton:
    IRQ_FALLING = 2

    def __init__(self):
        self.handler = None

    def irq(self, handler=None, trigger=None):
        self.handler = handler
        self.trigger = trigger

    def press(self):
        self.handler(self)


class Link:
    def __init__(self, up=True):
        self.is_up = up

    def up(self):
        return self.is_up

    def ensure(self):
        return self.is_up

    def mac(self):
        return "aa:bb:cc:dd:ee:ff"

    def status(self):
        return "link=fake"


def make_app(tmp_path, url, button=None, link=None, **kw):
    raw = {
        "board": "unix-sim",
        "api_key": "ei_unit",
        "hmac_key": "h",
        "url": url,
        "labels": ["idle", "wave", "run"],
        "window_ms": 50,
        "sample_rate_hz": 200,
        "queue_dir": str(tmp_path / "q"),
        "timeout_ms": 1000,
    }
    raw.update(kw)
    cfg, problems = config.validate(raw)
    assert not problems
    hw = Hardware(SyntheticIMU("idle", 200), button=button)
    lines = []
    a = app.App(cfg, hw, link or Link(), "TEST_DEVICE", lines.append)
    return a, lines


def test_button_press_cycles_labels_between_windows(tmp_path):
    srv = FakeServer([])
    try:
        b = FakeButton()
        a, lines = make_app(tmp_path, srv.url, button=b)
        assert b.trigger == 2 and a.device_name == "aa:bb:cc:dd:ee:ff"
        a.step()
        b.press()  # during sampling: only a flag
        assert a.label == "idle"
        a.step()
        assert a.label == "wave" and "label: now wave" in lines
        b.press()
        b.press()  # two presses before the next window count once
        a.step()
        assert a.label == "run"
        labels = [h.split(b"\r\nx-label: ")[1].split(b"\r\n")[0] for h, _ in srv.requests]
        assert labels == [b"idle", b"wave", b"run"]
        a.close()
    finally:
        srv.close()


def test_unknown_label_is_refused(tmp_path):
    a, lines = make_app(tmp_path, "http://127.0.0.1:9")
    a.set_label("jump")
    assert a.label == "idle" and "not one of" in lines[-1]


def test_rejected_window_is_kept_aside_with_the_reason(tmp_path):
    srv = FakeServer([reply(400, b"payload.values[0] is not finite")])
    try:
        a, lines = make_app(tmp_path, srv.url)
        a.step()
        assert len(a.outbox.store) == 0 and a.outbox.store.rejected == 1
        aside = sorted(os.listdir(tmp_path / "q" / "rejected"))
        assert aside == ["00000001.msg", "00000001.reason"]
        assert (tmp_path / "q" / "rejected" / "00000001.reason").read_text() == (
            "400 payload.values[0] is not finite\n"
        )
        assert "rejected (400)" in lines[0]
        a.close()
    finally:
        srv.close()


def test_a_queued_window_under_a_label_no_longer_sent_is_set_aside_and_the_rest_drain(tmp_path):
    # an older firmware queued windows under labels the label rule now refuses
    srv = FakeServer([])
    try:
        a, lines = make_app(tmp_path, srv.url, link=Link(up=False))
        a.step()
        a.outbox.store.put(app.Message(a.recorder.window, "cbor", "h"), ".hidden", "training")
        a.step()
        assert len(a.outbox.store) == 3
        a.link.is_up = True
        a.step()  # drains: the refused one aside with the reason, the others sent, the app goes on
        assert len(a.outbox.store) == 0 and a.outbox.store.rejected == 1 and len(srv.requests) == 3
        aside = sorted(os.listdir(tmp_path / "q" / "rejected"))
        assert aside == ["00000002.msg", "00000002.reason"]
        reason = (tmp_path / "q" / "rejected" / "00000002.reason").read_text()
        assert reason == "not sent: label must not start with '.': '.hidden'\n"
        assert any(line.startswith("queued 00000002.msg set aside: label must not") for line in lines)
        a.close()
    finally:
        srv.close()


def test_a_window_over_the_queue_budget_is_lost_in_one_line_and_the_queue_stays(tmp_path):
    a, lines = make_app(tmp_path, "http://127.0.0.1:9", link=Link(up=False))
    a.step()
    a.step()
    assert len(a.outbox.store) == 2
    # a budget smaller than one window (the queued ones are kept from before): making room cannot help
    a.outbox.store.budget = a.outbox.store.bytes_used() // 2 - 10
    a.step()
    assert len(a.outbox.store) == 2 and a.outbox.store.dropped == 0 and a.outbox.lost == 1
    assert [line for line in lines if "lost" in line] == [
        "window 3 lost: cannot write the queue on flash (%d bytes, over the whole queue budget of %d)"
        % (int(lines[-1].split("(")[1].split(" ")[0]), a.outbox.store.budget)
    ]
    a.close()


@pytest.mark.parametrize(
    "fmt,window_ms,rate,budget,need",
    [
        ("cbor", 10_000, 200, 20_000, 10_000 // 5 * 16 + 2048),  # 2000 rows of 3 float32 axes: 16 bytes a row
        ("json", 1_000, 200, 8_000, 200 * (3 + 23 * 3) + 2048),  # the longest JSON text a row can take (JS layout)
    ],
)
def test_a_window_that_cannot_fit_the_queue_budget_stops_the_boot_in_one_line(
    tmp_path, monkeypatch, fmt, window_ms, rate, budget, need
):
    started = []
    machine = type(sys)("machine")
    machine.WDT = lambda timeout: started.append(timeout)
    monkeypatch.setitem(sys.modules, "machine", machine)

    class Board:
        DEVICE_TYPE = "TEST_DEVICE"

        @staticmethod
        def setup(cfg):
            return Hardware(SyntheticIMU("idle", rate), wdt_timeout_ms=5000)

    raw = {"board": "unix-sim", "api_key": "ei_unit", "url": "http://127.0.0.1:9", "labels": ["idle"]}
    raw.update(window_ms=window_ms, sample_rate_hz=rate, format=fmt, queue_budget_bytes=budget)
    raw["queue_dir"] = str(tmp_path / "q")
    (tmp_path / "config.json").write_text(json.dumps(raw))
    lines = []
    assert app.main(str(tmp_path / "config.json"), board=Board, log=lines.append) == 2
    assert lines == [
        "config: queue_budget_bytes: a window may take %d bytes encoded (window_ms %d at %d Hz), over the budget"
        " of %d: raise queue_budget_bytes or shorten window_ms" % (need, window_ms, rate, budget)
    ]
    assert started == []  # no watchdog armed: the board does not reset and print it again


def test_link_down_queues_then_drains_oldest_first(tmp_path):
    srv = FakeServer([])
    try:
        link = Link(up=False)
        a, _ = make_app(tmp_path, srv.url, link=link)
        for _ in range(3):
            a.step()
        assert len(a.outbox.store) == 3 and srv.requests == []
        link.is_up = True
        a.step()  # the new window joins the queue behind the others; all four go, oldest first
        assert len(a.outbox.store) == 0 and len(srv.requests) == 4
        # window k holds samples 10k.. of the synthetic signal: they arrived in order
        firsts = [cbor2.loads(body)["payload"]["values"][0] for _, body in srv.requests]
        for k, row in enumerate(firsts):
            assert row == pytest.approx(list(synthetic.expected("idle", 10 * k, 200)), abs=1e-5)
        assert "queued=0" in a.status() and "sent=4" in a.status()
        a.close()
    finally:
        srv.close()


class FakeWDT:
    def __init__(self):
        self.feeds = 0

    def feed(self):
        self.feeds += 1


def test_the_watchdog_is_fed_through_a_long_drain_and_a_long_window(tmp_path):
    """A backlog after an outage, or a window of many samples, can outlast the
    watchdog's timeout: it is fed per queued window sent, every 256 samples,
    and per chunk recorded to flash, not only between windows."""
    srv = FakeServer([])
    try:
        link = Link(up=False)
        a, _ = make_app(tmp_path, srv.url, link=link)
        a.wdt = wdt = FakeWDT()
        for _ in range(6):
            a.step()
        assert wdt.feeds == 0 and len(a.outbox.store) == 6  # steps themselves do not feed: main() does, after each
        link.is_up = True
        a.step()
        assert len(srv.requests) == 7 and wdt.feeds == 7  # one per window the drain sent
        a.close()

        b, _ = make_app(tmp_path / "b", srv.url, window_ms=100, sample_rate_hz=10000)  # 1000 rows in RAM
        b.wdt = wdt = FakeWDT()
        b.step()
        assert wdt.feeds == 3  # after samples 256, 512 and 768
        b.close()

        c, _ = make_app(tmp_path / "c", srv.url, window_ms=1000, sample_rate_hz=200, record_to_flash=True)
        c.wdt = wdt = FakeWDT()
        c.step()  # 200 rows in chunks of 170 and 30
        assert wdt.feeds == 2
        c.close()
    finally:
        srv.close()


def write_main_config(tmp_path, url, **more):
    """config.json for app.main(): windows of 10 rows at 200 Hz, posted to url."""
    cfg = {
        "board": "unix-sim",
        "api_key": "ei_unit",
        "url": url,
        "labels": ["idle"],
        "window_ms": 50,
        "sample_rate_hz": 200,
        "queue_dir": str(tmp_path / "q"),
        **more,
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))


class StopAfter(SyntheticIMU):
    """Ctrl-C typed while the window after `reads` samples is being sampled."""

    def __init__(self, reads):
        super().__init__("idle", 200)
        self.left = reads

    def read(self, window):
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        super().read(window)


@pytest.mark.parametrize("timeout_ms", [5000, 0])
def test_main_starts_the_boards_watchdog_and_feeds_it_every_window(tmp_path, monkeypatch, timeout_ms):
    made = []

    class WDT(FakeWDT):
        def __init__(self, timeout):
            super().__init__()
            self.timeout = timeout
            made.append(self)

    machine = type(sys)("machine")
    machine.WDT = WDT
    monkeypatch.setitem(sys.modules, "machine", machine)

    class Board:
        DEVICE_TYPE = "TEST_DEVICE"

        @staticmethod
        def setup(cfg):
            return Hardware(StopAfter(3 * 10 + 4), wdt_timeout_ms=cfg.get("wdt_timeout_ms", timeout_ms))

    srv = FakeServer([])
    try:
        write_main_config(tmp_path, srv.url, wdt_timeout_ms=timeout_ms)
        lines = []
        assert app.main(str(tmp_path / "config.json"), board=Board, log=lines.append) == 0
    finally:
        srv.close()
    assert len(srv.requests) == 3  # three windows of 10 rows, then Ctrl-C in the fourth
    if timeout_ms:
        [wdt] = made
        assert wdt.timeout == 5000 and wdt.feeds == 3, lines
        assert lines[-1] == (
            "uingest: stopped (Ctrl-C); the watchdog cannot be stopped and resets the board within 5 s"
            " (config wdt_timeout_ms: 0 turns it off)"
        )
    else:
        assert made == [] and lines[-1] == "uingest: stopped (Ctrl-C)"


def test_retry_after_holds_sending_and_windows_queue_meanwhile(tmp_path):
    import time

    srv = FakeServer([reply(503, b"maintenance", {"Retry-After": "60"})])
    try:
        a, lines = make_app(tmp_path, srv.url)
        a.step()  # 503: queued, and the server asked for 60 s
        assert len(a.outbox.store) == 1 and "server asks to wait 60 s" in lines
        a.step()  # within the pause: no request at all, the window joins the queue
        assert len(srv.requests) == 1 and len(a.outbox.store) == 2
        a.outbox._hold_until = time.ticks_add(time.ticks_ms(), -1)  # the pause is over
        a.step()
        assert len(a.outbox.store) == 0 and len(srv.requests) == 4  # the two queued, then the new one
        a.close()
    finally:
        srv.close()


def test_audio_windows_are_refilled_each_time(tmp_path):
    srv = FakeServer([])
    try:
        a, _ = make_app(tmp_path, srv.url, window_ms=10, sample_rate_hz=16000)
        a.hw.sensor = tone.SyntheticAudio("idle", 16000)  # fills the window itself, like the I2S mic
        a.recorder.window = app.Window(a.hw.sensor.sensors, 1000 / 16000, 160, "h")
        a.step()
        a.step()
        first, second = (cbor2.loads(body)["payload"]["values"] for _, body in srv.requests)
        assert first == [tone.expected_audio("idle", t) for t in range(160)]
        assert second == [tone.expected_audio("idle", t) for t in range(160, 320)]
        a.close()
    finally:
        srv.close()


def test_record_to_flash_sampled_window_goes_through_a_file_in_chunks(tmp_path):
    """200 rows of 3 float axes (2400 bytes) recorded in 2 KB chunks of 170
    rows: the window that arrives is the sensor's samples in order, the
    schedule is one run (not restarted per chunk), the file is not a queue entry."""
    srv = FakeServer([])
    try:
        a, _ = make_app(tmp_path, srv.url, window_ms=1000, sample_rate_hz=200, record_to_flash=True)
        assert a.recorder.chunk_rows == 170 and a.recorder.chunk.capacity == 170
        a.step()
        a.step()
        assert a.recorder.sampler.samples == 200  # the second window's run: all of its rows on one schedule
        assert len(a.outbox.store) == 0 and os.path.getsize(tmp_path / "q" / "recording.raw") == 2400
        first, second = (cbor2.loads(body)["payload"]["values"] for _, body in srv.requests)
        assert len(first) == len(second) == 200
        want = [[f32(v) for v in SyntheticIMU("idle", 200).row(t)] for t in range(400)]
        assert first + second == want
        a.close()
    finally:
        srv.close()


def test_record_to_flash_audio_fills_chunk_by_chunk(tmp_path):
    srv = FakeServer([])
    try:
        a, _ = make_app(tmp_path, srv.url, window_ms=500, sample_rate_hz=16000, record_to_flash=True)
        # make_app built an IMU app; give it an audio sensor and chunk, as a board with a microphone would have
        a.hw.sensor = tone.SyntheticAudio("idle", 16000)
        chunk = app.Window(a.hw.sensor.sensors, 1000 / 16000, 1024, "h")
        a.recorder = FlashRecorder(str(tmp_path / "q" / "recording.raw"), chunk, a.recorder.rows, a.recorder.sampler)
        a.step()  # 8000 rows: 7 chunks of 1024 and one of 832
        a.step()
        first, second = (cbor2.loads(body)["payload"]["values"] for _, body in srv.requests)
        assert first + second == [tone.expected_audio("idle", t) for t in range(16000)]
        a.close()
    finally:
        srv.close()


@pytest.mark.parametrize(
    "free,window_ms,where",
    [
        (100_000, 50, "ram"),  # 10 rows x 12 bytes
        (100_000, 10_000, "ram"),  # 24 KB: under a quarter of the free heap
        (100_000, 11_000, "flash"),  # 26.4 KB: over it
        (-1, 100_000, "ram"),  # the free heap is not known (CPython says 0, some ports -1): as configured
        (0, 100_000, "ram"),
    ],
)
def test_record_to_flash_auto_decides_by_the_free_heap(tmp_path, monkeypatch, free, window_ms, where):
    monkeypatch.setattr(app.gc, "mem_free", lambda: free)
    a, _ = make_app(tmp_path, "http://127.0.0.1:9", window_ms=window_ms)  # 200 Hz, 3 float axes
    rows = window_ms // 5
    if where == "ram":
        w = a.recorder.window
        assert type(a.recorder) is app.Recorder and isinstance(w, app.Window) and w.capacity == rows
    else:
        assert isinstance(a.recorder.window, FileWindow) and a.recorder.chunk.capacity == a.recorder.chunk_rows == 170
    a.close()


class NaNSensor:
    sensors = (("x", "V"),)
    typecode = "f"

    def __init__(self):
        self.n = 0

    def read(self, window):
        self.n += 1
        window.append(float("nan") if self.n <= 10 else 1.0)


def test_a_window_the_encoder_refuses_is_skipped_and_the_app_goes_on(tmp_path):
    srv = FakeServer([])
    try:
        a, lines = make_app(tmp_path, srv.url)
        a.hw.sensor = NaNSensor()
        a.recorder.window = app.Window(NaNSensor.sensors, 5, 10)
        a.step()  # ten NaNs: skipped, nothing sent or queued
        a.step()  # ten good samples: sent
        assert lines[0].startswith("window 1 skipped: values: NaN or infinite")
        assert len(srv.requests) == 1 and len(a.outbox.store) == 0 and " skipped=1 " in a.status()
        a.close()
    finally:
        srv.close()


def test_a_full_flash_loses_the_window_says_so_and_goes_on(tmp_path, monkeypatch):
    import uingest.store

    def full(*args, **kw):
        raise OSError(28)  # ENOSPC

    s = socket_refused_url()
    a, lines = make_app(tmp_path, s)
    monkeypatch.setattr(uingest.store, "open", full, raising=False)
    a.step()  # refused -> RETRY -> the queue cannot be written
    assert any(line == "window 1 lost: cannot write the queue on flash (errno 28)" for line in lines), lines
    assert len(a.outbox.store) == 0 and " lost=1 " in a.status()
    assert not [n for n in os.listdir(tmp_path / "q") if n.endswith(".tmp")]
    monkeypatch.undo()
    a.step()  # the flash has room again: queued
    assert len(a.outbox.store) == 1
    a.close()


def socket_refused_url():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # bound, never listening: refused
    port = s.getsockname()[1]
    s.close()
    return "http://127.0.0.1:%d" % port


class FailsOnce(SyntheticIMU):
    """A read that raises exc once, at read number `at`."""

    def __init__(self, exc, at):
        super().__init__("idle", 200)
        self.exc, self.n, self.at = exc, 0, at

    def read(self, window):
        self.n += 1
        if self.n == self.at:
            raise self.exc
        super().read(window)


@pytest.mark.parametrize("exc", [OSError(5, "EIO"), MemoryError("memory allocation failed, allocating 512 bytes")])
def test_a_step_that_fails_once_is_one_line_and_the_app_goes_on(tmp_path, monkeypatch, exc):
    """A sensor or flash error, or a MemoryError (a fragmented heap during a TLS handshake or a remote request):
    one line, and the next windows are sampled and sent."""
    monkeypatch.setattr(app.time, "sleep_ms", lambda ms: None, raising=False)

    class Board:
        DEVICE_TYPE = "TEST_DEVICE"

        @staticmethod
        def setup(cfg):
            return Hardware(FailsOnce(exc, 15))

    srv = FakeServer([])
    try:
        write_main_config(tmp_path, srv.url)
        lines = []
        assert app.main(str(tmp_path / "config.json"), board=Board, log=lines.append, max_windows=4) == 0
    finally:
        srv.close()
    failed = [line for line in lines if "going on" in line]
    assert len(failed) == 1 and failed[0].startswith("window 1: "), lines  # in the second window
    assert len(srv.requests) == 4  # the failed try is not a window: four windows sampled and sent after it
