# Each stdin line is a JSON label: print [the label ingest.check_label returns, None, the x-label
# ingest.headers sends], or [None, its reason, None].
import json
import sys

from uingest import ingest

for line in sys.stdin:
    try:
        label = json.loads(line)
        print(json.dumps([ingest.check_label(label), None, ingest.headers("ei_k", label=label)["x-label"]]))
    except ValueError as e:
        print(json.dumps([None, str(e), None]))
