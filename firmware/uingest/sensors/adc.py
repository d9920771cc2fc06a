# Analog inputs through machine.ADC: read_u16() (0..65535 on every port)
# times a scale, one row per read().


class ADCSensor:
    """ADCSensor(adc, name='adc', units='V', scale=3.3/65535).

    adc may also be a tuple of ADC objects, with name a tuple of as many names:
    one row then holds every channel, read one after the other. The default
    scale assumes 0..3.3 V full scale; on an ESP32 that depends on the
    attenuation (ADC.ATTN_11DB reads up to about 3.1 V) and is not linear
    near the ends: calibrate, or pass your own scale.
    """

    def __init__(self, adc, name="adc", units="V", scale=3.3 / 65535):
        if isinstance(adc, (tuple, list)):
            if not isinstance(name, (tuple, list)) or len(name) != len(adc):
                raise ValueError("name: expected %d channel names for %d ADCs" % (len(adc), len(adc)))
            self._adcs = tuple(adc)
            self.sensors = tuple((n, units) for n in name)
        else:
            self._adcs = (adc,)
            self.sensors = ((name, units),)
        self.scale = scale
        self.typecode = "f"

    def read(self, window):
        adcs = self._adcs
        if len(adcs) == 1:
            window.append(adcs[0].read_u16() * self.scale)
            return
        if window.width != len(adcs):
            raise ValueError("window has %d sensors, ADCSensor has %d channels" % (window.width, len(adcs)))
        if window.rows >= window.capacity:
            raise IndexError("window full: %d rows" % window.capacity)
        # Straight into the window's array, then count the row: no argument tuple.
        s = window.samples
        i = window.rows * len(adcs)
        scale = self.scale
        for adc in adcs:
            s[i] = adc.read_u16() * scale
            i += 1
        window.commit(1)
