"""Tests of medi2i.metrics (a package, so basenames may repeat in other test folders)."""

from __future__ import annotations
