"""Self-contained HTML QA reports: one page per case and an index sorted so the worst case comes first.

Pages embed every image as a base64 PNG ``data:`` URI and carry their own CSS; they reference no
URL, script or external file except the index's relative links to the case pages, so a report
folder can be zipped, mailed or archived and still opens offline.

Layout of ``out_dir``::

    index.html              summary, per-case table sorted by the worst value of ``sort_by``, training curves
    qa_cases.csv            the same table
    cases/<case_id>.html    overview figure (three views + overlays), key axial slices, metrics, geometry
    cases/<case_id>.png     the overview figure as a static PNG

Metrics come from :mod:`medi2i.metrics` (``synthesis_metrics`` for synthesis, ``registration_metrics``
or ``jacobian_stats`` for registration). Training curves and sample grids are read from a bundle's
TensorBoard event files when a log folder is given.

Example:
    >>> html = html_page("t", [("Metrics", metrics_table({"mae": 1.5}))])
    >>> "http" in html, "<table" in html
    (False, True)
"""

from __future__ import annotations

import base64
import html as html_lib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from medi2i.errors import Medi2iInputError
from medi2i.io import Volume, atomic_path
from medi2i.typing import PathLike
from medi2i.viz.cases import RegistrationQACase, SynthesisQACase
from medi2i.viz.figures import axial_mosaic, figure_png, registration_figure, save_figure, synthesis_figure
from medi2i.viz.viewer import DisplayVolume

__all__ = [
    "HIGHER_IS_BETTER",
    "CaseResult",
    "geometry_rows",
    "html_page",
    "img_tag",
    "metrics_table",
    "qa_registration",
    "qa_synthesis",
    "registration_case_page",
    "sort_worst_first",
    "synthesis_case_page",
    "training_section",
    "write_index",
]

# metric -> True when larger is better (so the worst is the smallest); metrics not listed: larger is worse
HIGHER_IS_BETTER: dict[str, bool] = {
    "mae": False,
    "psnr": True,
    "ssim": True,
    "dice_mean": True,
    "hd95_mean": False,
    "folding_percent": False,
    "sdlogj": False,
    "sdlogj_l2r": False,
}

_CSS = """
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:0.5em 0}
td,th{border:1px solid #bbb;padding:2px 8px;text-align:right;font-size:13px}
th{background:#eee}td.l{text-align:left}
img{max-width:100%;border:1px solid #ddd}
.worst{background:#fde0dd}
"""


@dataclass
class CaseResult:
    """What one case page produced.

    Attributes:
        case_id: the case.
        page: path of ``cases/<case_id>.html``.
        metrics: flat ``{metric: value}``.
        figure: path of the overview PNG.
    """

    case_id: str
    page: Path
    metrics: dict[str, float] = field(default_factory=dict)
    figure: Path | None = None


def img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` whose source is the PNG embedded as a base64 ``data:`` URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html_lib.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return html_lib.escape(str(value))


def metrics_table(metrics: Mapping[str, float]) -> str:
    """Two-column HTML table ``metric | value``."""
    rows = "".join(f'<tr><td class="l">{html_lib.escape(k)}</td><td>{_fmt(v)}</td></tr>' for k, v in metrics.items())
    return f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>"


def _table(rows: Sequence[Mapping[str, object]], link: str | None = None) -> str:
    if not rows:
        return "<p>(none)</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html_lib.escape(c)}</th>" for c in cols)
    body = []
    for row in rows:
        cells = []
        for c in cols:
            text = _fmt(row[c])
            if c == link:
                text = f'<a href="cases/{html_lib.escape(str(row[c]))}.html">{text}</a>'
            cells.append(f'<td class="l">{text}</td>' if not isinstance(row[c], float | int) else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def geometry_rows(volumes: Mapping[str, Volume]) -> list[dict[str, str]]:
    """One row per input (``medi2i.io.Volume``): file, shape, spacing, orientation, origin, on-disk dtype."""
    rows = []
    for name, vol in volumes.items():
        rows.append(
            {
                "input": name,
                "file": str(getattr(vol, "path", "") or ""),
                "shape": "x".join(str(s) for s in vol.shape),
                "spacing (mm)": " x ".join(f"{s:.3g}" for s in vol.spacing),
                "orientation": str(vol.orientation),
                "origin (mm)": ", ".join(f"{v:.1f}" for v in np.asarray(vol.affine)[:3, 3]),
                "dtype": str(getattr(vol, "disk_dtype", "") or vol.array.dtype),
            }
        )
    return rows


def html_page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """A complete, self-contained HTML document: ``<h1>title`` then ``<h2>`` + body per section."""
    parts = [f"<h2>{html_lib.escape(h)}</h2>\n{body}" for h, body in sections]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html_lib.escape(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><h1>{html_lib.escape(title)}</h1>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path


def _safe_name(case_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]+", case_id) or case_id in (".", ".."):
        raise Medi2iInputError("case id cannot be used as a file name", field="case_id", found=repr(case_id))
    return case_id


def _case_page(
    case_id: str, out_dir: Path, overview: Figure, mosaic: Figure, metrics: dict, geometry: list, kind: str
) -> CaseResult:
    import matplotlib.pyplot as plt

    name = _safe_name(case_id)
    png = save_figure(overview, out_dir / "cases" / f"{name}.png")
    sections = [
        ("Metrics", metrics_table(metrics)),
        ("Overview (crosshair at the foreground centre)", img_tag(png.read_bytes(), f"{case_id} overview")),
        ("Key axial slices", img_tag(figure_png(mosaic), f"{case_id} key slices")),
        ("Input geometry", _table(geometry)),
    ]
    plt.close(overview)
    plt.close(mosaic)
    page = _write_text(out_dir / "cases" / f"{name}.html", html_page(f"{kind} QA: {case_id}", sections))
    return CaseResult(case_id, page, dict(metrics), png)


def synthesis_case_page(
    case: SynthesisQACase, out_dir: PathLike, *, preset: str = "ct", ct_window_preset: str = "soft_tissue"
) -> CaseResult:
    """Load one synthesis case, score it (:func:`medi2i.metrics.synthesis_metrics`) and write its page.

    Args:
        case: the files (source, pred, target on one grid; optional mask).
        out_dir: report folder; the page goes to ``cases/<case_id>.html``.
        preset: ``"ct"`` (HU) or ``"mr"``; the metrics preset and the display convention of the figure.
        ct_window_preset: CT window for the figure.

    Raises:
        Medi2iInputError: unreadable files or grids that differ (naming both files).
    """
    from medi2i.io import check_same_grid, load_volume
    from medi2i.metrics import synthesis_metrics

    vols = {"source": load_volume(case.source), "pred": load_volume(case.pred), "target": load_volume(case.target)}
    if case.mask is not None:
        vols["mask"] = load_volume(case.mask, kind="mask")
    for name in ("pred", "target", "mask"):
        if name in vols:
            check_same_grid(vols["source"], vols[name], names=("source", name))
    mask = vols["mask"].array if "mask" in vols else None
    metrics = synthesis_metrics(vols["pred"].array, vols["target"].array, mask, preset=preset)
    affine = vols["source"].affine
    overview = synthesis_figure(
        vols["source"].array,
        vols["pred"].array,
        vols["target"].array,
        affine,
        mask,
        preset=preset,
        ct_window_preset=ct_window_preset,
    )
    window = ct_window_preset if preset == "ct" else None
    units = "HU" if preset == "ct" else ""
    target_disp = DisplayVolume(vols["target"].array, affine, "target", window, units=units)
    mosaic = axial_mosaic(
        [
            DisplayVolume(vols["source"].array, affine, "source"),
            DisplayVolume(vols["pred"].array, affine, "synthesis", target_disp.display_window, units=units),
            target_disp,
        ],
        mask=mask,
    )
    return _case_page(case.case_id, Path(out_dir), overview, mosaic, metrics, geometry_rows(vols), "synthesis")


def registration_case_page(
    case: RegistrationQACase, out_dir: PathLike, *, labels: Sequence[int] | None = None, grid_step: int = 6
) -> CaseResult:
    """Load one registration pair, score its DDF and write its page.

    Metrics: :func:`medi2i.metrics.registration_metrics` (Dice/HD95 in mm, Jacobian statistics) when
    both label maps are given, else :func:`medi2i.metrics.jacobian.jacobian_stats` only.

    Args:
        case: the files; the DDF is read with :func:`medi2i.spatial.read_ddf` (voxel units, fixed grid).
        out_dir: report folder.
        labels: labels to score (default: every label present).
        grid_step: deformation-grid spacing in pixels.

    Raises:
        Medi2iInputError: unreadable files, grids that differ, a DDF of the wrong shape.
    """
    from medi2i.io import check_same_grid, load_volume
    from medi2i.metrics import registration_metrics
    from medi2i.metrics.jacobian import jacobian_stats
    from medi2i.spatial import read_ddf

    fixed = load_volume(case.fixed)
    vols = {"fixed": fixed, "moving": load_volume(case.moving)}
    check_same_grid(fixed, vols["moving"], names=("fixed", "moving"))
    for name in ("fixed_label", "moving_label"):
        path = getattr(case, name)
        if path is not None:
            vols[name] = load_volume(path, kind="label", spatial_dims=fixed.ndim)
            check_same_grid(fixed, vols[name], names=("fixed", name))
    ddf, _ = read_ddf(case.ddf)
    if ddf.shape != (fixed.ndim, *fixed.shape):
        raise Medi2iInputError(
            "displacement field does not match the fixed grid",
            path=case.ddf,
            found=str(ddf.shape),
            expected=str((fixed.ndim, *fixed.shape)),
        )
    with_labels = "fixed_label" in vols and "moving_label" in vols
    if with_labels:
        metrics = registration_metrics(
            ddf, vols["fixed_label"].array, vols["moving_label"].array, labels=labels, spacing=fixed.spacing
        )
    else:
        metrics = jacobian_stats(ddf)
    overview = registration_figure(
        fixed.array,
        vols["moving"].array,
        ddf,
        fixed.affine,
        vols["fixed_label"].array if with_labels else None,
        vols["moving_label"].array if with_labels else None,
        grid_step=grid_step,
    )
    from medi2i.viz.figures import warp_array

    window = DisplayVolume(fixed.array, fixed.affine).display_window
    mosaic = axial_mosaic(
        [
            DisplayVolume(fixed.array, fixed.affine, "fixed", window),
            DisplayVolume(vols["moving"].array, fixed.affine, "moving", window),
            DisplayVolume(warp_array(vols["moving"].array, ddf), fixed.affine, "warped", window),
        ],
        mask=vols["fixed_label"].array > 0 if "fixed_label" in vols else None,
    )
    geometry = geometry_rows(vols) + [
        {
            "input": "ddf",
            "file": str(case.ddf),
            "shape": "x".join(str(s) for s in ddf.shape),
            "spacing (mm)": "voxel units",
            "orientation": "channels = array axes",
            "origin (mm)": "",
            "dtype": str(ddf.dtype),
        }
    ]
    return _case_page(case.case_id, Path(out_dir), overview, mosaic, metrics, geometry, "registration")


def sort_worst_first(results: Sequence[CaseResult], sort_by: str) -> list[CaseResult]:
    """Cases ordered from the worst to the best value of ``sort_by`` (NaN counts as worst).

    Example:
        >>> rs = [CaseResult("a", Path("a"), {"mae": 1.0}), CaseResult("b", Path("b"), {"mae": 9.0})]
        >>> [r.case_id for r in sort_worst_first(rs, "mae")]
        ['b', 'a']
    """
    if results and any(sort_by not in r.metrics for r in results):
        raise Medi2iInputError(
            "sort metric missing from the case metrics",
            field="sort_by",
            found=sort_by,
            expected=str(list(results[0].metrics)),
        )
    sign = 1.0 if HIGHER_IS_BETTER.get(sort_by, False) else -1.0

    def key(r: CaseResult) -> tuple[int, float]:
        value = float(r.metrics[sort_by])
        return (0, 0.0) if math.isnan(value) else (1, sign * value)

    return sorted(results, key=key)


def write_index(
    results: Sequence[CaseResult],
    out_dir: PathLike,
    *,
    sort_by: str,
    title: str,
    extra_sections: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write ``index.html`` (and ``qa_cases.csv``): summary statistics and every case, worst ``sort_by`` first.

    Args:
        results: one :class:`CaseResult` per case.
        out_dir: report folder.
        sort_by: metric to sort by (direction from :data:`HIGHER_IS_BETTER`; unknown metrics: larger is worse).
        title: page title.
        extra_sections: more ``(heading, html)`` sections (e.g. :func:`training_section`).

    Returns:
        Path of ``index.html``.
    """
    out_dir = Path(out_dir)
    ordered = sort_worst_first(results, sort_by)
    table = pd.DataFrame([{"case_id": r.case_id, **r.metrics} for r in ordered])
    per_label = [c for c in table.columns if re.fullmatch(r"(dice|hd95)_\d+", c)]
    shown = table.drop(columns=per_label)
    with atomic_path(out_dir / "qa_cases.csv") as tmp:
        table.to_csv(tmp, index=False)
    numeric = shown.drop(columns=["case_id"]).select_dtypes("number")
    summary = [
        {
            "metric": c,
            "mean": float(numeric[c].mean()),
            "std": float(numeric[c].std(ddof=0)),  # population std: defined (0) for a single case
            "min": float(numeric[c].min()),
            "max": float(numeric[c].max()),
        }
        for c in numeric.columns
    ]
    direction = "highest" if not HIGHER_IS_BETTER.get(sort_by, False) else "lowest"
    sections = [
        ("Summary", f"<p>{len(ordered)} case(s).</p>" + _table(summary)),
        (
            f"Cases, worst first (sorted by {sort_by}, {direction} first)",
            _table(shown.to_dict(orient="records"), link="case_id"),
        ),
        *extra_sections,
    ]
    return _write_text(out_dir / "index.html", html_page(title, sections))


def training_section(log_dir: PathLike, *, max_images: int = 4) -> str:
    """HTML with the scalar curves and the latest image summaries (sample grids) of TensorBoard logs.

    Every folder under ``log_dir`` holding ``events.out.tfevents*`` files is read as one run with
    ``tensorboard.backend.event_processing.event_accumulator``.

    Args:
        log_dir: a bundle's log folder.
        max_images: at most this many image tags per run (their last step).

    Raises:
        Medi2iInputError: ``log_dir`` is missing or holds no event file.
    """
    from tensorboard.backend.event_processing import event_accumulator

    log_dir = Path(log_dir)
    runs = sorted({p.parent for p in log_dir.rglob("events.out.tfevents*")}) if log_dir.is_dir() else []
    if not runs:
        raise Medi2iInputError("no TensorBoard event files found", path=log_dir, field="--log-dir")
    parts = []
    for run in runs:
        acc = event_accumulator.EventAccumulator(
            str(run), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 1}
        )
        acc.Reload()
        name = html_lib.escape(str(run.relative_to(log_dir)) if run != log_dir else log_dir.name)
        tags = acc.Tags()
        scalars = sorted(tags.get("scalars", []))
        if scalars:
            cols = min(3, len(scalars))
            rows = math.ceil(len(scalars) / cols)
            fig = Figure(figsize=(4 * cols, 2.8 * rows))
            axes = fig.subplots(rows, cols, squeeze=False).ravel()
            for ax, tag in zip(axes, scalars, strict=False):
                events = acc.Scalars(tag)
                # markers when there are few points: a single logged value would draw no line at all
                marker = "o" if len(events) <= 20 else None
                ax.plot([e.step for e in events], [e.value for e in events], lw=1, marker=marker, markersize=3)
                ax.set_title(tag, fontsize=9)
                ax.set_xlabel("step", fontsize=8)
                ax.tick_params(labelsize=7)
            for ax in axes[len(scalars) :]:
                ax.set_visible(False)
            fig.tight_layout()
            parts.append(f"<h3>{name}: curves</h3>" + img_tag(figure_png(fig), f"{name} curves"))
        for tag in sorted(tags.get("images", []))[:max_images]:
            last = acc.Images(tag)[-1]
            data = base64.b64encode(last.encoded_image_string).decode("ascii")
            alt = html_lib.escape(f"{tag} step {last.step}")
            parts.append(f'<h3>{name}: {alt}</h3><img alt="{alt}" src="data:image/png;base64,{data}">')
    return "\n".join(parts)


def _sections_for(log_dir: PathLike | None) -> list[tuple[str, str]]:
    return [("Training (TensorBoard logs)", training_section(log_dir))] if log_dir is not None else []


_JACOBIAN_COLUMNS = ("jac_det_mean", "jac_det_std", "folding_percent", "sdlogj", "sdlogj_l2r")


def _check_sort_by(sort_by: str, allowed: Sequence[str], per_label: bool) -> None:
    """Reject an unknown sort metric before any page is written."""
    if sort_by in allowed or (per_label and re.fullmatch(r"(dice|hd95)_\d+", sort_by)):
        return
    raise Medi2iInputError(
        "unknown sort metric", field="--sort-by", found=repr(sort_by), expected=f"one of {list(allowed)}"
    )


def _check_files(cases: Sequence[SynthesisQACase] | Sequence[RegistrationQACase]) -> None:
    """Every referenced file exists (checked for all cases before the first page is written)."""
    for case in cases:
        for name, value in vars(case).items():
            if isinstance(value, Path) and not value.is_file():
                raise Medi2iInputError(f"case '{case.case_id}': file not found", path=value, field=name)


def _check_ids(ids: Sequence[str]) -> None:
    if not ids:
        raise Medi2iInputError("no cases to report", field="cases")
    seen: set[str] = set()
    for case_id in ids:
        _safe_name(case_id)
        if case_id in seen:
            raise Medi2iInputError("duplicate case id", field="case_id", found=repr(case_id))
        seen.add(case_id)


def qa_synthesis(
    cases: Sequence[SynthesisQACase],
    out_dir: PathLike,
    *,
    preset: str = "ct",
    sort_by: str = "mae",
    log_dir: PathLike | None = None,
    ct_window_preset: str = "soft_tissue",
) -> Path:
    """Write the synthesis QA report (case pages + index, worst ``sort_by`` first); returns ``index.html``.

    Raises:
        Medi2iInputError: no cases, duplicate or unusable ids, a missing file, an unknown ``sort_by``,
            unreadable logs (all before anything is written); unreadable volumes or mismatched grids.
    """
    _check_ids([c.case_id for c in cases])
    _check_files(cases)
    _check_sort_by(sort_by, ("mae", "psnr", "ssim"), per_label=False)
    extra = _sections_for(log_dir)  # read the logs first: a bad --log-dir fails before any page is written
    results = [synthesis_case_page(c, out_dir, preset=preset, ct_window_preset=ct_window_preset) for c in cases]
    return write_index(results, out_dir, sort_by=sort_by, title=f"synthesis QA ({preset})", extra_sections=extra)


def qa_registration(
    cases: Sequence[RegistrationQACase],
    out_dir: PathLike,
    *,
    sort_by: str | None = None,
    labels: Sequence[int] | None = None,
    log_dir: PathLike | None = None,
    grid_step: int = 6,
) -> Path:
    """Write the registration QA report; ``sort_by`` defaults to ``dice_mean`` with labels, else ``folding_percent``.

    Raises:
        Medi2iInputError: as :func:`qa_synthesis`; Dice/HD95 sort metrics need label maps for every case.
    """
    _check_ids([c.case_id for c in cases])
    _check_files(cases)
    with_labels = all(c.fixed_label is not None and c.moving_label is not None for c in cases)
    if sort_by is not None:
        overlap = ("dice_mean", "hd95_mean", "n_labels") if with_labels else ()
        _check_sort_by(sort_by, (*overlap, *_JACOBIAN_COLUMNS), per_label=with_labels)
    extra = _sections_for(log_dir)
    results = [registration_case_page(c, out_dir, labels=labels, grid_step=grid_step) for c in cases]
    if sort_by is None:
        sort_by = "dice_mean" if with_labels else "folding_percent"
    return write_index(results, out_dir, sort_by=sort_by, title="registration QA", extra_sections=extra)
