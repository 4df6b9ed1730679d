"""Metrics that match the definitions the field publishes (Learn2Reg, SynthRAD2023, scikit-image).

* :mod:`~medi2i.metrics.overlap`: per-label Dice and HD95 (surface-distance / Learn2Reg surfaces).
* :mod:`~medi2i.metrics.jacobian`: Jacobian determinant, folding fraction, SDlogJ (standard and Learn2Reg).
* :mod:`~medi2i.metrics.intensity`: MAE, PSNR, SSIM, MS-SSIM with masks and an explicit data range.
* :mod:`~medi2i.metrics.synthrad`: SynthRAD2023 CT metrics and the MR preset.
* :mod:`~medi2i.metrics.registration`: per-pair registration metrics (Learn2Reg label warping).
* :mod:`~medi2i.metrics.evaluate`: many cases from files or manifests -> per-case CSV + summary.
* :mod:`~medi2i.metrics.cumulative`: MONAI-style cumulative metrics for validation loops.
"""

from __future__ import annotations

from medi2i.metrics.cumulative import JacobianMetric, LabelOverlapMetric, SynthesisMetric
from medi2i.metrics.evaluate import (
    EvaluationResult,
    RegistrationCase,
    SynthesisCase,
    evaluate_registration,
    evaluate_synthesis,
    registration_cases_from_manifest,
    summarize,
    synthesis_cases_from_manifest,
)
from medi2i.metrics.intensity import MS_SSIM_WEIGHTS, SSIMWindow, mae, ms_ssim, psnr, ssim, ssim_map
from medi2i.metrics.jacobian import SDlogJMode, folding_fraction, jacobian_determinant, jacobian_stats, sdlogj
from medi2i.metrics.overlap import (
    LabelConvention,
    SurfaceDistances,
    compute_surface_distances,
    dice,
    hd95,
    image_diagonal,
    label_mean,
    mean_dice,
    mean_hd95,
    overlap_metrics,
    robust_hausdorff,
    surfel_area_table,
)
from medi2i.metrics.registration import HD95Units, registration_metrics, warp_labels
from medi2i.metrics.synthrad import (
    CT_RANGE,
    MR_PERCENTILES,
    SynthesisPreset,
    mr_metrics,
    synthesis_metrics,
    synthrad_metrics,
)

__all__ = [
    "CT_RANGE",
    "MR_PERCENTILES",
    "MS_SSIM_WEIGHTS",
    "EvaluationResult",
    "HD95Units",
    "JacobianMetric",
    "LabelConvention",
    "LabelOverlapMetric",
    "RegistrationCase",
    "SDlogJMode",
    "SSIMWindow",
    "SurfaceDistances",
    "SynthesisCase",
    "SynthesisMetric",
    "SynthesisPreset",
    "compute_surface_distances",
    "dice",
    "evaluate_registration",
    "evaluate_synthesis",
    "folding_fraction",
    "hd95",
    "image_diagonal",
    "jacobian_determinant",
    "jacobian_stats",
    "label_mean",
    "mae",
    "mean_dice",
    "mean_hd95",
    "mr_metrics",
    "ms_ssim",
    "overlap_metrics",
    "psnr",
    "registration_cases_from_manifest",
    "registration_metrics",
    "robust_hausdorff",
    "sdlogj",
    "ssim",
    "ssim_map",
    "summarize",
    "surfel_area_table",
    "synthesis_cases_from_manifest",
    "synthesis_metrics",
    "synthrad_metrics",
    "warp_labels",
]
