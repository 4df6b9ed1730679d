"""Windows and overlays: presets, percentile windows, fold highlighting, checkerboard, blend, grid."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors
import numpy as np
import pytest
from matplotlib.figure import Figure

from medi2i.errors import Medi2iInputError
from medi2i.metrics import jacobian_determinant
from medi2i.viz.overlays import (
    FOLD_COLOR,
    blend_rgb,
    checkerboard,
    draw_deformation_grid,
    draw_difference,
    draw_jacobian,
    draw_label_contours,
    label_rgba,
)
from medi2i.viz.windows import Window, apply_window, ct_window, percentile_window


@pytest.mark.parametrize(
    ("preset", "low", "high"),
    [("brain", 0, 80), ("soft_tissue", -150, 250), ("bone", -500, 1300), ("full", -1024, 3000)],
)
def test_ct_presets_are_level_width_pairs(preset, low, high):
    w = ct_window(preset)
    assert (w.low, w.high) == (low, high)


def test_unknown_preset_suggests_the_nearest():
    with pytest.raises(Medi2iInputError, match="did you mean 'bone'"):
        ct_window("bones")


def test_window_validation_and_mapping():
    with pytest.raises(ValueError, match="low < high"):
        Window(5, 5)
    with pytest.raises(ValueError, match="width"):
        Window.from_level_width(0, -1)
    np.testing.assert_allclose(apply_window(np.array([-10.0, 0, 5, 10, 99]), Window(0, 10)), [0, 0, 0.5, 1, 1])


def test_percentile_window_uses_the_mask_and_ignores_background(rng):
    img = np.zeros((20, 20))
    img[5:15, 5:15] = rng.uniform(100, 200, (10, 10))
    w = percentile_window(img, lower=0, upper=100)
    assert w.low >= 100 and w.high <= 200  # the zero background is skipped
    mask = np.zeros_like(img, bool)
    mask[5:10, 5:15] = True
    wm = percentile_window(img, mask, lower=0, upper=100)
    assert wm.low == img[mask].min() and wm.high == img[mask].max()
    assert percentile_window(np.full((3, 3), 7.0)).width == 1.0
    with pytest.raises(ValueError, match="lower"):
        percentile_window(img, lower=50, upper=10)


def planted_fold_field() -> np.ndarray:
    """A smooth field plus two spikes whose neighbours fold (det <= 0) and a shrink region (0 < det < 1)."""
    u = np.zeros((2, 24, 20), np.float32)
    u[0, 6, 5] = 3.0
    u[1, 15, 12] = -3.0
    u[0, 18:22, 2:6] = -0.3 * np.arange(4)[:, None]
    return u


def test_fold_overlay_pixels_are_exactly_the_nonpositive_determinants():
    det = jacobian_determinant(planted_fold_field())
    assert 0 < (det <= 0).sum() < det.size // 10  # the planted field really folds somewhere
    fig = Figure()
    ax = fig.subplots()
    heat, folds = draw_jacobian(ax, det)
    assert folds.get_gid() == "folds"
    shown = ~np.ma.getmaskarray(folds.get_array())
    np.testing.assert_array_equal(shown, det <= 0)
    # rendered colour: every highlighted pixel is the fold colour
    rgba = folds.to_rgba(folds.get_array())
    np.testing.assert_allclose(rgba[shown][:, :3], np.tile(mcolors.to_rgb(FOLD_COLOR), (shown.sum(), 1)))
    assert heat.get_clim() == (0.0, 2.0)


def test_difference_map_is_symmetric_and_diverging():
    fig = Figure()
    ax = fig.subplots()
    img = draw_difference(ax, np.array([[-30.0, 10.0], [0.0, 5.0]]), limit=20)
    assert img.get_clim() == (-20.0, 20.0)
    assert img.get_cmap().name == "RdBu_r"
    auto = draw_difference(ax, np.linspace(-100, 100, 201).reshape(1, -1))
    assert (
        auto.get_clim()[0] == -auto.get_clim()[1] == pytest.approx(-99.0)
    )  # |x| = 0,1,1,...,100,100: 99th percentile = 99


def test_checkerboard_alternates_tiles():
    a, b = np.zeros((8, 8)), np.ones((8, 8))
    cb = checkerboard(a, b, tiles=4)
    expected = ((np.arange(8)[:, None] // 2 + np.arange(8)[None, :] // 2) % 2).astype(float)
    np.testing.assert_array_equal(cb, expected)
    with pytest.raises(ValueError, match="equal shapes"):
        checkerboard(a, np.ones((4, 4)))


def test_blend_is_grey_where_aligned():
    a = np.array([[0.2, 1.0]])
    rgb = blend_rgb(a, a)
    np.testing.assert_allclose(rgb[..., 0], rgb[..., 1])
    np.testing.assert_allclose(blend_rgb(np.zeros((1, 1)), np.ones((1, 1)))[0, 0], [0, 1, 0])


def test_label_rgba_and_contours():
    lab = np.zeros((10, 10), int)
    lab[2:5, 2:5] = 1
    lab[6:9, 6:9] = 3
    rgba = label_rgba(lab, alpha=0.3)
    np.testing.assert_array_equal(rgba[..., 3] > 0, lab > 0)
    assert not np.allclose(rgba[3, 3, :3], rgba[7, 7, :3])
    fig = Figure()
    ax = fig.subplots()
    assert len(draw_label_contours(ax, lab)) == 2
    with pytest.raises(ValueError, match="alpha"):
        label_rgba(lab, alpha=2)


def test_deformation_grid_lines_follow_x_plus_u():
    fig = Figure()
    ax = fig.subplots()
    d_row = np.full((9, 9), 0.5)
    d_col = np.zeros((9, 9))
    d_col[:, 4] = 2.0
    lines = draw_deformation_grid(ax, d_row, d_col, step=4)
    assert len(lines) == 3 + 3
    x, y = lines[0].get_data()  # first row line (r = 0)
    np.testing.assert_allclose(y, 0.5)
    np.testing.assert_allclose(x, np.arange(9) + d_col[0])
    with pytest.raises(ValueError, match="step"):
        draw_deformation_grid(ax, d_row, d_col, step=0)
