"""The `uingest` command."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="uingest", description="uingest host tools")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("bench", help="run the benchmarks on the MicroPython unix port")
    args = parser.parse_args(argv)
    if args.command == "bench":
        from . import bench

        return bench.main()
    return 2


if __name__ == "__main__":
    sys.exit(main())
