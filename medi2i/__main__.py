"""``python -m medi2i`` is the same as the ``medi2i`` console script."""

from __future__ import annotations

import sys

from medi2i.cli import main

sys.exit(main())
