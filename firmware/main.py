# On-board entry point: MicroPython runs main.py after boot.py.
# On the unix port: micropython main.py [config.json] [max_windows]
import sys

from uingest import app

_args = getattr(sys, "argv", [])[1:]
sys.exit(app.main(_args[0] if _args else "config.json", int(_args[1]) if len(_args) > 1 else None))
