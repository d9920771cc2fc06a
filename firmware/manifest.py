# uingest for MicroPython's freezer: include this file from your board's manifest and build the firmware; the
# uingest package is then frozen bytecode that runs in place from flash (README: "Freezing uingest"):
#   include("$(PORT_DIR)/boards/manifest.py")
#   include("/path/to/uingest/firmware/manifest.py")
# main.py, the board's file (boards/<name>/board.py, copied as board.py) and config.json stay files on the board.
# The build compiles the viper kernels (uingest/_kernels.py, _json_kernel.py) for the port's architecture,
# as mpy-cross -march does.
# metadata() and package() are the manifest's commands, defined by MicroPython's tools/manifestfile.py.
metadata(description="uingest: sensor windows to Edge Impulse", version="0.1.0")  # noqa: F821  # pyright: ignore[reportUndefinedVariable]
package("uingest")  # noqa: F821  # pyright: ignore[reportUndefinedVariable]  every .py under uingest/
