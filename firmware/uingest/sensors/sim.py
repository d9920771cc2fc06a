# Hardware for a board without sensors (unix-sim, or a bare devkit for a
# demo): a CSV file replayed, a synthetic tone, or the synthetic accelerometer.
# Here rather than in the board file so its code is compiled with the
# firmware and loaded only when setup() runs.
from .hardware import Hardware


def setup(config):
    """config: sample_rate_hz, label; optional "csv": a file to replay (with
    "sensors" if it has no units row), or "audio": true for a tone."""
    if config.get("csv"):
        from .csv_replay import CSVReplay

        return Hardware(CSVReplay(config["csv"], config.get("sensors")))
    if config.get("audio"):
        from .tone import SyntheticAudio

        return Hardware(SyntheticAudio(config["label"], config["sample_rate_hz"]))
    from . import synthetic

    # A real sensor never repeats itself; a synthetic one would after a reboot
    # (and identical windows are one sample to a server that drops duplicates).
    # So each boot starts 10000 samples further on.
    return Hardware(synthetic.SyntheticIMU(config["label"], config["sample_rate_hz"], base=10000 * _boot_count()))


def _boot_count(path="sim_boots"):
    """Count boots in a file next to config.json (written atomically)."""
    import os

    n = 0
    try:
        with open(path) as f:
            n = int(f.read())
    except (OSError, ValueError):
        pass
    n += 1
    with open(path + ".tmp", "w") as f:
        f.write(str(n))
    os.rename(path + ".tmp", path)
    return n
