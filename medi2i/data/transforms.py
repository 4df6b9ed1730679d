"""MONAI-composable data transforms for medi2i, and the presets built from them.

- :class:`LoadVolumed` loads files through :func:`medi2i.io.load_volume`, so every volume that
  enters a pipeline has passed the same validation as ``medi2i check`` (geometry, NaNs, labels).
- Intensity presets with recorded inverses: :class:`CTWindowd`, :class:`MRPercentileNormalized`,
  :class:`RegistrationNormalized` (see :mod:`medi2i.data.intensity`).
- Slicing and sizing: :class:`RandAxialSliced`, :func:`model_size_transform` (see
  :mod:`medi2i.data.slices`).
- :func:`synthesis_preprocessing` and :func:`registration_preprocessing` compose them the way the
  bundles use them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from enum import Enum

import torch
from monai.config import KeysCollection
from monai.transforms import Compose, MapTransform
from monai.utils import look_up_option

from medi2i.data.intensity import (
    CTWindow,
    CTWindowd,
    LinearIntensityMap,
    MRPercentileNormalize,
    MRPercentileNormalized,
    PercentileNormalize,
    PercentileNormalized,
    RegistrationNormalize,
    RegistrationNormalized,
)
from medi2i.data.slices import (
    RandAxialSliced,
    axial_axis,
    extract_slice,
    model_size_transform,
    slices_to_volume,
    volume_to_slices,
)
from medi2i.errors import Medi2iInputError
from medi2i.io import load_volume

__all__ = [
    "CTWindow",
    "CTWindowd",
    "LinearIntensityMap",
    "LoadVolumed",
    "MRPercentileNormalize",
    "MRPercentileNormalized",
    "Modality",
    "PercentileNormalize",
    "PercentileNormalized",
    "RandAxialSliced",
    "RegistrationNormalize",
    "RegistrationNormalized",
    "axial_axis",
    "extract_slice",
    "model_size_transform",
    "registration_preprocessing",
    "slices_to_volume",
    "synthesis_preprocessing",
    "volume_to_slices",
]


class Modality(str, Enum):
    """Intensity families with their own normalisation preset."""

    CT = "ct"
    MR = "mr"


class LoadVolumed(MapTransform):
    """Load files with :func:`medi2i.io.load_volume` into channel-first MetaTensors ``(1, X, Y[, Z])``.

    Args:
        keys: keys holding file paths.
        kind: ``"image"``, ``"label"`` or ``"mask"`` for all keys, or a mapping key -> kind.
        spatial_dims: expected spatial dimensionality (2, 3) or ``None`` for either.
        repair: let the loader repair what it can (logged), see :func:`medi2i.io.load_volume`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        kind: str | Mapping[str, str] = "image",
        spatial_dims: int | None = None,
        repair: bool = False,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.kind = kind
        self.spatial_dims = spatial_dims
        self.repair = repair

    def __call__(self, data: Mapping[Hashable, str]) -> dict[Hashable, torch.Tensor]:
        d: dict[Hashable, object] = dict(data)
        missing = [key for key in self.keys if key not in d]
        if missing and not self.allow_missing_keys:
            raise Medi2iInputError(
                "datalist entry lacks a key the pipeline loads",
                field=str(missing[0]),
                found=sorted(map(str, d)),
                expected=f"keys {list(map(str, self.keys))} (set mask_key=None when there is no mask column)",
            )
        for key in self.key_iterator(d):
            kind = self.kind if isinstance(self.kind, str) else self.kind.get(str(key), "image")
            volume = load_volume(d[key], kind=kind, spatial_dims=self.spatial_dims, repair=self.repair)
            d[key] = volume.to_metatensor()
        return d  # type: ignore[return-value]


def _intensity_transform(key: str, modality: Modality | str, mask_key: str | None) -> MapTransform:
    if look_up_option(modality, Modality) is Modality.CT:
        return CTWindowd(key)
    return MRPercentileNormalized(key, mask_key=mask_key)


def synthesis_preprocessing(
    source_modality: Modality | str = "mr",
    target_modality: Modality | str = "ct",
    *,
    keys: Sequence[str] = ("source", "target"),
    mask_key: str | None = "mask",
    spatial_dims: int = 3,
    slices_per_volume: int | None = None,
    model_size: Sequence[int] | None = None,
) -> Compose:
    """Load a source/target pair (and mask), normalise each modality, optionally slice and size it.

    Args:
        source_modality: ``"mr"`` or ``"ct"`` for ``keys[0]``.
        target_modality: ``"mr"`` or ``"ct"`` for ``keys[1]``.
        keys: the datalist keys of the source and target paths.
        mask_key: datalist key of a foreground mask (MR percentiles are taken inside it), or ``None``.
        spatial_dims: 3 for volumes, 2 for pre-sliced 2D files.
        slices_per_volume: when set, draw this many axial slices per volume (foreground slices when a
            mask is given); needs ``spatial_dims=3``.
        model_size: pad/crop the (sliced) images to this spatial size; background -1.

    Returns:
        A MONAI ``Compose``; its intensity steps are invertible with ``Invertd``.
    """
    if len(keys) != 2:
        raise ValueError(f"keys must name the source and the target, got {list(keys)}")
    if slices_per_volume is not None and spatial_dims != 3:
        raise ValueError(f"slices_per_volume needs spatial_dims=3, got spatial_dims={spatial_dims}")
    image_keys = list(keys)
    kinds = {key: "image" for key in image_keys}
    if mask_key is not None:
        kinds[mask_key] = "mask"
    transforms: list = [LoadVolumed(list(kinds), kind=kinds, spatial_dims=spatial_dims)]
    transforms.append(_intensity_transform(image_keys[0], source_modality, mask_key))
    transforms.append(_intensity_transform(image_keys[1], target_modality, mask_key))
    if slices_per_volume is not None:
        transforms.append(RandAxialSliced(image_keys, num_samples=slices_per_volume, foreground_key=mask_key))
    if model_size is not None:
        transforms.append(model_size_transform(image_keys, model_size, background=-1.0))
        if mask_key is not None:
            transforms.append(model_size_transform(mask_key, model_size, background=0.0))
    return Compose(transforms)


def registration_preprocessing(
    *,
    image_keys: Sequence[str] = ("fixed", "moving"),
    label_keys: Sequence[str] = (),
    spatial_dims: int = 3,
    model_size: Sequence[int] | None = None,
) -> Compose:
    """Load fixed/moving images (and labels), map images to [0, 1], optionally pad/crop to a size."""
    kinds = {**{key: "image" for key in image_keys}, **{key: "label" for key in label_keys}}
    transforms: list = [LoadVolumed(list(kinds), kind=kinds, spatial_dims=spatial_dims)]
    transforms.append(RegistrationNormalized(list(image_keys)))
    if model_size is not None:  # 0 is the background of both [0, 1] images and label maps
        transforms.append(model_size_transform(list(kinds), model_size, background=0.0))
    return Compose(transforms)
