"""Intensity presets with exact, recorded inverses (MONAI invertible transforms).

Synthesis models work in [-1, 1] (docs/conventions.md):

- CT: clip to the fixed HU window [-1024, 3000], then linear to [-1, 1].
- MR: clip to the foreground percentiles 0.5-99.5 (inside a mask, or voxels > 0), then linear
  to [-1, 1]; background -1.
- Registration: clip to [0, 99.5] percentiles, then linear to [0, 1].

Each transform records the linear map it applied (``push_transform`` extra info), so
``monai.transforms.Invertd`` (or :meth:`inverse`) maps a network output back to HU or to the
volume's original MR scale. Clipping is not invertible: values outside the window come back at
the window's edge, which is the documented behaviour of every fixed-window pipeline.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data.meta_obj import get_track_meta
from monai.transforms import InvertibleTransform, MapTransform
from monai.utils import TraceKeys, convert_to_tensor

from medi2i.errors import Medi2iInputError


@dataclass(frozen=True)
class LinearIntensityMap:
    """The map ``y = dst_lo + (clip(x, src_lo, src_hi) - src_lo) * (dst_hi - dst_lo) / (src_hi - src_lo)``.

    Example:
        >>> m = LinearIntensityMap(-1024.0, 3000.0, -1.0, 1.0)
        >>> float(m.forward(torch.tensor(988.0))), float(m.inverse(torch.tensor(0.0)))
        (0.0, 988.0)
    """

    src_lo: float
    src_hi: float
    dst_lo: float
    dst_hi: float

    def __post_init__(self) -> None:
        values = (self.src_lo, self.src_hi, self.dst_lo, self.dst_hi)
        if not all(np.isfinite(values)) or self.src_hi <= self.src_lo or self.dst_hi <= self.dst_lo:
            raise Medi2iInputError(
                "intensity window must be finite and increasing",
                field="window",
                found=values,
                expected="src_lo < src_hi and dst_lo < dst_hi, all finite",
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # divide by the source width first: window edges and mid-points then map exactly in float32
        unit = (x.clamp(self.src_lo, self.src_hi) - self.src_lo) / (self.src_hi - self.src_lo)
        return unit * (self.dst_hi - self.dst_lo) + self.dst_lo

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        # clamp first: a network output beyond [dst_lo, dst_hi] has no meaning outside the window it was
        # trained on (CT 1.2 would otherwise become 3402 HU)
        unit = (y.clamp(self.dst_lo, self.dst_hi) - self.dst_lo) / (self.dst_hi - self.dst_lo)
        return unit * (self.src_hi - self.src_lo) + self.src_lo

    def as_dict(self) -> dict[str, float]:
        return {"src_lo": self.src_lo, "src_hi": self.src_hi, "dst_lo": self.dst_lo, "dst_hi": self.dst_hi}


def _check_finite(img: torch.Tensor, name: str) -> None:
    if not torch.isfinite(img).all():
        raise Medi2iInputError(
            "image contains NaN or Inf",
            path=getattr(img, "meta", {}).get("filename_or_obj"),
            field=name,
            found=f"{int((~torch.isfinite(img)).sum())} non-finite voxels",
            expected="finite values",
        )


class _RecordedLinearMap(InvertibleTransform):
    """Shared machinery: apply a :class:`LinearIntensityMap`, record it, invert it."""

    def _apply(self, img: torch.Tensor, mapping: LinearIntensityMap, background: torch.Tensor | None) -> torch.Tensor:
        out = mapping.forward(img.float())
        if background is not None:
            out = torch.where(background, torch.as_tensor(mapping.dst_lo, dtype=out.dtype), out)
        self.push_transform(out, extra_info=mapping.as_dict())
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """Map values back with the recorded window (e.g. a network output back to HU)."""
        transform = self.pop_transform(data)
        mapping = LinearIntensityMap(**transform[TraceKeys.EXTRA_INFO])
        return mapping.inverse(data)


class CTWindow(_RecordedLinearMap):
    """Clip CT to a fixed HU window and map it linearly to ``[b_min, b_max]``.

    Args:
        hu_min: lower window edge in HU (default -1024, the SynthRAD range).
        hu_max: upper window edge in HU (default 3000).
        b_min: output value of ``hu_min``.
        b_max: output value of ``hu_max``.

    Example:
        >>> t = CTWindow()
        >>> y = t(torch.tensor([[-2000.0, -1024.0, 988.0, 3000.0, 5000.0]]))
        >>> y.tolist()
        [[-1.0, -1.0, 0.0, 1.0, 1.0]]
        >>> t.inverse(y).tolist()
        [[-1024.0, -1024.0, 988.0, 3000.0, 3000.0]]
    """

    def __init__(self, hu_min: float = -1024.0, hu_max: float = 3000.0, b_min: float = -1.0, b_max: float = 1.0):
        self.mapping = LinearIntensityMap(hu_min, hu_max, b_min, b_max)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        img = convert_to_tensor(img, track_meta=get_track_meta())
        _check_finite(img, "ct")
        return self._apply(img, self.mapping, None)


class PercentileNormalize(_RecordedLinearMap):
    """Clip to percentiles of the foreground and map linearly to ``[b_min, b_max]``.

    The percentiles are taken over the foreground: the ``mask`` passed at call time, or voxels
    ``> 0`` when there is none (skull-stripped and masked MR have exact zeros outside). Voxels
    outside the foreground are set to ``b_min`` when ``background_to_min`` is true.

    Args:
        lower: lower percentile (0-100).
        upper: upper percentile (0-100), > lower.
        b_min: output value at the lower percentile.
        b_max: output value at the upper percentile.
        foreground_only: compute percentiles over the foreground only (else over all voxels).
        background_to_min: set non-foreground voxels to ``b_min``.

    Example:
        >>> img = torch.cat([torch.zeros(1, 10), torch.arange(1.0, 101.0)[None]], dim=1)
        >>> y = PercentileNormalize(lower=0.0, upper=100.0)(img)
        >>> float(y[0, 0]), float(y[0, 10]), float(y[0, -1])
        (-1.0, -1.0, 1.0)
    """

    def __init__(
        self,
        lower: float = 0.5,
        upper: float = 99.5,
        b_min: float = -1.0,
        b_max: float = 1.0,
        foreground_only: bool = True,
        background_to_min: bool = True,
    ):
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
        self.lower, self.upper, self.b_min, self.b_max = lower, upper, b_min, b_max
        self.foreground_only = foreground_only
        self.background_to_min = background_to_min

    def __call__(self, img: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        img = convert_to_tensor(img, track_meta=get_track_meta())
        _check_finite(img, "image")
        values = img.float()
        if mask is not None:
            foreground = torch.as_tensor(mask).to(device=img.device) > 0
            if foreground.shape != img.shape:
                foreground = foreground.expand_as(img)
        else:
            foreground = values > 0
        selected = values[foreground] if self.foreground_only else values.reshape(-1)
        if selected.numel() == 0:
            raise Medi2iInputError(
                "no foreground voxels to take intensity percentiles from",
                path=getattr(img, "meta", {}).get("filename_or_obj"),
                field="mask" if mask is not None else "image > 0",
                expected="at least one foreground voxel",
            )
        quantiles = torch.tensor([self.lower / 100.0, self.upper / 100.0], dtype=torch.float64)
        lo, hi = (float(q) for q in np.quantile(selected.detach().cpu().double().numpy(), quantiles.numpy()))
        if hi <= lo:  # a constant foreground: keep a unit-width window so the map stays invertible
            hi = lo + 1.0
        mapping = LinearIntensityMap(lo, hi, self.b_min, self.b_max)
        background = ~foreground if self.background_to_min else None
        return self._apply(img, mapping, background)


class MRPercentileNormalize(PercentileNormalize):
    """MR preset: foreground percentiles 0.5-99.5 to [-1, 1], background -1."""

    def __init__(self, lower: float = 0.5, upper: float = 99.5, b_min: float = -1.0, b_max: float = 1.0):
        super().__init__(lower, upper, b_min, b_max, foreground_only=True, background_to_min=True)


class RegistrationNormalize(PercentileNormalize):
    """Registration preset: [0, 99.5] percentiles of the whole image to [0, 1] (no background special case)."""

    def __init__(self, lower: float = 0.0, upper: float = 99.5):
        super().__init__(lower, upper, 0.0, 1.0, foreground_only=False, background_to_min=False)


class _IntensityDictBase(MapTransform, InvertibleTransform):
    """Dictionary twin: loop over keys, delegate to the array transform."""

    transform: _RecordedLinearMap

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform.inverse(d[key])
        return d


class CTWindowd(_IntensityDictBase):
    """Dictionary version of :class:`CTWindow`."""

    def __init__(
        self,
        keys: KeysCollection,
        hu_min: float = -1024.0,
        hu_max: float = 3000.0,
        b_min: float = -1.0,
        b_max: float = 1.0,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.transform = CTWindow(hu_min, hu_max, b_min, b_max)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class PercentileNormalized(_IntensityDictBase):
    """Dictionary version of :class:`PercentileNormalize`; ``mask_key`` names an optional foreground mask."""

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str | None = None,
        lower: float = 0.5,
        upper: float = 99.5,
        b_min: float = -1.0,
        b_max: float = 1.0,
        foreground_only: bool = True,
        background_to_min: bool = True,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.transform = PercentileNormalize(lower, upper, b_min, b_max, foreground_only, background_to_min)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        mask = d.get(self.mask_key) if self.mask_key is not None else None
        if self.mask_key is not None and mask is None:
            raise Medi2iInputError("mask key missing from the data", field=self.mask_key, found=sorted(map(str, d)))
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], mask)  # type: ignore[call-arg]
        return d


class MRPercentileNormalized(PercentileNormalized):
    """Dictionary version of :class:`MRPercentileNormalize`."""

    def __init__(self, keys: KeysCollection, mask_key: str | None = None, allow_missing_keys: bool = False):
        super().__init__(keys, mask_key, 0.5, 99.5, -1.0, 1.0, True, True, allow_missing_keys)


class RegistrationNormalized(PercentileNormalized):
    """Dictionary version of :class:`RegistrationNormalize`."""

    def __init__(self, keys: KeysCollection, lower: float = 0.0, upper: float = 99.5, allow_missing_keys: bool = False):
        super().__init__(keys, None, lower, upper, 0.0, 1.0, False, False, allow_missing_keys)
