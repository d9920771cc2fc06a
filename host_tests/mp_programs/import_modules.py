"""Usage: import_modules.py MODULE...: imports each module, then prints
whether uingest.message has its viper kernels."""

import sys

for name in sys.argv[1:]:
    __import__(name)
from uingest import message

print(message._kernels is not None)
