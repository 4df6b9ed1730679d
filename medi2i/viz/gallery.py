"""Gallery figures for the natural-image methods: input / output (/ reference, style, exemplar) per method.

Used by ``notebooks/natural_gallery.ipynb``; works for RGB photos and 1-channel medical slices alike.

* :func:`display_image`: one image (a tensor or array ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)`` with
  ``C`` in {1, 3}) as a displayable array: float images are mapped from ``value_range`` (the natural pipeline's
  ``[-1, 1]``) to ``[0, 1]`` and clipped; integer or boolean images are label maps (class ids, shown with a
  categorical colour map).
* :func:`gallery_figure`: a grid with one row per method (or per example), headed by the row's name, and one
  column per role (``"input"``, ``"output"``, ``"reference"``, ...); every panel is titled with its column.
* :func:`write_gallery_index`: a self-contained HTML page (PNGs embedded as ``data:`` URIs) listing the saved
  gallery figures with their captions.
* :func:`trained_model_path` / :func:`load_or_train`: use a trained model file when one exists
  (``$MEDI2I_NATURAL_MODELS/<method>/model.pt`` or the bundle's ``bundles/natural/models/<method>/model.pt``),
  otherwise train a tiny seeded model for a few iterations and say so in the returned label.

Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> x = torch.zeros(3, 8, 8)
    >>> fig = gallery_figure({"CUT": {"input": x, "output": -x[:1]}})
    >>> row_headings(fig), [ax.get_title() for ax in image_axes(fig)]
    (['CUT'], ['input', 'output'])
"""

from __future__ import annotations

import html as html_lib
import os
import textwrap
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from medi2i.errors import Medi2iInputError
from medi2i.viz.figures import save_figure
from medi2i.viz.viewer import image_axes

if TYPE_CHECKING:
    from medi2i.natural.trainer import AdversarialMethod
    from medi2i.typing import PathLike

__all__ = [
    "MODELS_ENV",
    "GalleryModel",
    "display_image",
    "gallery_figure",
    "image_axes",
    "load_or_train",
    "row_headings",
    "save_figure",
    "trained_model_path",
    "write_gallery_index",
]

MODELS_ENV = "MEDI2I_NATURAL_MODELS"
"""Environment variable naming a folder of trained models ``<folder>/<method>/model.pt``."""

#: keys of a method's config that fix what data it takes (compared before a trained model file is used)
_IO_KEYS = ("in_channels", "out_channels", "num_classes", "image_channels")


def _as_numpy(image: Any, field: str) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        return (image.float() if image.is_floating_point() else image).numpy()  # half/bfloat16 have no numpy type
    if isinstance(image, np.ndarray):
        return image
    raise Medi2iInputError(
        "expected an image tensor or array", field=field, found=type(image).__name__, expected="torch.Tensor"
    )


def display_image(
    image: torch.Tensor | np.ndarray, *, value_range: Sequence[float] = (-1.0, 1.0), field: str = "image"
) -> tuple[np.ndarray, str]:
    """An image as a displayable array and its kind.

    Args:
        image: ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)`` with ``C`` in {1, 3} (channel first, as the natural
            pipeline); float for intensities, integer/bool for label maps.
        value_range: the float images' range, mapped to ``[0, 1]`` (values outside are clipped).
        field: the name used in error messages.

    Returns:
        ``(array, kind)``: kind ``"grey"`` -> ``(H, W)`` float in [0, 1], ``"rgb"`` -> ``(H, W, 3)`` float in
        [0, 1], ``"label"`` -> ``(H, W)`` int64 class ids.

    Raises:
        Medi2iInputError: not an image of one of those shapes (e.g. a batch of several images, 2 or 4 channels),
            empty, or a non-finite float image.

    Example:
        >>> arr, kind = display_image(torch.tensor([[[-1.0, 0.0, 1.0]]]))
        >>> kind, arr.tolist()
        ('grey', [[0.0, 0.5, 1.0]])
    """
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {tuple(value_range)!r}")
    array = _as_numpy(image, field)
    shape = tuple(array.shape)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    elif array.ndim != 2:
        raise Medi2iInputError(
            "not a single image",
            field=field,
            found=shape,
            expected="(H, W), (C, H, W) or (1, C, H, W) with C = 1 or 3 (index a batch first)",
        )
    if min(array.shape[:2]) < 1:
        raise Medi2iInputError("empty image", field=field, found=shape)
    if array.dtype == bool or np.issubdtype(array.dtype, np.integer):
        if array.ndim == 3:
            raise Medi2iInputError(
                "a label map must have one channel", field=field, found=shape, expected="(1, H, W) class ids"
            )
        return array.astype(np.int64), "label"
    if not np.issubdtype(array.dtype, np.floating):
        raise Medi2iInputError("unsupported image dtype", field=field, found=str(array.dtype), expected="float or int")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise Medi2iInputError("image has non-finite values", field=field, found="nan/inf")
    scaled = np.clip((array - lo) / (hi - lo), 0.0, 1.0)
    return scaled, ("rgb" if scaled.ndim == 3 else "grey")


def _label_cmap(num_classes: int) -> str:
    return "tab10" if num_classes <= 10 else "tab20" if num_classes <= 20 else "viridis"


def gallery_figure(
    rows: Mapping[str, Mapping[str, torch.Tensor | np.ndarray | None]],
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    value_range: Sequence[float] = (-1.0, 1.0),
    num_classes: int | None = None,
    panel_size: float = 2.0,
    notes: Mapping[str, str] | None = None,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """A grid of images: one row per key of ``rows``, one column per role (``"input"``, ``"output"``, ...).

    Args:
        rows: ``{row_name: {column_name: image or None}}``; images as in :func:`display_image` (RGB photos,
            1-channel slices and label maps may share a figure). ``None`` or a missing column leaves the cell blank.
        columns: column order (default: the union of the rows' keys in first-seen order); a row key that is not
            listed is an error.
        title: figure title (e.g. "smoke-level outputs, not quality results").
        value_range: range of the float images (``[-1, 1]`` in the natural pipeline).
        num_classes: label-map classes for a fixed colour per class (default: the largest id shown + 1).
        panel_size: inches per panel.
        notes: optional ``{row_name: text}`` written under that row's first panel (e.g. a metric).
        class_names: names of the label classes ``0..K-1``: a colour legend under the grid (sets ``num_classes``
            to ``K`` unless given).

    Returns:
        ``Figure`` with a heading per row (the row name, left-aligned above the row: ``row_headings(fig)``) and
        image panels (:func:`~medi2i.viz.viewer.image_axes`, row by row) titled with their column name and
        without ticks; blank cells get no axes.

    Raises:
        Medi2iInputError: an image of a wrong shape (the message names ``"<row>: <column>"``).
        ValueError: no rows, no images at all, a row key missing from ``columns``, or bad ``value_range`` /
            ``panel_size`` / ``num_classes``.
    """
    if not panel_size > 0:
        raise ValueError(f"panel_size must be > 0, got {panel_size!r}")
    if not rows:
        raise ValueError("gallery_figure needs at least one row")
    order: list[str] = []
    for cells in rows.values():
        order.extend(c for c in cells if c not in order)
    if columns is not None:
        extra = [c for c in order if c not in columns]
        if extra:
            raise ValueError(f"columns={list(columns)!r} does not list the row keys {extra}")
        order = list(dict.fromkeys(columns))
    # convert everything first, so bad input fails before a figure is built
    shown: dict[tuple[str, str], tuple[np.ndarray, str]] = {}
    for r, cells in rows.items():
        for c, image in cells.items():
            if image is not None:
                shown[(r, c)] = display_image(image, value_range=value_range, field=f"{r}: {c}")
    if not shown:
        raise ValueError("gallery_figure got no images (every cell is None)")
    labels = [a for a, kind in shown.values() if kind == "label"]
    if num_classes is None and class_names:
        num_classes = len(class_names)
    if num_classes is None:
        num_classes = max((int(a.max()) + 1 for a in labels), default=1)
    elif num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")

    # layout in inches: title, then per row a heading, the column titles, the panels and an optional note
    margin, gap, heading, col_title = 0.1, 0.12, 0.24, 0.2
    note = 0.22 if notes else 0.04
    block = heading + col_title + panel_size + note + 0.1
    width = 2 * margin + len(order) * panel_size + (len(order) - 1) * gap
    title_lines = textwrap.wrap(title, width=max(20, int(width * 11)), break_on_hyphens=False) if title else []
    top = 0.15 + 0.19 * len(title_lines) if title_lines else 0.05
    legend = 0.35 if class_names else 0.0
    height = top + len(rows) * block + legend
    fig = Figure(figsize=(width, height))
    for i, r in enumerate(rows):
        row_top = height - top - i * block
        fig.text(margin / width, (row_top - 0.03) / height, r, ha="left", va="top", fontsize=8.5,
                 fontweight="bold", gid="row_heading")  # fmt: skip
        bottom = row_top - heading - col_title - panel_size
        first = True
        for j, c in enumerate(order):
            if (r, c) not in shown:
                continue
            left = margin + j * (panel_size + gap)
            ax = fig.add_axes((left / width, bottom / height, panel_size / width, panel_size / height))
            array, kind = shown[(r, c)]
            if kind == "label":
                ax.imshow(
                    array, cmap=_label_cmap(num_classes), vmin=-0.5, vmax=num_classes - 0.5, interpolation="nearest"
                )
            elif kind == "grey":
                ax.imshow(array, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                ax.imshow(array, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_label("panel")
            ax.set_title(c, fontsize=8)
            if notes and r in notes and first:
                ax.set_xlabel(notes[r], fontsize=8)
            first = False
    if class_names:
        cmap = matplotlib.colormaps[_label_cmap(num_classes)]
        colours = [cmap((k + 0.5) / num_classes) for k in range(len(class_names))]  # as imshow's vmin/vmax map
        handles = [Patch(facecolor=c, edgecolor="none") for c in colours]
        names = [f"{k} {name}" for k, name in enumerate(class_names)]
        fig.legend(handles, names, loc="lower left", ncol=min(len(names), 8), fontsize=7.5, frameon=False,
                   bbox_to_anchor=(margin / width, 0.0), handlelength=1.2, columnspacing=1.0)  # fmt: skip
    if title_lines:
        fig.suptitle("\n".join(title_lines), fontsize=10, y=1 - 0.1 / height, va="top")
    return fig


def row_headings(fig: Figure) -> list[str]:
    """The row headings of a :func:`gallery_figure`, top to bottom."""
    return [t.get_text() for t in fig.texts if t.get_gid() == "row_heading"]


def write_gallery_index(
    out_dir: PathLike,
    entries: Sequence[tuple[str, PathLike, str]],
    *,
    title: str = "medi2i natural-image gallery",
    intro: str = "",
) -> Path:
    """Write ``out_dir/index.html``: one section per ``(heading, png_path, caption)``, PNGs embedded.

    The page references no URL or file (see :mod:`medi2i.viz.report`), so it opens offline anywhere.

    Raises:
        Medi2iInputError: a PNG that does not exist (before anything is written).
    """
    from medi2i.io import atomic_path
    from medi2i.viz.report import html_page, img_tag

    pngs = []
    for heading, png, caption in entries:
        path = Path(png)
        if not path.is_file():
            raise Medi2iInputError("gallery figure not found", path=path, field=heading)
        pngs.append((heading, path.read_bytes(), caption))
    sections = [("About", f"<p>{html_lib.escape(intro)}</p>")] if intro else []
    for heading, data, caption in pngs:
        sections.append((heading, f"<p>{html_lib.escape(caption)}</p>\n{img_tag(data, heading)}"))
    out = Path(out_dir) / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(html_page(title, sections), encoding="utf-8")
    return out


# --------------------------------------------------------------------------------------------
# trained model or tiny smoke model


def _repo_bundle_models() -> Path:
    return Path(__file__).resolve().parents[2] / "bundles" / "natural" / "models"


def trained_model_path(method: str, *, models_dir: PathLike | None = None) -> Path | None:
    """The trained model file of ``method`` if one exists, else ``None``.

    Looked up in order: ``models_dir`` (if given), ``$MEDI2I_NATURAL_MODELS``, the repository's
    ``bundles/natural/models``; in each folder ``<method>/model.pt`` then ``<method>.pt``.
    """
    folders = [Path(models_dir)] if models_dir is not None else []
    if os.environ.get(MODELS_ENV, "").strip():
        folders.append(Path(os.environ[MODELS_ENV].strip()).expanduser())
    folders.append(_repo_bundle_models())
    for folder in folders:
        for candidate in (folder / method / "model.pt", folder / f"{method}.pt"):
            if candidate.is_file():
                return candidate
    return None


@dataclass
class GalleryModel:
    """A method ready for inference and where it came from.

    Attributes:
        method: the method in eval mode.
        trained: True when loaded from a trained model file, False for a tiny smoke model trained here.
        label: short row label, e.g. ``"CUT [tiny smoke model, 20 it]"`` or ``"CUT [trained model]"``.
        provenance: one sentence: the file used, or the tiny run's size and why no file was used.
        seconds: time spent loading or training.
    """

    method: AdversarialMethod
    trained: bool
    label: str
    provenance: str
    seconds: float


def _stored_record(path: Path) -> Mapping[str, Any]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    record = payload.get("data") if isinstance(payload, dict) else None
    return record if isinstance(record, Mapping) else {}


def _mismatch(
    method: AdversarialMethod,
    tiny_config: Mapping[str, Any],
    kinds: Mapping[str, str] | None,
    size: Sequence[int] | None,
    path: Path,
) -> str | None:
    for key in _IO_KEYS:
        if key in tiny_config and key in method.config and method.config[key] != tiny_config[key]:
            return f"{key}={method.config[key]} (the gallery's data need {tiny_config[key]})"
    record = _stored_record(path) if kinds or size else {}
    for domain, entry in record.items():
        if not isinstance(entry, Mapping):
            continue
        stored = entry.get("kind")
        if kinds and domain in kinds and stored is not None and stored != kinds[domain]:
            return f"domain {domain} is {stored!r} (the gallery shows {kinds[domain]!r})"
        stored_size = entry.get("size")
        if size and stored_size and [int(v) for v in stored_size] != [int(v) for v in size]:
            shown = "x".join(str(int(v)) for v in size)
            return f"it was trained at {'x'.join(str(v) for v in stored_size)} px, the gallery shows {shown} px"
    return None


def load_or_train(
    name: str,
    tiny_config: Mapping[str, Any],
    dataset: Any,
    *,
    iterations: int,
    batch_size: int = 2,
    seed: int = 0,
    display_name: str | None = None,
    kinds: Mapping[str, str] | None = None,
    size: Sequence[int] | None = None,
    models_dir: PathLike | None = None,
) -> GalleryModel:
    """Load ``name``'s trained model file if one fits the gallery's data, else train a tiny model here.

    Args:
        name: registry name (``"cyclegan"``, ``"cut"``, ``"fastcut"``, ``"sincut"``, ``"spade"``, ``"sae"``,
            ``"rabit"``; :data:`medi2i.natural.model_files.METHODS`).
        tiny_config: keyword arguments of the tiny model (also what a trained file must agree with on
            channels / classes).
        dataset: training dataset of the tiny model (batch dicts; ``set_epoch`` is used when present).
        iterations: training iterations of the tiny model (a smoke budget: seconds, not hours).
        batch_size: tiny model batch size.
        seed: seeds the tiny model's training (the trainer seeds Python, NumPy and torch).
        display_name: row label prefix (default: the class name).
        kinds: expected domain kinds, e.g. ``{"A": "mr", "B": "mr"}``, checked against a trained file's data
            record (``medi2i.natural.model_files.save_model(..., data=...)``) when it has one.
        size: the gallery's image size ``(H, W)``, checked against the record's ``size`` entries when present
            (models with a fixed input size, e.g. SPADE, RABIT, SAE).
        models_dir: extra folder searched first (see :func:`trained_model_path`).
    """
    from medi2i.natural.model_files import load_model, method_class
    from medi2i.natural.trainer import AdversarialTrainer

    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations!r}")
    cls = method_class(name)
    shown = display_name or cls.__name__
    start = time.perf_counter()
    path = trained_model_path(name, models_dir=models_dir)
    reason = f"there is no trained model file (set ${MODELS_ENV} or run the bundle bundles/natural/{name}.json)"
    if path is not None:
        method = load_model(path, device="cpu")
        why = _mismatch(method, tiny_config, kinds, size, path)
        if why is None:
            return GalleryModel(
                method, True, f"{shown} [trained model]", f"trained model file {path}", time.perf_counter() - start
            )
        reason = f"the trained model file {path} does not fit this gallery: {why}"
    with warnings.catch_warnings():  # tiny-config warnings (e.g. identity loss off) are not the point here
        warnings.simplefilter("ignore", UserWarning)
        method = cls(**dict(tiny_config))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    AdversarialTrainer(method, loader, max_iterations=iterations, device="cpu", seed=seed).run()  # constant lr
    method.eval()
    seconds = time.perf_counter() - start
    provenance = (
        f"SMOKE-LEVEL tiny {shown} trained here for {iterations} iterations (batch {batch_size}, seed {seed}, "
        f"{seconds:.0f} s on CPU) because {reason}; its outputs show that the pipeline runs, "
        "not what the method can do"
    )
    return GalleryModel(method, False, f"{shown} [tiny smoke model, {iterations} it]", provenance, seconds)
