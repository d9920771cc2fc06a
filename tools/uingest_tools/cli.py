"""The `uingest` command: one entry point, a subcommand per tool."""

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

USAGE = "usage: uingest COMMAND [options]   (uingest COMMAND --help for details)\n\ncommands:\n" + "".join(
    "  %-10s %s\n" % (name, help_) for name, (_, help_) in COMMANDS.items()
)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    name = argv[0]
    if name not in COMMANDS:
        print("uingest: unknown command %r\n%s" % (name, USAGE), file=sys.stderr, end="")
        return 2
    import importlib

    module = importlib.import_module(COMMANDS[name][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
