# A window recorded to flash as it is sampled, for a window longer than the
# heap: imported by the app only when it records to flash (record_to_flash).
from .filewindow import FileWindow


class FlashRecorder:
    """Records each window of `rows` rows into a FileWindow at path, sampling
    it through chunk (a Window of a few rows in RAM) on one schedule: the
    sampler starts once per window, not per chunk. Has app.Recorder's
    interface (.window, record(sensor, feed), close()); feed() is called per
    chunk, as a window may outlast the watchdog's timeout."""

    def __init__(self, path, chunk, rows, sampler):
        self.window = FileWindow(path, chunk.sensors, chunk.interval_ms, chunk.typecode)
        self.chunk = chunk
        self.chunk_rows = chunk.capacity  # chunk.clear(n) lowers its capacity for the last chunk
        self.rows = rows
        self.sampler = sampler

    def record(self, sensor, feed=None, rows=None):
        w = self.window
        chunk = self.chunk
        w.clear()
        if not hasattr(sensor, "fill"):
            self.sampler.start()
        left = rows or self.rows  # rows: a remote request's length
        while left:
            n = left if left < self.chunk_rows else self.chunk_rows
            chunk.clear(n)
            if hasattr(sensor, "fill"):
                sensor.fill(chunk)  # audio: DMA-sized reads; the I2S buffer covers the flash write
            else:
                self.sampler.fill(chunk, sensor)
            w.append_chunk(chunk.samples, n)
            left -= n
            if feed is not None:
                feed()
        return w

    def close(self):
        self.window.close()
