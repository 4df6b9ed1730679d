"""Figures and the viewer render headless with the expected panels; the fold highlight follows det <= 0."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import numpy as np
import pytest

from medi2i.metrics import jacobian_determinant
from medi2i.viz.figures import axial_mosaic, figure_png, registration_figure, save_figure, synthesis_figure, warp_array
from medi2i.viz.orientation import oriented_slice, to_ras
from medi2i.viz.viewer import DisplayVolume, image_axes, render_orthogonal
from tests.conftest import oblique_affine

VIEWS = ("axial", "coronal", "sagittal")


def head(shape=(16, 18, 14)) -> tuple[np.ndarray, np.ndarray]:
    """A blob phantom (image, labels) with two tissue labels."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    labels = np.where(r < 0.5, 2, np.where(r < 0.85, 1, 0)).astype(np.uint8)
    image = np.choose(labels, [0.0, 600.0, 1000.0]).astype(np.float32) + 20 * grid[0]
    return image, labels


def test_render_orthogonal_panels_for_several_volumes(rng):
    image, labels = head()
    vols = [
        DisplayVolume(image, np.eye(4), "t1", labels=labels),
        DisplayVolume(image * 0.5 - 1000, np.eye(4), "ct", window="bone", units="HU"),
    ]
    fig = render_orthogonal(vols)
    titles = [ax.get_title() for ax in image_axes(fig)]
    assert sorted(titles) == sorted(f"{n}: {v}" for n in ("t1", "ct") for v in VIEWS)
    assert len(fig.axes) == 6 + 2  # six panels and one colour bar per volume
    ct_panel = next(ax for ax in image_axes(fig) if ax.get_title() == "ct: axial")
    assert ct_panel.images[0].get_clim() == (-500.0, 1300.0)  # bone preset
    assert "neurological convention" in fig.texts[0].get_text()
    t1_panel = next(ax for ax in image_axes(fig) if ax.get_title() == "t1: axial")
    assert len(t1_panel.collections) >= 2  # label contours drawn
    assert sum(line.get_gid() == "crosshair" for line in t1_panel.lines) == 2


def test_crosshair_sits_on_the_other_views_slices():
    image, _ = head()
    vol = DisplayVolume(image, np.eye(4), "x")
    fig = render_orthogonal([vol], (3.0, 11.0, 5.0), colorbar=False)
    axial = image_axes(fig)[0]
    h_line, v_line = [line for line in axial.lines if line.get_gid() == "crosshair"]
    assert h_line.get_ydata()[0] == image.shape[1] - 1 - 11  # anterior at the top
    assert v_line.get_xdata()[0] == 3
    np.testing.assert_array_equal(axial.images[0].get_array(), oriented_slice(vol.ras, "axial", 5))


def test_display_volume_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="one shape"):
        DisplayVolume(np.zeros((4, 4, 4)), np.eye(4), labels=np.zeros((4, 4, 3)))


def test_synthesis_figure_panels_and_error_map():
    image, labels = head()
    pred = image + 50.0
    fig = synthesis_figure(image, pred, image, oblique_affine(), labels > 0, preset="ct", difference_limit=80)
    panels = image_axes(fig)
    expected = [f"{n}: {v}" for v in VIEWS for n in ("source", "synthesis", "target", "pred - target")]
    assert [ax.get_title() for ax in panels] == expected
    err = panels[3]
    diff = next(im for im in err.images if im.get_gid() == "difference")
    np.testing.assert_allclose(np.asarray(diff.get_array()), 50.0, rtol=1e-5)
    assert diff.get_clim() == (-80.0, 80.0)
    with pytest.raises(ValueError, match="preset"):
        synthesis_figure(image, pred, image, np.eye(4), preset="pet")
    with pytest.raises(ValueError, match="one grid"):
        synthesis_figure(image, pred[:-1], image, np.eye(4))


def test_registration_figure_highlights_exactly_the_folds():
    image, labels = head()
    ddf = np.zeros((3, *image.shape), np.float32)
    ddf[0, 8, 9, 7] = 3.0  # a spike: neighbours along axis 0 fold
    ddf[1, 4:12, 4:14, 3:11] += 0.4
    det = jacobian_determinant(ddf)
    assert (det <= 0).any()
    aff = np.diag([1.0, 1.2, 1.5, 1.0])
    fig = registration_figure(image, np.roll(image, 1, 0), ddf, aff, labels, np.roll(labels, 1, 0), grid_step=3)
    panels = image_axes(fig)
    names = ["fixed", "moving", "warped", "labels before", "labels after", "checkerboard", "blend", "jacobian", "grid"]
    assert [ax.get_title() for ax in panels] == [f"{n}: {v}" for v in VIEWS for n in names]
    det_ras = to_ras(det, aff)[0]
    # the crosshair defaults to the labels' centre; check every view cuts a slice whose highlight == det <= 0
    for ax in (a for a in panels if a.get_title().startswith("jacobian")):
        folds = next(im for im in ax.images if im.get_gid() == "folds")
        heat = next(im for im in ax.images if im.get_gid() == "jacobian")
        shown = ~np.ma.getmaskarray(folds.get_array())
        np.testing.assert_array_equal(shown, np.asarray(heat.get_array()) <= 0)
    # and the axial panel through the spike's slice shows the planted folds
    ijk = np.argwhere(det_ras <= 0)[0]
    fig2 = registration_figure(image, image, ddf, aff, cursor_world=(aff @ np.append(ijk, 1.0))[:3])
    jac = next(a for a in image_axes(fig2) if a.get_title() == "jacobian: axial")
    folds = next(im for im in jac.images if im.get_gid() == "folds")
    expected = oriented_slice(det_ras, "axial", int(ijk[2])) <= 0
    assert expected.any()
    np.testing.assert_array_equal(~np.ma.getmaskarray(folds.get_array()), expected)
    assert len(image_axes(fig2)) == 3 * 7  # no label panels without labels


def test_warp_array_shifts_by_the_field():
    img = np.arange(10.0)[:, None, None] * np.ones((10, 4, 3))
    ddf = np.zeros((3, 10, 4, 3), np.float32)
    ddf[0] = 2.0
    np.testing.assert_allclose(warp_array(img, ddf)[:8], img[2:])
    lab = (img > 4).astype(np.uint8)
    assert warp_array(lab, ddf, nearest=True).dtype == np.uint8


def test_axial_mosaic_and_png_pixels(tmp_path):
    image, labels = head()
    fig = axial_mosaic(
        [DisplayVolume(image, np.eye(4), "a"), DisplayVolume(image, np.eye(4), "b")], n_slices=4, mask=labels > 0
    )
    titles = [ax.get_title() for ax in image_axes(fig)]
    assert len(titles) == 8 and titles[0].startswith("a: axial k=")
    ks = [int(t.split("k=")[1]) for t in titles[:4]]
    nz = np.flatnonzero((labels > 0).any(axis=(0, 1)))
    assert nz[0] < ks[0] and ks[-1] < nz[-1]
    path = save_figure(fig, tmp_path / "m.png")
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels[..., :3].std() > 0.05  # not a blank image
    assert figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    assert mpimg.imread(io.BytesIO(figure_png(fig))).shape[:2] == pixels.shape[:2]


def test_trajectory_figure_rows_per_step_and_fold_highlight():
    from medi2i.viz.figures import trajectory_figure

    image, labels = head()
    spike = np.zeros((3, *image.shape), np.float32)
    spike[0, 8, 9, 7] = 3.0
    steps = [spike * 0.1, spike]
    fig = trajectory_figure(image, image, steps, np.eye(4), labels, labels, cursor_world=(8.0, 9.0, 7.0))
    titles = [ax.get_title() for ax in image_axes(fig)]
    assert titles == [f"step {k}: {n}" for k in (1, 2) for n in ("warped", "jacobian", "grid")]
    jac = [ax for ax in image_axes(fig) if ax.get_title().endswith("jacobian")]
    highlighted = [
        (~np.ma.getmaskarray(next(i for i in ax.images if i.get_gid() == "folds").get_array())).sum() for ax in jac
    ]
    expected = [int((oriented_slice(jacobian_determinant(s), "axial", 7) <= 0).sum()) for s in steps]
    assert highlighted == expected and expected[0] == 0 < expected[1]
    with pytest.raises(ValueError, match="at least one"):
        trajectory_figure(image, image, [], np.eye(4))
    fig = trajectory_figure(image, image, steps, np.eye(4), step_numbers=[4, 8], cursor_world=(8.0, 9.0, 7.0))
    assert [ax.get_title() for ax in image_axes(fig)][::3] == ["step 4: warped", "step 8: warped"]
    with pytest.raises(ValueError, match="step_numbers has 1 entries for 2 fields"):
        trajectory_figure(image, image, steps, np.eye(4), step_numbers=[4])


def test_widget_viewer_sliders_drive_the_render_function():
    pytest.importorskip("ipywidgets")
    from medi2i.viz.viewer import OrthogonalViewer

    image, _ = head()
    ct = DisplayVolume(image - 1000, np.diag([2.0, 2.0, 2.0, 1.0]), "ct", window="brain", units="HU")
    viewer = OrthogonalViewer([DisplayVolume(image, np.eye(4), "t1"), ct], convention="radiological")
    assert [s.description for s in viewer.sliders] == ["R (mm)", "A (mm)", "S (mm)"]
    viewer.sliders[2].value = 3.0
    viewer.preset.value = "bone"
    fig = viewer.figure()
    assert "radiological" in fig.texts[0].get_text() and ", 3.0) mm" in fig.texts[0].get_text()
    ct_axial = next(ax for ax in image_axes(fig) if ax.get_title() == "ct: axial")
    assert ct_axial.images[0].get_clim() == (-500.0, 1300.0)
    np.testing.assert_array_equal(ct_axial.images[0].get_array(), oriented_slice(ct.ras, "axial", 2, "radiological"))


def test_niivue_view_is_optional():
    import importlib.util

    from medi2i.viz.viewer import niivue_view

    if importlib.util.find_spec("ipyniivue") is not None:
        pytest.skip("ipyniivue is installed; the fallback message cannot be checked")
    with pytest.raises(ImportError, match="ipyniivue"):
        niivue_view(["a.nii.gz"])


def test_2d_slices_are_shown_in_their_own_plane_only():
    image, labels = head((16, 18, 1))
    aff = np.diag([1.0, 1.0, 3.0, 1.0])
    fig = synthesis_figure(image[..., 0], image[..., 0] + 1, image[..., 0], aff, labels[..., 0] > 0, preset="mr")
    assert [ax.get_title() for ax in image_axes(fig)] == [
        "source: axial",
        "synthesis: axial",
        "target: axial",
        "pred - target: axial",
    ]
    ddf = np.zeros((2, 16, 18), np.float32)
    ddf[0, 8, 9] = 3.0
    fig = registration_figure(image[..., 0], image[..., 0], ddf, aff)
    jac = next(ax for ax in image_axes(fig) if ax.get_title() == "jacobian: axial")
    folds = next(i for i in jac.images if i.get_gid() == "folds")
    det = jacobian_determinant(ddf)
    np.testing.assert_array_equal(
        ~np.ma.getmaskarray(folds.get_array()), oriented_slice(det[..., None], "axial", 0) <= 0
    )
    # a coronal 2D slice (singleton A-P axis) is shown coronally
    coronal = DisplayVolume(np.zeros((5, 1, 7)), np.eye(4), "c")
    assert [ax.get_title() for ax in image_axes(render_orthogonal([coronal]))] == ["c: coronal"]
