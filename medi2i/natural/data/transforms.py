"""MONAI dictionary transforms shared by every natural-image method: photos and medical 2D slices.

Images leave these pipelines as float32 tensors in [-1, 1], channel-first ``(C, H, W)``; label maps as
int64 ``(1, H, W)`` class ids (never one-hot: methods one-hot them with their ``num_classes``).

Photos (:func:`photo_transforms`, park_thesis.md section 1 "Geometric augmentation"): the official
CycleGAN/CUT/SPADE code does ``Resize([load, load], BICUBIC)`` -> ``RandomCrop(crop)`` -> random
horizontal flip -> resize to a multiple of 4 (the generators downsample twice), with one flip and one crop
window shared by the image and its label map (labels resized with nearest neighbour). At test time the
official options set ``load_size = crop_size``, i.e. a plain resize; ``train=False`` does that.

Medical slices (:func:`slice_transforms`, park_thesis.md 4.6 "Medical use"): slices are already in [-1, 1]
(foundation presets, :mod:`medi2i.data.intensity`) or are 2D NIfTI files normalised here with those
presets; they are padded or centre-cropped to the model size (no resampling, so the pixel spacing is kept)
and flipped left-right at random. Any channel count.

Reproducibility: every random transform here is a MONAI ``Randomizable``; the datasets
(:mod:`medi2i.natural.data.datasets`) reseed the whole ``Compose`` from ``(seed, epoch, index)`` before each
item, so the augmentation of an item does not depend on worker count or call order.

Why some transforms are local rather than MONAI's: ``Resized``'s anti-aliasing is a Gaussian pre-filter,
not the antialiased bicubic kernel of PIL that the official code uses (``torch.nn.functional.interpolate``
with ``antialias=True`` is), and MONAI has no "resize to a multiple of k" or PIL loader that returns
``(C, H, W)`` in the image's row/column order (``PILReader`` transposes to ``(W, H)``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Hashable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    MapTransform,
    RandFlipd,
    RandSpatialCropd,
    ResizeWithPadOrCropd,
    SpatialPadd,
)
from monai.utils import ensure_tuple, look_up_option

from medi2i.errors import Medi2iInputError

__all__ = [
    "AsLabeld",
    "AsSliced",
    "LoadPhotod",
    "Pipeline",
    "PhotoPreprocess",
    "ResizeImaged",
    "ResizeToMultipled",
    "ScaleShortSided",
    "photo_transforms",
    "read_photo_array",
    "resize_image",
    "slice_transforms",
    "to_unit_range",
]

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")


class PhotoPreprocess(str, Enum):
    """Geometric preprocessing of photos, named as the official ``--preprocess`` option.

    - ``resize_and_crop``: resize to ``load_size`` square, random ``crop_size`` crop (CycleGAN/CUT/SPADE default).
    - ``scale_shortside_and_crop``: scale the short side to ``load_size`` (aspect kept), random crop (SAE LSUN).
    - ``crop``: random crop only (pads with -1 when smaller; SinCUT crops of a large image).
    - ``resize``: resize to ``crop_size`` square only.
    - ``none``: keep the size (then only the multiple-of-4 fix).
    """

    RESIZE_AND_CROP = "resize_and_crop"
    SCALE_SHORTSIDE_AND_CROP = "scale_shortside_and_crop"
    CROP = "crop"
    RESIZE = "resize"
    NONE = "none"


class Pipeline(Compose):
    """A MONAI ``Compose`` that lets :class:`~medi2i.errors.Medi2iInputError` and ``KeyError`` through.

    MONAI's ``apply_transform`` wraps every exception in ``RuntimeError("applying transform ...")``; bad user
    input must reach the CLI as the original ``Medi2iInputError`` (one line, exit code 2), and a missing key
    (MONAI's message names the transform) stays a ``KeyError``, so both are unwrapped.
    """

    def __call__(self, input_: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(input_, *args, **kwargs)
        except RuntimeError as err:
            cause: BaseException | None = err
            while cause is not None and not isinstance(cause, (Medi2iInputError, KeyError)):
                cause = cause.__cause__
            if cause is not None:
                raise cause from None
            raise


# --------------------------------------------------------------------------------------------
# loading


def to_unit_range(array: np.ndarray, *, path: Any = None) -> np.ndarray:
    """Integer pixels (uint8 / uint16) to float32 in [-1, 1]: ``x / max * 2 - 1``; floats must already be in [-1, 1].

    Example:
        >>> to_unit_range(np.array([0, 255], np.uint8)).tolist()
        [-1.0, 1.0]
    """
    if array.dtype == np.bool_:
        return array.astype(np.float32) * 2.0 - 1.0
    if np.issubdtype(array.dtype, np.integer):
        top = 255.0 if array.dtype.itemsize == 1 else 65535.0
        if array.size and (array.min() < 0 or array.max() > top):
            raise Medi2iInputError(
                "integer pixel values out of range", path=path, field="values", found=(array.min(), array.max())
            )
        return (array.astype(np.float32) / np.float32(top / 2.0) - 1.0).astype(np.float32)
    out = np.asarray(array, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise Medi2iInputError("image contains NaN or Inf", path=path, field="values", expected="finite values")
    if out.size and (out.min() < -1.0 - 1e-4 or out.max() > 1.0 + 1e-4):
        raise Medi2iInputError(
            "floating-point images must already be in [-1, 1]",
            path=path,
            field="values",
            found=(float(out.min()), float(out.max())),
            expected="[-1, 1] (or pass uint8/uint16 pixels)",
        )
    return np.clip(out, -1.0, 1.0)


@functools.lru_cache(maxsize=64)
def _decode(path: str, mtime_ns: int, size: int, mode: str | None) -> np.ndarray:
    """Decode one file with PIL (cached per path and modification time); read-only ``(H, W[, C])``."""
    from PIL import Image, UnidentifiedImageError

    del mtime_ns, size  # cache keys only: an edited file is decoded again
    try:
        with Image.open(path) as img:
            img.load()
            if mode == "raw":  # label maps: palette images keep their indices
                pass
            elif mode is not None and img.mode != mode:
                img = img.convert(mode)
            elif img.mode in ("RGBA", "LA", "P", "CMYK", "YCbCr", "1"):  # alpha dropped, palette resolved
                img = img.convert("RGB" if img.mode not in ("LA", "1") else "L")
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(img, dtype=np.uint16 if img.mode.startswith("I;16") else np.int32)
                if array.dtype == np.int32:
                    array = array.astype(np.uint16) if array.max() < 65536 and array.min() >= 0 else array
            else:
                array = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise Medi2iInputError(f"cannot read the image ({type(err).__name__}: {err})", path=path) from None
    array = np.array(array)
    array.setflags(write=False)
    return array


def read_photo_array(path: str | os.PathLike[str], *, mode: str | None = None) -> np.ndarray:
    """Decode a png/jpg (any PIL format) to ``(H, W)`` or ``(H, W, C)`` pixels; ``mode`` e.g. ``"RGB"``, ``"L"``, or
    ``"raw"`` (no conversion: a palette image gives its indices, as label maps need).

    Raises:
        Medi2iInputError: missing file, a folder, or a file PIL cannot decode.
    """
    file = Path(path)
    if not file.exists():
        raise Medi2iInputError("file not found", path=file, field="path", expected="an existing image file")
    if not file.is_file():
        raise Medi2iInputError("not a regular file", path=file, field="path")
    stat = file.stat()
    return _decode(str(file.resolve()), stat.st_mtime_ns, stat.st_size, mode)


def _channel_first(array: np.ndarray, *, path: Any = None) -> np.ndarray:
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3 and array.shape[-1] in (1, 2, 3, 4) and array.shape[0] not in (1, 3):
        return np.moveaxis(array, -1, 0)
    if array.ndim == 3:
        return array
    raise Medi2iInputError(
        "an image must be 2D (H, W), (H, W, C) or (C, H, W)", path=path, field="shape", found=array.shape
    )


def _match_channels(image: np.ndarray, channels: int | None, *, path: Any = None) -> np.ndarray:
    if channels is None or image.shape[0] == channels:
        return image
    if channels == 3 and image.shape[0] == 1:
        return np.repeat(image, 3, axis=0)
    if channels == 3 and image.shape[0] == 4:
        return image[:3]
    if channels == 1 and image.shape[0] in (3, 4):  # ITU-R 601-2 luma, as PIL's convert("L")
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)[:, None, None]
        return (image[:3].astype(np.float32) * weights).sum(axis=0, keepdims=True)
    raise Medi2iInputError(
        "cannot convert the image to the requested channel count",
        path=path,
        field="channels",
        found=image.shape[0],
        expected=channels,
    )


class LoadPhotod(MapTransform):
    """Load photos (or label maps) into channel-first tensors: images float32 ``(C, H, W)`` in [-1, 1], labels int64.

    Accepted values per key: a file path (png/jpg/... through PIL, decoded once and cached), a numpy array
    ``(H, W)`` / ``(H, W, C)`` (uint8/uint16 pixels, or floats already in [-1, 1]) or a tensor ``(C, H, W)``.
    For a path, ``"<key>_path"`` is added to the dictionary (the unpaired contract's ``A_path``/``B_path``).

    Args:
        keys: keys to load.
        channels: 3 (RGB; grey repeated, alpha dropped), 1 (luma) or ``None`` (keep the file's channels).
        label: load integer class maps (no scaling; must be single-channel integers).
        allow_missing_keys: skip keys that are absent.
    """

    def __init__(
        self, keys: KeysCollection, channels: int | None = 3, label: bool = False, allow_missing_keys: bool = False
    ):
        super().__init__(keys, allow_missing_keys)
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
        self.channels = channels
        self.label = bool(label)

    def _load_label(self, value: Any, path: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            array = value.detach().cpu().numpy()
        elif isinstance(value, (str, os.PathLike)):
            array = read_photo_array(value, mode="raw")
            if array.ndim == 3:  # an RGB-saved map of ids: every channel must agree
                if not all(np.array_equal(array[..., 0], array[..., c]) for c in range(1, array.shape[-1])):
                    raise Medi2iInputError(
                        "a label image must be single-channel class ids", path=path, field="channels", found=array.shape
                    )
                array = array[..., 0]
        else:
            array = np.asarray(value)
        if array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 2:
            raise Medi2iInputError("a label map must be 2D (H, W)", path=path, field="shape", found=array.shape)
        if not (np.issubdtype(array.dtype, np.integer) or np.all(array == np.round(array))):
            raise Medi2iInputError("label values must be integers", path=path, field="values", found=array.dtype)
        if array.size and array.min() < 0:
            raise Medi2iInputError("label values must be >= 0", path=path, field="values", found=int(array.min()))
        return torch.from_numpy(np.array(array, dtype=np.int64))[None]

    def _load_image(self, value: Any, path: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):  # (C, H, W) or (H, W); uint8/uint16 or floats in [-1, 1]
            array = value.detach().cpu().numpy()
            image = to_unit_range(array[None] if array.ndim == 2 else array, path=path)
        else:
            raw = read_photo_array(value) if isinstance(value, (str, os.PathLike)) else np.asarray(value)
            image = to_unit_range(_channel_first(raw, path=path), path=path)
        if image.ndim != 3:
            raise Medi2iInputError("an image must be (C, H, W)", path=path, field="shape", found=image.shape)
        image = _match_channels(image, self.channels, path=path)
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            path = value if isinstance(value, (str, os.PathLike)) else None
            d[key] = self._load_label(value, path) if self.label else self._load_image(value, path)
            if path is not None:
                d[f"{key}_path"] = str(path)
        return d


# --------------------------------------------------------------------------------------------
# geometry


def resize_image(x: torch.Tensor, size: tuple[int, int], label: bool) -> torch.Tensor:
    """Resize one ``(C, H, W)``: antialiased bicubic clamped to [-1, 1], or ``nearest-exact`` for labels."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if label:
        out = F.interpolate(x[None].float(), size=size, mode="nearest-exact")[0]
        return out.round().to(x.dtype)
    out = F.interpolate(x[None].float(), size=size, mode="bicubic", align_corners=False, antialias=True)[0]
    return out.clamp(-1.0, 1.0)  # bicubic overshoots; PIL clips to the pixel range the same way


class ResizeImaged(MapTransform):
    """Resize ``(C, H, W)`` to ``spatial_size``: antialiased bicubic for images (as PIL's BICUBIC), clamped to
    [-1, 1]; ``nearest-exact`` (PIL's NEAREST) for ``label_keys``. Label dtypes are kept."""

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int],
        label_keys: KeysCollection = (),
        allow_missing_keys: bool = False,
    ):
        self.label_keys = tuple(ensure_tuple(label_keys))
        super().__init__(tuple(ensure_tuple(keys)) + self.label_keys, allow_missing_keys)
        self.spatial_size = (int(spatial_size[0]), int(spatial_size[1]))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = resize_image(torch.as_tensor(d[key]), self.spatial_size, key in self.label_keys)
        return d


class ScaleShortSided(ResizeImaged):
    """Scale so the short side equals ``size`` (aspect ratio kept, rounded), as the official ``scale_shortside``."""

    def __init__(
        self, keys: KeysCollection, size: int, label_keys: KeysCollection = (), allow_missing_keys: bool = False
    ):
        super().__init__(keys, (size, size), label_keys, allow_missing_keys)
        self.size = int(size)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = torch.as_tensor(d[key])
            h, w = x.shape[-2:]
            scale = self.size / min(h, w)
            target = (max(self.size, round(h * scale)), max(self.size, round(w * scale)))
            d[key] = resize_image(x, target, key in self.label_keys)
        return d


class ResizeToMultipled(ResizeImaged):
    """Resize to the nearest multiple of ``k`` (at least ``k``) per side, as the official ``__make_power_2``
    (the ResNet generators downsample twice, so ``k = 4``); a no-op when the size already fits.

    Example:
        >>> t = ResizeToMultipled("image", k=4)
        >>> tuple(t({"image": torch.zeros(3, 30, 32)})["image"].shape)
        (3, 32, 32)
    """

    def __init__(
        self, keys: KeysCollection, k: int = 4, label_keys: KeysCollection = (), allow_missing_keys: bool = False
    ):
        super().__init__(keys, (k, k), label_keys, allow_missing_keys)
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        self.k = int(k)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = torch.as_tensor(d[key])
            target = tuple(max(self.k, int(round(s / self.k)) * self.k) for s in x.shape[-2:])
            d[key] = resize_image(x, target, key in self.label_keys)  # type: ignore[arg-type]
        return d


class AsLabeld(MapTransform):
    """Make label maps plain int64 tensors ``(1, H, W)`` (rounding any float that came out of a MONAI step)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = torch.as_tensor(d[key])
            x = x.as_tensor() if hasattr(x, "as_tensor") else x
            d[key] = (x if not x.is_floating_point() else x.round()).to(torch.int64).contiguous()
        return d


class AsImaged(MapTransform):
    """Make images plain float32 tensors (MetaTensor metadata dropped: batches stay plain tensors)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = torch.as_tensor(d[key])
            x = x.as_tensor() if hasattr(x, "as_tensor") else x
            d[key] = x.float().contiguous()
        return d


def _check_size(name: str, value: Any, multiple: int = 1) -> tuple[int, int]:
    size = tuple(int(v) for v in ensure_tuple(value))
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1 or any(s % multiple for s in size):
        raise ValueError(f"{name} must be a positive int or (H, W) pair, multiples of {multiple}; got {value!r}")
    return size  # type: ignore[return-value]


def photo_transforms(
    keys: KeysCollection,
    *,
    load_size: int | Sequence[int] = 286,
    crop_size: int | Sequence[int] = 256,
    flip: bool = True,
    label_keys: KeysCollection = (),
    train: bool = True,
    preprocess: PhotoPreprocess | str = "resize_and_crop",
    channels: int | None = 3,
    multiple: int = 4,
    allow_missing_keys: bool = False,
) -> Pipeline:
    """Photo pipeline as the official CycleGAN/CUT/SPADE code: load -> [-1, 1] -> resize -> random crop -> flip.

    Args:
        keys: image keys (file paths, arrays or tensors, see :class:`LoadPhotod`).
        load_size: size after the first resize (``resize_and_crop``) or the short side (``scale_shortside_and_crop``).
        crop_size: random crop size in training; the resize size at evaluation.
        flip: random horizontal flip (p = 0.5) in training, one decision shared by every key.
        label_keys: label maps transformed with the images (nearest resize, same crop and flip), int64 out.
        train: ``False`` gives the official test-time pipeline: resize to ``crop_size`` (or scale the short
            side and centre crop; centre crop for ``crop``), no flip.
        preprocess: see :class:`PhotoPreprocess`.
        channels: 3 (RGB), 1 (grey) or ``None`` (as stored).
        multiple: final sides are resized to a multiple of this (4 for the 2x-downsampling generators).
        allow_missing_keys: skip absent keys (one pipeline for domains A and B applied separately).

    Returns:
        A MONAI ``Compose`` (``Randomizable``: reseed it with ``set_random_state``).

    Example:
        >>> t = photo_transforms("A", load_size=40, crop_size=32)
        >>> out = t.set_random_state(0)({"A": np.zeros((50, 60, 3), np.uint8)})
        >>> tuple(out["A"].shape), float(out["A"].min())
        ((3, 32, 32), -1.0)
    """
    mode = look_up_option(preprocess, PhotoPreprocess)
    load = _check_size("load_size", load_size)
    crop = _check_size("crop_size", crop_size)
    image_keys = tuple(ensure_tuple(keys))
    labels = tuple(ensure_tuple(label_keys))
    if not image_keys:
        raise ValueError("keys must name at least one image key")
    if set(image_keys) & set(labels):
        raise ValueError(f"keys and label_keys overlap: {sorted(set(image_keys) & set(labels))}")
    if mode in (PhotoPreprocess.RESIZE_AND_CROP, PhotoPreprocess.SCALE_SHORTSIDE_AND_CROP) and min(load) < max(crop):
        raise ValueError(f"load_size {load} must be >= crop_size {crop} for preprocess {mode.value!r}")
    all_keys = image_keys + labels
    amk = allow_missing_keys
    steps: list = [LoadPhotod(image_keys, channels=channels, allow_missing_keys=amk)]
    if labels:
        steps.append(LoadPhotod(labels, label=True, allow_missing_keys=amk))
    if mode is PhotoPreprocess.RESIZE_AND_CROP:
        steps.append(ResizeImaged(image_keys, crop if not train else load, labels, allow_missing_keys=amk))
    elif mode is PhotoPreprocess.RESIZE:
        steps.append(ResizeImaged(image_keys, crop, labels, allow_missing_keys=amk))
    elif mode is PhotoPreprocess.SCALE_SHORTSIDE_AND_CROP:
        steps.append(ScaleShortSided(image_keys, load[0] if train else crop[0], labels, allow_missing_keys=amk))
    if mode in (PhotoPreprocess.CROP, PhotoPreprocess.SCALE_SHORTSIDE_AND_CROP) or (
        train and mode is PhotoPreprocess.RESIZE_AND_CROP
    ):
        steps.append(SpatialPadd(image_keys, crop, mode="constant", value=-1.0, allow_missing_keys=amk))
        if labels:
            steps.append(SpatialPadd(labels, crop, mode="constant", value=0, allow_missing_keys=amk))
        if train:
            steps.append(RandSpatialCropd(all_keys, roi_size=crop, random_size=False, allow_missing_keys=amk))
        else:
            steps.append(ResizeWithPadOrCropd(all_keys, crop, allow_missing_keys=amk))
    if train and flip:
        steps.append(RandFlipd(all_keys, prob=0.5, spatial_axis=1, allow_missing_keys=amk))
    if multiple > 1:
        steps.append(ResizeToMultipled(image_keys, k=multiple, label_keys=labels, allow_missing_keys=amk))
    steps.append(AsImaged(image_keys, allow_missing_keys=amk))
    if labels:
        steps.append(AsLabeld(labels, allow_missing_keys=amk))
    return Pipeline(steps)


# --------------------------------------------------------------------------------------------
# medical slices


class AsSliced(MapTransform):
    """In-memory slices to channel-first float tensors: ``(H, W)`` gains a channel axis; ``(C, H, W)`` is kept.

    Values must already be in [-1, 1] (the foundation presets' output); labels (``label=True``) must be integers.
    """

    def __init__(self, keys: KeysCollection, label: bool = False, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.label = bool(label)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if isinstance(value, (str, os.PathLike)):
                raise Medi2iInputError(
                    "slice_transforms got a file path but no modality to normalise it with",
                    path=value,
                    field="modality",
                    expected="slice_transforms(..., modality='mr' or 'ct') for 2D NIfTI files",
                )
            x = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
            x = x.as_tensor() if hasattr(x, "as_tensor") else x
            if x.ndim == 2:
                x = x[None]
            if x.ndim != 3:
                raise Medi2iInputError(
                    "a slice must be (H, W) or (C, H, W)", field=str(key), found=tuple(x.shape), expected="2D slice"
                )
            if self.label:
                if x.is_floating_point() and not torch.equal(x, x.round()):
                    raise Medi2iInputError("label values must be integers", field=str(key), found=x.dtype)
                d[key] = x.to(torch.int64)
            else:
                x = x.float()
                if not torch.isfinite(x).all():
                    raise Medi2iInputError("slice contains NaN or Inf", field=str(key), expected="finite values")
                d[key] = x
        return d


def slice_transforms(
    keys: KeysCollection,
    *,
    size: int | Sequence[int] = (128, 128),
    label_keys: KeysCollection = (),
    train: bool = True,
    flip: bool = True,
    flip_axis: int = 0,
    modality: str | Mapping[str, str] | None = None,
    allow_missing_keys: bool = False,
) -> Pipeline:
    """Medical 2D slice pipeline: (load + preset) -> pad/centre-crop to ``size`` (background -1, labels 0) -> flip.

    Args:
        keys: image keys. Values are in-memory slices ``(C, H, W)`` / ``(H, W)`` already in [-1, 1] (from
            :func:`medi2i.natural.data.defaults.manifest_slices`), or 2D NIfTI paths when ``modality`` is set.
        size: output ``(H, W)``; padding/cropping keeps the pixel grid (no interpolation).
        label_keys: integer label maps, padded with 0, flipped with the images, int64 out.
        train: random flip on (only in training).
        flip: allow the random flip.
        flip_axis: in-plane array axis to flip (0: the first in-plane axis, left-right for axial slices of
            RAS/LPS-stored volumes).
        modality: ``None`` (in-memory slices), or ``"mr"``/``"ct"`` (all image keys) or a mapping key -> modality
            for 2D NIfTI files loaded with :class:`medi2i.data.transforms.LoadVolumed` and normalised with the
            foundation presets (MR foreground percentiles 0.5-99.5, CT window [-1024, 3000] HU, both to [-1, 1]).
        allow_missing_keys: skip absent keys.

    Example:
        >>> t = slice_transforms("A", size=(8, 8), train=False)
        >>> tuple(t({"A": torch.zeros(2, 5, 10)})["A"].shape)
        (2, 8, 8)
    """
    from medi2i.data.transforms import CTWindowd, LoadVolumed, Modality, MRPercentileNormalized

    out_size = _check_size("size", size)
    if flip_axis not in (0, 1):
        raise ValueError(f"flip_axis must be 0 or 1, got {flip_axis!r}")
    image_keys = tuple(ensure_tuple(keys))
    labels = tuple(ensure_tuple(label_keys))
    if not image_keys:
        raise ValueError("keys must name at least one image key")
    amk = allow_missing_keys
    steps: list = []
    if modality is not None:
        per_key = {k: modality for k in image_keys} if isinstance(modality, str) else dict(modality)
        kinds = {**{k: "image" for k in image_keys}, **{k: "label" for k in labels}}
        steps.append(LoadVolumed(list(kinds), kind=kinds, spatial_dims=2, allow_missing_keys=amk))
        for key in image_keys:
            mod = look_up_option(per_key.get(key, "mr"), Modality)
            steps.append(
                CTWindowd(key, allow_missing_keys=amk)
                if mod is Modality.CT
                else MRPercentileNormalized(key, allow_missing_keys=amk)
            )
    steps.append(AsSliced(image_keys, allow_missing_keys=amk))
    if labels:
        steps.append(AsSliced(labels, label=True, allow_missing_keys=amk))
    steps.append(ResizeWithPadOrCropd(image_keys, out_size, mode="constant", value=-1.0, allow_missing_keys=amk))
    if labels:
        steps.append(ResizeWithPadOrCropd(labels, out_size, mode="constant", value=0, allow_missing_keys=amk))
    if train and flip:
        steps.append(RandFlipd(image_keys + labels, prob=0.5, spatial_axis=flip_axis, allow_missing_keys=amk))
    steps.append(AsImaged(image_keys, allow_missing_keys=amk))
    if labels:
        steps.append(AsLabeld(labels, allow_missing_keys=amk))
    return Pipeline(steps)
