"""Jacobian determinant, folding fraction, SDlogJ: analytic fields, planted folds, the Learn2Reg formula
re-derived here, spacing semantics and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from medi2i.errors import Medi2iInputError
from medi2i.metrics import folding_fraction, jacobian_determinant, jacobian_stats, sdlogj


def _affine_field(matrix: np.ndarray, shift: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """u(x) = (A - I) x + t on a voxel grid, channel-first."""
    grid = np.indices(shape, dtype=np.float64)
    n = len(shape)
    return np.einsum("ij,j...->i...", matrix - np.eye(n), grid) + shift.reshape((n,) + (1,) * n)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], amplitude: float, sigma: float = 3.0) -> np.ndarray:
    return np.stack([amplitude * ndimage.gaussian_filter(rng.standard_normal(shape), sigma) for _ in shape])


@pytest.mark.parametrize("shape", [(6, 7), (5, 6, 7)])
def test_zero_field_has_unit_jacobian(shape):
    u = np.zeros((len(shape),) + shape)
    assert np.array_equal(jacobian_determinant(u), np.ones(shape))
    assert folding_fraction(u) == 0.0
    assert sdlogj(u) == 0.0 and sdlogj(u, "l2r") == 0.0


@pytest.mark.parametrize("shape", [(9, 8), (7, 8, 9)])
def test_affine_field_has_constant_det(shape, rng):
    n = len(shape)
    matrix = np.eye(n) + 0.2 * rng.standard_normal((n, n))
    u = _affine_field(matrix, rng.standard_normal(n), shape)
    det = jacobian_determinant(u)
    assert det.shape == shape
    # everywhere, borders included: one-sided differences are exact for linear fields
    assert np.allclose(det, np.linalg.det(matrix), rtol=0, atol=1e-12)


def test_batched_shapes_and_torch(rng):
    u = _smooth_field(rng, (6, 7, 8), 2.0)
    batch = np.stack([u, 2 * u])
    out = jacobian_determinant(batch)
    assert out.shape == (2, 6, 7, 8)
    assert np.array_equal(out[0], jacobian_determinant(u))
    assert np.array_equal(jacobian_determinant(torch.from_numpy(batch)), out)
    two_d = np.zeros((3, 2, 5, 5))  # ambiguous: read as one 3D field unless spatial_dims says otherwise
    assert jacobian_determinant(two_d).shape == (2, 5, 5)
    assert jacobian_determinant(two_d, spatial_dims=2).shape == (3, 5, 5)


def test_planted_fold_is_counted():
    u = np.zeros((2, 9, 9))
    u[0, 4, 4] = 3.0  # voxel (5, 4): du0/dx0 = (0 - 3) / 2 -> det = -0.5; (3, 4): det = 2.5
    det = jacobian_determinant(u)
    assert det[5, 4] == -0.5 and det[3, 4] == 2.5
    assert np.count_nonzero(det <= 0) == 1
    assert folding_fraction(u) == 1 / 81
    assert folding_fraction(u, mask=np.pad(np.ones((3, 3)), 3)) == 1 / 9  # the fold lies in the 3x3 centre
    stats = jacobian_stats(u)
    assert stats["folding_percent"] == 100 / 81
    assert stats["jac_det_mean"] == pytest.approx(det.mean()) and stats["jac_det_std"] == pytest.approx(det.std())


def test_fold_in_3d_matches_direct_count(rng):
    u = _smooth_field(rng, (12, 12, 12), 12.0, sigma=1.5)
    grads = [np.gradient(u[c]) for c in range(3)]
    jac = np.stack([np.stack([grads[c][a] for a in range(3)], -1) for c in range(3)], -2) + np.eye(3)
    direct = np.linalg.det(jac)
    assert np.allclose(jacobian_determinant(u), direct, atol=1e-10)
    fraction = folding_fraction(u)
    assert 0 < fraction < 1  # the field really folds, so the count is tested
    assert fraction == np.count_nonzero(direct <= 0) / direct.size
    positive = direct[direct > 0]
    assert sdlogj(u) == pytest.approx(np.log(positive).std(), abs=1e-12)


def test_spacing_means_field_in_mm(rng):
    u_vox = _smooth_field(rng, (8, 9, 10), 2.0)
    spacing = (0.5, 1.5, 3.0)
    u_mm = u_vox * np.array(spacing).reshape(3, 1, 1, 1)
    assert np.allclose(jacobian_determinant(u_mm, spacing), jacobian_determinant(u_vox), atol=1e-12)
    assert sdlogj(u_mm, "l2r", spacing) == pytest.approx(sdlogj(u_vox, "l2r"), abs=1e-12)


def _l2r_rederived(u: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Learn2Reg's SDlogJ from its description: [-0.5, 0, 0.5] with zero padding, 2-voxel crop,
    det + 3, clip to [1e-9, 1e9], log, std (np.ma std over the cropped mask when a mask is given)."""
    n = u.shape[0]
    grads = np.zeros((n, n) + u.shape[1:])
    for c in range(n):
        padded = np.pad(u[c], 1)  # zero padding
        for a in range(n):
            hi = [slice(1, -1)] * n
            lo = [slice(1, -1)] * n
            hi[a], lo[a] = slice(2, None), slice(0, -2)
            grads[c, a] = 0.5 * padded[tuple(hi)] - 0.5 * padded[tuple(lo)]
    jac = np.moveaxis(grads, (0, 1), (-2, -1)) + np.eye(n)
    crop = (slice(2, -2),) * n
    log_det = np.log(np.clip(np.linalg.det(jac[crop]) + 3, 1e-9, 1e9))
    if mask is None:
        return float(log_det.std())
    return float(log_det[mask[crop] > 0].std())


@pytest.mark.parametrize("shape", [(10, 11, 12), (16, 14)])
def test_l2r_sdlogj_matches_rederived_formula(shape, rng):
    u = _smooth_field(rng, shape, 6.0, sigma=1.5)
    assert sdlogj(u, "l2r") == pytest.approx(_l2r_rederived(u), rel=1e-12)
    # the +3 shift makes the Learn2Reg value smaller than the standard one for a real deformation
    assert sdlogj(u, "l2r") < sdlogj(u)
    mask = np.zeros(shape)
    mask[tuple(slice(2, n - 3) for n in shape)] = 1
    assert sdlogj(u, "l2r", mask=mask) == pytest.approx(_l2r_rederived(u, mask), rel=1e-12)


def test_l2r_zero_padding_border_is_cropped():
    # a constant displacement has a zero gradient inside but not at the zero-padded border, which must be cropped
    u = np.full((3, 9, 9, 9), 5.0)
    assert sdlogj(u, "l2r") < 1e-12  # det = 1 inside (only the rounding of the mean is left)
    assert _l2r_rederived(u) < 1e-12
    v = u.copy()
    v[0, 0] += 1.0  # a step at the first slice: the crop must still leave only det = 1
    assert sdlogj(v, "l2r") < 1e-12


def test_standard_sdlogj_nan_when_everything_folds():
    u = _affine_field(np.diag([-1.0, 1.0]), np.zeros(2), (6, 6))
    assert math.isnan(sdlogj(u))
    assert folding_fraction(u) == 1.0


def test_jacobian_errors():
    with pytest.raises(Medi2iInputError, match="NaN"):
        jacobian_determinant(np.full((2, 4, 4), np.nan))
    with pytest.raises(Medi2iInputError, match="one channel per spatial axis"):
        jacobian_determinant(np.zeros((4, 5, 5)))
    with pytest.raises(Medi2iInputError, match="single field"):
        folding_fraction(np.zeros((2, 3, 5, 5, 5)))
    with pytest.raises(ValueError, match="did you mean 'l2r'"):
        sdlogj(np.zeros((2, 6, 6)), "L2R")
    with pytest.raises(Medi2iInputError, match="> 4 voxels"):
        sdlogj(np.zeros((3, 4, 8, 8)), "l2r")
    with pytest.raises(Medi2iInputError, match="spacing"):
        jacobian_determinant(np.zeros((2, 4, 4)), spacing=(1.0, 0.0))
    with pytest.raises(Medi2iInputError, match="mask"):
        folding_fraction(np.zeros((2, 4, 4)), mask=np.zeros((4, 4)))


def test_cumulative_jacobian_metric(rng):
    from medi2i.metrics import JacobianMetric

    u = _smooth_field(rng, (10, 10, 10), 12.0, sigma=1.5)
    metric = JacobianMetric("sdlogj_l2r")
    out = metric(torch.from_numpy(np.stack([u, np.zeros_like(u)])))
    assert out.flatten().tolist() == [sdlogj(u, "l2r"), 0.0]
    assert metric.aggregate().item() == pytest.approx(sdlogj(u, "l2r") / 2)
