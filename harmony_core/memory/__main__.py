"""``python -m harmony_core.memory``: see ``harmony_core.memory.cli``."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
