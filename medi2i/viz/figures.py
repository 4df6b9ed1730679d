"""Static QA figures (matplotlib ``Figure`` objects, saved as PNG) for synthesis and registration cases.

All inputs are arrays on one voxel grid plus that grid's affine (a :class:`medi2i.io.Volume` gives
both); figures are world-consistent (:mod:`medi2i.viz.orientation`) and state their L/R convention.

* :func:`synthesis_figure`: source, synthesis, target and ``pred - target`` in three views.
* :func:`registration_figure`: fixed, moving, warped, labels before/after, checkerboard, blend,
  Jacobian determinant with folds, deformation grid, in three views.
* :func:`trajectory_figure`: warped image, Jacobian and grid for each field of a sequence of steps.
* :func:`axial_mosaic`: evenly spaced axial key slices of several volumes.
* :func:`save_figure`: write a PNG atomically.

Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> x = np.random.default_rng(0).random((10, 12, 8)).astype(np.float32) * 100
    >>> fig = synthesis_figure(x, x + 1, x, np.eye(4), preset="mr")
    >>> len(image_axes(fig)), image_axes(fig)[3].get_title()
    (12, 'pred - target: axial')
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from medi2i.io import atomic_path
from medi2i.viz.orientation import (
    Convention,
    View,
    oriented_slice,
    oriented_vector_slice,
    to_ras,
    to_ras_vector,
    view_aspect,
    view_layout,
)
from medi2i.viz.overlays import (
    blend_rgb,
    checkerboard,
    draw_deformation_grid,
    draw_difference,
    draw_jacobian,
    draw_label_contours,
)
from medi2i.viz.viewer import DisplayVolume, Point, cursor_indices, image_axes, show_slice, views_for
from medi2i.viz.windows import Window, apply_window, percentile_window

__all__ = [
    "axial_mosaic",
    "figure_png",
    "foreground_center",
    "image_axes",
    "registration_figure",
    "save_figure",
    "synthesis_figure",
    "trajectory_figure",
    "warp_array",
]


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """Encode a figure as PNG bytes."""
    buffer = io.BytesIO()
    # no bbox_inches="tight": it renders the figure twice, and the layouts here already fit the canvas
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | Path, dpi: int = 80) -> Path:
    """Write ``fig`` as a PNG file atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(figure_png(fig, dpi))
    return path


def foreground_center(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World position (mm) of the centre of mass of a mask (the grid centre if it is empty)."""
    mask = np.asarray(mask) > 0
    coords = np.argwhere(mask).mean(axis=0) if mask.any() else (np.asarray(mask.shape) - 1) / 2
    if coords.size == 2:
        coords = np.append(coords, 0.0)
    affine = np.asarray(affine, float)
    if affine.shape == (3, 3):
        full = np.eye(4)
        full[:2, :2], full[:2, 3] = affine[:2, :2], affine[:2, 2]
        affine = full
    return (affine @ np.append(coords, 1.0))[:3]


def warp_array(moving: np.ndarray, ddf: np.ndarray, *, nearest: bool = False) -> np.ndarray:
    """Warp ``moving`` ``(*spatial)`` by ``ddf`` ``(n, *spatial)`` (voxel units, pull) with ``medi2i.spatial.warp``."""
    from medi2i.spatial import warp

    image = torch.as_tensor(np.ascontiguousarray(moving))[None, None]
    if not nearest:
        image = image.float()
    field = torch.as_tensor(np.ascontiguousarray(ddf), dtype=torch.float32)[None]
    return warp(image, field, mode="nearest" if nearest else "bilinear")[0, 0].numpy()


def _layout(rows: int, cols: int, panel_size: float) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(panel_size * cols, panel_size * rows + 0.9))
    margins = {"left": 0.01, "right": 0.99, "top": 1 - 0.8 / (panel_size * rows + 0.9), "bottom": 0.08}
    return fig, fig.subplots(rows, cols, squeeze=False, gridspec_kw={**margins, "wspace": 0.08, "hspace": 0.22})


def _title(ax, name: str, view: View) -> None:
    ax.set_title(f"{name}: {view.value}", fontsize=9)


def synthesis_figure(
    source: np.ndarray,
    pred: np.ndarray,
    target: np.ndarray,
    affine: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    preset: str = "ct",
    ct_window_preset: str = "soft_tissue",
    difference_limit: float | None = None,
    cursor_world: Point | None = None,
    convention: Convention | str = Convention.NEUROLOGICAL,
    panel_size: float = 2.6,
) -> Figure:
    """Source, synthesis, target and the signed error ``pred - target`` in the axial, coronal and sagittal views.

    Args:
        source: input image ``(X, Y[, Z])``.
        pred: synthesized image, same grid.
        target: reference image, same grid.
        affine: ``(4, 4)`` voxel -> RAS+ mm of the grid.
        mask: optional evaluation mask (outlined on the error panels; the cursor defaults to its centre).
        preset: ``"ct"`` (pred/target shown in the CT window ``ct_window_preset``, error in HU) or ``"mr"``
            (target's percentile window shared by pred and target).
        ct_window_preset: CT window for ``preset="ct"`` (see :func:`medi2i.viz.windows.ct_window`).
        difference_limit: colour range of the error panels; default the 99th percentile of ``|error|``
            inside the mask.
        cursor_world: crosshair point in RAS mm.
        convention: L/R display convention.
        panel_size: inches per panel.

    Returns:
        ``Figure`` with 12 image panels titled ``source|synthesis|target|pred - target: <view>`` (4 for a
        2D slice, which is shown in its own plane only).
    """
    preset = str(preset)
    if preset not in ("ct", "mr"):
        raise ValueError(f"preset must be 'ct' or 'mr', got {preset!r}")
    shapes = {np.shape(source), np.shape(pred), np.shape(target)} | ({np.shape(mask)} if mask is not None else set())
    if len(shapes) != 1:
        raise ValueError(f"source, pred, target (and mask) must share one grid, got shapes {sorted(shapes)}")
    units = "HU" if preset == "ct" else ""
    target = np.asarray(target, np.float32)
    inside = np.asarray(mask) > 0 if mask is not None else None
    window: Window | str = ct_window_preset if preset == "ct" else percentile_window(target, inside)
    diff = np.asarray(pred, np.float32) - target
    if difference_limit is None:
        values = np.abs(diff[inside] if inside is not None else diff)
        difference_limit = float(np.percentile(values, 99)) if values.size else 1.0
    panels = [
        DisplayVolume(source, affine, "source", None),
        DisplayVolume(pred, affine, "synthesis", window, units=units),
        DisplayVolume(target, affine, "target", window, units=units),
    ]
    diff_ras = to_ras(diff, affine)[0]
    mask_ras = to_ras(inside.astype(np.uint8), affine)[0] if inside is not None else None
    if cursor_world is None and inside is not None:
        cursor_world = foreground_center(inside, affine)
    views = views_for(panels[0].ras.shape)
    fig, axes = _layout(len(views), 4, panel_size)
    for r, view in enumerate(views):
        lay = view_layout(view, convention)
        ijk = cursor_indices(panels[0], cursor_world)
        index = int(ijk[lay.slice_axis])
        for c, vol in enumerate(panels):
            img = show_slice(axes[r, c], vol, view, index, convention)
            _title(axes[r, c], vol.title, view)
        ax = axes[r, 3]
        show_slice(ax, DisplayVolume(np.zeros_like(target), affine, window=Window(0, 1)), view, index, convention)
        err = draw_difference(ax, oriented_slice(diff_ras, view, index, convention), difference_limit)
        if mask_ras is not None:
            draw_label_contours(ax, oriented_slice(mask_ras, view, index, convention), linestyle="--")
        ax.set_aspect(view_aspect(panels[0].ras_affine, view))  # imshow of the overlay reset it
        _title(ax, "pred - target", view)
    fig.colorbar(img, ax=axes[:, 1:3].ravel().tolist(), orientation="horizontal", fraction=0.03, pad=0.02).set_label(
        f"synthesis / target {units}", fontsize=8
    )
    fig.colorbar(err, ax=axes[:, 3].tolist(), orientation="horizontal", fraction=0.03, pad=0.02).set_label(
        f"pred - target {units}".strip(), fontsize=8
    )
    fig.suptitle(f"synthesis QA ({preset} preset); {Convention(convention).value} convention", fontsize=10)
    return fig


def registration_figure(
    fixed: np.ndarray,
    moving: np.ndarray,
    ddf: np.ndarray,
    affine: np.ndarray,
    fixed_label: np.ndarray | None = None,
    moving_label: np.ndarray | None = None,
    *,
    grid_step: int = 4,
    jacobian_limit: float = 1.0,
    cursor_world: Point | None = None,
    convention: Convention | str = Convention.NEUROLOGICAL,
    panel_size: float = 2.4,
) -> Figure:
    """Fixed, moving, warped, label overlap, checkerboard, blend, Jacobian (folds in green) and grid, three views.

    Args:
        fixed: fixed image ``(X, Y[, Z])``.
        moving: moving image on the same grid.
        ddf: ``(n, X, Y[, Z])`` displacement, voxel units, pull convention (``warped(x) = moving(x + u(x))``).
        affine: ``(4, 4)`` voxel -> RAS+ mm of the fixed grid.
        fixed_label: optional fixed label map (solid contours in the label panels).
        moving_label: optional moving label map (dashed contours: unwarped "before", warped "after").
        grid_step: deformation-grid spacing in pixels.
        jacobian_limit: Jacobian colour range ``[1 - limit, 1 + limit]``.
        cursor_world: crosshair point in RAS mm (default: centre of the fixed labels, else the grid centre).
        convention: L/R display convention.
        panel_size: inches per panel.

    Returns:
        ``Figure`` whose image panels are titled ``<panel>: <view>`` with panels ``fixed, moving, warped,
        [labels before, labels after,] checkerboard, blend, jacobian, grid``.
    """
    from medi2i.metrics import jacobian_determinant

    fixed, moving, ddf = np.asarray(fixed, np.float32), np.asarray(moving, np.float32), np.asarray(ddf, np.float32)
    if fixed.shape != moving.shape or ddf.shape[1:] != fixed.shape or ddf.shape[0] != fixed.ndim:
        raise ValueError(
            f"expected fixed, moving (*spatial) and ddf (ndim, *spatial) on one grid, got {fixed.shape}, "
            f"{moving.shape}, {ddf.shape}"
        )
    with_labels = fixed_label is not None and moving_label is not None
    warped = warp_array(moving, ddf)
    det = jacobian_determinant(ddf)
    window = percentile_window(fixed)
    norm = [apply_window(a, window) for a in (fixed, warped)]
    ddf_ras = to_ras_vector(ddf, affine)[0]
    vols = {
        "fixed": DisplayVolume(fixed, affine, "fixed", window),
        "moving": DisplayVolume(moving, affine, "moving", window),
        "warped": DisplayVolume(warped, affine, "warped", window),
    }
    fixed_norm_ras, warped_norm_ras = (to_ras(a, affine)[0] for a in norm)
    det_ras = to_ras(det, affine)[0]
    if with_labels:
        warped_label = warp_array(np.asarray(moving_label), ddf, nearest=True)
        pairs = (("f", fixed_label), ("m", moving_label), ("w", warped_label))
        lab = {n: to_ras(np.asarray(a), affine)[0] for n, a in pairs}
        if cursor_world is None:
            cursor_world = foreground_center(np.asarray(fixed_label) > 0, affine)
    names = ["fixed", "moving", "warped"] + (["labels before", "labels after"] if with_labels else [])
    names += ["checkerboard", "blend", "jacobian", "grid"]
    views = views_for(vols["fixed"].ras.shape)
    fig, axes = _layout(len(views), len(names), panel_size)
    ref = vols["fixed"]
    ijk = cursor_indices(ref, cursor_world)
    heat = None
    for r, view in enumerate(views):
        index = int(ijk[view_layout(view, convention).slice_axis])

        def cut(a, view=view, index=index):
            return oriented_slice(a, view, index, convention)

        for c, name in enumerate(names):
            ax = axes[r, c]
            aspect = view_aspect(ref.ras_affine, view)
            if name in vols:
                show_slice(ax, vols[name], view, index, convention)
            elif name in ("labels before", "labels after"):
                base = vols["moving"] if name == "labels before" else vols["warped"]
                show_slice(ax, base, view, index, convention)
                draw_label_contours(ax, cut(lab["f"]))
                draw_label_contours(ax, cut(lab["m"] if name == "labels before" else lab["w"]), linestyle="--")
            elif name == "checkerboard":
                show_slice(ax, ref, view, index, convention)
                ax.images[-1].set_data(checkerboard(cut(fixed_norm_ras), cut(warped_norm_ras)))
                ax.images[-1].set_clim(0, 1)
            elif name == "blend":
                show_slice(ax, ref, view, index, convention)
                ax.images[-1].set_data(blend_rgb(cut(fixed_norm_ras), cut(warped_norm_ras)))
            elif name == "jacobian":
                show_slice(ax, ref, view, index, convention)
                heat, _ = draw_jacobian(ax, cut(det_ras), limit=jacobian_limit)
            else:
                show_slice(ax, vols["fixed"], view, index, convention)
                draw_deformation_grid(ax, *oriented_vector_slice(ddf_ras, view, index, convention), step=grid_step)
            # overlays drawn with imshow reset the aspect; keep the mm-true one of the base slice
            ax.set_aspect(aspect)
            _title(ax, name, view)
    if heat is not None:
        fig.colorbar(
            heat, ax=axes[:, names.index("jacobian")].tolist(), orientation="horizontal", fraction=0.03, pad=0.02
        ).set_label("det J (folds <= 0 green)", fontsize=8)
    folds = float((det <= 0).mean() * 100)
    fig.suptitle(
        f"registration QA: folding {folds:.3f}% of voxels; labels solid = fixed, dashed = moving/warped; "
        f"blend magenta = fixed, green = warped; {Convention(convention).value} convention",
        fontsize=10,
    )
    return fig


def axial_mosaic(
    volumes: Sequence[DisplayVolume],
    *,
    n_slices: int = 5,
    mask: np.ndarray | None = None,
    convention: Convention | str = Convention.NEUROLOGICAL,
    panel_size: float = 2.0,
) -> Figure:
    """Key axial slices: ``n_slices`` evenly spaced through the mask's extent (whole volume if no mask).

    Args:
        volumes: :class:`~medi2i.viz.viewer.DisplayVolume` objects on one grid (one row each).
        n_slices: columns.
        mask: optional ``(X, Y, Z)`` mask on the volumes' on-disk grid that bounds the slices.
        convention: L/R display convention.
        panel_size: inches per panel.

    Returns:
        ``Figure`` with ``len(volumes) * n_slices`` panels titled ``"<title>: axial k=<index>"``.
    """
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}")
    if not volumes:
        raise ValueError("axial_mosaic needs at least one volume")
    depth = volumes[0].ras.shape[2]
    lo, hi = 0, depth - 1
    if mask is not None:
        mask_ras = to_ras(np.asarray(mask) > 0, volumes[0].affine)[0]
        ks = np.flatnonzero(mask_ras.any(axis=(0, 1)))
        if ks.size:
            lo, hi = int(ks[0]), int(ks[-1])
    ks = np.unique(np.linspace(lo, hi, n_slices + 2)[1:-1].round().astype(int)) if hi > lo else np.array([lo])
    fig, axes = _layout(len(volumes), len(ks), panel_size)
    for r, vol in enumerate(volumes):
        for c, k in enumerate(ks):
            show_slice(axes[r, c], vol, View.AXIAL, int(k), convention, letters=(c == 0))
            axes[r, c].set_title(f"{vol.title}: axial k={int(k)}", fontsize=8)
    fig.suptitle(f"key axial slices; {Convention(convention).value} convention", fontsize=9)
    return fig


def trajectory_figure(
    fixed: np.ndarray,
    moving: np.ndarray,
    ddfs: Sequence[np.ndarray],
    affine: np.ndarray,
    fixed_label: np.ndarray | None = None,
    moving_label: np.ndarray | None = None,
    *,
    view: View | str = View.AXIAL,
    grid_step: int = 6,
    step_numbers: Sequence[int] | None = None,
    cursor_world: Point | None = None,
    convention: Convention | str = Convention.NEUROLOGICAL,
    panel_size: float = 2.4,
) -> Figure:
    """One row per field of a sequence (e.g. the accumulated DDF after each step of a multi-step registration).

    Columns: warped moving (with fixed solid / warped dashed label contours when labels are given), the
    Jacobian determinant with folds and the deformation grid, in one view; the row title gives the step's
    folding percentage.

    Args:
        fixed: fixed image ``(X, Y[, Z])``.
        moving: moving image, same grid.
        ddfs: fields ``(n, X, Y[, Z])`` in step order (voxel units, pull).
        affine: ``(4, 4)`` voxel -> RAS+ mm.
        fixed_label: optional fixed label map.
        moving_label: optional moving label map.
        view: the view shown.
        grid_step: deformation-grid spacing in pixels.
        step_numbers: the step each field belongs to, for the titles (default ``1..len(ddfs)``), e.g.
            ``[1, 4, 8]`` when only some steps of a trajectory are shown.
        cursor_world: slice position in RAS mm (default: fixed labels' centre, else the grid centre).
        convention: L/R display convention.
        panel_size: inches per panel.

    Returns:
        ``Figure`` with ``3 * len(ddfs)`` panels titled ``"step <k>: warped|jacobian|grid"``.
    """
    from medi2i.metrics import jacobian_determinant

    if not ddfs:
        raise ValueError("trajectory_figure needs at least one field")
    numbers = list(range(1, len(ddfs) + 1)) if step_numbers is None else [int(k) for k in step_numbers]
    if len(numbers) != len(ddfs):
        raise ValueError(f"step_numbers has {len(numbers)} entries for {len(ddfs)} fields")
    view = View(view)
    with_labels = fixed_label is not None and moving_label is not None
    if cursor_world is None and with_labels:
        cursor_world = foreground_center(np.asarray(fixed_label) > 0, affine)
    ref = DisplayVolume(np.asarray(fixed, np.float32), affine, "fixed")
    index = int(cursor_indices(ref, cursor_world)[view_layout(view, convention).slice_axis])
    aspect = view_aspect(ref.ras_affine, view)
    fixed_lab_ras = to_ras(np.asarray(fixed_label), affine)[0] if with_labels else None
    fig, axes = _layout(len(ddfs), 3, panel_size)
    for r, ddf in enumerate(ddfs):
        ddf = np.asarray(ddf, np.float32)
        if ddf.shape != (ref.array.ndim, *np.shape(fixed)):
            raise ValueError(f"step {numbers[r]}: expected ddf {(ref.array.ndim, *np.shape(fixed))}, got {ddf.shape}")
        det = jacobian_determinant(ddf)
        warped = DisplayVolume(warp_array(moving, ddf), affine, "warped", ref.display_window)
        show_slice(axes[r, 0], warped, view, index, convention)
        if fixed_lab_ras is not None:
            warped_lab = to_ras(warp_array(np.asarray(moving_label), ddf, nearest=True), affine)[0]
            draw_label_contours(axes[r, 0], oriented_slice(fixed_lab_ras, view, index, convention))
            draw_label_contours(axes[r, 0], oriented_slice(warped_lab, view, index, convention), linestyle="--")
        show_slice(axes[r, 1], ref, view, index, convention)
        draw_jacobian(axes[r, 1], oriented_slice(to_ras(det, affine)[0], view, index, convention))
        show_slice(axes[r, 2], ref, view, index, convention)
        ddf_ras = to_ras_vector(ddf, affine)[0]
        draw_deformation_grid(axes[r, 2], *oriented_vector_slice(ddf_ras, view, index, convention), step=grid_step)
        for c, name in enumerate(("warped", "jacobian", "grid")):
            axes[r, c].set_aspect(aspect)
            axes[r, c].set_title(f"step {numbers[r]}: {name}", fontsize=9)
        axes[r, 0].set_ylabel(f"folds {float((det <= 0).mean() * 100):.3f}%", fontsize=8)
    fig.suptitle(f"field trajectory ({view.value}); {Convention(convention).value} convention", fontsize=10)
    return fig
