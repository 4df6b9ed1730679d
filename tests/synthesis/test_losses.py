"""Paired metrics and the kernel MMD of medi2i.synthesis.losses, against re-derived formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from medi2i.errors import Medi2iInputError
from medi2i.synthesis.losses import (
    KernelMMD,
    PairedL1,
    PairedSSIML1,
    median_bandwidth,
    mmd_rbf,
    paired_metric,
    ssim_per_image,
)


def test_l1_per_image():
    x = torch.randn(3, 1, 5, 6)
    y = torch.randn(3, 1, 5, 6)
    expected = [float(np.abs(x[i].numpy() - y[i].numpy()).mean()) for i in range(3)]
    assert PairedL1()(x, y).tolist() == pytest.approx(expected, rel=1e-6)


def test_ssim_matches_scikit_image_gaussian():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (24, 28)).astype(np.float64)
    y = np.clip(x + 0.3 * rng.standard_normal(x.shape), -1, 1)
    ref = structural_similarity(x, y, data_range=2.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    ours = ssim_per_image(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None], data_range=2.0)
    assert float(ours) == pytest.approx(ref, abs=1e-6)


def test_ssim_l1_formula_and_zero_on_identity():
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    y = torch.rand(2, 1, 16, 16) * 2 - 1
    metric = PairedSSIML1(alpha=0.84)
    expected = 0.84 * (1 - ssim_per_image(x, y)) + 0.16 * (x - y).abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(metric(x, y), expected)
    assert metric(x, x).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("name", ["l1", "ssim_l1"])
def test_paired_metric_names_and_gradients(name):
    metric = paired_metric(name)
    assert metric.metric_name == name
    x = (torch.rand(2, 1, 16, 16) * 2 - 1).requires_grad_()
    d = metric(x, torch.zeros(2, 1, 16, 16))
    assert d.shape == (2,) and (d > 0).all()
    d.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_paired_metric_lpips_random_weights_for_tests():
    metric = paired_metric("lpips", lpips_pretrained=False)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert metric(x, x).tolist() == [0.0, 0.0]
    assert (metric(x, -x) > 0).all()
    assert not any(p.requires_grad for p in metric.parameters())


def test_paired_metric_lpips_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDI2I_WEIGHTS", str(tmp_path))  # an empty weights folder
    with pytest.raises(Medi2iInputError, match="vgg16"):
        paired_metric("lpips")


def test_paired_metric_unknown_name_suggests():
    with pytest.raises(Medi2iInputError, match="did you mean 'ssim_l1'"):
        paired_metric("ssim_l2")


def _median_rederived(x: np.ndarray, y: np.ndarray) -> float:
    z = np.concatenate([x, y])
    dists = [np.linalg.norm(z[i] - z[j]) for i in range(len(z)) for j in range(i + 1, len(z))]
    return float(np.median(dists))


@pytest.mark.parametrize("m, n", [(3, 4), (4, 4), (5, 2)])
def test_median_bandwidth_rederived(m, n):
    rng = np.random.default_rng(m * 10 + n)
    x, y = rng.standard_normal((m, 6)), rng.standard_normal((n, 6)) + 1
    ours = median_bandwidth(torch.from_numpy(x), torch.from_numpy(y))
    assert float(ours) == pytest.approx(_median_rederived(x, y), rel=1e-10)


def test_mmd_rederived_v_statistic():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)) + 0.5
    scales = (0.5, 1.0, 2.0)
    bw = _median_rederived(x, y)

    def k(u, v):
        d2 = float(((u - v) ** 2).sum())
        return np.mean([math.exp(-d2 / (2 * (s * bw) ** 2)) for s in scales])

    expected = (
        np.mean([k(a, b) for a in x for b in x])
        + np.mean([k(a, b) for a in y for b in y])
        - 2 * np.mean([k(a, b) for a in x for b in y])
    )
    ours = mmd_rbf(torch.from_numpy(x), torch.from_numpy(y), scales=scales)
    assert float(ours) == pytest.approx(expected, rel=1e-9)


def test_mmd_zero_for_identical_sets_positive_otherwise_and_grows():
    x = torch.randn(8, 1, 8, 8)
    mmd = KernelMMD(pool=2)
    assert float(mmd(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(mmd(x, x[torch.randperm(8)])) == pytest.approx(0.0, abs=1e-6)  # a set, not a sequence
    near, far = float(mmd(x, x + 0.5)), float(mmd(x, x + 2.0))
    assert 0 < near < far


def test_mmd_gradient_reaches_both_sets():
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    y = torch.randn(4, 1, 8, 8, requires_grad=True)
    KernelMMD(pool=4)(x, y).backward()
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0


def test_kernel_mmd_pools_before_flattening():
    x, y = torch.randn(3, 1, 8, 8), torch.randn(4, 1, 8, 8)
    expected = mmd_rbf(torch.nn.functional.avg_pool2d(x, 4), torch.nn.functional.avg_pool2d(y, 4))
    torch.testing.assert_close(KernelMMD(pool=4)(x, y), expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"scales": ()}, "mmd_kernel_scales"), ({"scales": (1.0, -1.0)}, "mmd_kernel_scales"), ({"pool": 0}, "mmd_pool")],
)
def test_kernel_mmd_illegal_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KernelMMD(**kwargs)


def test_ssim_l1_illegal_alpha():
    with pytest.raises(ValueError, match="alpha"):
        PairedSSIML1(alpha=1.5)
