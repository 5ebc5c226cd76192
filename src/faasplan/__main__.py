"""``python -m faasplan``: the same as the ``faasplan`` command."""

from __future__ import annotations

import sys

from faasplan.cli import main

if __name__ == "__main__":
    sys.exit(main())
