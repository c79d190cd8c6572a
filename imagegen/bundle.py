"""Entry point: `python -m imagegen.bundle export CHECKPOINT` (see imagegen/cli/bundle.py)."""

import sys

from imagegen.cli.bundle import main

if __name__ == "__main__":
    sys.exit(main())
