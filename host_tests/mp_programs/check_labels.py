# Each stdin line is a JSON label: print [the label ingest.check_label returns, None], or [None, its reason].
import json
import sys

from uingest import ingest

for line in sys.stdin:
    try:
        print(json.dumps([ingest.check_label(json.loads(line)), None]))
    except ValueError as e:
        print(json.dumps([None, str(e)]))
