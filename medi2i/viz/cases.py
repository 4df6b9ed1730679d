"""QA cases: which files make one synthesis or registration case, from explicit paths or a manifest.

Predictions follow ``medi2i evaluate``'s naming (:mod:`medi2i.metrics.evaluate`):
``<pred_dir>/<subject_id>.nii.gz`` for synthesis and ``<pred_dir>/disp_<pair_id>.nii.gz`` (``.nii``,
``.npz``) for registration, or a ``pred`` / ``ddf`` manifest column.

Example:
    >>> SynthesisQACase("sub-000", Path("t1.nii.gz"), Path("sct.nii.gz"), Path("ct.nii.gz")).mask is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medi2i.typing import PathLike

__all__ = [
    "RegistrationQACase",
    "SynthesisQACase",
    "registration_qa_cases_from_manifest",
    "synthesis_qa_cases_from_manifest",
]


@dataclass(frozen=True)
class SynthesisQACase:
    """One synthesis case: source (network input), prediction, target and optional mask, on one grid."""

    case_id: str
    source: Path
    pred: Path
    target: Path
    mask: Path | None = None


@dataclass(frozen=True)
class RegistrationQACase:
    """One registration pair: fixed and moving images, a DDF on the fixed grid, optional label maps."""

    case_id: str
    fixed: Path
    moving: Path
    ddf: Path
    fixed_label: Path | None = None
    moving_label: Path | None = None


def synthesis_qa_cases_from_manifest(
    manifest: PathLike, data_root: PathLike, *, pred_dir: PathLike | None = None, split: str | None = None
) -> list[SynthesisQACase]:
    """QA cases of a synthesis manifest (``subject_id, split, source, target[, mask]``) with their predictions.

    Raises:
        Medi2iInputError: as :func:`medi2i.metrics.evaluate.synthesis_cases_from_manifest`.
    """
    from medi2i.data.manifest import read_manifest
    from medi2i.metrics.evaluate import synthesis_cases_from_manifest

    scored = synthesis_cases_from_manifest(manifest, data_root, pred_dir=pred_dir, split=split)
    rows = {r["subject_id"]: r for r in read_manifest(manifest, data_root, kind="synthesis", split=split)}
    return [SynthesisQACase(c.case_id, Path(rows[c.case_id]["source"]), c.pred, c.target, c.mask) for c in scored]


def registration_qa_cases_from_manifest(
    manifest: PathLike, data_root: PathLike, *, pred_dir: PathLike | None = None, split: str | None = None
) -> list[RegistrationQACase]:
    """QA cases of a registration manifest (``pair_id, split, fixed, moving, fixed_label, moving_label, ...``).

    Raises:
        Medi2iInputError: as :func:`medi2i.metrics.evaluate.registration_cases_from_manifest`.
    """
    from medi2i.data.manifest import read_manifest
    from medi2i.metrics.evaluate import registration_cases_from_manifest

    scored = registration_cases_from_manifest(manifest, data_root, pred_dir=pred_dir, split=split)
    rows = {r["pair_id"]: r for r in read_manifest(manifest, data_root, kind="registration", split=split)}
    return [
        RegistrationQACase(
            c.case_id,
            Path(rows[c.case_id]["fixed"]),
            Path(rows[c.case_id]["moving"]),
            c.ddf,
            c.fixed_label,
            c.moving_label,
        )
        for c in scored
    ]
