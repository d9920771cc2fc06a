"""uingest.wifi against a fake WLAN: timeouts, backoff with jitter, status."""

import time

from uingest import wifi


class FakeWLAN:
    def __init__(self, connect_after=None):
        self.connect_after = connect_after  # connect() calls before it succeeds; None: never
        self.calls = 0
        self.connected = False
        self.active_state = False

    def active(self, on=None):
        if on is not None:
            self.active_state = on
        return self.active_state

    def isconnected(self):
        return self.connected

    def connect(self, ssid, password):
        self.calls += 1
        if self.connect_after is not None and self.calls >= self.connect_after:
            self.connected = True

    def disconnect(self):
        self.connected = False

    def status(self, what=None):
        return -61 if what == "rssi" else 1010

    def config(self, what):
        return b"\xac\x87\xa3\x0a\x2d\x1b"


def test_connects_and_reports():
    link = wifi.WifiLink(FakeWLAN(connect_after=1), "net", "pw", timeout_ms=200)
    assert link.connect() and link.up()
    assert link.status() == "wifi=up rssi=-61dBm"
    assert link.mac() == "ac:87:a3:0a:2d:1b"


def test_connect_gives_up_after_the_timeout():
    link = wifi.WifiLink(FakeWLAN(), "net", "pw", timeout_ms=150)
    t0 = time.monotonic()
    assert not link.connect()
    assert 0.1 < time.monotonic() - t0 < 1.0


def test_backoff_doubles_with_jitter_and_resets():
    wlan = FakeWLAN()
    link = wifi.WifiLink(wlan, "net", "pw", timeout_ms=0)
    waits = []
    for _ in range(8):
        link._next_try = None  # make the attempt due now
        assert not link.ensure()
        waits.append(time.ticks_diff(link._next_try, time.ticks_ms()))
    # each wait is the backoff +-25 %, the backoff doubling from 1 s up to 60 s
    backoff = 1000
    for w in waits:
        assert backoff * 0.7 <= w <= backoff * 1.3, (w, backoff)
        backoff = min(backoff * 2, 60000)
    assert link.backoff_ms == 60000
    assert not link.ensure()  # not due yet: no new attempt
    calls = wlan.calls
    assert not link.ensure() and wlan.calls == calls
    wlan.connected = True
    assert link.ensure() and link.backoff_ms == 1000


def test_host_link_on_ports_without_network():
    link = wifi.link({"wifi_ssid": "", "wifi_password": ""})
    assert isinstance(link, wifi.HostLink) and link.up() and link.ensure()
