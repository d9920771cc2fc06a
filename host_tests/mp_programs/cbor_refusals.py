# For each line of hex on stdin: what uingest.remotecbor.loads says of those bytes, one line each:
# "ok" or "ValueError: <why>" (any other exception shows as itself: the test expects none).
import sys
from binascii import unhexlify

from uingest import remotecbor

for line in sys.stdin.read().split():
    try:
        remotecbor.loads(unhexlify(line[1:]))  # each line starts with "x": an empty message stays a line
        print("ok")
    except ValueError as e:
        print("ValueError: %s" % e)
