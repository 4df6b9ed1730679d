"""Jacobian determinant of a displacement field and the regularity statistics built on it.

Convention (docs/conventions.md): a DDF ``u`` is channel-first, channel ``c`` = displacement
along array axis ``c``, voxel units of the fixed grid, pull convention ``warped(x) = moving(x + u(x))``.
The transformation is ``phi(x) = x + u(x)`` and its Jacobian ``J = I + grad u``.

``spacing`` semantics: ``None`` means ``u`` is in voxel units. A spacing ``(s_0, ..., s_n)`` means ``u``
is given in **mm** on a grid with that spacing; it is converted to voxel units (``u_c / s_c``) first.
With a diagonal voxel-to-mm map ``S``, the Jacobian in mm is ``S J S^-1``, whose determinant equals
``det J``: the determinant (local volume change) is the same in voxel and physical space, so no other
use of the spacing is needed.

Two flavours of SDlogJ are offered because the field reports both and they are not comparable:

* ``"standard"``: ``std(log det J)`` over the voxels with ``det J > 0`` (TransMorph / VoxelMorph
  convention, reported beside the folding fraction), with :func:`jacobian_determinant` below.
* ``"l2r"``: the Learn2Reg evaluation exactly (MDL-UzL/L2R ``evaluation/utils.py``,
  ``jacobian_determinant``, and ``evaluation.py``): gradients by correlation with ``[-0.5, 0, 0.5]``
  and zero padding, a 2-voxel border cropped, then ``std(log(clip(det J + 3, 1e-9, 1e9)))``. The ``+ 3``
  is the official code's (MDL-UzL/L2R issue #7), so these values are smaller than the standard ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.utils import StrEnum, look_up_option

from medi2i.errors import Medi2iInputError
from medi2i.metrics._checks import as_mask, as_spacing, check_finite, to_numpy

__all__ = ["SDlogJMode", "folding_fraction", "jacobian_determinant", "jacobian_stats", "sdlogj"]


class SDlogJMode(StrEnum):
    """Which SDlogJ definition :func:`sdlogj` computes (module docstring)."""

    STANDARD = "standard"
    L2R = "l2r"


def _field(ddf: object, spatial_dims: int | None, *, allow_batch: bool) -> tuple[np.ndarray, bool]:
    """Return the field as float64 ``(B, C, *spatial)`` and whether the input was batched."""
    arr = to_numpy(ddf, "ddf")
    check_finite(arr, "ddf")
    shape = tuple(arr.shape)
    batched = None
    if spatial_dims is not None:
        if spatial_dims not in (2, 3):
            raise Medi2iInputError("spatial_dims must be 2 or 3", field="spatial_dims", found=spatial_dims)
        if arr.ndim == spatial_dims + 1:
            batched = False
        elif arr.ndim == spatial_dims + 2:
            batched = True
    elif arr.ndim >= 3 and arr.ndim == shape[0] + 1 and shape[0] in (2, 3):
        batched = False  # (C, *spatial) with C = number of spatial axes
    elif arr.ndim >= 4 and arr.ndim == shape[1] + 2 and shape[1] in (2, 3):
        batched = True
    channels = None if batched is None else shape[1 if batched else 0]
    if batched is None or channels != arr.ndim - (2 if batched else 1):
        raise Medi2iInputError(
            "ddf must be channel-first with one channel per spatial axis",
            field="ddf",
            found=shape,
            expected="(2, H, W), (3, X, Y, Z) or batched (B, 2, H, W), (B, 3, X, Y, Z)",
        )
    if batched and not allow_batch:
        raise Medi2iInputError(
            "expected a single field, not a batch", field="ddf", found=shape, expected="(C, *spatial)"
        )
    if min(shape[-channels:]) < 2:
        raise Medi2iInputError("every spatial axis needs at least 2 voxels", field="ddf", found=shape)
    field = arr.astype(np.float64, copy=False)
    return (field if batched else field[None]), bool(batched)


def _to_voxel_units(field: np.ndarray, spacing: Sequence[float] | float | None) -> np.ndarray:
    if spacing is None:
        return field
    sp = np.asarray(as_spacing(spacing, field.shape[1]))
    return field / sp.reshape((1, -1) + (1,) * field.shape[1])


# voxels per slab: the Jacobian is computed slab by slab along axis 0 to keep the working set small
_SLAB_VOXELS = 1 << 20


def _det_l2r_order(j: list[list[np.ndarray]]) -> np.ndarray:
    """det of ``j[a][c] = d phi_c / d x_a``, with the exact expression (and so rounding) of Learn2Reg's code."""
    if len(j) == 2:
        return j[0][0] * j[1][1] - j[1][0] * j[0][1]
    return (
        j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1])
        - j[1][0] * (j[0][1] * j[2][2] - j[0][2] * j[2][1])
        + j[2][0] * (j[0][1] * j[1][2] - j[0][2] * j[1][1])
    )


def _jacdet_single(u: np.ndarray) -> np.ndarray:
    """det(I + grad u) for one float64 field ``(C, *spatial)`` in voxel units, np.gradient differences.

    Inside the grid the difference ``(u[i+1] - u[i-1]) / 2`` equals, bit for bit, Learn2Reg's correlation
    ``-0.5 u[i-1] + 0 u[i] + 0.5 u[i+1]`` (halving is exact in floating point), and the determinant uses
    Learn2Reg's expression; so Learn2Reg's cropped determinant is ``_jacdet_single(u)[2:-2, ...]`` exactly.
    """
    n = u.shape[0]
    rows = u.shape[1]
    out = np.empty(u.shape[1:], dtype=np.float64)
    step = max(1, _SLAB_VOXELS // int(np.prod(u.shape[2:])))
    for start in range(0, rows, step):
        stop = min(start + step, rows)
        lo, hi = max(start - 1, 0), min(stop + 1, rows)  # one halo row on each side for central differences
        sub = u[:, lo:hi]
        # np.gradient: (u[i+1] - u[i-1]) / 2 inside, u[1] - u[0] and u[-1] - u[-2] at the borders
        grads = [np.gradient(sub[c]) for c in range(n)]  # grads[c][a] = d u_c / d x_a
        jac = [[grads[c][a] + 1.0 if a == c else grads[c][a] for c in range(n)] for a in range(n)]
        out[start:stop] = _det_l2r_order(jac)[start - lo : start - lo + stop - start]
    return out


def jacobian_determinant(
    ddf: object, spacing: Sequence[float] | float | None = None, *, spatial_dims: int | None = None
) -> np.ndarray:
    """Determinant of the Jacobian of ``x + u(x)`` at every voxel (2D or 3D).

    Derivatives are central differences ``(u[i+1] - u[i-1]) / 2`` inside the grid and one-sided
    differences at the first and last voxel of every axis (``numpy.gradient``, ``edge_order=1``), so the
    result covers the whole grid; ``det = 1`` for a zero field, ``det(A)`` for an affine field
    ``u(x) = (A - I) x + t`` (also at the borders, where one-sided differences are exact for linear fields).

    Args:
        ddf: ``(C, *spatial)`` or ``(B, C, *spatial)`` with ``C`` = 2 or 3 spatial axes, numpy or torch;
            voxel units unless ``spacing`` is given (module docstring).
        spacing: ``None`` (voxel units) or the grid spacing in mm, in which case ``ddf`` is in mm.
        spatial_dims: 2 or 3 to settle an ambiguous shape such as ``(3, 2, H, W)`` (a batch of three 2D
            fields, not one 3D field with two slices, which is how it is read otherwise).

    Returns:
        float64 array ``(*spatial)`` or ``(B, *spatial)``.

    Raises:
        Medi2iInputError: wrong shape, non-finite values, bad spacing.

    Example:
        >>> u = np.zeros((3, 4, 5, 6)); u[0] = 0.5 * np.arange(4)[:, None, None]  # stretch axis 0 by 1.5
        >>> bool(np.allclose(jacobian_determinant(u), 1.5))
        True
        >>> jacobian_determinant(np.zeros((2, 2, 8, 8))).shape  # batch of two 2D fields
        (2, 8, 8)
    """
    field, batched = _field(ddf, spatial_dims, allow_batch=True)
    field = _to_voxel_units(field, spacing)
    out = np.stack([_jacdet_single(u) for u in field])
    return out if batched else out[0]


def folding_fraction(
    ddf: object, spacing: Sequence[float] | float | None = None, *, mask: object | None = None
) -> float:
    """Fraction of voxels (inside ``mask``, if given) whose Jacobian determinant is ``<= 0``.

    Multiply by 100 for the "% |J| <= 0" column of TransMorph / VoxelMorph tables. Uses
    :func:`jacobian_determinant` (no shift, no clipping), over the whole grid.

    Args:
        ddf: one field ``(C, *spatial)`` (voxel units unless ``spacing`` is given).
        spacing: see :func:`jacobian_determinant`.
        mask: optional ``(*spatial)`` mask (``> 0`` = counted).

    Returns:
        A fraction in [0, 1].

    Example:
        >>> u = np.zeros((2, 9, 9)); u[0, 4, 4] = 3.0  # a spike: the voxel after it maps behind it (det < 0)
        >>> round(folding_fraction(u), 4)
        0.0123
    """
    field, _ = _field(ddf, None, allow_batch=False)
    det = _jacdet_single(_to_voxel_units(field, spacing)[0])
    m = as_mask(mask, det.shape)
    values = det if m is None else det[m]
    if values.size == 0:
        raise Medi2iInputError("mask selects no voxels", field="mask", expected="at least one voxel > 0")
    return float(np.count_nonzero(values <= 0) / values.size)


def sdlogj(
    ddf: object,
    mode: SDlogJMode | str = SDlogJMode.STANDARD,
    spacing: Sequence[float] | float | None = None,
    *,
    mask: object | None = None,
) -> float:
    """Standard deviation of the log Jacobian determinant of one displacement field.

    Args:
        ddf: one field ``(C, *spatial)``, C = 2 or 3 (voxel units unless ``spacing`` is given).
        mode: ``"standard"``: ``std(log det J)`` over voxels with ``det J > 0`` (population std), or
            ``"l2r"``: the Learn2Reg evaluation value (module docstring; needs > 4 voxels per axis).
        spacing: see :func:`jacobian_determinant`; does not change the value (the determinant is
            invariant), only converts a field given in mm.
        mask: optional ``(*spatial)`` mask on the fixed grid. ``"standard"``: only voxels inside count.
            ``"l2r"``: Learn2Reg's masked evaluation, ``np.ma`` std over ``mask[2:-2, ...]``.

    Returns:
        The value; NaN in ``"standard"`` mode if no voxel has ``det J > 0``.

    Raises:
        Medi2iInputError: bad shape, non-finite values, unknown mode (with the nearest valid one).

    Example:
        >>> u = np.zeros((3, 8, 8, 8))
        >>> sdlogj(u), sdlogj(u, "l2r")
        (0.0, 0.0)
        >>> sdlogj(u, "L2R")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: By 'L2R', did you mean 'l2r'?...
    """
    chosen = SDlogJMode(look_up_option(mode, SDlogJMode))
    field, _ = _field(ddf, None, allow_batch=False)
    u = _to_voxel_units(field, spacing)[0]
    spatial = u.shape[1:]
    m = as_mask(mask, spatial)
    if chosen is SDlogJMode.STANDARD:
        det = _jacdet_single(u)
        keep = det > 0 if m is None else (det > 0) & m
        if not keep.any():
            return float("nan")
        return float(np.log(det[keep]).std())
    if min(spatial) <= 4:
        raise Medi2iInputError(
            "the 'l2r' mode crops 2 voxels per border and needs > 4 voxels per axis", field="ddf", found=tuple(u.shape)
        )
    return _sdlogj_l2r(_jacdet_single(u), m)


def _sdlogj_l2r(det: np.ndarray, mask: np.ndarray | None) -> float:
    """Learn2Reg's SDlogJ from the full-grid determinant (see :func:`_jacdet_single`)."""
    crop = (slice(2, -2),) * det.ndim  # utils.py jacobian_determinant: jacobian[:, :, 2:-2, 2:-2, 2:-2]
    # evaluation.py: (jacobian_determinant(disp) + 3).clip(0.000000001, 1000000000), then np.log, then .std()
    log_jac = np.log((det[crop] + 3).clip(0.000000001, 1000000000))
    if mask is None:
        return float(log_jac.std())
    # masked evaluation: np.ma std with the mask's complement masked out (official: MaskedArray(x, 1 - mask))
    return float(np.ma.MaskedArray(log_jac, mask=~mask[crop]).std())


def jacobian_stats(
    ddf: object, spacing: Sequence[float] | float | None = None, *, mask: object | None = None
) -> dict[str, float]:
    """Per-case Jacobian summary used by the registration report (RL-I2IT decision D16).

    Args:
        ddf: one field ``(C, *spatial)``.
        spacing: see :func:`jacobian_determinant`.
        mask: optional mask restricting every statistic (Learn2Reg's masked evaluation for ``sdlogj_l2r``).

    Returns:
        ``{"jac_det_mean", "jac_det_std", "folding_percent", "sdlogj", "sdlogj_l2r"}``: mean and
        population std of det J, percentage of voxels with det J <= 0, and both SDlogJ flavours
        (``sdlogj_l2r`` is NaN when an axis has 4 voxels or fewer).

    Example:
        >>> s = jacobian_stats(np.zeros((2, 16, 16)))
        >>> s["jac_det_mean"], s["folding_percent"], s["sdlogj"], s["sdlogj_l2r"]
        (1.0, 0.0, 0.0, 0.0)
    """
    field, _ = _field(ddf, None, allow_batch=False)
    u = _to_voxel_units(field, spacing)[0]
    det = _jacdet_single(u)
    m = as_mask(mask, det.shape)
    values = det if m is None else det[m]
    if values.size == 0:
        raise Medi2iInputError("mask selects no voxels", field="mask", expected="at least one voxel > 0")
    positive = values[values > 0]
    l2r = _sdlogj_l2r(det, m) if min(det.shape) > 4 else float("nan")
    return {
        "jac_det_mean": float(values.mean()),
        "jac_det_std": float(values.std()),
        "folding_percent": float(100.0 * np.count_nonzero(values <= 0) / values.size),
        "sdlogj": float(np.log(positive).std()) if positive.size else float("nan"),
        "sdlogj_l2r": l2r,
    }
