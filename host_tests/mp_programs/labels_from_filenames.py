# Each stdin line is a JSON file name: print the label filelabel.label_from_filename infers (JSON, null for none).
import json
import sys

from uingest import filelabel

for line in sys.stdin:
    print(json.dumps(filelabel.label_from_filename(json.loads(line))))
