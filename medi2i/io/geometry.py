"""Affine arithmetic shared by the readers, the writer and the pair check.

All affines here are ``(4, 4)`` float64 maps from voxel indices to RAS+ world millimetres.
Tolerances are stated once, here, so the reader, the writer and :func:`medi2i.io.check_same_grid`
agree on what "the same geometry" means:

- positions are compared at the corners of the voxel grid, so a tolerance is in millimetres
  whatever the field of view (a rotation error of 1e-6 rad moves a 500 mm corner by 5e-4 mm);
- direction cosines are compared directly, so a material rotation of a one-voxel-thick slab,
  whose corners barely move, is still caught.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence

import numpy as np

from medi2i.errors import Medi2iInputError

logger = logging.getLogger("medi2i.io")

ATOL_MM = 1e-3
"""Largest distance (mm) between two grids' corners that still counts as the same geometry."""

COSINE_ATOL = 1e-4
"""Largest difference between direction cosines (or departure from orthogonality) that is not material.

NIfTI stores the sform in float32 (relative error ~6e-8) and the qform as a float32 quaternion,
so faithful files sit three orders of magnitude below this; resamplers that introduce real shear
sit above it.
"""

_DEGENERATE = 1e-6  # |det| of the unit direction cosines below this: axes (nearly) collinear


def format_affine(affine: np.ndarray) -> str:
    """Render a ``(4, 4)`` affine on one line, rows separated by ``;`` (for error messages).

    Example:
        >>> format_affine(np.diag([2.0, 2.0, 3.0, 1.0]))
        '[[2 0 0 0]; [0 2 0 0]; [0 0 3 0]; [0 0 0 1]]'
    """
    rows = ("[" + " ".join(f"{float(v):.6g}" for v in row) + "]" for row in np.asarray(affine))
    return "[" + "; ".join(rows) + "]"


def column_norms(affine: np.ndarray) -> np.ndarray:
    """Voxel spacing (mm) of the three array axes: the lengths of the affine's first three columns, shape ``(3,)``."""
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def direction_cosines(affine: np.ndarray) -> np.ndarray:
    """Unit direction of each array axis in RAS+ space, as columns of a ``(3, 3)`` matrix."""
    return np.asarray(affine, dtype=np.float64)[:3, :3] / column_norms(affine)


def shear(affine: np.ndarray) -> float:
    """Largest departure of the direction cosines from orthonormality, ``max |D^T D - I|`` (0 for a rigid grid)."""
    cosines = direction_cosines(affine)
    return float(np.abs(cosines.T @ cosines - np.eye(3)).max())


def orthogonalize(affine: np.ndarray) -> np.ndarray:
    """Nearest shear-free affine with the same spacing (column norms) and origin.

    The direction cosines are replaced by the closest orthogonal matrix (polar decomposition,
    ``U V^T`` from the SVD); this is also how nibabel fills a qform from a sheared affine, so a
    repaired sform agrees with the qform written beside it.

    Example:
        >>> sheared = np.array([[1.0, 0.2, 0, 0], [0, 1.0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]])
        >>> fixed = orthogonalize(sheared)
        >>> shear(fixed) < 1e-12, np.allclose(column_norms(fixed), column_norms(sheared))
        (True, True)
    """
    aff = np.asarray(affine, dtype=np.float64)
    norms = column_norms(aff)
    u, _, vt = np.linalg.svd(aff[:3, :3] / norms)
    out = aff.copy()
    out[:3, :3] = (u @ vt) * norms
    return out


def grid_corners(shape: Sequence[int]) -> np.ndarray:
    """Homogeneous voxel coordinates of the corners of a 2D/3D grid, shape ``(8, 4)``.

    A singleton (or absent) axis uses index 1 instead of 0 so that the spacing and direction of
    that axis still move a corner: otherwise a one-slice grid would "agree" with any slice normal.
    """
    spatial = list(shape)[:3] + [1] * (3 - len(list(shape)[:3]))
    extents = [(0.0, float(max(n - 1, 1))) for n in spatial]
    corners = np.array(list(itertools.product(*extents)), dtype=np.float64)
    return np.hstack([corners, np.ones((len(corners), 1))])


def corner_distance(a: np.ndarray, b: np.ndarray, shape: Sequence[int]) -> float:
    """Largest distance (mm) between where affines ``a`` and ``b`` put the corners of a grid of ``shape``.

    Example:
        >>> a = np.diag([1.0, 1.0, 1.0, 1.0])
        >>> b = a.copy(); b[0, 3] = 0.5
        >>> corner_distance(a, b, (10, 10, 10))
        0.5
    """
    corners = grid_corners(shape)
    diff = (np.asarray(a, dtype=np.float64) @ corners.T - np.asarray(b, dtype=np.float64) @ corners.T)[:3]
    return float(np.linalg.norm(diff, axis=0).max())


def cosine_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference between the direction cosines of two affines."""
    return float(np.abs(direction_cosines(a) - direction_cosines(b)).max())


def check_affine(
    affine: np.ndarray,
    *,
    path: str | os.PathLike[str] | None,
    field: str,
    repair: bool = False,
    allow_shear: bool = False,
    shape: Sequence[int] = (2, 2, 2),
) -> np.ndarray:
    """Validate a voxel -> RAS+ affine and return it as float64 (orthogonalized if sheared and ``repair``).

    Args:
        affine: ``(4, 4)`` candidate affine.
        path: file the affine came from (named in errors and repair warnings).
        field: header field(s) the affine was built from (named in errors).
        repair: replace a sheared affine by :func:`orthogonalize` instead of raising, with a warning.
        allow_shear: accept shear silently (for in-memory volumes that never go to disk as-is).
        shape: grid the affine applies to; only used to report how far a repair moves the corners.

    Returns:
        The validated ``(4, 4)`` float64 affine.

    Raises:
        Medi2iInputError: wrong shape, non-finite entries, a last row other than ``[0, 0, 0, 1]``,
            a zero-length axis, (nearly) collinear axes, or shear above :data:`COSINE_ATOL` without ``repair``.

    Example:
        >>> float(check_affine(np.diag([2.0, 2.0, 3.0, 1.0]), path="x.nii", field="sform")[2, 2])
        3.0
    """
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise Medi2iInputError("affine must be 4x4", path=path, field=field, found=aff.shape, expected="(4, 4)")
    if not np.all(np.isfinite(aff)):
        raise Medi2iInputError(
            "affine has non-finite entries",
            path=path,
            field=field,
            found=format_affine(aff),
            expected="finite numbers",
        )
    if not np.array_equal(aff[3], [0.0, 0.0, 0.0, 1.0]):
        raise Medi2iInputError(
            "affine's last row is not [0, 0, 0, 1]",
            path=path,
            field=field,
            found=aff[3].tolist(),
            expected=[0, 0, 0, 1],
        )
    norms = column_norms(aff)
    if np.any(norms <= 0):
        raise Medi2iInputError(
            f"affine is singular: array axis {int(np.argmin(norms))} has zero length",
            path=path,
            field=field,
            found=format_affine(aff),
            expected="every voxel axis > 0 mm",
        )
    if abs(np.linalg.det(aff[:3, :3] / norms)) < _DEGENERATE:
        raise Medi2iInputError(
            "affine is singular: its voxel axes are collinear",
            path=path,
            field=field,
            found=format_affine(aff),
            expected="non-singular (det != 0)",
        )
    amount = shear(aff)
    if amount > COSINE_ATOL and not allow_shear:
        if not repair:
            raise Medi2iInputError(
                "affine is sheared (voxel axes are not orthogonal)",
                path=path,
                field=field,
                found=f"max |D^T D - I| = {amount:.3g} for {format_affine(aff)}",
                expected=f"orthogonal axes (<= {COSINE_ATOL:g}); pass repair=True to orthogonalize",
            )
        fixed = orthogonalize(aff)
        logger.warning(
            "%s: %s is sheared (max |D^T D - I| = %.3g); repaired to the nearest orthogonal affine %s "
            "(corners move by up to %.3g mm)",
            path,
            field,
            amount,
            format_affine(fixed),
            corner_distance(aff, fixed, shape),
        )
        return fixed
    return aff
