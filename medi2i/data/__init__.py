"""Data layer: manifests, the embedded demo cohort, intensity and slice transforms."""

from __future__ import annotations
