"""World-consistent display: reorient volumes to RAS array order and cut axial/coronal/sagittal views.

Arrays are stored in any voxel order; the affine says where each axis points. For display, a
volume is first permuted and flipped (no resampling) so that array axes 0, 1, 2 run towards
patient Right, Anterior and Superior (the nearest world axis of each voxel axis, as
``nibabel.orientations.io_orientation``; an oblique volume is shown in its nearest RAS order,
not resliced). A view then maps two RAS axes to screen rows (top to bottom) and columns (left
to right):

=========  ==========================  ===========================================================
view       rows (top -> bottom)        columns (left -> right)
=========  ==========================  ===========================================================
axial      Anterior -> Posterior       neurological: patient Left -> Right; radiological: Right -> Left
coronal    Superior -> Inferior        neurological: patient Left -> Right; radiological: Right -> Left
sagittal   Superior -> Inferior        Anterior -> Posterior (nose on the left, both conventions)
=========  ==========================  ===========================================================

**Neurological** convention ("left is left", the default here, as FSL/nilearn show it): the
patient's left is on the screen's left, as if looking down from above / from behind.
**Radiological** convention (how scanners and PACS show images): the patient's right is on the
screen's left, as if facing the patient. Every figure states the convention and prints the
orientation letters at the edges of each panel.

Example:
    >>> aff = np.diag([-2.0, 2.0, 2.0, 1.0])  # an LAS volume
    >>> ras, ras_aff = to_ras(np.arange(24.0).reshape(2, 3, 4), aff)
    >>> ras[:, 0, 0].tolist(), float(ras_aff[0, 0])
    ([12.0, 0.0], 2.0)
    >>> oriented_slice(ras, "axial", 0, "neurological").shape  # rows = A..P (3), columns = L..R (2)
    (3, 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import nibabel as nib
import numpy as np

from medi2i.options import choose

__all__ = [
    "Convention",
    "View",
    "ViewLayout",
    "index_to_world",
    "oriented_slice",
    "oriented_vector_slice",
    "to_ras",
    "to_ras_vector",
    "view_aspect",
    "view_labels",
    "view_layout",
    "world_to_index",
]


class View(str, Enum):
    """The three orthogonal views."""

    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


class Convention(str, Enum):
    """Left/right display convention (module docstring)."""

    NEUROLOGICAL = "neurological"
    RADIOLOGICAL = "radiological"


# RAS axis index -> (letter at the low end, letter at the high end)
_AXIS_LETTERS = {0: ("L", "R"), 1: ("P", "A"), 2: ("I", "S")}


@dataclass(frozen=True)
class ViewLayout:
    """Which RAS axes a view puts on screen rows/columns and whether they run from high to low.

    Attributes:
        slice_axis: the RAS axis the view cuts across (2 axial, 1 coronal, 0 sagittal).
        row_axis: RAS axis along screen rows (top to bottom).
        row_flip: rows run from the high end of ``row_axis`` (e.g. Anterior/Superior at the top).
        col_axis: RAS axis along screen columns (left to right).
        col_flip: columns run from the high end of ``col_axis``.
    """

    slice_axis: int
    row_axis: int
    row_flip: bool
    col_axis: int
    col_flip: bool


def view_layout(view: View | str, convention: Convention | str = Convention.NEUROLOGICAL) -> ViewLayout:
    """Screen layout of ``view`` under ``convention`` (table in the module docstring).

    Example:
        >>> view_layout("axial", "radiological")
        ViewLayout(slice_axis=2, row_axis=1, row_flip=True, col_axis=0, col_flip=True)
    """
    view = choose(view, View, field="view")
    radiological = choose(convention, Convention, field="convention") is Convention.RADIOLOGICAL
    if view is View.AXIAL:
        return ViewLayout(2, 1, True, 0, radiological)
    if view is View.CORONAL:
        return ViewLayout(1, 2, True, 0, radiological)
    return ViewLayout(0, 2, True, 1, True)


def view_labels(view: View | str, convention: Convention | str = Convention.NEUROLOGICAL) -> dict[str, str]:
    """Orientation letters at the panel edges: keys ``top``, ``bottom``, ``left``, ``right``.

    Example:
        >>> view_labels("coronal", "radiological")
        {'top': 'S', 'bottom': 'I', 'left': 'R', 'right': 'L'}
    """
    lay = view_layout(view, convention)
    row_lo, row_hi = _AXIS_LETTERS[lay.row_axis]
    col_lo, col_hi = _AXIS_LETTERS[lay.col_axis]
    top, bottom = (row_hi, row_lo) if lay.row_flip else (row_lo, row_hi)
    left, right = (col_hi, col_lo) if lay.col_flip else (col_lo, col_hi)
    return {"top": top, "bottom": bottom, "left": left, "right": right}


def _as_3d(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Promote a 2D slice ``(X, Y)`` and its 3x3/4x4 affine to ``(X, Y, 1)`` with a 4x4 affine."""
    array = np.asarray(array)
    affine = np.asarray(affine, dtype=np.float64)
    if array.ndim == 2:
        array = array[..., None]
        if affine.shape == (3, 3):
            full = np.eye(4)
            full[:2, :2], full[:2, 3] = affine[:2, :2], affine[:2, 2]
            affine = full
    if array.ndim != 3:
        raise ValueError(f"expected a 2D or 3D array, got shape {array.shape}")
    if affine.shape != (4, 4):
        raise ValueError(f"expected a (4, 4) affine, got {affine.shape}")
    return array, affine


def _ornt(affine: np.ndarray) -> np.ndarray:
    # io_orientation needs a full-rank linear part; a 2D file's third column may be degenerate
    return nib.orientations.io_orientation(affine)


def to_ras(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permute/flip a volume so its axes run towards R, A, S; returns ``(array, affine)`` of the view.

    Args:
        array: ``(X, Y, Z)`` or a 2D slice ``(X, Y)`` (treated as ``(X, Y, 1)``), on-disk order.
        affine: ``(4, 4)`` voxel -> RAS+ mm.

    Returns:
        The reordered ``(I, J, K)`` array (a view where possible) and its voxel -> world affine, which
        places every voxel where the original affine did.

    Example:
        >>> aff = np.array([[0.0, 0, 2, 0], [0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])  # a permuted, flipped affine
        >>> ras, ras_aff = to_ras(np.zeros((4, 5, 6)), aff)
        >>> ras.shape, np.diag(ras_aff)[:3].tolist()
        ((6, 5, 4), [2.0, 1.0, 1.0])
    """
    array, affine = _as_3d(array, affine)
    ornt = _ornt(affine)
    out = nib.orientations.apply_orientation(array, ornt)
    ras_affine = affine @ nib.orientations.inv_ornt_aff(ornt, array.shape)
    return out, ras_affine


def to_ras_vector(ddf: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorient a channel-first voxel-unit displacement ``(n, *spatial)`` like :func:`to_ras`.

    The grid is permuted/flipped as the image, and the components are permuted and negated the same
    way, so component ``k`` of the result is the displacement in voxels along RAS axis ``k``.

    Returns:
        ``(ddf_ras (3, I, J, K), affine_ras)``; a 2D field gains a zero third component.
    """
    ddf = np.asarray(ddf, dtype=np.float32)
    if ddf.ndim == 3:
        ddf = np.concatenate([ddf, np.zeros_like(ddf[:1])])[..., None]
    if ddf.ndim != 4 or ddf.shape[0] != 3:
        raise ValueError(f"expected ddf (2, X, Y) or (3, X, Y, Z), got shape {ddf.shape}")
    _, affine = _as_3d(ddf[0], affine)
    ornt = _ornt(affine)
    comps: list[np.ndarray] = [np.empty(0)] * 3
    for axis, (target, sign) in enumerate(ornt.astype(int)):
        moved = nib.orientations.apply_orientation(ddf[axis], ornt)
        comps[target] = moved * sign
    ras_affine = affine @ nib.orientations.inv_ornt_aff(ornt, ddf.shape[1:])
    return np.stack(comps), ras_affine


def _plane(volume_ras: np.ndarray, layout: ViewLayout, index: int) -> np.ndarray:
    size = volume_ras.shape[layout.slice_axis]
    if not 0 <= index < size:
        raise ValueError(f"slice index {index} outside [0, {size}) along RAS axis {layout.slice_axis}")
    plane = np.take(volume_ras, index, axis=layout.slice_axis)
    # the remaining two axes keep their RAS order; put the row axis first
    remaining = [a for a in range(3) if a != layout.slice_axis]
    if remaining.index(layout.row_axis) == 1:
        plane = plane.T
    if layout.row_flip:
        plane = plane[::-1, :]
    if layout.col_flip:
        plane = plane[:, ::-1]
    return plane


def oriented_slice(
    volume_ras: np.ndarray,
    view: View | str,
    index: int,
    convention: Convention | str = Convention.NEUROLOGICAL,
) -> np.ndarray:
    """The 2D screen image of ``view`` at RAS voxel ``index`` (rows top to bottom, columns left to right).

    Args:
        volume_ras: ``(I, J, K)`` array from :func:`to_ras`.
        view: ``axial``, ``coronal`` or ``sagittal``.
        index: voxel index along the view's slice axis (K axial, J coronal, I sagittal).
        convention: ``neurological`` or ``radiological``.

    Returns:
        ``(rows, cols)`` array; show it with ``imshow(origin="upper")`` and :func:`view_aspect`.
    """
    return _plane(np.asarray(volume_ras), view_layout(view, convention), int(index))


def oriented_vector_slice(
    ddf_ras: np.ndarray,
    view: View | str,
    index: int,
    convention: Convention | str = Convention.NEUROLOGICAL,
) -> tuple[np.ndarray, np.ndarray]:
    """In-plane displacement of a view in screen units: ``(d_row, d_col)`` voxels, each ``(rows, cols)``.

    ``d_row > 0`` points down the screen, ``d_col > 0`` to the right, whatever the view and convention.
    """
    lay = view_layout(view, convention)
    d_row = _plane(ddf_ras[lay.row_axis], lay, int(index)) * (-1.0 if lay.row_flip else 1.0)
    d_col = _plane(ddf_ras[lay.col_axis], lay, int(index)) * (-1.0 if lay.col_flip else 1.0)
    return d_row, d_col


def view_aspect(affine_ras: np.ndarray, view: View | str) -> float:
    """``imshow`` aspect (row spacing / column spacing) of a view, so anisotropic voxels look square in mm."""
    lay = view_layout(view)
    spacing = np.linalg.norm(np.asarray(affine_ras, dtype=np.float64)[:3, :3], axis=0)
    return float(spacing[lay.row_axis] / spacing[lay.col_axis])


def index_to_world(affine: np.ndarray, index: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """World (RAS mm) position of voxel ``index`` ``(3,)``."""
    return (np.asarray(affine, dtype=np.float64) @ np.append(np.asarray(index, dtype=np.float64), 1.0))[:3]


def world_to_index(affine: np.ndarray, world: np.ndarray | tuple[float, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Nearest voxel ``(3,)`` int of world point ``world`` under ``affine``, clipped into ``shape``."""
    ijk = (np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ np.append(np.asarray(world, float), 1.0))[:3]
    return np.clip(np.rint(ijk), 0, np.asarray(shape[:3]) - 1).astype(int)
