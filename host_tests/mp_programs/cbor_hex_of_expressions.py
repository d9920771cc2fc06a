"""Each stdin line is a Python expression (OrderedDict allowed): prints the hex
of its CBOR encoding, or the ValueError the encoder raised."""

import sys
from binascii import hexlify
from collections import OrderedDict

from uingest import cbor

for line in sys.stdin:
    expr = line.rstrip("\n")
    try:
        print(hexlify(cbor.dumps(eval(expr, {"OrderedDict": OrderedDict}))).decode())
    except ValueError as e:
        print("ValueError", e)
