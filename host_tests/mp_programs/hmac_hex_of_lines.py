"""Each stdin line is "<key hex> <message hex> <cut,cut,...>": prints the
HMAC-SHA256 of the message, fed to update() in the pieces the cuts make."""

import sys
from binascii import unhexlify

from uingest import hmac

for line in sys.stdin:
    k, m, cuts = line.rstrip("\n").split(" ")
    m = unhexlify(m)
    h = hmac.new(unhexlify(k))
    last = 0
    for c in [int(x) for x in cuts.split(",") if x] + [len(m)]:
        h.update(m[last:c])
        last = c
    print(h.hexdigest())
