"""Dice / HD95: hand-computed cases, a brute-force re-derivation, golden values of the reference
implementation (DeepMind surface-distance 0.1, the package the Learn2Reg evaluation calls), conventions."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import cdist

from medi2i.errors import Medi2iInputError
from medi2i.metrics import (
    SurfaceDistances,
    compute_surface_distances,
    dice,
    hd95,
    image_diagonal,
    label_mean,
    mean_dice,
    mean_hd95,
    overlap_metrics,
    robust_hausdorff,
    surfel_area_table,
)


def _blobs(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = ndimage.gaussian_filter(rng.random(shape), 1.5) > 0.5
    b = ndimage.gaussian_filter(rng.random(shape), 1.5) > 0.5
    return a, b


def _cube(shape, start, size) -> np.ndarray:
    out = np.zeros(shape, np.int64)
    out[tuple(slice(s, s + size) for s in start)] = 1
    return out


# ---------------------------------------------------------------------------------------------- Dice


def test_dice_hand_computed():
    ref = np.zeros((4, 5), np.int64)
    ref[:2, :] = 1  # 10 voxels
    ref[2:, :2] = 2  # 4 voxels
    pred = ref.copy()
    pred[1, :] = 3  # label 1 keeps 5 of 10; label 3 appears only in pred
    pred[3, 0] = 0  # label 2 keeps 3 of 4
    out = dice(pred, ref)
    assert list(out) == [1, 2, 3]
    assert out[1] == 2 * 5 / (5 + 10)
    assert out[2] == 2 * 3 / (3 + 4)
    assert out[3] == 0.0  # in pred only: worst case
    assert mean_dice(pred, ref) == pytest.approx((2 * 5 / 15 + 6 / 7 + 0.0) / 3)


def test_dice_identity_numpy_and_torch(rng):
    x = rng.integers(0, 6, (7, 8, 9))
    assert all(v == 1.0 for v in dice(x, x).values())
    assert dice(torch.from_numpy(x), torch.from_numpy(x)) == dice(x, x)
    as_float = x.astype(np.float64)  # label maps read with get_fdata are float
    assert dice(as_float, x) == dice(x, x)


def test_dice_can_fail():
    ref = _cube((10, 10), (2, 2), 4)
    assert dice(np.roll(ref, 1, axis=0), ref)[1] == pytest.approx(2 * 12 / 32)


def test_dice_large_sparse_labels_use_the_same_definition():
    ref = np.zeros((6, 6), np.int64)
    ref[:3] = 2_000_000
    ref[3:] = 7
    pred = np.roll(ref, 1, axis=0)
    small = dice(np.where(pred == 2_000_000, 9, pred), np.where(ref == 2_000_000, 9, ref))
    big = dice(pred, ref)
    assert big[2_000_000] == small[9] and big[7] == small[7]


# ---------------------------------------------------------------------------------------------- conventions


def test_strict_convention_worst_case_and_skip():
    ref = np.zeros((8, 8, 8), np.int64)
    ref[1:4, 1:4, 1:4] = 1
    ref[5:7, 5:7, 5:7] = 2
    pred = ref.copy()
    pred[pred == 2] = 0
    pred[0, 7, 0] = 4  # label only in pred
    diag = image_diagonal(ref.shape, (1.0, 2.0, 1.0))
    assert diag == math.sqrt(8**2 + 16**2 + 8**2)
    d = dice(pred, ref, labels=[1, 2, 3, 4])
    h = hd95(pred, ref, labels=[1, 2, 3, 4], spacing=(1.0, 2.0, 1.0))
    assert d[1] == 1.0 and d[2] == 0.0 and d[4] == 0.0 and math.isnan(d[3])
    assert h[1] == 0.0 and h[2] == diag and h[4] == diag and math.isnan(h[3])
    assert label_mean(d) == pytest.approx(1 / 3)  # NaN (absent from both) left out, worst cases kept
    assert mean_hd95(pred, ref, spacing=(1.0, 2.0, 1.0)) == pytest.approx(2 * diag / 3)


def test_reference_convention_skips_labels_absent_from_ref():
    ref = _cube((8, 8), (1, 1), 3)
    pred = ref.copy()
    pred[6, 6] = 2  # only in pred
    assert dice(pred, ref, convention="reference") == {1: 1.0}
    assert math.isnan(dice(pred, ref, labels=[1, 2], convention="reference")[2])
    lost = dice(np.zeros_like(ref), ref, convention="reference")
    assert lost == {1: 0.0}


def test_l2r_convention_matches_learn2reg_rule():
    fixed = np.zeros((10, 10, 10), np.int64)
    fixed[1:4, 1:4, 1:4] = 1
    fixed[5:8, 5:8, 5:8] = 2
    fixed[0:2, 8:10, 0:2] = 3
    moving = fixed.copy()
    moving[moving == 3] = 0  # label 3 absent from the moving image: skipped
    warped = moving.copy()
    warped[warped == 2] = 0  # label 2 lost by the warp: Dice 0, HD95 inf (surface-distance's empty surface)
    out = overlap_metrics(warped, fixed, [1, 2, 3], convention="l2r", moving=moving)
    assert out["dice"][1] == 1.0 and out["dice"][2] == 0.0 and math.isnan(out["dice"][3])
    assert out["hd95"][1] == 0.0 and out["hd95"][2] == math.inf and math.isnan(out["hd95"][3])
    # without 'moving' the presence check falls back to pred: label 2 is then skipped too
    assert math.isnan(dice(warped, fixed, [2], convention="l2r")[2])


# ---------------------------------------------------------------------------------------------- HD95


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_hd95_shifted_cubes(k, axis):
    # Cube side 8, shifted by k: the whole far face (1/6 of the area, > 5 %) is k away -> HD95 = k exactly.
    ref = _cube((16, 16, 16), (3, 3, 3), 8)
    pred = np.roll(ref, k, axis=axis)
    assert hd95(pred, ref) == {1: float(k)}
    spacing = [1.0, 1.0, 1.0]
    spacing[axis] = 0.5
    assert hd95(pred, ref, spacing=spacing) == {1: 0.5 * k}


def test_hd95_shifted_squares_2d():
    ref = _cube((20, 20), (5, 5), 8)
    assert hd95(np.roll(ref, 3, axis=1), ref, spacing=(2.0, 0.7)) == {1: pytest.approx(2.1)}


def _brute_force_hd(a: np.ndarray, b: np.ndarray, spacing, percent: float) -> float:
    """Re-derivation with loops and pairwise distances (no distance transform, no vectorised codes)."""
    nd = a.ndim
    bits = 2**nd
    table = surfel_area_table(spacing)

    def surface(mask):
        padded = np.pad(mask, 1)
        points, codes = [], []
        for corner in np.ndindex(*(n + 1 for n in mask.shape)):
            code = 0
            for rank, offset in enumerate(np.ndindex(*(2,) * nd)):  # voxel at offset 0 = highest bit
                if padded[tuple(c + o for c, o in zip(corner, offset, strict=True))]:
                    code |= 1 << (bits - 1 - rank)
            if 0 < code < 2**bits - 1:
                points.append(corner)
                codes.append(code)
        return np.array(points, float) * np.array(spacing), table[np.array(codes)]

    pa, wa = surface(a)
    pb, wb = surface(b)
    dist = cdist(pa, pb)

    def directed(d, w):
        order = np.lexsort((w, d))
        d, w = d[order], w[order]
        fraction = np.cumsum(w) / np.sum(w)
        return d[min(int(np.searchsorted(fraction, percent / 100)), len(d) - 1)]

    return max(directed(dist.min(axis=1), wa), directed(dist.min(axis=0), wb))


@pytest.mark.parametrize(
    "seed,shape,spacing",
    [
        (10, (9, 10, 8), (1.0, 1.0, 1.0)),
        (11, (9, 8, 10), (0.8, 1.3, 2.0)),
        (12, (14, 12), (1.0, 1.0)),
        (13, (12, 15), (0.6, 1.7)),
    ],
)
def test_hd95_matches_brute_force(seed, shape, spacing):
    a, b = _blobs(seed, shape)
    assert a.any() and b.any()
    sd = compute_surface_distances(b, a, spacing)
    for percent in (50.0, 95.0, 100.0):
        assert robust_hausdorff(sd, percent) == pytest.approx(_brute_force_hd(a, b, spacing, percent), abs=1e-12)


# Golden values of surface-distance 0.1 (google-deepmind/surface-distance, as vendored by MDL-UzL/L2R),
# compute_robust_hausdorff(compute_surface_distances(a, b, spacing), p) for p = 95, 100, 50, computed once
# with that package on the masks _blobs(seed, shape) build.
_GOLDEN = [
    (0, (20, 18, 16), (1.0, 1.0, 1.0), 2.23606797749979, 4.58257569495584, 1.0),
    (1, (20, 18, 16), (0.9, 1.1, 2.5), 3.271085446759225, 6.210475022089696, 0.9),
    (2, (24, 24), (1.0, 1.0), 2.8284271247461903, 3.605551275463989, 1.0),
    (3, (24, 20), (0.7, 1.9), 2.8, 5.6, 0.7),
    (4, (16, 16, 16), (1.0, 1.0, 1.0), 2.0, 4.123105625617661, 0.0),
]


@pytest.mark.parametrize("seed,shape,spacing,p95,p100,p50", _GOLDEN)
def test_hd_equals_surface_distance_reference(seed, shape, spacing, p95, p100, p50):
    a, b = _blobs(seed, shape)
    sd = compute_surface_distances(b, a, spacing)
    assert (robust_hausdorff(sd, 95), robust_hausdorff(sd, 100), robust_hausdorff(sd, 50)) == (p95, p100, p50)
    assert hd95(b.astype(int), a.astype(int), spacing=spacing) == {1: p95}


def test_surfel_table_equals_reference_table():
    table = surfel_area_table((1.0, 1.0, 1.0))
    # multiset of surface-distance's 256 unit-spacing areas (13 distinct values) and its sum
    expected = {
        0.0: 2,
        0.216506350946: 16,
        0.433012701892: 32,
        0.649519052838: 16,
        0.707106781187: 24,
        0.866025403784: 2,
        0.923613132133: 48,
        1.0: 6,
        1.149519052838: 48,
        1.299038105677: 8,
        1.366025403784: 24,
        1.414213562373: 6,
        1.573132184971: 24,
    }
    assert Counter(np.round(table, 12).tolist()) == expected
    assert table.sum() == 241.34313970553745
    assert table[1] == math.sqrt(3) / 8  # one corner cut off: triangle between three edge midpoints
    assert np.array_equal(table, table[::-1])  # a cell and its complement share the surface
    # a flat face (the four voxels of offset 0 along axis 0) scales with the two other spacings
    assert surfel_area_table((2.0, 3.0, 5.0))[0b11110000] == pytest.approx(15.0)
    t2 = surfel_area_table((0.5, 2.0))
    assert t2[0b1100] == 2.0 and t2[0b1010] == 0.5 and t2[0b1000] == 0.5 * math.sqrt(0.25 + 4.0)


def test_hd95_identity_and_torch():
    a, _ = _blobs(5, (12, 12, 12))
    x = a.astype(np.int64)
    assert hd95(x, x) == {1: 0.0}
    assert hd95(torch.from_numpy(x), torch.from_numpy(np.roll(x, 1, 0))) == hd95(x, np.roll(x, 1, 0))


def test_empty_surface_is_inf():
    a = _cube((6, 6), (1, 1), 2).astype(bool)
    sd = compute_surface_distances(np.zeros_like(a), a)
    assert robust_hausdorff(sd) == math.inf


# ---------------------------------------------------------------------------------------------- errors


def test_overlap_errors():
    x = np.zeros((4, 4), np.int64)
    with pytest.raises(Medi2iInputError, match="same shape"):
        dice(x, np.zeros((4, 5), np.int64))
    with pytest.raises(Medi2iInputError, match="non-integer"):
        dice(x + 0.5, x)
    with pytest.raises(Medi2iInputError, match="NaN"):
        dice(np.full((4, 4), np.nan), x)
    with pytest.raises(Medi2iInputError, match="negative"):
        dice(x - 1, x)
    with pytest.raises(Medi2iInputError, match="spacing"):
        hd95(x, x, spacing=(1.0, -1.0))
    with pytest.raises(Medi2iInputError, match="2D or 3D"):
        hd95(np.zeros((2, 2, 2, 2), np.int64), np.zeros((2, 2, 2, 2), np.int64))
    with pytest.raises(ValueError, match="did you mean 'strict'"):
        dice(x, x, convention="strikt")
    with pytest.raises(Medi2iInputError, match="only used by the 'l2r'"):
        dice(x, x, moving=x)
    with pytest.raises(Medi2iInputError, match="non-negative integers"):
        dice(x, x, labels=[1.5])


def test_cumulative_overlap_metric_leaves_out_cases_without_labels():
    from medi2i.metrics import LabelOverlapMetric

    ref = torch.from_numpy(_cube((10, 10), (2, 2), 4))[None, None]
    shifted = torch.roll(ref, 1, dims=2)
    metric = LabelOverlapMetric("hd95", spacing=(2.0, 1.0))
    metric(torch.cat([shifted, torch.zeros_like(ref)]), torch.cat([ref, torch.zeros_like(ref)]))
    assert metric.get_buffer().flatten().tolist()[0] == 2.0
    assert math.isnan(metric.get_buffer().flatten().tolist()[1])  # no label in either map
    assert metric.aggregate().item() == 2.0


def test_percentile_rule_is_first_element_reaching_the_fraction():
    # 20 equal surfels at distances 0..19: cumulative fractions k/20 hit 0.95 exactly at the 19th element;
    # surface-distance takes that element (searchsorted, side='left'), not the next one, and no interpolation.
    distances, areas = np.arange(20.0), np.ones(20)
    sd = SurfaceDistances(distances, distances, areas, areas)
    assert robust_hausdorff(sd, 95) == 18.0
    assert robust_hausdorff(sd, 50) == 9.0
    assert robust_hausdorff(sd, 100) == 19.0
    weighted = SurfaceDistances(distances, distances[:2], areas, np.array([19.0, 1.0]))
    assert robust_hausdorff(weighted, 95) == 18.0  # the other direction (0.0 at 95 %) does not win
