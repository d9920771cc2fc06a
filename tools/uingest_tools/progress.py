"""A tiny text progress bar on stderr, for the host tools' long runs.

Drawn only when enabled and stderr is a terminal, so logs and pipes stay clean. Call ``clear()`` before
printing anything else to the terminal; the next ``update()`` draws the bar again.
"""

from __future__ import annotations

import sys
import time

WIDTH = 30


class Progress:
    def __init__(self, total: int, label: str = "", enabled: bool = True, stream=None, min_interval: float = 0.1):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(enabled) and total > 0 and bool(isatty and isatty())
        self.total = total
        self.label = label
        self.done = 0
        self.min_interval = min_interval
        self._last = 0.0
        self._drawn = 0

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.total, self.done + n)
        if not self.enabled:
            return
        now = time.monotonic()
        if self.done < self.total and now - self._last < self.min_interval:
            return
        self._last = now
        filled = WIDTH * self.done // self.total
        line = "%s [%s%s] %d/%d" % (self.label, "#" * filled, "." * (WIDTH - filled), self.done, self.total)
        if note:
            line += " " + note
        line = line[:119]
        self.stream.write("\r" + line + " " * max(0, self._drawn - len(line)))
        self.stream.flush()
        self._drawn = len(line)

    def clear(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0

    def close(self) -> None:
        self.clear()
