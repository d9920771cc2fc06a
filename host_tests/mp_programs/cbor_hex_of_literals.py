"""Each stdin line is a Python literal: prints the hex of its CBOR encoding."""

import sys
from binascii import hexlify

from uingest import cbor

for line in sys.stdin:
    print(hexlify(cbor.dumps(eval(line))).decode())
