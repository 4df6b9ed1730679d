"""Orthogonal slice viewer: axial/coronal/sagittal panels with a linked crosshair, for one or several volumes.

:func:`render_orthogonal` is a pure function returning a matplotlib ``Figure`` (headless with
``MPLBACKEND=Agg``); :class:`OrthogonalViewer` wraps it in ipywidgets sliders (installed with
``pip install medi2i[notebooks]``; runs offline). Volumes are shown world-consistently: each is
reoriented to RAS order from its affine and the crosshair is a world point (mm), so volumes on
different grids show the same anatomy (nearest voxel). :func:`niivue_view` opens an interactive
WebGL view through ``ipyniivue`` when that package is installed.

Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> vol = DisplayVolume(np.random.default_rng(0).random((8, 9, 10)), np.eye(4), title="noise")
    >>> fig = render_orthogonal([vol])
    >>> [ax.get_title() for ax in image_axes(fig)]
    ['noise: axial', 'noise: coronal', 'noise: sagittal']
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from medi2i.viz.orientation import (
    Convention,
    View,
    index_to_world,
    oriented_slice,
    to_ras,
    view_aspect,
    view_labels,
    view_layout,
    world_to_index,
)
from medi2i.viz.overlays import draw_label_contours
from medi2i.viz.windows import Window, ct_window, percentile_window

__all__ = [
    "DisplayVolume",
    "OrthogonalViewer",
    "image_axes",
    "niivue_view",
    "render_orthogonal",
    "screen_position",
    "show_slice",
    "views_for",
]

VIEWS = (View.AXIAL, View.CORONAL, View.SAGITTAL)

# a world point in RAS mm
Point = Sequence[float] | np.ndarray


@dataclass(eq=False)
class DisplayVolume:
    """A volume prepared for display: RAS-ordered array, its affine, a title, a window and an optional label map.

    The window actually used is ``display_window`` (resolved from ``window`` at construction; the
    interactive viewer changes it when a CT preset is picked).

    Args:
        array: ``(X, Y, Z)`` or ``(X, Y)`` in on-disk order.
        affine: ``(4, 4)`` voxel -> RAS+ mm.
        title: panel title.
        window: a :class:`~medi2i.viz.windows.Window`, a CT preset name (``"brain"``, ``"bone"``, ...), or
            None for the MR percentile window (0.5-99.5 % of the non-background voxels).
        cmap: matplotlib colormap name.
        labels: optional label map on the same grid, drawn as contours.
        units: colour bar label (e.g. ``"HU"``).
    """

    array: np.ndarray
    affine: np.ndarray
    title: str = ""
    window: Window | str | None = None
    cmap: str = "gray"
    labels: np.ndarray | None = None
    units: str = ""
    ras: np.ndarray = field(init=False, repr=False)
    ras_affine: np.ndarray = field(init=False, repr=False)
    ras_labels: np.ndarray | None = field(init=False, repr=False)
    display_window: Window = field(init=False)

    def __post_init__(self) -> None:
        self.ras, self.ras_affine = to_ras(np.asarray(self.array), self.affine)
        self.ras_labels = None
        if self.labels is not None:
            if np.shape(self.labels) != np.shape(self.array):
                shapes = f"{np.shape(self.labels)} and {np.shape(self.array)}"
                raise ValueError(f"labels and array must have one shape, got {shapes}")
            self.ras_labels = to_ras(np.asarray(self.labels), self.affine)[0]
        if isinstance(self.window, Window):
            self.display_window = self.window
        elif isinstance(self.window, str):
            self.display_window = ct_window(self.window)
        else:
            self.display_window = percentile_window(self.ras)

    @classmethod
    def from_volume(cls, volume: Any, title: str = "", **kwargs: Any) -> DisplayVolume:
        """Build from a :class:`medi2i.io.Volume` (its ``array`` and ``affine``)."""
        return cls(volume.array, volume.affine, title=title, **kwargs)

    def center_world(self) -> np.ndarray:
        """World position (mm) of the grid centre."""
        return index_to_world(self.ras_affine, (np.asarray(self.ras.shape) - 1) / 2)


def views_for(shape_ras: Sequence[int]) -> tuple[View, ...]:
    """The views worth drawing for a RAS-ordered grid: all three, or the single in-plane view of a 2D slice.

    Example:
        >>> views_for((96, 112, 1)), len(views_for((4, 5, 6)))
        ((<View.AXIAL: 'axial'>,), 3)
    """
    flat = [axis for axis in range(3) if shape_ras[axis] == 1]
    if not flat:
        return VIEWS
    return tuple(v for v in VIEWS if view_layout(v).slice_axis == flat[0])


def image_axes(fig: Figure) -> list[Axes]:
    """The image panels of a figure made here (colour bar axes excluded), in drawing order."""
    return [ax for ax in fig.axes if ax.get_label() == "panel"]


def screen_position(index: int, size: int, flip: bool) -> int:
    """Screen row/column of RAS voxel ``index`` along an axis of ``size`` voxels drawn flipped or not."""
    return size - 1 - index if flip else index


def show_slice(
    ax: Axes,
    volume: DisplayVolume,
    view: View | str,
    index: int,
    convention: Convention | str = Convention.NEUROLOGICAL,
    *,
    letters: bool = True,
):
    """Draw one windowed, oriented slice of ``volume`` on ``ax`` with orientation letters; returns the image."""
    plane = oriented_slice(volume.ras, view, index, convention)
    img = ax.imshow(
        plane,
        cmap=volume.cmap,
        vmin=volume.display_window.low,
        vmax=volume.display_window.high,
        aspect=view_aspect(volume.ras_affine, view),
        interpolation="nearest",
        origin="upper",
        gid="image",
    )
    ax.set_label("panel")
    ax.set_xticks([])
    ax.set_yticks([])
    if letters:
        _draw_letters(ax, view_labels(view, convention))
    return img


def _draw_letters(ax: Axes, labels: dict[str, str]) -> None:
    style: dict[str, Any] = {"color": "yellow", "fontsize": 8, "fontweight": "bold", "transform": ax.transAxes}
    ax.text(0.5, 0.98, labels["top"], ha="center", va="top", **style)
    ax.text(0.5, 0.02, labels["bottom"], ha="center", va="bottom", **style)
    ax.text(0.02, 0.5, labels["left"], ha="left", va="center", **style)
    ax.text(0.98, 0.5, labels["right"], ha="right", va="center", **style)


def cursor_indices(volume: DisplayVolume, cursor_world: Point | None) -> np.ndarray:
    """RAS voxel index ``(3,)`` of ``volume`` nearest the world cursor (its centre when None)."""
    world = volume.center_world() if cursor_world is None else np.asarray(cursor_world, float)
    return world_to_index(volume.ras_affine, world, volume.ras.shape)


def draw_crosshair(ax: Axes, volume: DisplayVolume, view: View | str, ijk: np.ndarray, convention) -> None:
    """Lines through the cursor in one panel (the positions of the two other views' slices)."""
    lay = view_layout(view, convention)
    shape = volume.ras.shape
    row = screen_position(int(ijk[lay.row_axis]), shape[lay.row_axis], lay.row_flip)
    col = screen_position(int(ijk[lay.col_axis]), shape[lay.col_axis], lay.col_flip)
    kw: dict[str, Any] = {"color": "#00e5ff", "linewidth": 0.6, "alpha": 0.8}
    ax.axhline(row, gid="crosshair", **kw)
    ax.axvline(col, gid="crosshair", **kw)


def render_orthogonal(
    volumes: Sequence[DisplayVolume],
    cursor_world: Point | None = None,
    *,
    convention: Convention | str = Convention.NEUROLOGICAL,
    views: Sequence[View | str] | None = None,
    crosshair: bool = True,
    colorbar: bool = True,
    panel_size: float = 2.6,
) -> Figure:
    """Orthogonal views of several volumes side by side (one column per volume, one row per view).

    Args:
        volumes: the :class:`DisplayVolume` objects (any grids; they are matched through world positions).
        cursor_world: crosshair position in RAS mm; default the centre of the first volume.
        convention: ``"neurological"`` (patient left on screen left) or ``"radiological"``.
        views: which views, in row order (default: all three, or the in-plane view of 2D slices).
        crosshair: draw the linked crosshair.
        colorbar: add a colour bar under each column (with the volume's window and units).
        panel_size: inches per panel.

    Returns:
        A ``Figure`` whose image panels (:func:`image_axes`) are titled ``"<title>: <view>"``.
    """
    if not volumes:
        raise ValueError("render_orthogonal needs at least one volume")
    convention = Convention(convention)
    rows = list(views_for(volumes[0].ras.shape)) if views is None else [View(v) for v in views]
    if cursor_world is None:
        cursor_world = volumes[0].center_world()
    height = panel_size * len(rows) + (0.5 if colorbar else 0) + 0.4  # + room for the suptitle
    fig = Figure(figsize=(panel_size * len(volumes), height))
    top = 1 - 0.7 / height
    axes = fig.subplots(
        len(rows), len(volumes), squeeze=False, gridspec_kw={"left": 0.02, "right": 0.98, "top": top, "bottom": 0.06}
    )
    for c, vol in enumerate(volumes):
        ijk = cursor_indices(vol, cursor_world)
        img = None
        for r, view in enumerate(rows):
            ax = axes[r, c]
            lay = view_layout(view, convention)
            img = show_slice(ax, vol, view, int(ijk[lay.slice_axis]), convention)
            if vol.ras_labels is not None:
                draw_label_contours(ax, oriented_slice(vol.ras_labels, view, int(ijk[lay.slice_axis]), convention))
            if crosshair:
                draw_crosshair(ax, vol, view, ijk, convention)
            ax.set_title(f"{vol.title}: {view.value}" if vol.title else view.value, fontsize=9)
        if colorbar and img is not None:
            bar = fig.colorbar(img, ax=axes[:, c].tolist(), orientation="horizontal", fraction=0.04, pad=0.02)
            bar.set_label(vol.units, fontsize=8)
            bar.ax.tick_params(labelsize=7)
    world = ", ".join(f"{v:.1f}" for v in np.asarray(cursor_world, float))
    fig.suptitle(f"cursor ({world}) mm RAS; {convention.value} convention", fontsize=9)
    return fig


class OrthogonalViewer:
    """Interactive orthogonal viewer: linked R/A/S sliders (mm), convention toggle, CT window presets.

    Needs ``ipywidgets`` (``pip install medi2i[notebooks]``); everything is drawn by
    :func:`render_orthogonal`, so what a notebook shows is what the tests check.

    Args:
        volumes: :class:`DisplayVolume` objects.
        convention: initial convention.
        ct_presets: offer a window dropdown (applied to volumes whose window came from a CT preset or
            whose ``units`` are ``"HU"``).

    Example:
        >>> viewer = OrthogonalViewer([DisplayVolume(np.zeros((4, 4, 4)), np.eye(4))])  # doctest: +SKIP
        >>> viewer  # in a notebook cell: shows the sliders and the figure  # doctest: +SKIP
    """

    def __init__(
        self,
        volumes: Sequence[DisplayVolume],
        *,
        convention: Convention | str = Convention.NEUROLOGICAL,
        ct_presets: bool = True,
    ) -> None:
        if not volumes:
            raise ValueError("OrthogonalViewer needs at least one volume")
        try:
            widgets = importlib.import_module("ipywidgets")
        except ImportError as err:
            raise ImportError("OrthogonalViewer needs ipywidgets: pip install 'medi2i[notebooks]'") from err
        self.volumes = list(volumes)
        ref = self.volumes[0]
        lo = index_to_world(ref.ras_affine, (0, 0, 0))
        hi = index_to_world(ref.ras_affine, np.asarray(ref.ras.shape) - 1)
        step = np.linalg.norm(ref.ras_affine[:3, :3], axis=0)
        center = ref.center_world()
        self.sliders = [
            widgets.FloatSlider(
                value=float(center[k]),
                min=float(min(lo[k], hi[k])),
                max=float(max(lo[k], hi[k])),
                step=float(step[k]),
                description=f"{name} (mm)",
                continuous_update=False,
            )
            for k, name in enumerate(("R", "A", "S"))
        ]
        self.convention = widgets.ToggleButtons(
            options=[c.value for c in Convention], value=Convention(convention).value, description="L/R"
        )
        self._ct = [v for v in self.volumes if v.units == "HU"]
        self.preset = widgets.Dropdown(
            options=["brain", "subdural", "soft_tissue", "bone", "full"], value="brain", description="CT window"
        )
        self.output = widgets.Output()
        controls = [*self.sliders, self.convention] + ([self.preset] if ct_presets and self._ct else [])
        for w in controls:
            w.observe(lambda _change: self.update(), names="value")
        self.widget = widgets.VBox([widgets.HBox(controls[:3]), widgets.HBox(controls[3:]), self.output])
        self.update()

    def figure(self) -> Figure:
        """The figure for the current slider values."""
        for vol in self._ct:
            vol.display_window = ct_window(self.preset.value)
        cursor = [s.value for s in self.sliders]
        return render_orthogonal(self.volumes, cursor, convention=self.convention.value)

    def update(self) -> None:
        """Redraw into the output area."""
        from IPython.display import display

        fig = self.figure()
        self.output.clear_output(wait=True)
        with self.output:
            display(fig)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def niivue_view(paths: Sequence[str | Path], colormaps: Sequence[str] | None = None) -> Any:
    """Interactive 3D/multiplanar WebGL view of NIfTI files through ``ipyniivue`` (optional dependency).

    Args:
        paths: volume files, drawn in order (later ones on top).
        colormaps: NiiVue colormap names per file (default ``"gray"`` for the first, ``"red"`` after).

    Returns:
        An ``ipyniivue.NiiVue`` widget (display it in a notebook cell).

    Raises:
        ImportError: ``ipyniivue`` is not installed (``pip install ipyniivue``; it bundles its JS, no CDN).
    """
    try:
        ipyniivue = importlib.import_module("ipyniivue")
    except ImportError as err:
        raise ImportError("niivue_view needs ipyniivue (pip install ipyniivue); use OrthogonalViewer instead") from err
    colormaps = list(colormaps) if colormaps is not None else ["gray"] + ["red"] * (len(paths) - 1)
    view = ipyniivue.NiiVue()
    view.load_volumes([{"path": str(p), "colormap": cm} for p, cm in zip(paths, colormaps, strict=True)])
    return view
