"""Usage: exec_board_files.py BOARD_PY...: runs each board file as a module
named board would run: prints its DEVICE_TYPE and its PINS' names."""

import sys

for p in sys.argv[1:]:
    g = {"__name__": "board"}
    exec(open(p).read(), g)
    print(g["DEVICE_TYPE"], sorted(g["PINS"]))
