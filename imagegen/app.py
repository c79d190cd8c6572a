"""Entry point: `python -m imagegen.app [--runs runs/] [--port 7860]`, a local web page to try
models (see imagegen/cli/app.py and docs/app.md; needs the extra `pip install "imagegen[app]"`)."""

import sys

from imagegen.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
