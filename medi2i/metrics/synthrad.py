"""Synthesis metrics with fixed intensity ranges: the SynthRAD2023 CT definition and an MR preset.

SynthRAD2023 (official ``SynthRAD2023/metrics``, ``functions/image_metrics.py``, ``ImageMetrics``, after the
"non-negative and masked SSIM" fix; reimplemented here from its description, the code is GPL-3.0):

* every volume is cast to float32 (the official scorer reads them through SimpleITK as ``sitkFloat32``);
  the mask is binarised as ``mask > 0``;
* **MAE**: ``sum(|ct * m - sct * m|) / sum(m)`` in HU, no clipping;
* **PSNR**: both clipped to the population range ``[-1024, 3000]`` HU, masked voxels only,
  ``peak_signal_noise_ratio(ct, sct, data_range=4024)``;
* **SSIM**: both clipped to the range, voxels outside the mask set to -1024, shifted by +1024 (non-
  negative), ``structural_similarity(ct, sct, data_range=4024, full=True)`` with scikit-image's defaults
  (7-voxel uniform window, sample covariance), and the SSIM map averaged over the mask voxels that are
  at least 3 voxels from every border (scikit-image's own crop).

Without a mask (``mask=None``) all voxels count and SSIM is scikit-image's plain mean, as in the official
code. The numbers are identical to the official scorer given the same arrays.

MR preset (medi2i's definition; MR has no physical units, so a range must be fixed per reference):
both images are mapped with the same linear map ``x' = (x - p_lo) / (p_hi - p_lo)``, where ``p_lo`` and
``p_hi`` are the 0.5th and 99.5th percentiles of the **reference** inside the mask, or over its voxels
> 0 without a mask (the normalisation medi2i trains with, docs/conventions.md; never taken from the
prediction). Then the CT recipe runs on the range ``[0, 1]``: MAE on the mapped, unclipped values;
PSNR and SSIM clipped to ``[0, 1]``, data range 1, background (outside the mask) set to 0 for SSIM.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.utils import StrEnum, look_up_option

from medi2i.errors import Medi2iInputError
from medi2i.metrics._checks import check_finite, check_same_shape, to_numpy

__all__ = [
    "CT_RANGE",
    "MR_PERCENTILES",
    "SynthesisPreset",
    "mr_metrics",
    "synthesis_metrics",
    "synthrad_metrics",
]

#: SynthRAD2023 population range in HU (width 4024)
CT_RANGE: tuple[float, float] = (-1024.0, 3000.0)
#: reference percentiles that fix the MR range
MR_PERCENTILES: tuple[float, float] = (0.5, 99.5)
_SSIM_PAD = 3  # (7 - 1) // 2, scikit-image's crop for its default 7-voxel window


class SynthesisPreset(StrEnum):
    """Intensity convention of :func:`synthesis_metrics`."""

    CT = "ct"
    MR = "mr"


def _inputs(pred: object, ref: object, mask: object | None, names: tuple[str, str]):
    p = to_numpy(pred, names[0])
    r = to_numpy(ref, names[1])
    check_finite(p, names[0])
    check_finite(r, names[1])
    check_same_shape(p, r, names)
    if p.ndim < 2 or min(p.shape) < 7:
        raise Medi2iInputError(
            "images too small for the 7-voxel SSIM window",
            field=names[0],
            found=p.shape,
            expected="2D or 3D, at least 7 voxels per axis",
        )
    m = None
    if mask is not None:
        m_arr = to_numpy(mask, "mask")
        check_finite(m_arr, "mask")
        check_same_shape(r, m_arr, (names[1], "mask"))
        # binarised to 1./0. (float64) as the official code does before multiplying
        m = np.where(m_arr > 0, 1.0, 0.0)
        inner = (slice(_SSIM_PAD, -_SSIM_PAD),) * m.ndim
        if not m[inner].any():
            raise Medi2iInputError(
                "mask selects no voxel at least 3 voxels from the image border",
                field="mask",
                expected="a non-empty body mask",
            )
    return p, r, m


def _fixed_range_metrics(gt: np.ndarray, pred: np.ndarray, m: np.ndarray | None, low: float, high: float):
    """MAE / PSNR / SSIM of the SynthRAD recipe on ``[low, high]``; keeps the arrays' float dtype."""
    from skimage.metrics import structural_similarity

    # MAE: no clipping; sum over the whole product array divided by the mask volume (official order)
    m_mae = np.ones(gt.shape) if m is None else m  # the official code uses a mask of ones when none is given
    mae_value = float(np.sum(np.abs(gt * m_mae - pred * m_mae)) / m_mae.sum())

    # PSNR: clip with the scalar bounds (np.where keeps float32), then masked voxels, data range = width
    width = high - low
    gt_c = np.where(gt < low, low, gt)
    gt_c = np.where(gt_c > high, high, gt_c)
    pred_c = np.where(pred < low, low, pred)
    pred_c = np.where(pred_c > high, high, pred_c)
    sel_gt, sel_pred = (gt_c, pred_c) if m is None else (gt_c[m == 1], pred_c[m == 1])
    mse = np.mean((sel_gt - sel_pred) ** 2, dtype=np.float64)  # skimage mean_squared_error
    psnr_value = float("inf") if mse == 0 else float(10 * np.log10((float(width) ** 2) / mse))

    # SSIM: clip, background to the lower bound, shift to non-negative, full map, masked cropped mean
    gt_s = np.clip(gt, low, high)
    pred_s = np.clip(pred, low, high)
    if m is not None:
        gt_s = np.where(m == 0, low, gt_s)
        pred_s = np.where(m == 0, low, pred_s)
    if low < 0:
        gt_s = gt_s - low
        pred_s = pred_s - low
    full_mean, ssim_full = structural_similarity(gt_s, pred_s, data_range=width, full=True)
    if m is None:
        ssim_value = float(full_mean)
    else:
        inner = (slice(_SSIM_PAD, -_SSIM_PAD),) * m.ndim
        ssim_value = float(ssim_full[inner][m[inner].astype(bool)].mean(dtype=np.float64))
    return {"mae": mae_value, "psnr": psnr_value, "ssim": ssim_value}


def synthrad_metrics(sct: object, ct: object, mask: object | None) -> dict[str, float]:
    """SynthRAD2023 image metrics of a synthetic CT against the real CT (module docstring).

    Args:
        sct: synthetic CT in HU, ``(X, Y, Z)`` (or 2D), numpy or torch.
        ct: reference CT in HU, same shape and grid.
        mask: body mask, same shape (``> 0`` = inside), or ``None`` for all voxels.

    Returns:
        ``{"mae": HU, "psnr": dB, "ssim": unitless}``.

    Raises:
        Medi2iInputError: shapes differ, non-finite values, images smaller than 7 voxels on an axis,
            or a mask with no voxel 3 voxels away from the border.

    Example:
        >>> ct = np.full((12, 12, 12), -1000.0); ct[3:9, 3:9, 3:9] = 40.0
        >>> mask = (ct > -500).astype(np.uint8)
        >>> m = synthrad_metrics(ct + 10.0, ct, mask)
        >>> m["mae"], round(m["psnr"], 3), round(m["ssim"], 6)
        (10.0, 52.093, 0.999914)
    """
    p, r, m = _inputs(sct, ct, mask, ("sct", "ct"))
    # the official scorer computes on float32 volumes
    return _fixed_range_metrics(r.astype(np.float32), p.astype(np.float32), m, CT_RANGE[0], CT_RANGE[1])


def mr_metrics(
    pred: object, target: object, mask: object | None, *, percentiles: Sequence[float] = MR_PERCENTILES
) -> dict[str, float]:
    """MR synthesis metrics on a range fixed by the reference's percentiles (module docstring).

    Args:
        pred: synthetic MR, any intensity scale of the reference, ``(X, Y[, Z])``.
        target: reference MR, same shape and grid.
        mask: brain/body mask (``> 0`` = inside), or ``None`` for all voxels.
        percentiles: reference percentiles ``(lo, hi)`` mapped to 0 and 1.

    Returns:
        ``{"mae", "psnr", "ssim"}`` on the mapped scale (MAE in units of the reference's
        ``p_hi - p_lo``; PSNR with data range 1).

    Example:
        >>> t = np.zeros((10, 10, 10)); t[2:8, 2:8, 2:8] = np.linspace(100, 300, 216).reshape(6, 6, 6)
        >>> m = mr_metrics(t, t, t > 0)
        >>> m["mae"], m["psnr"], m["ssim"]
        (0.0, inf, 1.0)
    """
    p, r, m = _inputs(pred, target, mask, ("pred", "target"))
    lo_q, hi_q = (float(q) for q in percentiles)
    if not 0.0 <= lo_q < hi_q <= 100.0:
        raise Medi2iInputError("percentiles must satisfy 0 <= lo < hi <= 100", field="percentiles", found=(lo_q, hi_q))
    # without a mask, the percentiles come from voxels > 0: the same foreground rule as the MR
    # normalisation the models train with (medi2i.data.intensity.PercentileNormalize)
    inside = (r[r > 0] if np.any(r > 0) else r) if m is None else r[m == 1]
    p_lo, p_hi = np.percentile(inside.astype(np.float64), [lo_q, hi_q])
    if not p_hi > p_lo:
        raise Medi2iInputError(
            "reference is constant between its range percentiles inside the mask",
            field="target",
            found=f"p{lo_q:g} = p{hi_q:g} = {p_lo:g}",
            expected="a reference with contrast inside the mask",
        )
    scale = float(p_hi - p_lo)
    gt = (r.astype(np.float64) - p_lo) / scale
    pr = (p.astype(np.float64) - p_lo) / scale
    return _fixed_range_metrics(gt, pr, m, 0.0, 1.0)


def synthesis_metrics(
    pred: object, target: object, mask: object | None = None, *, preset: SynthesisPreset | str = SynthesisPreset.CT
) -> dict[str, float]:
    """Dispatch to :func:`synthrad_metrics` (``preset="ct"``) or :func:`mr_metrics` (``preset="mr"``).

    Example:
        >>> x = np.random.default_rng(0).random((8, 8, 8)) * 100
        >>> synthesis_metrics(x, x, preset="mr")["ssim"]
        1.0
    """
    chosen = SynthesisPreset(look_up_option(preset, SynthesisPreset))
    if chosen is SynthesisPreset.CT:
        return synthrad_metrics(pred, target, mask)
    return mr_metrics(pred, target, mask)
