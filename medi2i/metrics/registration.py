"""Per-case registration metrics: labels warped the Learn2Reg way, then Dice, HD95 and Jacobian statistics.

Label warping is done here, with ``scipy.ndimage.map_coordinates(moving, x + u(x), order=0)`` (constant
0 outside the grid), rather than with :func:`medi2i.spatial.warp`, because the Learn2Reg evaluation
(MDL-UzL/L2R ``evaluation/evaluation.py``, eval_version 2.0) *defines* the warped segmentation that way.
Nearest-neighbour rounding and the out-of-grid rule of a differently implemented warp (e.g. torch
``grid_sample``) can move a boundary voxel, and that changes Dice and HD95 in the last digits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.utils import StrEnum, look_up_option
from scipy import ndimage

from medi2i.errors import Medi2iInputError
from medi2i.metrics._checks import as_label_map, as_spacing, check_finite, to_numpy
from medi2i.metrics.jacobian import jacobian_stats
from medi2i.metrics.overlap import LabelConvention, label_mean, overlap_metrics

__all__ = ["HD95Units", "registration_metrics", "warp_labels"]


class HD95Units(StrEnum):
    """Units of the HD95 reported by :func:`registration_metrics`."""

    MM = "mm"
    VOXEL = "voxel"


def warp_labels(moving_label: object, ddf: object) -> np.ndarray:
    """Warp a label map with a DDF by nearest-neighbour sampling at ``x + u(x)`` (Learn2Reg's definition).

    Args:
        moving_label: integer label map ``(X, Y[, Z])`` on the same grid as the field.
        ddf: ``(C, X, Y[, Z])`` displacement in voxel units, pull convention, channel = array axis.

    Returns:
        ``int64`` warped label map ``(X, Y[, Z])``; points mapped outside the grid get label 0.

    Example:
        >>> lab = np.zeros((6, 6), int); lab[2, 3] = 7
        >>> u = np.zeros((2, 6, 6)); u[0] = 1.0  # every voxel samples one voxel further along axis 0
        >>> np.argwhere(warp_labels(lab, u) == 7).tolist()
        [[1, 3]]
    """
    labels = as_label_map(moving_label, "moving_label")
    field = to_numpy(ddf, "ddf")
    check_finite(field, "ddf")
    if field.shape != (labels.ndim,) + labels.shape:
        raise Medi2iInputError(
            "ddf must be (C, *spatial) on the label map's grid",
            field="ddf",
            found=tuple(field.shape),
            expected=(labels.ndim,) + labels.shape,
        )
    coords = np.indices(labels.shape) + field.astype(np.float64)
    return ndimage.map_coordinates(labels, coords, order=0, mode="constant", cval=0)


def registration_metrics(
    ddf: object,
    fixed_label: object,
    moving_label: object,
    *,
    labels: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    convention: LabelConvention | str = LabelConvention.STRICT,
    hd95_units: HD95Units | str | None = None,
    fixed_mask: object | None = None,
) -> dict[str, float]:
    """All registration metrics of one pair, as a flat ``{column: value}`` dict.

    Args:
        ddf: ``(C, *spatial)`` displacement, voxel units, on the fixed grid (pull convention).
        fixed_label: fixed label map ``(*spatial)``.
        moving_label: moving label map on the same grid.
        labels: labels to score; ``None`` = every non-zero label found (``"l2r"``: in the fixed map).
        spacing: fixed-grid spacing in mm (used for HD95 in mm); ``None`` = 1 per axis.
        convention: missing-label rule of :mod:`medi2i.metrics.overlap` (``"l2r"`` checks presence in
            the unwarped moving map, as Learn2Reg).
        hd95_units: ``"mm"`` or ``"voxel"``; default ``"voxel"`` for ``"l2r"`` (Learn2Reg passes unit
            spacing) and ``"mm"`` otherwise.
        fixed_mask: optional fixed-grid mask restricting the Jacobian statistics (Learn2Reg's masked
            SDlogJ).

    Returns:
        ``dice_mean``, ``hd95_mean``, ``n_labels`` (labels that entered the means), the Jacobian columns
        of :func:`medi2i.metrics.jacobian.jacobian_stats`, then ``dice_<k>`` and ``hd95_<k>`` per label.

    Example:
        >>> fixed = np.zeros((16, 16, 16), int); fixed[4:12, 4:12, 4:12] = 1
        >>> out = registration_metrics(np.zeros((3, 16, 16, 16)), fixed, fixed)
        >>> out["dice_mean"], out["hd95_mean"], out["folding_percent"], out["dice_1"]
        (1.0, 0.0, 0.0, 1.0)
    """
    conv = LabelConvention(look_up_option(convention, LabelConvention))
    units = (
        (HD95Units.VOXEL if conv is LabelConvention.L2R else HD95Units.MM)
        if hd95_units is None
        else HD95Units(look_up_option(hd95_units, HD95Units))
    )
    fixed = as_label_map(fixed_label, "fixed_label")
    moving = as_label_map(moving_label, "moving_label")
    if moving.shape != fixed.shape:
        raise Medi2iInputError(
            "fixed and moving label maps must share the grid",
            field="moving_label",
            found=moving.shape,
            expected=fixed.shape,
        )
    sp = as_spacing(spacing, fixed.ndim)
    warped = warp_labels(moving, ddf)
    overlap = overlap_metrics(
        warped,
        fixed,
        labels,
        sp if units is HD95Units.MM else None,
        convention=conv,
        moving=moving if conv is LabelConvention.L2R else None,
    )
    row: dict[str, float] = {
        "dice_mean": label_mean(overlap["dice"]),
        "hd95_mean": label_mean(overlap["hd95"]),
        "n_labels": float(sum(not np.isnan(v) for v in overlap["dice"].values())),
    }
    row.update(jacobian_stats(ddf, mask=fixed_mask))
    for k, v in overlap["dice"].items():
        row[f"dice_{k}"] = v
    for k, v in overlap["hd95"].items():
        row[f"hd95_{k}"] = v
    return row
