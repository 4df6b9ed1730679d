"""Display windows: CT window/level presets in HU and MR percentile windows.

A window maps an intensity interval ``[low, high]`` to the display range ``[0, 1]`` (values outside
are clipped). CT presets are the usual radiology window/level pairs (level = centre, width = span,
in HU); MR images have no absolute scale, so their window comes from percentiles of the foreground.

Example:
    >>> ct_window("brain")
    Window(low=0.0, high=80.0)
    >>> float(apply_window(np.array([-100.0, 40.0, 500.0]), ct_window("brain"))[1])
    0.5
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from medi2i.options import choose

__all__ = ["CT_PRESETS", "CTWindowPreset", "Window", "apply_window", "ct_window", "percentile_window"]


class CTWindowPreset(str, Enum):
    """Named CT windows (level/width in HU)."""

    BRAIN = "brain"
    SUBDURAL = "subdural"
    SOFT_TISSUE = "soft_tissue"
    BONE = "bone"
    FULL = "full"


# (level, width) in HU; standard radiology settings (brain 40/80, subdural 75/215, soft tissue 50/400,
# bone 400/1800); "full" is the synthesis metrics' clip range [-1024, 3000] so nothing is hidden.
CT_PRESETS: dict[CTWindowPreset, tuple[float, float]] = {
    CTWindowPreset.BRAIN: (40.0, 80.0),
    CTWindowPreset.SUBDURAL: (75.0, 215.0),
    CTWindowPreset.SOFT_TISSUE: (50.0, 400.0),
    CTWindowPreset.BONE: (400.0, 1800.0),
    CTWindowPreset.FULL: (988.0, 4024.0),
}


@dataclass(frozen=True)
class Window:
    """An intensity interval ``[low, high]`` shown as black to white.

    Args:
        low: value shown black.
        high: value shown white; must exceed ``low``.

    Raises:
        ValueError: ``high <= low`` or a non-finite bound.
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high)) or self.high <= self.low:
            raise ValueError(f"Window needs finite low < high, got low={self.low}, high={self.high}")

    @classmethod
    def from_level_width(cls, level: float, width: float) -> Window:
        """Window centred on ``level`` spanning ``width`` (radiology convention)."""
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        return cls(float(level - width / 2), float(level + width / 2))

    @property
    def level(self) -> float:
        """Centre of the window."""
        return (self.low + self.high) / 2

    @property
    def width(self) -> float:
        """Span of the window."""
        return self.high - self.low


def ct_window(preset: CTWindowPreset | str = CTWindowPreset.BRAIN) -> Window:
    """The CT window of a named preset (``brain``, ``subdural``, ``soft_tissue``, ``bone``, ``full``).

    Example:
        >>> ct_window("bone").level, ct_window("bone").width
        (400.0, 1800.0)
    """
    level, width = CT_PRESETS[choose(preset, CTWindowPreset, field="preset")]
    return Window.from_level_width(level, width)


def percentile_window(
    array: np.ndarray, mask: np.ndarray | None = None, *, lower: float = 0.5, upper: float = 99.5
) -> Window:
    """MR window from the ``lower``/``upper`` percentiles of the voxels inside ``mask`` (all finite voxels if None).

    Without a mask, voxels equal to the array's minimum (the background of skull-stripped or padded
    images) are left out so that a large empty field of view does not pull the window to zero.

    Args:
        array: image of any shape.
        mask: optional boolean mask of the same shape.
        lower: lower percentile in [0, 100).
        upper: upper percentile in (lower, 100].

    Returns:
        The window; a unit-width window around the value for a constant image.

    Example:
        >>> w = percentile_window(np.arange(101.0), lower=0, upper=100)
        >>> w.low, w.high
        (1.0, 100.0)
    """
    if not 0 <= lower < upper <= 100:
        raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
    values = np.asarray(array, dtype=np.float64)
    if mask is not None:
        values = values[np.asarray(mask, bool)]
    values = values[np.isfinite(values)]
    if mask is None and values.size:
        above = values[values > values.min()]
        values = above if above.size else values
    if values.size == 0:
        return Window(0.0, 1.0)
    low, high = np.percentile(values, [lower, upper])
    if high <= low:
        return Window(float(low) - 0.5, float(low) + 0.5)
    return Window(float(low), float(high))


def apply_window(array: np.ndarray, window: Window) -> np.ndarray:
    """Map ``array`` through ``window`` to float32 in ``[0, 1]`` (clipped)."""
    scaled = (np.asarray(array, dtype=np.float32) - window.low) / window.width
    return np.clip(scaled, 0.0, 1.0)
