"""Intensity metrics for image synthesis: MAE, PSNR, SSIM and MS-SSIM, with an optional mask.

Rules shared by all four:

* ``data_range`` (PSNR, SSIM, MS-SSIM) is a required argument and is never guessed from the images:
  guessing it per image makes numbers incomparable between cases.
* A mask (``> 0`` = counted) restricts the average; an empty mask is an input error.
* NaN or Inf anywhere in the inputs is an input error (a metric over a broken image means nothing).
* Arithmetic follows scikit-image: float32 inputs stay float32 (float16 is promoted to float32),
  everything else becomes float64, and means are accumulated in float64. This is what makes the
  SynthRAD numbers identical to the official scorer, which casts every volume to float32.
* Constant images are well defined: identical images give MAE 0, PSNR ``inf`` and SSIM 1 (also when
  both are constant); two different constant images give a finite PSNR and an SSIM below 1.

References: SSIM, Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 13(4) 2004, Eq. (13); MS-SSIM, Wang,
Simoncelli & Bovik, Asilomar 2003, Eq. (7) and the five weights of Sec. 3.2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.utils import StrEnum, look_up_option
from scipy import ndimage

from medi2i.errors import Medi2iInputError
from medi2i.metrics._checks import as_mask, check_data_range, check_finite, check_same_shape, to_numpy

__all__ = ["MS_SSIM_WEIGHTS", "SSIMWindow", "mae", "ms_ssim", "psnr", "ssim", "ssim_map"]

#: Wang et al. 2003, Sec. 3.2 (the values MONAI and most toolkits use)
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


class SSIMWindow(StrEnum):
    """SSIM local window: scikit-image's default uniform box, or Wang et al.'s Gaussian (sigma 1.5)."""

    UNIFORM = "uniform"
    GAUSSIAN = "gaussian"


def _float_type(*arrays: np.ndarray) -> type:
    # scikit-image's _supported_float_type: float16/float32 -> float32, everything else -> float64
    if all(a.dtype in (np.float16, np.float32) for a in arrays):
        return np.float32
    return np.float64


def _pair(pred: object, ref: object, mask: object | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    p = to_numpy(pred, "pred")
    r = to_numpy(ref, "ref")
    check_finite(p, "pred")
    check_finite(r, "ref")
    check_same_shape(p, r, ("pred", "ref"))
    if p.size == 0:
        raise Medi2iInputError("images are empty", field="pred", found=p.shape)
    m = as_mask(mask, p.shape)
    if m is not None and not m.any():
        raise Medi2iInputError("mask selects no voxels", field="mask", expected="at least one voxel > 0")
    dtype = _float_type(p, r)
    return p.astype(dtype, copy=False), r.astype(dtype, copy=False), m


def mae(pred: object, ref: object, mask: object | None = None) -> float:
    """Mean absolute error ``mean |pred - ref|`` over the mask (all voxels without one), in image units.

    Args:
        pred: predicted image, any shape (numpy or torch).
        ref: reference image, same shape.
        mask: optional mask, same shape (``> 0`` = counted).

    Returns:
        The MAE (e.g. HU for CT).

    Example:
        >>> mae(np.array([0.0, 2.0, 4.0]), np.array([1.0, 2.0, 0.0]), mask=np.array([1, 1, 0]))
        0.5
    """
    p, r, m = _pair(pred, ref, mask)
    diff = np.abs(p - r)
    return float(np.mean(diff if m is None else diff[m], dtype=np.float64))


def psnr(pred: object, ref: object, *, data_range: float, mask: object | None = None) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB, MSE over the mask.

    Same arithmetic as ``skimage.metrics.peak_signal_noise_ratio`` on the selected voxels.

    Args:
        pred: predicted image (numpy or torch).
        ref: reference image, same shape.
        data_range: the fixed intensity range (e.g. 4024 for CT on [-1024, 3000] HU); required.
        mask: optional mask (``> 0`` = counted).

    Returns:
        PSNR in dB; ``inf`` when the images agree exactly on the counted voxels.

    Example:
        >>> round(psnr(np.array([0.0, 0.5]), np.array([0.0, 0.6]), data_range=1.0), 4)
        23.0103
        >>> psnr(np.ones(4), np.ones(4), data_range=1.0)
        inf
    """
    value_range = check_data_range(data_range)
    p, r, m = _pair(pred, ref, mask)
    if m is not None:
        p, r = p[m], r[m]
    mse = np.mean((r - p) ** 2, dtype=np.float64)
    if mse == 0:
        return float("inf")
    return float(10 * np.log10((value_range**2) / mse))


def _ssim_settings(window: SSIMWindow | str, win_size: int | None, sigma: float, sample_covariance: bool | None):
    kind = SSIMWindow(look_up_option(window, SSIMWindow))
    if kind is SSIMWindow.GAUSSIAN:
        if not (np.isfinite(sigma) and sigma > 0):
            raise Medi2iInputError("sigma must be positive", field="sigma", found=sigma)
        size = 2 * int(3.5 * sigma + 0.5) + 1 if win_size is None else win_size  # Gaussian truncated at 3.5 sigma
        covariance = False if sample_covariance is None else sample_covariance  # Wang et al. 2004
    else:
        size = 7 if win_size is None else win_size
        covariance = True if sample_covariance is None else sample_covariance  # scikit-image default
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 3 or size % 2 == 0:
        raise Medi2iInputError("win_size must be an odd integer >= 3", field="win_size", found=size)
    return kind, int(size), bool(covariance)


def ssim_map(
    pred: object,
    ref: object,
    *,
    data_range: float,
    window: SSIMWindow | str = SSIMWindow.UNIFORM,
    win_size: int | None = None,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    sample_covariance: bool | None = None,
) -> np.ndarray:
    """The local SSIM at every voxel (Wang et al. 2004, Eq. 13), ``scikit-image`` arithmetic.

    Computed by ``skimage.metrics.structural_similarity(ref, pred, full=True)`` (reflect padding at
    the borders); see :func:`ssim` for the arguments. Returns an array of the image's shape.

    Example:
        >>> x = np.random.default_rng(0).random((9, 9))
        >>> bool(np.allclose(ssim_map(x, x, data_range=1.0), 1.0))
        True
    """
    from skimage.metrics import structural_similarity

    value_range = check_data_range(data_range)
    kind, size, covariance = _ssim_settings(window, win_size, sigma, sample_covariance)
    p, r, _ = _pair(pred, ref, None)
    if min(p.shape) < size:
        raise Medi2iInputError(
            "image smaller than the SSIM window",
            field="pred",
            found=p.shape,
            expected=f"at least {size} voxels per axis (win_size={size})",
        )
    for name, k in (("k1", k1), ("k2", k2)):
        if not (np.isfinite(k) and k > 0):
            raise Medi2iInputError(f"{name} must be positive", field=name, found=k)
    _, full = structural_similarity(
        r,
        p,
        data_range=value_range,
        win_size=size,
        gaussian_weights=kind is SSIMWindow.GAUSSIAN,
        sigma=sigma,
        K1=k1,
        K2=k2,
        use_sample_covariance=covariance,
        full=True,
    )
    return full


def _cropped_mean(values: np.ndarray, mask: np.ndarray | None, pad: int) -> float:
    """Mean over voxels at least ``pad`` from every border (scikit-image's crop), inside the mask if given."""
    inner = tuple(slice(pad, n - pad) for n in values.shape)
    if mask is None:
        return float(values[inner].mean(dtype=np.float64))
    selected = values[inner][mask[inner]]
    if selected.size == 0:
        raise Medi2iInputError(
            "mask has no voxel away from the image border",
            field="mask",
            expected=f"mask voxels at least {pad} voxels from every border (half the SSIM window)",
        )
    return float(selected.mean(dtype=np.float64))


def ssim(
    pred: object,
    ref: object,
    *,
    data_range: float,
    mask: object | None = None,
    window: SSIMWindow | str = SSIMWindow.UNIFORM,
    win_size: int | None = None,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    sample_covariance: bool | None = None,
) -> float:
    """Structural similarity (Wang et al. 2004), averaged over the mask, 2D or 3D (any ndim >= 1).

    The SSIM map is computed on the images as given (voxels outside the mask still enter the windows
    of their neighbours); its mean is taken over the voxels at least ``(win_size - 1) // 2`` from every
    border, as scikit-image does, and within the mask when one is given. Without a mask the value
    equals ``skimage.metrics.structural_similarity`` with the same settings.

    Args:
        pred: predicted image (numpy or torch).
        ref: reference image, same shape.
        data_range: fixed intensity range ``L`` in ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``; required.
        mask: optional mask (``> 0`` = counted).
        window: ``"uniform"`` (box of ``win_size``, default 7: scikit-image default, SynthRAD) or
            ``"gaussian"`` (sigma ``sigma``, truncated at 3.5 sigma: 11 voxels for 1.5; Wang et al.).
        win_size: odd window size; default 7 (uniform) or ``2 * int(3.5 sigma + 0.5) + 1`` (Gaussian).
        sigma: Gaussian standard deviation in voxels.
        k1: luminance constant.
        k2: contrast constant.
        sample_covariance: normalise variances by ``N - 1`` (``N`` voxels in the window); default
            ``True`` for the uniform window (scikit-image) and ``False`` for the Gaussian one (Wang).

    Returns:
        Mean SSIM; 1 for identical images, constant ones included.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.random((16, 16))
        >>> ssim(x, x, data_range=1.0)
        1.0
        >>> ssim(x, x + 0.1 * rng.standard_normal((16, 16)), data_range=1.0) < 1.0
        True
    """
    _, size, _ = _ssim_settings(window, win_size, sigma, sample_covariance)
    full = ssim_map(
        pred,
        ref,
        data_range=data_range,
        window=window,
        win_size=win_size,
        sigma=sigma,
        k1=k1,
        k2=k2,
        sample_covariance=sample_covariance,
    )
    m = as_mask(mask, full.shape)
    if m is not None and not m.any():
        raise Medi2iInputError("mask selects no voxels", field="mask", expected="at least one voxel > 0")
    return _cropped_mean(full, m, (size - 1) // 2)


def _downsample(x: np.ndarray) -> np.ndarray:
    """2x average pooling on every axis, dropping an odd last voxel (``avg_pool`` with kernel 2)."""
    inner = tuple(slice(0, (n // 2) * 2) for n in x.shape)
    y = x[inner]
    for axis in range(y.ndim):
        shape = list(y.shape)
        shape[axis : axis + 1] = [shape[axis] // 2, 2]
        y = y.reshape(shape).mean(axis=axis + 1)
    return y


def ms_ssim(
    pred: object,
    ref: object,
    *,
    data_range: float,
    mask: object | None = None,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003), 2D or 3D, optional mask.

    ``MS-SSIM = l_M^{w_M} * prod_{j=1..M} cs_j^{w_j}`` (Eq. 7) with ``M = len(weights)`` scales: at each
    scale the contrast-structure map ``cs`` (and at the last one the full SSIM map) is averaged over the
    valid region (``(win_size - 1) // 2`` from every border; equal to MONAI's valid convolution) and
    within the mask; negative scale values are clipped to 0 as in MONAI/pytorch-msssim; images and mask
    are then halved by 2x average pooling (the mask keeps cells at least half inside). Gaussian window,
    population covariance (Wang et al.). Without a mask it matches ``monai.metrics.MultiScaleSSIMMetric``
    up to MONAI's float32 arithmetic (computed here in float64).

    Args:
        pred: predicted image ``(X, Y[, Z])`` (numpy or torch).
        ref: reference image, same shape.
        data_range: fixed intensity range; required.
        mask: optional mask (``> 0`` = counted).
        weights: per-scale exponents, finest first (default: the five of Wang et al. 2003).
        win_size: odd Gaussian window size (default 11).
        sigma: Gaussian standard deviation in voxels.
        k1: luminance constant.
        k2: contrast constant.

    Returns:
        MS-SSIM in [0, 1]; 1 for identical images.

    Raises:
        Medi2iInputError: an axis too short for ``len(weights)`` scales (each scale must keep at least
            ``win_size`` voxels per axis), or the usual input errors.

    Example:
        >>> x = np.random.default_rng(0).random((48, 48))
        >>> ms_ssim(x, x, data_range=1.0, weights=(0.5, 0.5))
        1.0
    """
    value_range = check_data_range(data_range)
    p, r, m = _pair(pred, ref, mask)
    p, r = p.astype(np.float64), r.astype(np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise Medi2iInputError(
            "weights must be a non-empty list of non-negative numbers",
            field="weights",
            found=list(np.atleast_1d(weights)),
        )
    if isinstance(win_size, bool) or not isinstance(win_size, (int, np.integer)) or win_size < 3 or win_size % 2 == 0:
        raise Medi2iInputError("win_size must be an odd integer >= 3", field="win_size", found=win_size)
    smallest = min(p.shape) // 2 ** (w.size - 1)
    if smallest < win_size:
        raise Medi2iInputError(
            f"image too small for {w.size} scales with a {win_size}-voxel window",
            field="pred",
            found=p.shape,
            expected=f"every axis >= {win_size * 2 ** (w.size - 1)} voxels, or fewer weights / a smaller win_size",
        )
    truncate = ((win_size - 1) // 2) / sigma  # the Gaussian filter spans exactly win_size voxels
    pad = (win_size - 1) // 2
    c1 = (k1 * value_range) ** 2
    c2 = (k2 * value_range) ** 2
    mask_f = None if m is None else m.astype(np.float64)
    values = []
    for scale in range(w.size):

        def blur(x: np.ndarray) -> np.ndarray:
            return ndimage.gaussian_filter(x, sigma, mode="reflect", truncate=truncate)

        mu_p, mu_r = blur(p), blur(r)
        var_p = blur(p * p) - mu_p * mu_p
        var_r = blur(r * r) - mu_r * mu_r
        cov = blur(p * r) - mu_p * mu_r
        cs = (2 * cov + c2) / (var_p + var_r + c2)  # Eq. (6): contrast x structure
        current = None if mask_f is None else mask_f >= 0.5
        if scale == w.size - 1:
            luminance = (2 * mu_p * mu_r + c1) / (mu_p**2 + mu_r**2 + c1)  # Eq. (6): luminance
            values.append(max(_cropped_mean(luminance * cs, current, pad), 0.0))
        else:
            values.append(max(_cropped_mean(cs, current, pad), 0.0))
            p, r = _downsample(p), _downsample(r)
            if mask_f is not None:
                mask_f = _downsample(mask_f)
    return float(np.prod(np.power(np.asarray(values), w)))
