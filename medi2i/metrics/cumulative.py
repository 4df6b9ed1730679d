"""MONAI-style cumulative metrics (``__call__`` per batch, ``aggregate``, ``reset``) for validation loops.

Each class wraps the ``compute``-style functions of this package, so a validation score logged during
training is computed exactly like the final evaluation. They subclass
:class:`monai.metrics.CumulativeIterationMetric`, so MONAI/ignite handlers (``IgniteMetricHandler``,
``MetricsSaver``) can drive them. Per-case values are buffered as ``(B, 1)`` float64 tensors; NaN marks a
case without a value (e.g. no label to score) and is left out of the reduction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction, StrEnum, look_up_option

from medi2i.errors import Medi2iInputError
from medi2i.metrics.intensity import mae, ms_ssim, psnr, ssim
from medi2i.metrics.jacobian import jacobian_stats
from medi2i.metrics.overlap import LabelConvention, label_mean, overlap_metrics

__all__ = ["JacobianMetric", "LabelOverlapMetric", "SynthesisMetric"]


class _Overlap(StrEnum):
    DICE = "dice"
    HD95 = "hd95"


class _Intensity(StrEnum):
    MAE = "mae"
    PSNR = "psnr"
    SSIM = "ssim"
    MS_SSIM = "ms_ssim"


class _JacobianStatistic(StrEnum):
    SDLOGJ = "sdlogj"
    SDLOGJ_L2R = "sdlogj_l2r"
    FOLDING_PERCENT = "folding_percent"
    JAC_DET_MEAN = "jac_det_mean"
    JAC_DET_STD = "jac_det_std"


def _batch_first(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim < 4 or x.shape[1] != 1:
        raise Medi2iInputError(
            "expected a batch of single-channel images", field=name, found=tuple(x.shape), expected="(B, 1, H, W[, D])"
        )
    return x


class _CaseMetric(CumulativeIterationMetric):
    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__()
        self.reduction = look_up_option(reduction, MetricReduction)

    def aggregate(self, reduction: MetricReduction | str | None = None) -> torch.Tensor:
        """Reduce the buffered ``(N, 1)`` per-case values (NaN left out); ``"none"`` returns them as they are."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise Medi2iInputError("nothing to aggregate", field="buffer", expected="call the metric on a batch first")
        value, _ = do_metric_reduction(data, reduction or self.reduction)
        return value

    @staticmethod
    def _column(values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(np.asarray(values, dtype=np.float64)).reshape(-1, 1)


class LabelOverlapMetric(_CaseMetric):
    """Mean per-label Dice or HD95 per case (:func:`medi2i.metrics.overlap.overlap_metrics`).

    Args:
        metric: ``"dice"`` or ``"hd95"``.
        labels: labels to score; ``None`` = those present in each case.
        spacing: voxel spacing in mm for HD95 (``None`` = voxel units).
        convention: ``"strict"``, ``"reference"`` or ``"l2r"``.
        reduction: MONAI reduction over cases (default mean).

    Example:
        >>> x = torch.zeros(2, 1, 8, 8, dtype=torch.long); x[:, :, 2:6, 2:6] = 1
        >>> metric = LabelOverlapMetric("dice")
        >>> metric(x, x).flatten().tolist(), metric.aggregate().item()
        ([1.0, 1.0], 1.0)
    """

    def __init__(
        self,
        metric: str = "dice",
        labels: Sequence[int] | None = None,
        spacing: Sequence[float] | None = None,
        convention: LabelConvention | str = LabelConvention.STRICT,
        reduction: MetricReduction | str = MetricReduction.MEAN,
    ) -> None:
        super().__init__(reduction)
        self.metric = _Overlap(look_up_option(metric, _Overlap))
        self.labels = labels
        self.spacing = spacing
        self.convention = LabelConvention(look_up_option(convention, LabelConvention))

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if y is None:
            raise Medi2iInputError("a reference label map is needed", field="y")
        pred, ref = _batch_first(y_pred, "y_pred"), _batch_first(y, "y")
        values = []
        for p, r in zip(pred[:, 0], ref[:, 0], strict=True):
            out = overlap_metrics(
                p,
                r,
                self.labels,
                self.spacing,
                convention=self.convention,
                with_dice=self.metric is _Overlap.DICE,
                with_hd95=self.metric is _Overlap.HD95,
            )
            values.append(label_mean(out[self.metric.value]))
        return self._column(values)


class JacobianMetric(_CaseMetric):
    """A per-case Jacobian statistic of a batch of DDFs (:func:`medi2i.metrics.jacobian.jacobian_stats`).

    Args:
        statistic: ``"sdlogj"`` (standard), ``"sdlogj_l2r"``, ``"folding_percent"``, ``"jac_det_mean"`` or
            ``"jac_det_std"``.
        reduction: MONAI reduction over cases (default mean).

    Example:
        >>> metric = JacobianMetric("folding_percent")
        >>> metric(torch.zeros(2, 3, 8, 8, 8)).flatten().tolist()
        [0.0, 0.0]
    """

    def __init__(self, statistic: str = "sdlogj", reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__(reduction)
        self.statistic = _JacobianStatistic(look_up_option(statistic, _JacobianStatistic))

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if y_pred.ndim not in (4, 5) or y_pred.shape[1] != y_pred.ndim - 2:
            raise Medi2iInputError(
                "expected a batch of DDFs",
                field="y_pred",
                found=tuple(y_pred.shape),
                expected="(B, 2, H, W) or (B, 3, X, Y, Z)",
            )
        return self._column([jacobian_stats(u)[self.statistic.value] for u in y_pred])


class SynthesisMetric(_CaseMetric):
    """A per-case intensity metric with a fixed data range (:mod:`medi2i.metrics.intensity`).

    Args:
        metric: ``"mae"``, ``"psnr"``, ``"ssim"`` or ``"ms_ssim"``.
        data_range: fixed intensity range (ignored by MAE but still required, so configs state it).
        reduction: MONAI reduction over cases (default mean).
        **options: passed to the metric function (e.g. ``window="gaussian"`` for SSIM).

    ``__call__(y_pred, y, mask=None)`` takes ``(B, 1, *spatial)`` tensors; ``mask`` the same shape.

    Example:
        >>> x = torch.rand(2, 1, 16, 16)
        >>> SynthesisMetric("ssim", data_range=1.0)(x, x).flatten().tolist()
        [1.0, 1.0]
    """

    def __init__(
        self,
        metric: str = "psnr",
        *,
        data_range: float,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        **options: Any,
    ) -> None:
        super().__init__(reduction)
        self.metric = _Intensity(look_up_option(metric, _Intensity))
        self.data_range = data_range
        self.options = options

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if y is None:
            raise Medi2iInputError("a reference image is needed", field="y")
        pred, ref = _batch_first(y_pred, "y_pred"), _batch_first(y, "y")
        mask = kwargs.get("mask")
        values = []
        for i in range(pred.shape[0]):
            m = None if mask is None else mask[i, 0]
            if self.metric is _Intensity.MAE:
                values.append(mae(pred[i, 0], ref[i, 0], m))
            else:
                function = _INTENSITY_FUNCTIONS[self.metric]
                values.append(function(pred[i, 0], ref[i, 0], data_range=self.data_range, mask=m, **self.options))
        return self._column(values)


_INTENSITY_FUNCTIONS = {_Intensity.PSNR: psnr, _Intensity.SSIM: ssim, _Intensity.MS_SSIM: ms_ssim}
