# unix-sim: the MicroPython unix port as a board. No hardware: a synthetic
# 3-axis accelerometer whose waveform is fixed by the label (or a tone, or a
# CSV file replayed: uingest/sensors/sim.py), so a test knows exactly what
# must arrive. Kept small: the unix port compiles this file from source, and
# every new name costs heap in the simulator's 64K.
from uingest.sensors import synthetic

DESCRIPTION = "MicroPython unix port: synthetic accelerometer or tone, or CSV replay (tests, demos)"
DEVICE_TYPE = "UINGEST_UNIX_SIM"
SENSORS = synthetic.SENSORS
PINS = {}


class SyntheticIMU(synthetic.SyntheticIMU):
    # fill(window, w) for simulator.py: window w holds samples t = w * capacity
    # onwards, and accZ = 9.80665 + (w % 1000) * 0.001 marks which window it is.
    def fill(self, window, window_index):
        window.clear()
        n = window.capacity
        self.marker_rows = n
        self.t = window_index * n
        for _ in range(n):
            self.read(window)


def setup(config):
    from uingest.sensors import sim

    return sim.setup(config)
