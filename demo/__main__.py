"""``python -m demo``: run the nightly DAG against the local emulator and print what it did and cost."""

from __future__ import annotations

import sys

from demo.nightly import main

if __name__ == "__main__":
    sys.exit(main())
