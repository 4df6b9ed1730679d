"""Overlays on 2D screen images: labels, difference maps, Jacobian folds, deformation grids, checkerboards.

Every function works on 2D arrays already cut and oriented for the screen
(:func:`medi2i.viz.orientation.oriented_slice`) and either returns an array (pure, testable) or draws
on a matplotlib ``Axes`` and returns the artist it added.

Example:
    >>> a, b = np.zeros((4, 4)), np.ones((4, 4))
    >>> checkerboard(a, b, tiles=2)[0].tolist()
    [0.0, 0.0, 1.0, 1.0]
"""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
from matplotlib.axes import Axes
from matplotlib.image import AxesImage

__all__ = [
    "FOLD_COLOR",
    "LABEL_COLORS",
    "blend_rgb",
    "checkerboard",
    "draw_deformation_grid",
    "draw_difference",
    "draw_jacobian",
    "draw_label_contours",
    "draw_labels",
    "fold_mask",
    "label_rgba",
]

# one colour per demo tissue label (1 CSF, 2 GM, 3 WM, 4 bone, 5 scalp); other labels cycle through tab20
LABEL_COLORS = ("#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd")
FOLD_COLOR = "#00ff00"  # saturated green, absent from the diverging Jacobian colormap (blue-white-red)


def _label_color(k: int) -> tuple[float, float, float]:
    if 1 <= k <= len(LABEL_COLORS):
        return mcolors.to_rgb(LABEL_COLORS[k - 1])
    import matplotlib

    return matplotlib.colormaps["tab20"]((k * 7) % 20)[:3]


def label_rgba(label: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """RGBA image ``(H, W, 4)`` of a label map: one colour per label, transparent background (0).

    Example:
        >>> rgba = label_rgba(np.array([[0, 1]]), alpha=0.5)
        >>> rgba[0, 0, 3], rgba[0, 1, 3]
        (np.float32(0.0), np.float32(0.5))
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    label = np.asarray(label)
    rgba = np.zeros((*label.shape, 4), np.float32)
    for k in np.unique(label):
        if k == 0:
            continue
        rgba[label == k] = (*_label_color(int(k)), alpha)
    return rgba


def draw_labels(ax: Axes, label: np.ndarray, alpha: float = 0.4) -> AxesImage:
    """Draw a label map as a translucent colour overlay (background transparent)."""
    return ax.imshow(label_rgba(label, alpha), interpolation="nearest", gid="labels")


def draw_label_contours(ax: Axes, label: np.ndarray, *, linewidth: float = 0.8, linestyle: str = "-") -> list:
    """Draw the outline of every non-zero label of ``label`` (one colour per label); returns the contour sets."""
    label = np.asarray(label)
    sets = []
    for k in np.unique(label):
        if k == 0 or not (label == k).any():
            continue
        sets.append(
            ax.contour(
                (label == k).astype(np.float32),
                levels=[0.5],
                colors=[_label_color(int(k))],
                linewidths=linewidth,
                linestyles=linestyle,
            )
        )
    return sets


def draw_difference(ax: Axes, difference: np.ndarray, limit: float | None = None, *, cmap: str = "RdBu_r") -> AxesImage:
    """Signed difference (e.g. pred - target in HU) with a diverging colormap centred on 0.

    Args:
        ax: target axes.
        difference: ``(H, W)``.
        limit: colour range ``[-limit, limit]``; default the 99th percentile of ``|difference|``.
        cmap: diverging colormap (red = prediction too bright, blue = too dark with ``RdBu_r``).
    """
    difference = np.asarray(difference, dtype=np.float32)
    if limit is None:
        finite = np.abs(difference[np.isfinite(difference)])
        limit = float(np.percentile(finite, 99)) if finite.size else 1.0
    limit = max(float(limit), 1e-6)
    return ax.imshow(difference, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest", gid="difference")


def fold_mask(det: np.ndarray) -> np.ndarray:
    """Folded voxels: Jacobian determinant ``<= 0`` (the map is not locally invertible there)."""
    return np.asarray(det) <= 0


def draw_jacobian(ax: Axes, det: np.ndarray, *, limit: float = 1.0) -> tuple[AxesImage, AxesImage]:
    """Jacobian determinant heat map (blue < 1 shrink, red > 1 growth) with folded voxels painted solid green.

    Args:
        ax: target axes.
        det: ``(H, W)`` determinant.
        limit: colour range ``[1 - limit, 1 + limit]``.

    Returns:
        ``(heat, folds)``: the folds image (``gid="folds"``) is a masked array whose unmasked pixels are
        exactly ``det <= 0``.
    """
    det = np.asarray(det, dtype=np.float32)
    heat = ax.imshow(det, cmap="RdBu_r", vmin=1 - limit, vmax=1 + limit, interpolation="nearest", gid="jacobian")
    folded = fold_mask(det)
    overlay = np.ma.masked_array(np.ones_like(det), mask=~folded)
    folds = ax.imshow(
        overlay,
        cmap=mcolors.ListedColormap([FOLD_COLOR]),
        vmin=0,
        vmax=1,
        interpolation="nearest",
        gid="folds",
    )
    return heat, folds


def draw_deformation_grid(
    ax: Axes,
    d_row: np.ndarray,
    d_col: np.ndarray,
    *,
    step: int = 4,
    color: str = "#ffcc00",
    linewidth: float = 0.6,
) -> list:
    """Draw the grid lines of ``x + u(x)`` (pull convention: where each fixed pixel samples the moving image).

    Args:
        ax: target axes (an image of the same ``(H, W)`` should already be shown so the limits match).
        d_row: displacement down the screen ``(H, W)`` in pixels (see ``oriented_vector_slice``).
        d_col: displacement to the right ``(H, W)`` in pixels.
        step: grid spacing in pixels.
        color: line colour.
        linewidth: line width.

    Returns:
        The line artists (``step``-spaced rows, then columns).
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    h, w = d_row.shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    y, x = rows + d_row, cols + d_col
    lines = []
    for r in range(0, h, step):
        lines += ax.plot(x[r, :], y[r, :], color=color, linewidth=linewidth)
    for c in range(0, w, step):
        lines += ax.plot(x[:, c], y[:, c], color=color, linewidth=linewidth)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    return lines


def checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Alternate square tiles of ``a`` and ``b`` (same shape, same display scale); ``a`` in the top-left tile.

    Args:
        a: ``(H, W)`` e.g. fixed, windowed to [0, 1].
        b: ``(H, W)`` e.g. warped moving, windowed the same way.
        tiles: number of tiles along the longer side.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"checkerboard needs equal shapes, got {a.shape} and {b.shape}")
    if tiles < 1:
        raise ValueError(f"tiles must be >= 1, got {tiles}")
    size = max(1, int(np.ceil(max(a.shape) / tiles)))
    rows, cols = np.indices(a.shape)
    use_b = ((rows // size) + (cols // size)) % 2 == 1
    return np.where(use_b, b, a)


def blend_rgb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Colour fusion ``(H, W, 3)``: ``a`` in magenta, ``b`` in green; aligned structures look grey/white.

    Args:
        a: ``(H, W)`` in [0, 1] (e.g. fixed).
        b: ``(H, W)`` in [0, 1] (e.g. warped moving).

    Example:
        >>> blend_rgb(np.ones((1, 1)), np.zeros((1, 1)))[0, 0].tolist()  # only a: magenta
        [1.0, 0.0, 1.0]
    """
    a, b = np.clip(np.asarray(a, np.float32), 0, 1), np.clip(np.asarray(b, np.float32), 0, 1)
    if a.shape != b.shape:
        raise ValueError(f"blend needs equal shapes, got {a.shape} and {b.shape}")
    return np.stack([a, b, a], axis=-1)
