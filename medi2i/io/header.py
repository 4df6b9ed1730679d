"""What a format reader hands to :func:`medi2i.io.load_volume`: a validated header and a deferred data read.

Splitting the header from the data lets every header check (geometry, dimensions, scaling, declared size)
run before a single voxel is allocated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUPPORTED_DTYPES = tuple(
    np.dtype(name)
    for name in ("uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")
)
"""Element types medi2i reads and writes; complex, RGB and extended precision are rejected."""


@dataclass(frozen=True)
class DiskHeader:
    """A file's validated header.

    Args:
        path: the file.
        dims: the array shape as stored, ``(X, Y[, Z[, T/C ...]])`` (ITK vector pixels add a trailing ``C``).
        dtype: stored element type (byte order as stored).
        affine: validated ``(4, 4)`` voxel -> RAS+ mm.
        scaling: ``(slope, inter)`` to apply as ``slope * stored + inter``, or None for stored = value.
        read: reads the voxels, shape ``dims``, native byte order; checks the data size first.
    """

    path: Path
    dims: tuple[int, ...]
    dtype: np.dtype
    affine: np.ndarray
    scaling: tuple[float, float] | None
    read: Callable[[], np.ndarray]
