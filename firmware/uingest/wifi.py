# Wi-Fi link: connect with a timeout, reconnect with exponential backoff and
# jitter, RSSI for the status line. On ports without `network` (the unix
# port) the link is the host's and always up.
import time

from micropython import const

BACKOFF_MIN_MS = const(1000)
BACKOFF_MAX_MS = const(60000)


def _jitter(ms):
    # +-25% so a room full of boards does not reconnect in step
    try:
        from random import getrandbits

        return ms * 3 // 4 + getrandbits(16) % (ms // 2 + 1)
    except ImportError:
        return ms


class HostLink:
    """The unix port: networking is the host's."""

    def up(self):
        return True

    def ensure(self):
        return True

    def rssi(self):
        return None

    def mac(self):
        return None

    def status(self):
        return "link=host"


class WifiLink:
    def __init__(self, wlan, ssid, password, timeout_ms=15000):
        self.wlan = wlan
        self.ssid = ssid
        self.password = password
        self.timeout_ms = timeout_ms
        self.backoff_ms = BACKOFF_MIN_MS
        self._next_try = None  # ticks_ms of the next reconnect attempt
        self.reconnects = 0

    def up(self):
        return self.wlan.isconnected()

    def connect(self):
        """Try once, waiting at most timeout_ms; True when connected."""
        self.wlan.active(True)
        if self.wlan.isconnected():
            return True
        try:
            self.wlan.connect(self.ssid, self.password)
        except OSError:
            return False
        t0 = time.ticks_ms()
        while not self.wlan.isconnected():
            if time.ticks_diff(time.ticks_ms(), t0) > self.timeout_ms:
                try:
                    self.wlan.disconnect()
                except OSError:
                    pass
                return False
            time.sleep_ms(100)
        return True

    def ensure(self):
        """Called every loop: reconnect when due, never blocking longer than
        one connect attempt; backoff doubles up to a minute after failures."""
        if self.wlan.isconnected():
            self.backoff_ms = BACKOFF_MIN_MS
            return True
        now = time.ticks_ms()
        if self._next_try is not None and time.ticks_diff(self._next_try, now) > 0:
            return False
        self.reconnects += 1
        if self.connect():
            self.backoff_ms = BACKOFF_MIN_MS
            self._next_try = None
            return True
        self._next_try = time.ticks_add(time.ticks_ms(), _jitter(self.backoff_ms))
        self.backoff_ms = min(self.backoff_ms * 2, BACKOFF_MAX_MS)
        return False

    def rssi(self):
        try:
            return self.wlan.status("rssi")
        except (OSError, ValueError, TypeError):
            return None

    def mac(self):
        try:
            m = self.wlan.config("mac")
            return ":".join("%02x" % b for b in m)
        except (OSError, ValueError, TypeError):
            return None

    def status(self):
        if not self.up():
            return "wifi=down backoff=%dms" % self.backoff_ms
        r = self.rssi()
        return "wifi=up rssi=%s" % ("?" if r is None else "%ddBm" % r)


def link(cfg):
    """The link for this port: Wi-Fi where `network` exists, else the host's."""
    try:
        import network
    except ImportError:
        return HostLink()
    if not hasattr(network, "WLAN"):
        return HostLink()
    w = WifiLink(network.WLAN(network.STA_IF), cfg["wifi_ssid"], cfg["wifi_password"])
    w.connect()
    return w
