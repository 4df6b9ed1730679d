"""World-consistent display: a bright block in the anterior-left-superior octant must show up where it belongs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from medi2i.viz.orientation import (
    oriented_slice,
    oriented_vector_slice,
    to_ras,
    to_ras_vector,
    view_labels,
    view_layout,
    world_to_index,
)
from medi2i.viz.viewer import DisplayVolume, image_axes, render_orthogonal
from tests.conftest import oblique_affine

SHAPE = (10, 12, 14)
BASE = np.array([[2.0, 0, 0, -9], [0, 3.0, 0, -16], [0, 0, 4.0, -26], [0, 0, 0, 1]])


def phantom() -> np.ndarray:
    """RAS-ordered array: block at low x (Left), high y (Anterior), high z (Superior)."""
    a = np.zeros(SHAPE, np.float32)
    a[1:4, 8:11, 9:13] = 100.0
    a[5, 6, 7] = 1.0  # a faint marker so the array is not symmetric elsewhere
    return a


def variant(array: np.ndarray, affine: np.ndarray, perm: tuple[int, ...], flips: tuple[int, ...]):
    """Store ``array`` transposed by ``perm`` then flipped along ``flips``, with the affine derived by hand.

    New index n maps to old index o = M n + c: o[perm[d]] = n[d] (or size_d - 1 - n[d] when d is flipped).
    """
    new = np.transpose(array, perm)
    sizes = new.shape
    for d in flips:
        new = np.flip(new, d)
    m = np.zeros((4, 4))
    m[3, 3] = 1
    for d in range(3):
        flipped = d in flips
        m[perm[d], d] = -1.0 if flipped else 1.0
        m[perm[d], 3] = sizes[d] - 1 if flipped else 0
    return np.ascontiguousarray(new), affine @ m


VARIANTS = {
    "RAS": ((0, 1, 2), ()),
    "LPS": ((0, 1, 2), (0, 1)),
    "LAI": ((0, 1, 2), (0, 2)),
    "permuted SRA": ((2, 0, 1), ()),
    "permuted+flipped": ((1, 2, 0), (0, 2)),
}

# expected quadrant of the block on screen: (top?, left?) per view and convention
EXPECTED = {
    ("axial", "neurological"): (True, True),  # anterior up, patient left on the left
    ("axial", "radiological"): (True, False),
    ("coronal", "neurological"): (True, True),  # superior up
    ("coronal", "radiological"): (True, False),
    ("sagittal", "neurological"): (True, True),  # superior up, anterior on the left
    ("sagittal", "radiological"): (True, True),
}


def centroid(img: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(img > 50)
    assert rows.size, "block not visible in this slice"
    return rows.mean(), cols.mean()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_reorientation_recovers_the_ras_array(name):
    arr, aff = variant(phantom(), BASE, *VARIANTS[name])
    ras, ras_aff = to_ras(arr, aff)
    np.testing.assert_array_equal(ras, phantom())
    np.testing.assert_allclose(ras_aff, BASE, atol=1e-9)


@pytest.mark.parametrize("convention", ["neurological", "radiological"])
@pytest.mark.parametrize("name", [*VARIANTS, "oblique"])
def test_block_in_the_right_quadrant_of_every_rendered_view(name, convention):
    if name == "oblique":
        arr, aff = variant(phantom(), oblique_affine((2.0, 3.0, 4.0), angle_deg=15.0), (1, 0, 2), (1,))
    else:
        arr, aff = variant(phantom(), BASE, *VARIANTS[name])
    vol = DisplayVolume(arr, aff, title="ph", window=(None))
    # cursor at the block's centre, given in world mm
    block_world = (vol.ras_affine @ np.array([2.0, 9.0, 10.5, 1.0]))[:3]
    fig = render_orthogonal([vol], block_world, convention=convention, colorbar=False)
    panels = image_axes(fig)
    assert [ax.get_title() for ax in panels] == ["ph: axial", "ph: coronal", "ph: sagittal"]
    for ax in panels:
        view = ax.get_title().split(": ")[1]
        img = np.asarray(ax.images[0].get_array())
        r, c = centroid(img)
        top, left = EXPECTED[(view, convention)]
        assert (r < img.shape[0] / 2) == top, (name, view, convention, r, img.shape)
        assert (c < img.shape[1] / 2) == left, (name, view, convention, c, img.shape)
        letters = {t.get_text() for t in ax.texts}
        assert letters == set(view_labels(view, convention).values())


def test_view_labels_state_the_convention():
    assert view_labels("axial", "neurological") == {"top": "A", "bottom": "P", "left": "L", "right": "R"}
    assert view_labels("axial", "radiological") == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    assert view_labels("sagittal", "radiological") == {"top": "S", "bottom": "I", "left": "A", "right": "P"}


def test_oriented_slice_shapes_and_bounds():
    ras = np.zeros(SHAPE)
    assert oriented_slice(ras, "axial", 0).shape == (12, 10)
    assert oriented_slice(ras, "coronal", 0).shape == (14, 10)
    assert oriented_slice(ras, "sagittal", 0).shape == (14, 12)
    with pytest.raises(ValueError, match="outside"):
        oriented_slice(ras, "axial", 14)
    with pytest.raises(ValueError, match="view"):
        oriented_slice(ras, "transverse", 0)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_vector_field_reorients_with_the_image(name):
    # a field pointing towards patient Right by 1.5 voxels, expressed in each storage's voxel axes
    perm, flips = VARIANTS[name]
    _, aff = variant(phantom(), BASE, perm, flips)
    ddf = np.zeros((3, *np.transpose(phantom(), perm).shape), np.float32)
    axis_of_x = perm.index(0)  # storage axis that runs along RAS x
    ddf[axis_of_x] = -1.5 if axis_of_x in flips else 1.5
    ras_ddf, _ = to_ras_vector(ddf, aff)
    np.testing.assert_allclose(ras_ddf[0], 1.5)
    np.testing.assert_allclose(ras_ddf[1:], 0.0)
    # on screen: towards R = to the right in neurological, to the left in radiological; no vertical part
    d_row, d_col = oriented_vector_slice(ras_ddf, "axial", 3, "neurological")
    np.testing.assert_allclose(d_col, 1.5)
    np.testing.assert_allclose(d_row, 0.0)
    assert np.allclose(oriented_vector_slice(ras_ddf, "coronal", 3, "radiological")[1], -1.5)


def test_anterior_displacement_points_up_in_axial_and_left_in_sagittal():
    ddf = np.zeros((3, *SHAPE), np.float32)
    ddf[1] = 2.0  # towards Anterior
    d_row, _ = oriented_vector_slice(ddf, "axial", 0)
    np.testing.assert_allclose(d_row, -2.0)  # up the screen
    _, d_col = oriented_vector_slice(ddf, "sagittal", 0)
    np.testing.assert_allclose(d_col, -2.0)  # nose on the left


def test_world_cursor_links_volumes_on_different_grids():
    fine, fine_aff = phantom(), BASE
    coarse_aff = BASE.copy()
    coarse_aff[:3, :3] *= 2
    coarse = phantom()[::2, ::2, ::2]
    world = (fine_aff @ np.array([2.0, 10.0, 10.0, 1.0]))[:3]
    assert world_to_index(fine_aff, world, fine.shape).tolist() == [2, 10, 10]
    assert world_to_index(coarse_aff, world, coarse.shape).tolist() == [1, 5, 5]
    assert view_layout("coronal").slice_axis == 1
