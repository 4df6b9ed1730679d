"""Input checks shared by the metric functions (arrays in, :class:`Medi2iInputError` out)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medi2i.errors import Medi2iInputError


def to_numpy(x: object, name: str) -> np.ndarray:
    """Return ``x`` (numpy array, torch tensor or nested sequence) as a numpy array, never copying needlessly."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as exc:  # ragged lists and other non-array input
        raise Medi2iInputError(f"cannot be read as an array ({type(exc).__name__})", field=name) from exc


def check_same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise Medi2iInputError(
            f"{names[0]} and {names[1]} must have the same shape",
            field=names[1],
            found=f"{names[0]} {tuple(a.shape)} vs {names[1]} {tuple(b.shape)}",
            expected="equal shapes (same voxel grid)",
        )


def check_finite(x: np.ndarray, name: str) -> None:
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise Medi2iInputError("values must be numeric", field=name, found=str(x.dtype), expected="a numeric array")
    if np.issubdtype(x.dtype, np.inexact) and not np.all(np.isfinite(x)):
        raise Medi2iInputError(
            "contains NaN or Inf",
            field=name,
            found=f"{int(np.count_nonzero(~np.isfinite(x)))} non-finite values",
            expected="finite values",
        )


def as_label_map(x: object, name: str) -> np.ndarray:
    """An integer label map (any numeric dtype holding whole, non-negative numbers) as ``int64``."""
    arr = to_numpy(x, name)
    check_finite(arr, name)
    if arr.ndim == 0:
        raise Medi2iInputError("label map must have spatial dimensions", field=name, found=arr.shape)
    if arr.dtype == np.bool_:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.array_equal(arr, np.round(arr)):
            raise Medi2iInputError(
                "label map holds non-integer values", field=name, found=str(arr.dtype), expected="whole numbers"
            )
    out = arr.astype(np.int64, copy=False)
    if out.size and out.min() < 0:
        raise Medi2iInputError("label map holds negative labels", field=name, found=int(out.min()), expected=">= 0")
    return out


def as_mask(x: object | None, shape: tuple[int, ...], name: str = "mask") -> np.ndarray | None:
    """A boolean mask (``> 0``) of the given shape, or ``None``."""
    if x is None:
        return None
    arr = to_numpy(x, name)
    check_finite(arr, name)
    if arr.shape != shape:
        raise Medi2iInputError(
            "mask must have the image's shape", field=name, found=tuple(arr.shape), expected=tuple(shape)
        )
    return arr > 0


def as_spacing(spacing: Sequence[float] | float | None, ndim: int, name: str = "spacing") -> tuple[float, ...]:
    """Per-axis spacing in mm; ``None`` means 1 per axis (voxel units)."""
    if spacing is None:
        return (1.0,) * ndim
    values = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if values.size == 1:
        values = np.repeat(values, ndim)
    if values.shape != (ndim,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise Medi2iInputError(
            "spacing must give one positive, finite value per spatial axis",
            field=name,
            found=np.asarray(spacing).tolist(),
            expected=f"{ndim} values > 0",
        )
    return tuple(float(v) for v in values)


def check_data_range(data_range: float) -> float:
    try:
        value = float(data_range)
    except (TypeError, ValueError):
        raise Medi2iInputError("data_range must be a number", field="data_range", found=repr(data_range)) from None
    if not np.isfinite(value) or value <= 0:
        raise Medi2iInputError(
            "data_range must be positive and finite", field="data_range", found=value, expected="> 0"
        )
    return value
