# On-board entry point: MicroPython runs main.py after boot.py.
# On the unix port: micropython main.py [config.json] [max_windows]
import gc
import sys

# Hold a block of the still-empty heap while the modules load: loading
# scatters small objects everywhere, and the window and the network buffers
# need contiguous room afterwards. Released before the app allocates them.
_room = bytearray(12 * 1024)

from uingest import app  # noqa: E402

_room = None
gc.collect()
_args = getattr(sys, "argv", [])[1:]
sys.exit(app.main(_args[0] if _args else "config.json", int(_args[1]) if len(_args) > 1 else None))
