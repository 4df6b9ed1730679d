"""Evaluate many cases from files: per-case CSV plus a summary (CSV and JSON) in an output folder.

Where the predictions are (manifest mode):

* ``pred_dir`` given: synthesis predictions are ``<pred_dir>/<subject_id>.nii.gz`` (or ``.nii``);
  registration fields are ``<pred_dir>/disp_<pair_id>.nii.gz`` (or ``.nii``, ``.npz``; Learn2Reg's
  ``disp_`` naming, with the manifest's ``pair_id``).
* otherwise a manifest column ``pred`` (synthesis) or ``ddf`` (registration) holds the path, relative
  to ``data_root`` and validated like every manifest path (no absolute paths, no ``..`` escapes).

Geometry: prediction, target and mask (synthesis), and field, fixed label, moving label and fixed mask
(registration) must lie on one grid (same shape, grid corners within 1e-3 mm); otherwise the input
error names both files. A ``.npz`` field carries no affine to compare, so only its shape is checked.

Outputs (written atomically, only after every case has been read and scored, so a bad case leaves
nothing behind): ``<kind>_cases.csv`` (one row per case), ``<kind>_summary.csv`` and
``<kind>_summary.json``. The summary gives, per numeric column over the cases that have a value
(NaN = skipped label): ``n``, ``mean``, ``std`` (population, ``ddof=0``, as the Learn2Reg evaluation
v2.0), ``median`` and ``p30``, the 30th percentile (linear interpolation) that Learn2Reg reports as its
robustness column ("30", e.g. DSC30). The JSON also records the settings used.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medi2i.errors import Medi2iInputError
from medi2i.io import atomic_path
from medi2i.metrics.overlap import LabelConvention
from medi2i.metrics.registration import HD95Units, registration_metrics
from medi2i.metrics.synthrad import CT_RANGE, MR_PERCENTILES, SynthesisPreset, synthesis_metrics
from medi2i.typing import PathLike

__all__ = [
    "EvaluationResult",
    "RegistrationCase",
    "SynthesisCase",
    "evaluate_registration",
    "evaluate_synthesis",
    "registration_cases_from_manifest",
    "summarize",
    "synthesis_cases_from_manifest",
]

GRID_ATOL_MM = 1e-3
_NIFTI = (".nii.gz", ".nii")


@dataclass(frozen=True)
class SynthesisCase:
    """One synthesis case: a prediction scored against its target, optionally inside a mask."""

    case_id: str
    pred: Path
    target: Path
    mask: Path | None = None


@dataclass(frozen=True)
class RegistrationCase:
    """One registration pair: a DDF on the fixed grid and the two label maps (plus an optional fixed mask)."""

    case_id: str
    ddf: Path
    fixed_label: Path
    moving_label: Path
    fixed_mask: Path | None = None


@dataclass
class EvaluationResult:
    """What an evaluation produced: per-case table, summary table, written files and settings."""

    cases: pd.DataFrame
    summary: pd.DataFrame
    files: dict[str, Path]
    settings: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# cases from manifests
# --------------------------------------------------------------------------------------------------


def _safe_id(case_id: str, manifest: Path, column: str) -> str:
    if not case_id or "/" in case_id or "\\" in case_id or case_id in (".", ".."):
        raise Medi2iInputError(
            "id cannot name a prediction file",
            path=manifest,
            field=column,
            found=case_id,
            expected="a non-empty id without path separators",
        )
    return case_id


def _find_prediction(folder: Path, stem: str, suffixes: Sequence[str], manifest: Path, case_id: str) -> Path:
    for suffix in suffixes:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise Medi2iInputError(
        "prediction file not found",
        path=manifest,
        field=f"case '{case_id}'",
        found=f"none of {[str(folder / (stem + s)) for s in suffixes]}",
        expected="one prediction per selected manifest row",
    )


def synthesis_cases_from_manifest(
    manifest: PathLike, data_root: PathLike, *, pred_dir: PathLike | None = None, split: str | None = None
) -> list[SynthesisCase]:
    """Cases of a synthesis manifest (``subject_id, split, source, target[, mask]``) with their predictions.

    Args:
        manifest: the CSV (see :func:`medi2i.data.manifest.read_manifest`).
        data_root: folder the manifest's paths are relative to.
        pred_dir: folder of ``<subject_id>.nii.gz`` predictions; without it, a ``pred`` column is used.
        split: keep only this split (``train``/``val``/``test``); ``None`` keeps all rows.

    Returns:
        One :class:`SynthesisCase` per selected row.
    """
    from medi2i.data.manifest import read_manifest

    path, root = Path(manifest), Path(data_root)
    rows = read_manifest(path, root, kind="synthesis", split=split)
    folder = None if pred_dir is None else Path(pred_dir)
    if folder is not None and not folder.is_dir():
        raise Medi2iInputError("prediction folder not found", path=folder, field="pred_dir")
    cases = []
    for row in rows:
        case_id = _safe_id(row["subject_id"], path, "subject_id")
        if folder is not None:
            pred = _find_prediction(folder, case_id, _NIFTI, path, case_id)
        elif "pred" in row:
            pred = Path(row["pred"])  # validated and resolved by read_manifest like every path column
        else:
            raise Medi2iInputError(
                "no predictions given",
                path=path,
                field="pred",
                expected="--pred-dir with <subject_id>.nii.gz files, or a 'pred' column",
            )
        mask = Path(row["mask"]) if row.get("mask") else None
        cases.append(SynthesisCase(case_id, pred, Path(row["target"]), mask))
    return cases


def registration_cases_from_manifest(
    manifest: PathLike, data_root: PathLike, *, pred_dir: PathLike | None = None, split: str | None = None
) -> list[RegistrationCase]:
    """Cases of a registration manifest (``pair_id, split, fixed, moving, fixed_label, moving_label[, fixed_mask]``).

    Args:
        manifest: the CSV.
        data_root: folder the manifest's paths are relative to.
        pred_dir: folder of ``disp_<pair_id>.nii.gz`` (``.nii``, ``.npz``) fields; without it, a ``ddf``
            column is used.
        split: keep only this split; ``None`` keeps all rows.

    Returns:
        One :class:`RegistrationCase` per selected row.
    """
    from medi2i.data.manifest import read_manifest

    path, root = Path(manifest), Path(data_root)
    rows = read_manifest(path, root, kind="registration", split=split)
    folder = None if pred_dir is None else Path(pred_dir)
    if folder is not None and not folder.is_dir():
        raise Medi2iInputError("prediction folder not found", path=folder, field="pred_dir")
    cases = []
    for row in rows:
        case_id = _safe_id(row["pair_id"], path, "pair_id")
        for column in ("fixed_label", "moving_label"):
            if not row.get(column):
                raise Medi2iInputError(
                    "registration evaluation needs label maps",
                    path=path,
                    field=column,
                    found=f"no '{column}' for pair '{case_id}'",
                    expected="fixed_label and moving_label columns",
                )
        if folder is not None:
            ddf = _find_prediction(folder, f"disp_{case_id}", (*_NIFTI, ".npz"), path, case_id)
        elif "ddf" in row:
            ddf = Path(row["ddf"])
        else:
            raise Medi2iInputError(
                "no displacement fields given",
                path=path,
                field="ddf",
                expected="--pred-dir with disp_<pair_id>.nii.gz files, or a 'ddf' column",
            )
        mask = Path(row["fixed_mask"]) if row.get("fixed_mask") else None
        cases.append(RegistrationCase(case_id, ddf, Path(row["fixed_label"]), Path(row["moving_label"]), mask))
    return cases


# --------------------------------------------------------------------------------------------------
# summaries and writing
# --------------------------------------------------------------------------------------------------


def summarize(cases: pd.DataFrame, id_column: str = "case_id") -> pd.DataFrame:
    """Per numeric column: ``n``, ``mean``, ``std`` (ddof 0), ``median``, ``p30`` over the non-NaN cases.

    Example:
        >>> df = pd.DataFrame({"case_id": ["a", "b", "c", "d"], "dice": [0.7, 0.8, 0.9, float("nan")]})
        >>> s = summarize(df).iloc[0]
        >>> s["metric"], int(s["n"]), round(float(s["mean"]), 6), round(float(s["p30"]), 6)
        ('dice', 3, 0.8, 0.76)
    """
    rows = []
    for column in cases.columns:
        if column == id_column or not pd.api.types.is_numeric_dtype(cases[column]):
            continue
        values = cases[column].to_numpy(dtype=np.float64)
        values = values[~np.isnan(values)]
        if values.size == 0:
            rows.append(
                {"metric": column, "n": 0, "mean": math.nan, "std": math.nan, "median": math.nan, "p30": math.nan}
            )
            continue
        with np.errstate(invalid="ignore"):  # inf values (PSNR of identical images) give nan std
            rows.append(
                {
                    "metric": column,
                    "n": int(values.size),
                    "mean": float(np.mean(values)),
                    "std": float(np.std(values)),
                    "median": float(np.median(values)),
                    "p30": _quantile(values, 0.3),  # Learn2Reg "30" robustness column
                }
            )
    return pd.DataFrame(rows, columns=["metric", "n", "mean", "std", "median", "p30"])


def _quantile(values: np.ndarray, q: float) -> float:
    """Linear-interpolated quantile (numpy's default, as Learn2Reg) that stays defined with infinities.

    numpy's interpolation computes ``inf - inf`` next to an infinite value and returns NaN; here a
    quantile that falls between a finite value and +inf (or on two equal infinities) is +inf, as the
    limit says (e.g. PSNR = inf for cases identical to their reference). Finite inputs go to numpy.
    """
    if np.all(np.isfinite(values)):
        return float(np.quantile(values, q))
    ordered = np.sort(values)
    position = (ordered.size - 1) * q
    low, high = ordered[math.floor(position)], ordered[math.ceil(position)]
    fraction = position - math.floor(position)
    if fraction == 0 or low == high:
        return float(low)
    if high == math.inf or low == -math.inf:
        return float(high if high == math.inf else low)
    return float(low + (high - low) * fraction)


def _strict_json(value: object) -> object:
    """NaN -> null and +-inf -> "inf"/"-inf" strings, so strict JSON parsers accept the summary."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    return value


def _write_outputs(
    out_dir: Path, kind: str, cases: pd.DataFrame, summary: pd.DataFrame, settings: dict
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "cases": out_dir / f"{kind}_cases.csv",
        "summary_csv": out_dir / f"{kind}_summary.csv",
        "summary_json": out_dir / f"{kind}_summary.json",
    }
    with atomic_path(files["cases"]) as tmp:
        cases.to_csv(tmp, index=False, float_format="%.10g")
    with atomic_path(files["summary_csv"]) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.10g")
    payload = {
        "settings": settings,
        "n_cases": int(len(cases)),
        "metrics": {
            row["metric"]: {key: row[key] for key in ("n", "mean", "std", "median", "p30")}
            for row in summary.to_dict(orient="records")
        },
    }
    with atomic_path(files["summary_json"]) as tmp:
        # non-finite values are written as NaN / Infinity (Python's json and pandas read them back)
        tmp.write_text(json.dumps(_strict_json(payload), indent=2, allow_nan=False) + "\n")
    return files


def _settings(kind: str, **extra: Any) -> dict[str, Any]:
    import monai

    from medi2i import __version__

    return {
        "kind": kind,
        **extra,
        "medi2i": __version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _progress(items: Sequence, desc: str) -> Iterable:
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="case", disable=None, leave=False)  # silent when not a terminal


def _check_unique_ids(ids: Iterable[str]) -> None:
    seen: set[str] = set()
    for case_id in ids:
        if case_id in seen:
            raise Medi2iInputError("case ids must be unique", field="case_id", found=case_id)
        seen.add(case_id)


def _check_files_exist(cases: Sequence[Any], fields: Sequence[str]) -> None:
    # cheap up-front check, so a missing file in the last case fails before hours of scoring
    for case in cases:
        for name in fields:
            value = getattr(case, name)
            if value is not None and not Path(value).is_file():
                raise Medi2iInputError("file not found", path=value, field=f"case '{case.case_id}', {name}")


def _load(path: Path, kind: str):
    from medi2i.io import load_volume

    return load_volume(path, kind=kind)


def _same_grid(a, b, names: tuple[str, str]) -> None:
    from medi2i.io import check_same_grid

    check_same_grid(a, b, names=names, atol_mm=GRID_ATOL_MM)


def _in_case(err: Medi2iInputError, path: Path, case_id: str) -> Medi2iInputError:
    """The same error, re-addressed to the case's file (array-level checks know no file names)."""
    message = f"{err.field}: {err.message}" if err.field else err.message
    return Medi2iInputError(message, path=path, field=f"case '{case_id}'", found=err.found, expected=err.expected)


def _run(cases: Sequence[Any], score: Callable[[Any], dict[str, float]], desc: str) -> pd.DataFrame:
    rows = []
    for case in _progress(cases, desc):
        rows.append({"case_id": case.case_id, **score(case)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# synthesis
# --------------------------------------------------------------------------------------------------


def evaluate_synthesis(
    cases: Sequence[SynthesisCase],
    out_dir: PathLike,
    *,
    preset: SynthesisPreset | str = SynthesisPreset.CT,
) -> EvaluationResult:
    """Score synthesis predictions against their targets and write the per-case table and summary.

    Args:
        cases: from :func:`synthesis_cases_from_manifest` or built by hand.
        out_dir: output folder (created).
        preset: ``"ct"`` (SynthRAD2023 definition, HU) or ``"mr"`` (reference-percentile range); see
            :mod:`medi2i.metrics.synthrad`.

    Returns:
        :class:`EvaluationResult`; columns ``case_id, mae, psnr, ssim``.

    Raises:
        Medi2iInputError: no cases, duplicate ids, a missing file, grids that disagree (naming both
            files), non-finite values; raised before anything is written.
    """
    from monai.utils import look_up_option

    chosen = SynthesisPreset(look_up_option(preset, SynthesisPreset))
    if not cases:
        raise Medi2iInputError("no cases to evaluate", field="cases", expected="at least one case")
    _check_unique_ids(c.case_id for c in cases)
    _check_files_exist(cases, ("pred", "target", "mask"))

    def score(case: SynthesisCase) -> dict[str, float]:
        pred = _load(case.pred, "image")
        target = _load(case.target, "image")
        _same_grid(pred, target, (str(case.pred), str(case.target)))
        mask = None
        if case.mask is not None:
            mask_volume = _load(case.mask, "mask")
            _same_grid(mask_volume, target, (str(case.mask), str(case.target)))
            mask = mask_volume.array
        try:
            return synthesis_metrics(pred.array, target.array, mask, preset=chosen)
        except Medi2iInputError as err:
            raise _in_case(err, case.pred, case.case_id) from err

    table = _run(cases, score, "synthesis")
    summary = summarize(table)
    extra: dict[str, Any] = {"preset": chosen.value}
    if chosen is SynthesisPreset.CT:
        extra.update(range_hu=list(CT_RANGE), definition="SynthRAD2023 (MAE unclipped; PSNR/SSIM clipped, masked)")
    else:
        extra.update(reference_percentiles=list(MR_PERCENTILES), definition="reference-percentile range -> [0, 1]")
    settings = _settings("synthesis", **extra)
    files = _write_outputs(Path(out_dir), "synthesis", table, summary, settings)
    return EvaluationResult(table, summary, files, settings)


# --------------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------------


def _read_field(case: RegistrationCase, fixed) -> np.ndarray:
    from medi2i.io.geometry import corner_distance
    from medi2i.spatial import read_ddf

    ddf, affine = read_ddf(case.ddf)
    spatial = tuple(np.asarray(fixed.array).shape)
    if ddf.shape != (len(spatial),) + spatial:
        raise Medi2iInputError(
            "displacement field does not match the fixed label map's grid",
            path=case.ddf,
            field="shape",
            found=f"{case.ddf}: field {tuple(ddf.shape[1:])} x {ddf.shape[0]}, {case.fixed_label}: {spatial}",
            expected=f"a ({', '.join(map(str, spatial))}, {len(spatial)}) field on the fixed grid",
        )
    if case.ddf.name.lower().endswith(_NIFTI):
        # the same rule as check_same_grid: where the two affines put the grid corners, in mm
        gap = corner_distance(np.asarray(affine), np.asarray(fixed.affine), spatial)
        if gap > GRID_ATOL_MM:
            raise Medi2iInputError(
                "displacement field and fixed label map have different affines",
                path=case.ddf,
                field="affine",
                found=f"{case.ddf} vs {case.fixed_label}: max difference {gap:.3g} mm",
                expected=f"equal within {GRID_ATOL_MM} mm (the field lives on the fixed grid)",
            )
    return ddf


def evaluate_registration(
    cases: Sequence[RegistrationCase],
    out_dir: PathLike,
    *,
    labels: Sequence[int] | None = None,
    convention: LabelConvention | str = LabelConvention.STRICT,
    hd95_units: HD95Units | str | None = None,
    masked_jacobian: bool = False,
) -> EvaluationResult:
    """Score displacement fields (Dice, HD95 over warped labels; Jacobian statistics) and write the results.

    Args:
        cases: from :func:`registration_cases_from_manifest` or built by hand.
        out_dir: output folder (created).
        labels: labels to score; ``None`` = those present (see :func:`medi2i.metrics.overlap.dice`).
            Per-label columns follow the union of labels over cases.
        convention: ``"strict"`` (default), ``"reference"`` or ``"l2r"`` (Learn2Reg's skip rule).
        hd95_units: ``"mm"`` (fixed spacing) or ``"voxel"``; default voxel for ``"l2r"``, mm otherwise.
        masked_jacobian: restrict the Jacobian statistics to each case's ``fixed_mask``.

    Returns:
        :class:`EvaluationResult`; columns as :func:`medi2i.metrics.registration.registration_metrics`.

    Raises:
        Medi2iInputError: no cases, duplicate ids, missing files, grids that disagree (naming both files),
            ``masked_jacobian`` without masks; raised before anything is written.
    """
    from monai.utils import look_up_option

    conv = LabelConvention(look_up_option(convention, LabelConvention))
    units = None if hd95_units is None else HD95Units(look_up_option(hd95_units, HD95Units))
    if not cases:
        raise Medi2iInputError("no cases to evaluate", field="cases", expected="at least one case")
    _check_unique_ids(c.case_id for c in cases)
    _check_files_exist(cases, ("ddf", "fixed_label", "moving_label", "fixed_mask"))
    if masked_jacobian:
        missing = [c.case_id for c in cases if c.fixed_mask is None]
        if missing:
            raise Medi2iInputError(
                "masked_jacobian needs a fixed mask for every case",
                field="fixed_mask",
                found=f"no mask for {missing[:3]}",
            )

    def score(case: RegistrationCase) -> dict[str, float]:
        fixed = _load(case.fixed_label, "label")
        moving = _load(case.moving_label, "label")
        _same_grid(moving, fixed, (str(case.moving_label), str(case.fixed_label)))
        ddf = _read_field(case, fixed)
        mask = None
        if masked_jacobian and case.fixed_mask is not None:  # every case has one (checked above)
            mask_volume = _load(case.fixed_mask, "mask")
            _same_grid(mask_volume, fixed, (str(case.fixed_mask), str(case.fixed_label)))
            mask = mask_volume.array
        try:
            return registration_metrics(
                ddf,
                fixed.array,
                moving.array,
                labels=labels,
                spacing=fixed.spacing,
                convention=conv,
                hd95_units=units,
                fixed_mask=mask,
            )
        except Medi2iInputError as err:
            raise _in_case(err, case.ddf, case.case_id) from err

    table = _run(cases, score, "registration")
    # per-label columns in label order even when cases hold different label sets
    fixed_columns = [c for c in table.columns if not c.startswith(("dice_", "hd95_")) or c.endswith("_mean")]
    label_ids = sorted({int(c.split("_")[1]) for c in table.columns if c.split("_")[-1].isdigit()})
    table = table.reindex(columns=fixed_columns + [f"dice_{k}" for k in label_ids] + [f"hd95_{k}" for k in label_ids])
    summary = summarize(table)
    effective_units = units or (HD95Units.VOXEL if conv is LabelConvention.L2R else HD95Units.MM)
    settings = _settings(
        "registration",
        convention=conv.value,
        hd95_units=effective_units.value,
        labels=None if labels is None else [int(k) for k in labels],
        masked_jacobian=bool(masked_jacobian),
        label_warping="scipy map_coordinates order=0 at x + u(x) (Learn2Reg)",
    )
    files = _write_outputs(Path(out_dir), "registration", table, summary, settings)
    return EvaluationResult(table, summary, files, settings)
