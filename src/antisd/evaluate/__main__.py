"""``python -m antisd.evaluate``: the same command as ``antisd eval``."""

import sys

from antisd.evaluate.run import main

if __name__ == "__main__":
    sys.exit(main())
