"""Axial slices from 3D volumes, and padding to a model size and back.

The axial axis is read from the affine (the array axis whose direction is closest to
superior-inferior), never assumed to be the last one: a volume stored sagittally has its
axial slices along another array axis. Slices are channel-first ``(C, H, W)`` where
``(H, W)`` are the two remaining array axes in their stored order; the slice's MetaTensor
keeps a 4x4 affine whose first two columns are the in-plane axes and whose origin sits on the
slice, plus ``slice_axis`` / ``slice_index`` in its metadata so whole-volume translation can
put the slices back.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import nibabel.orientations as nio
import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, ResizeWithPadOrCropd
from monai.transforms.traits import MultiSampleTrait

from medi2i.errors import Medi2iInputError


def axial_axis(affine: np.ndarray | torch.Tensor) -> int:
    """Array axis (0, 1 or 2) that runs superior-inferior, read from a 4x4 voxel->RAS affine.

    Example:
        >>> axial_axis(np.eye(4)), axial_axis(np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]))
        (2, 1)
    """
    aff = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise Medi2iInputError("expected a finite 4x4 affine", field="affine", found=aff.shape)
    codes = nio.aff2axcodes(aff)
    for axis, code in enumerate(codes):
        if code in ("S", "I"):
            return axis
    raise Medi2iInputError("cannot find the superior-inferior axis of the affine", field="affine", found=codes)


def _slice_affine(affine: np.ndarray, axis: int, index: int) -> np.ndarray:
    """4x4 affine of one slice: in-plane axes first, slice axis last, origin moved onto the slice."""
    order = [a for a in range(3) if a != axis] + [axis]
    out = np.eye(4)
    out[:3, :3] = affine[:3, :3][:, order]
    out[:3, 3] = affine[:3, 3] + affine[:3, axis] * index
    return out


def extract_slice(volume: torch.Tensor, axis: int, index: int) -> torch.Tensor:
    """One slice ``(C, H, W)`` of a channel-first volume ``(C, X, Y, Z)`` along array ``axis``.

    MetaTensor inputs give MetaTensor slices with the slice affine and ``slice_axis`` /
    ``slice_index`` metadata.
    """
    if volume.ndim != 4:
        raise Medi2iInputError(
            "expected a channel-first 3D volume", field="shape", found=tuple(volume.shape), expected="(C, X, Y, Z)"
        )
    if not 0 <= index < volume.shape[axis + 1]:
        raise Medi2iInputError(
            "slice index out of range", field="index", found=index, expected=f"0..{volume.shape[axis + 1] - 1}"
        )
    plane = volume.select(axis + 1, index)
    if isinstance(volume, MetaTensor):
        meta = {k: v for k, v in volume.meta.items() if k != "affine"}  # the slice gets its own affine below
        meta.update({"slice_axis": axis, "slice_index": index, "spatial_shape": np.array(plane.shape[1:])})
        affine = _slice_affine(np.asarray(volume.affine, dtype=np.float64), axis, index)
        return MetaTensor(plane.as_tensor().clone(), affine=torch.as_tensor(affine), meta=meta)
    return plane.clone()


def volume_to_slices(volume: torch.Tensor, axis: int) -> torch.Tensor:
    """All slices of a channel-first volume ``(C, X, Y, Z)`` as a batch ``(S, C, H, W)``.

    Example:
        >>> v = torch.arange(24.0).reshape(1, 2, 3, 4)
        >>> s = volume_to_slices(v, axis=1)
        >>> s.shape, bool(torch.equal(slices_to_volume(s, axis=1), v))
        (torch.Size([3, 1, 2, 4]), True)
    """
    if volume.ndim != 4 or axis not in (0, 1, 2):
        raise Medi2iInputError(
            "expected (C, X, Y, Z) and axis in 0..2", field="shape/axis", found=(tuple(volume.shape), axis)
        )
    return torch.movedim(torch.as_tensor(volume), axis + 1, 0)


def slices_to_volume(slices: torch.Tensor, axis: int) -> torch.Tensor:
    """Inverse of :func:`volume_to_slices`: ``(S, C, H, W)`` back to ``(C, X, Y, Z)``."""
    if slices.ndim != 4 or axis not in (0, 1, 2):
        raise Medi2iInputError(
            "expected (S, C, H, W) and axis in 0..2", field="shape/axis", found=(tuple(slices.shape), axis)
        )
    return torch.movedim(torch.as_tensor(slices), 0, axis + 1)


class RandAxialSliced(Randomizable, MapTransform, MultiSampleTrait):
    """Sample ``num_samples`` axial slices (the same index for every key) from 3D volumes.

    Slice indices are drawn uniformly among the slices where ``foreground_key`` has at least
    ``min_foreground`` foreground voxels (all slices when no key is given). The axial axis is read
    from the affine of the first key (it must be a MetaTensor).

    Args:
        keys: keys of channel-first 3D volumes ``(C, X, Y, Z)`` sharing one grid.
        num_samples: slices per call (the result is a list of dicts, as MONAI's crop samplers).
        foreground_key: optional key of a mask or label map restricting the slices drawn.
        min_foreground: minimum count of foreground voxels for a slice to be eligible.

    Example:
        >>> vol = MetaTensor(torch.rand(1, 4, 5, 6), affine=torch.eye(4))
        >>> out = RandAxialSliced(["image"], num_samples=2).set_random_state(0)({"image": vol})
        >>> len(out), tuple(out[0]["image"].shape), out[0]["image"].meta["slice_axis"]
        (2, (1, 4, 5), 2)
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_samples: int = 1,
        foreground_key: str | None = None,
        min_foreground: int = 1,
        allow_missing_keys: bool = False,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if min_foreground < 0:
            raise ValueError(f"min_foreground must be >= 0, got {min_foreground}")
        self.num_samples = num_samples
        self.foreground_key = foreground_key
        self.min_foreground = min_foreground
        self._indices: list[int] = []

    def randomize(self, eligible: Sequence[int]) -> None:  # type: ignore[override]
        self._indices = [int(i) for i in self.R.choice(np.asarray(eligible), size=self.num_samples, replace=True)]

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> list[dict[Hashable, torch.Tensor]]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            raise Medi2iInputError("none of the keys are in the data", field="keys", found=sorted(map(str, d)))
        first = d[keys[0]]
        if not isinstance(first, MetaTensor):
            raise Medi2iInputError(
                "axial slicing needs a MetaTensor with an affine",
                field=str(keys[0]),
                found=type(first).__name__,
                expected="MetaTensor (load with LoadImaged/LoadVolumed)",
            )
        axis = axial_axis(first.affine)
        for key in keys[1:] + ([self.foreground_key] if self.foreground_key else []):
            if tuple(d[key].shape[1:]) != tuple(first.shape[1:]):
                raise Medi2iInputError(
                    "volumes to slice together must share a grid",
                    field=str(key),
                    found=tuple(d[key].shape[1:]),
                    expected=tuple(first.shape[1:]),
                )
        n_slices = first.shape[axis + 1]
        if self.foreground_key is not None:
            mask = torch.as_tensor(d[self.foreground_key]) > 0
            counts = mask.movedim(axis + 1, 0).reshape(n_slices, -1).sum(dim=1)
            eligible = torch.nonzero(counts >= self.min_foreground).flatten().tolist()
            if not eligible:
                raise Medi2iInputError(
                    "no slice has enough foreground",
                    field=self.foreground_key,
                    found=int(counts.max()),
                    expected=f">= {self.min_foreground} voxels",
                )
        else:
            eligible = list(range(n_slices))
        self.randomize(eligible)
        samples = []
        for index in self._indices:
            sample = dict(d)
            for key in keys + ([self.foreground_key] if self.foreground_key and self.foreground_key in d else []):
                sample[key] = extract_slice(d[key], axis, index)
            samples.append(sample)
        return samples


def model_size_transform(
    keys: KeysCollection, spatial_size: Sequence[int], background: float = -1.0, allow_missing_keys: bool = False
) -> ResizeWithPadOrCropd:
    """Pad (with ``background``) or centre-crop to the model's input size; invertible with ``Invertd``.

    Padding keeps the voxel grid (no interpolation), so the inverse restores the original
    geometry exactly; a crop loses the cropped border, which the inverse pads back with the
    background value.

    Example:
        >>> t = model_size_transform("image", (8, 8))
        >>> d = t({"image": MetaTensor(torch.zeros(1, 5, 10))})
        >>> tuple(d["image"].shape), tuple(t.inverse(d)["image"].shape)
        ((1, 8, 8), (1, 5, 10))
    """
    return ResizeWithPadOrCropd(
        keys, spatial_size=tuple(spatial_size), mode="constant", value=background, allow_missing_keys=allow_missing_keys
    )
