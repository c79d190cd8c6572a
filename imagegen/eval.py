"""Entry point: `python -m imagegen.eval --model RUN --suite all --out DIR` (see imagegen/cli/eval.py)."""

import sys

from imagegen.cli.eval import main

if __name__ == "__main__":
    sys.exit(main())
