"""Entry point: `python -m imagegen.train --config configs/NAME.yaml` (see imagegen/cli/train.py)."""

import sys

from imagegen.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
