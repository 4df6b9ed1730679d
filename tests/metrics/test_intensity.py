"""MAE / PSNR / SSIM / MS-SSIM against scikit-image, a brute-force SSIM, MONAI's MS-SSIM, properties, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medi2i.errors import Medi2iInputError
from medi2i.metrics import mae, ms_ssim, psnr, ssim


def _pair(rng, shape, noise=0.1, dtype=np.float64):
    ref = ndimage.gaussian_filter(rng.random(shape), 1.0)
    pred = ref + noise * rng.standard_normal(shape)
    return pred.astype(dtype), ref.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_psnr_equals_skimage(rng, dtype):
    pred, ref = _pair(rng, (20, 21, 22), dtype=dtype)
    assert psnr(pred, ref, data_range=2.0) == peak_signal_noise_ratio(ref, pred, data_range=2.0)
    mask = rng.random(ref.shape) > 0.5
    assert psnr(pred, ref, data_range=2.0, mask=mask) == peak_signal_noise_ratio(ref[mask], pred[mask], data_range=2.0)


def test_mae_hand_computed_and_masked(rng):
    assert mae(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0])) == 1.0
    pred, ref = _pair(rng, (10, 10))
    mask = np.zeros((10, 10), np.uint8)
    mask[2:5, 3:8] = 7  # any value > 0 counts
    assert mae(pred, ref, mask) == pytest.approx(np.abs(pred - ref)[2:5, 3:8].mean(), rel=1e-14)


@pytest.mark.parametrize("shape", [(30, 31), (14, 15, 16)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ssim_uniform_equals_skimage_default(rng, shape, dtype):
    pred, ref = _pair(rng, shape, dtype=dtype)
    assert ssim(pred, ref, data_range=1.0) == structural_similarity(ref, pred, data_range=1.0)


def test_ssim_gaussian_equals_skimage_wang_settings(rng):
    pred, ref = _pair(rng, (32, 30))
    expected = structural_similarity(
        ref, pred, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(pred, ref, data_range=1.0, window="gaussian") == expected


def _ssim_brute_force(pred, ref, data_range, win=7, mask=None):
    """Wang et al. (2004) Eq. (13) with sample statistics of every full 7x7 window (no filtering library)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    half = win // 2
    values = []
    for i in range(half, pred.shape[0] - half):
        for j in range(half, pred.shape[1] - half):
            if mask is not None and not mask[i, j]:
                continue
            x = pred[i - half : i + half + 1, j - half : j + half + 1].ravel()
            y = ref[i - half : i + half + 1, j - half : j + half + 1].ravel()
            mx, my = x.mean(), y.mean()
            vx, vy = x.var(ddof=1), y.var(ddof=1)
            cxy = ((x - mx) * (y - my)).sum() / (x.size - 1)
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_matches_brute_force_formula(rng):
    pred, ref = _pair(rng, (16, 17), noise=0.2)
    assert ssim(pred, ref, data_range=1.0) == pytest.approx(_ssim_brute_force(pred, ref, 1.0), abs=1e-9)
    mask = np.zeros((16, 17), bool)
    mask[1:12, 5:15] = True  # partly inside the 3-voxel border, which is never averaged
    assert ssim(pred, ref, data_range=1.0, mask=mask) == pytest.approx(
        _ssim_brute_force(pred, ref, 1.0, mask=mask), abs=1e-9
    )


def test_properties(rng):
    ref = ndimage.gaussian_filter(rng.random((24, 24, 24)), 1.0)
    assert ssim(ref, ref, data_range=1.0) == 1.0
    assert psnr(ref, ref, data_range=1.0) == math.inf
    assert mae(ref, ref) == 0.0
    noise = rng.standard_normal(ref.shape)
    values = [psnr(ref + s * noise, ref, data_range=1.0) for s in (0.01, 0.03, 0.1, 0.3)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    ssims = [ssim(ref + s * noise, ref, data_range=1.0) for s in (0.01, 0.03, 0.1, 0.3)]
    assert all(a > b for a, b in zip(ssims, ssims[1:], strict=False))
    assert ssim(torch.from_numpy(ref + 0.1 * noise), torch.from_numpy(ref), data_range=1.0) == ssims[2]


def test_constant_images_are_defined():
    a = np.full((10, 10), 0.25)
    b = np.full((10, 10), 0.75)
    assert ssim(a, a, data_range=1.0) == 1.0
    assert psnr(a, a, data_range=1.0) == math.inf
    value = ssim(a, b, data_range=1.0)
    c1 = (0.01) ** 2
    assert value == pytest.approx((2 * 0.25 * 0.75 + c1) / (0.25**2 + 0.75**2 + c1))  # luminance term only
    assert psnr(a, b, data_range=1.0) == pytest.approx(10 * math.log10(1 / 0.25))


def test_ms_ssim_matches_monai(rng):
    from monai.metrics.regression import compute_ms_ssim

    ref = ndimage.gaussian_filter(rng.random((64, 72)), 1.0)
    pred = ref + 0.05 * rng.standard_normal(ref.shape)
    weights = (0.3, 0.3, 0.4)
    expected = compute_ms_ssim(
        torch.tensor(pred)[None, None], torch.tensor(ref)[None, None], spatial_dims=2, data_range=1.0, weights=weights
    ).item()
    assert ms_ssim(pred, ref, data_range=1.0, weights=weights) == pytest.approx(expected, rel=1e-5)
    assert ms_ssim(ref, ref, data_range=1.0, weights=weights) == 1.0
    mask = np.zeros(ref.shape, bool)
    mask[8:56, 8:64] = True
    assert 0 < ms_ssim(pred, ref, data_range=1.0, weights=weights, mask=mask) < 1


def test_intensity_errors(rng):
    x = rng.random((12, 12))
    with pytest.raises(Medi2iInputError, match="NaN"):
        psnr(np.full((12, 12), np.inf), x, data_range=1.0)
    with pytest.raises(Medi2iInputError, match="same shape"):
        mae(x, x[:, :11])
    with pytest.raises(Medi2iInputError, match="data_range"):
        ssim(x, x, data_range=0.0)
    with pytest.raises(TypeError):
        psnr(x, x)  # data_range is required, never guessed
    with pytest.raises(Medi2iInputError, match="no voxels"):
        mae(x, x, mask=np.zeros((12, 12)))
    with pytest.raises(Medi2iInputError, match="away from the image border"):
        ssim(x, x, data_range=1.0, mask=np.pad(np.ones((12, 2)), ((0, 0), (0, 10))))
    with pytest.raises(ValueError, match="did you mean 'gaussian'"):
        ssim(x, x, data_range=1.0, window="gausian")
    with pytest.raises(Medi2iInputError, match="odd"):
        ssim(x, x, data_range=1.0, win_size=6)
    with pytest.raises(Medi2iInputError, match="too small"):
        ms_ssim(x, x, data_range=1.0)


def test_cumulative_synthesis_metric_equals_function(rng):
    from medi2i.metrics import SynthesisMetric

    pred, ref = _pair(rng, (2, 1, 16, 16))
    mask = np.zeros(pred.shape, bool)
    mask[:, :, 3:13, 3:13] = True
    metric = SynthesisMetric("ssim", data_range=1.0)
    batch = metric(torch.from_numpy(pred), torch.from_numpy(ref), mask=torch.from_numpy(mask))
    expected = [ssim(pred[i, 0], ref[i, 0], data_range=1.0, mask=mask[i, 0]) for i in range(2)]
    assert batch.flatten().tolist() == expected
    metric(torch.from_numpy(ref), torch.from_numpy(ref))
    assert metric.aggregate().item() == pytest.approx((sum(expected) + 2.0) / 4)
    metric.reset()
    with pytest.raises(Medi2iInputError, match="nothing to aggregate"):
        metric.aggregate()
