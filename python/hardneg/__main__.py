"""``python -m hardneg``: the ``hardneg`` command; without arguments, ``hardneg info``."""

import sys

from .cli import main

sys.exit(main(sys.argv[1:] or ["info"]))
