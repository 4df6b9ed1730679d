"""SynthRAD2023 metrics: the official recipe re-derived here with scikit-image and compared bit for bit;
the MR preset re-derived from its definition; properties and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medi2i.errors import Medi2iInputError
from medi2i.metrics import mr_metrics, synthesis_metrics, synthrad_metrics


def _ct_case(rng, shape=(20, 22, 24)):
    body = np.zeros(shape, bool)
    body[3:-3, 2:-2, 4:-4] = True
    ct = np.where(body, 40 + 300 * ndimage.gaussian_filter(rng.standard_normal(shape), 2.0), -1000.0)
    ct[8:12, 8:12, 8:12] = 3400.0  # metal: above the population range
    ct[body & (rng.random(shape) > 0.97)] = -1100.0  # below it
    sct = ct + 60 * rng.standard_normal(shape)
    return sct.round(), ct.round(), body.astype(np.uint8)


def _official(sct, ct, mask):
    """The SynthRAD2023 scorer's recipe written out step by step (float32 volumes, skimage calls)."""
    gt, pred = ct.astype(np.float32), sct.astype(np.float32)
    m = np.where(mask > 0, 1.0, 0.0)
    mae = np.sum(np.abs(gt * m - pred * m)) / m.sum()
    lo, hi = -1024.0, 3000.0
    gt_p = np.where(gt < lo, lo, gt)
    gt_p = np.where(gt_p > hi, hi, gt_p)
    pred_p = np.where(pred < lo, lo, pred)
    pred_p = np.where(pred_p > hi, hi, pred_p)
    psnr = peak_signal_noise_ratio(gt_p[m == 1], pred_p[m == 1], data_range=hi - lo)
    gt_s, pred_s = np.clip(gt, lo, hi), np.clip(pred, lo, hi)
    gt_s, pred_s = np.where(m == 0, lo, gt_s) - lo, np.where(m == 0, lo, pred_s) - lo
    _, full = structural_similarity(gt_s, pred_s, data_range=hi - lo, full=True)
    ssim = full[3:-3, 3:-3, 3:-3][m[3:-3, 3:-3, 3:-3].astype(bool)].mean(dtype=np.float64)
    return {"mae": float(mae), "psnr": float(psnr), "ssim": float(ssim)}


def test_synthrad_equals_official_recipe(rng):
    sct, ct, mask = _ct_case(rng)
    assert synthrad_metrics(sct, ct, mask) == _official(sct, ct, mask)
    assert synthesis_metrics(sct, ct, mask, preset="ct") == _official(sct, ct, mask)


def test_synthrad_without_mask_uses_all_voxels(rng):
    sct, ct, _ = _ct_case(rng, (12, 12, 12))
    out = synthrad_metrics(sct, ct, None)
    gt, pred = ct.astype(np.float32), sct.astype(np.float32)
    assert out["mae"] == pytest.approx(np.abs(gt.astype(np.float64) - pred).mean(), rel=1e-12)
    clip = np.clip
    assert out["psnr"] == peak_signal_noise_ratio(clip(gt, -1024, 3000), clip(pred, -1024, 3000), data_range=4024.0)
    assert out["ssim"] == structural_similarity(
        clip(gt, -1024, 3000) + 1024, clip(pred, -1024, 3000) + 1024, data_range=4024.0
    )


def test_synthrad_definition_details(rng):
    sct, ct, mask = _ct_case(rng)
    base = synthrad_metrics(sct, ct, mask)
    # nothing outside the body mask counts, for any of the three metrics
    changed = np.where(mask > 0, sct, sct + 500.0)
    assert synthrad_metrics(changed, ct, mask) == base
    # MAE is not clipped, PSNR is: pushing metal further up changes MAE only
    hotter = np.where(ct > 3000, sct + 1000.0, sct)
    hot_ct = np.where(ct > 3000, ct + 1000.0, ct)
    out = synthrad_metrics(hotter, hot_ct, mask)
    assert out["mae"] == base["mae"] and out["psnr"] == base["psnr"]
    worse = synthrad_metrics(np.where(ct > 3000, sct - 2000.0, sct), ct, mask)
    assert worse["mae"] > base["mae"] and worse["psnr"] < base["psnr"]
    perfect = synthrad_metrics(ct, ct, mask)
    assert perfect == {"mae": 0.0, "psnr": math.inf, "ssim": 1.0}


def test_mr_preset_rederived(rng):
    shape = (16, 18, 20)
    mask = np.zeros(shape, bool)
    mask[3:13, 3:15, 4:16] = True
    target = np.where(mask, 800 + 200 * ndimage.gaussian_filter(rng.standard_normal(shape), 1.5), 0.0)
    pred = target * 1.05 + 20 * rng.standard_normal(shape)
    lo, hi = np.percentile(target[mask], [0.5, 99.5])
    t, p = (target - lo) / (hi - lo), (pred - lo) / (hi - lo)
    m = mask.astype(np.float64)
    expected_mae = np.sum(np.abs(t * m - p * m)) / m.sum()
    tc, pc = np.clip(t, 0, 1), np.clip(p, 0, 1)
    expected_psnr = peak_signal_noise_ratio(tc[mask], pc[mask], data_range=1.0)
    _, full = structural_similarity(np.where(mask, tc, 0.0), np.where(mask, pc, 0.0), data_range=1.0, full=True)
    expected_ssim = full[3:-3, 3:-3, 3:-3][mask[3:-3, 3:-3, 3:-3]].mean()
    out = mr_metrics(pred, target, mask)
    assert out["mae"] == pytest.approx(expected_mae, rel=1e-12)
    assert out["psnr"] == pytest.approx(expected_psnr, rel=1e-12)
    assert out["ssim"] == pytest.approx(expected_ssim, rel=1e-12)
    # the range comes from the reference only: rescaling the prediction's units is not forgiven
    assert mr_metrics(pred * 2, target, mask)["mae"] > out["mae"]
    assert synthesis_metrics(pred, target, mask, preset="mr") == out


def test_synthrad_errors(rng):
    sct, ct, mask = _ct_case(rng, (10, 10, 10))
    with pytest.raises(Medi2iInputError, match="NaN"):
        synthrad_metrics(np.where(mask > 0, np.nan, sct), ct, mask)
    with pytest.raises(Medi2iInputError, match="same shape"):
        synthrad_metrics(sct[:-1], ct, mask)
    with pytest.raises(Medi2iInputError, match="same shape"):
        synthrad_metrics(sct, ct, mask[:-1])
    with pytest.raises(Medi2iInputError, match="mask"):
        synthrad_metrics(sct, ct, np.zeros_like(mask))
    with pytest.raises(ValueError, match="did you mean 'mr'"):
        synthesis_metrics(sct, ct, mask, preset="mri")
    with pytest.raises(Medi2iInputError, match="constant"):
        mr_metrics(sct, np.ones_like(ct), mask)
