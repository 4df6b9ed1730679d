"""Read and write single images for the natural pipeline: png/jpg (PIL) and NIfTI slices or slice stacks.

:func:`read_image` returns ``(tensor, meta)``:

- png/jpg/...: ``(C, H, W)`` float32 in [-1, 1] (C = 1 grey, 3 RGB; alpha dropped), or ``(1, H, W)`` int64 with
  ``label=True``. ``meta`` records the format, PIL mode and bit depth.
- NIfTI 2D ``(X, Y)``: ``(1, X, Y)``; NIfTI 3D: the axial slice stack ``(S, 1, H, W)`` along the array axis that
  runs superior-inferior in the affine (:func:`medi2i.data.slices.axial_axis`). Intensities go to [-1, 1] with a
  foundation preset (``modality="mr"``: foreground 0.5-99.5 percentiles; ``"ct"``: HU window [-1024, 3000]) or
  ``"minmax"`` (min -> -1, max -> 1); the linear map is recorded in ``meta["intensity"]`` so the output can be
  written back on the input's scale. ``meta["volume"]`` is the loaded :class:`medi2i.io.Volume`: its affine is
  the geometry :func:`write_image` writes with (:func:`medi2i.io.save_like`), so the written file has exactly
  the input's grid.

:func:`write_image` writes atomically (:func:`medi2i.io.atomic_path` / :func:`medi2i.io.save_like`). Every check
(path, suffix, shape, channels, finiteness, the NIfTI reference) runs before anything is written; bad input
raises :class:`~medi2i.errors.Medi2iInputError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medi2i.errors import Medi2iInputError
from medi2i.natural.data.transforms import PHOTO_SUFFIXES, LoadPhotod, read_photo_array

__all__ = ["NIFTI_SUFFIXES", "PHOTO_SUFFIXES", "Normalisation", "image_format", "read_image", "write_image"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_WRITE_PHOTO = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


class Normalisation(str, Enum):
    """How NIfTI intensities map to [-1, 1]."""

    MR = "mr"
    CT = "ct"
    MINMAX = "minmax"


def image_format(path: str | Path) -> str:
    """``"nifti"`` or ``"photo"`` from the suffix (``.nii``/``.nii.gz`` vs png/jpg/...).

    Example:
        >>> image_format("a.nii.gz"), image_format("b.PNG")
        ('nifti', 'photo')
    """
    name = Path(path).name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if Path(name).suffix in PHOTO_SUFFIXES:
        return "photo"
    raise Medi2iInputError(
        "unsupported image format",
        path=path,
        field="suffix",
        found=repr(Path(name).suffix),
        expected=f"one of {list(PHOTO_SUFFIXES + NIFTI_SUFFIXES)}",
    )


# --------------------------------------------------------------------------------------------
# reading


def _read_photo(path: Path, label: bool, channels: int | None) -> tuple[torch.Tensor, dict[str, Any]]:
    from PIL import Image

    raw = read_photo_array(path)  # validates existence and decodability
    with Image.open(path) as img:
        mode = img.mode
    loader = LoadPhotod("x", channels=channels, label=label)
    tensor = loader({"x": str(path)})["x"]
    meta = {
        "format": "photo",
        "path": str(path),
        "mode": mode,
        "bit_depth": 16 if raw.dtype == np.uint16 else 8,
        "channels": int(tensor.shape[0]),
        "label": bool(label),
    }
    return tensor, meta


def _normalise(values: torch.Tensor, normalisation: Normalisation, path: Path) -> tuple[torch.Tensor, Any]:
    """``values`` to [-1, 1] with the foundation presets (MR, CT) or min-max; returns ``(out, LinearIntensityMap)``."""
    from monai.data import MetaTensor

    from medi2i.data.intensity import CTWindow, LinearIntensityMap, MRPercentileNormalize

    if normalisation is Normalisation.MINMAX:
        lo, hi = float(values.min()), float(values.max())
        mapping = LinearIntensityMap(lo, hi if hi > lo else lo + 1.0, -1.0, 1.0)
        return mapping.forward(values), mapping
    if normalisation is Normalisation.CT:
        normaliser = CTWindow()
        return torch.as_tensor(normaliser(values)).float(), normaliser.mapping
    if not bool((values > 0).any()):
        raise Medi2iInputError(
            "no foreground voxels (> 0) for the MR percentile window",
            path=path,
            field="modality",
            expected="an MR image with positive foreground, or modality='minmax'",
        )
    out = MRPercentileNormalize()(MetaTensor(values[None]))
    mapping = LinearIntensityMap(**out.applied_operations[-1]["extra_info"])  # the recorded percentile window
    return out.as_tensor()[0].float(), mapping


def _read_nifti(path: Path, label: bool, normalisation: Normalisation) -> tuple[torch.Tensor, dict[str, Any]]:
    from medi2i.data.slices import axial_axis, volume_to_slices
    from medi2i.io import load_volume

    volume = load_volume(path, kind="label" if label else "image")
    array = torch.from_numpy(np.ascontiguousarray(volume.array))
    meta: dict[str, Any] = {"format": "nifti", "path": str(path), "volume": volume, "label": bool(label)}
    if label:
        values = array.to(torch.int64)
        if values.min() < 0:
            raise Medi2iInputError("label values must be >= 0", path=path, field="values", found=int(values.min()))
    else:
        values, mapping = _normalise(array.float(), normalisation, path)
        meta["intensity"] = mapping.as_dict()
        meta["modality"] = normalisation.value
    if volume.ndim == 2:
        meta["slice_axis"] = None
        return values[None].contiguous(), meta
    axis = axial_axis(volume.affine)
    meta["slice_axis"] = axis
    return volume_to_slices(values[None], axis).contiguous(), meta


def read_image(
    path: str | Path, *, label: bool = False, modality: str = "mr", channels: int | None = None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Read a png/jpg or NIfTI file (module docstring for shapes and meta).

    Args:
        path: the file.
        label: read integer class ids (no intensity mapping), int64 out.
        modality: NIfTI normalisation ``"mr"``, ``"ct"`` or ``"minmax"`` (ignored for photos and labels).
        channels: photos only: 3 (RGB), 1 (grey) or ``None`` (as stored).

    Raises:
        Medi2iInputError: missing file, unsupported suffix, undecodable/invalid file, negative labels.
    """
    from monai.utils import look_up_option

    file = Path(path)
    kind = image_format(file)
    if not file.exists():
        raise Medi2iInputError("file not found", path=file, field="path", expected="an existing image file")
    if not file.is_file():
        raise Medi2iInputError("not a regular file", path=file, field="path")
    if kind == "photo":
        return _read_photo(file, label, channels)
    return _read_nifti(file, label, look_up_option(modality, Normalisation))


# --------------------------------------------------------------------------------------------
# writing


def _as_cpu(tensor: Any, path: Path) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        tensor = torch.as_tensor(np.asarray(tensor))
    t = tensor.detach().cpu()
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise Medi2iInputError("image contains NaN or Inf", path=path, field="values", expected="finite values")
    return t


def _photo_pixels(t: torch.Tensor, path: Path, bit_depth: int) -> np.ndarray:
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise Medi2iInputError(
            "a photo must be (C, H, W) with 1 or 3 channels", path=path, field="shape", found=tuple(t.shape)
        )
    if not t.is_floating_point():  # class ids written as they are
        if t.shape[0] != 1 or t.min() < 0 or t.max() > 255:
            raise Medi2iInputError(
                "label images must be one channel of ids in 0..255",
                path=path,
                field="values",
                found=(tuple(t.shape), int(t.min()), int(t.max())),
            )
        return t[0].numpy().astype(np.uint8)
    top = 65535.0 if bit_depth == 16 else 255.0
    pixels = torch.round((t.float().clamp(-1.0, 1.0) + 1.0) * (top / 2.0)).numpy()
    pixels = pixels.astype(np.uint16 if bit_depth == 16 else np.uint8)
    return pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)


def _write_photo(path: Path, t: torch.Tensor, meta: Mapping[str, Any] | None) -> Path:
    from PIL import Image

    from medi2i.io import atomic_path

    suffix = path.suffix.lower()
    fmt = _WRITE_PHOTO.get(suffix)
    if fmt is None:
        raise Medi2iInputError("cannot write this image format", path=path, field="suffix", found=suffix)
    bit_depth = int((meta or {}).get("bit_depth", 8))
    if bit_depth == 16 and (fmt != "PNG" or t.shape[-3 if t.ndim >= 3 else 0] != 1):
        bit_depth = 8  # PIL writes 16 bits only for single-channel PNG
    pixels = _photo_pixels(t, path, bit_depth)
    image = Image.fromarray(pixels)  # uint16 -> "I;16", uint8 -> "L" / "RGB"
    options = {"quality": 95} if fmt == "JPEG" else {}
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **options)
    return path


def _write_nifti(path: Path, t: torch.Tensor, meta: Mapping[str, Any] | None, intensity: Any) -> Path:
    from medi2i.data.intensity import LinearIntensityMap
    from medi2i.data.slices import slices_to_volume
    from medi2i.io import Volume, save_like

    volume = (meta or {}).get("volume")
    if not isinstance(volume, Volume):
        raise Medi2iInputError(
            "writing NIfTI needs the geometry of a reference image",
            path=path,
            field="meta",
            expected="the meta returned by read_image for a NIfTI input",
        )
    axis = meta.get("slice_axis")  # type: ignore[union-attr]
    expected = (1, *volume.shape) if axis is None else (volume.shape[axis], 1, *np.delete(volume.shape, axis))
    if t.ndim == len(expected) and t.shape[-3 if axis is None else 1] == 3:  # RGB output of a 3-channel model
        t = t.float().mean(dim=-3, keepdim=True)
    if tuple(t.shape) != tuple(int(v) for v in expected):
        raise Medi2iInputError(
            "image does not fit the reference grid",
            path=path,
            field="shape",
            found=tuple(t.shape),
            expected=tuple(int(v) for v in expected),
        )
    values = t[0] if axis is None else slices_to_volume(t, axis)[0]
    if not t.is_floating_point():
        data = values.numpy()
        dtype = np.uint8 if data.min() >= 0 and data.max() <= 255 else np.int32
        return save_like(path, data.astype(dtype), volume, dtype=dtype)
    record = intensity if intensity is not None else meta.get("intensity")  # type: ignore[union-attr]
    if record is None:
        out = values.float()
    else:
        mapping = record if isinstance(record, LinearIntensityMap) else LinearIntensityMap(**dict(record))
        out = mapping.inverse(values.float())
    return save_like(path, out.numpy().astype(np.float32), volume, dtype=np.float32)


def write_image(path: str | Path, tensor: Any, meta: Mapping[str, Any] | None = None, *, intensity: Any = None) -> Path:
    """Write an image atomically: photos from [-1, 1] to 8-bit (16-bit grey PNG when ``meta`` says so), label
    tensors (integer) as ids; NIfTI on the grid of ``meta["volume"]`` (from :func:`read_image`), intensities mapped
    back with ``intensity`` (a :class:`~medi2i.data.intensity.LinearIntensityMap` or its dict) or else the input's
    recorded map, so an MR output lands on the input's scale; 3-channel outputs are averaged to one channel.

    Args:
        path: destination (``.png``/``.jpg``/... or ``.nii``/``.nii.gz``); parent folders are created.
        tensor: ``(C, H, W)`` (or ``(1, C, H, W)``) for photos and 2D NIfTI, ``(S, C, H, W)`` for a 3D stack.
        meta: the input's meta from :func:`read_image` (required for NIfTI).
        intensity: override of the inverse intensity map for NIfTI (e.g. the CT window for an MR -> CT model).

    Returns:
        The written path.
    """
    file = Path(path)
    kind = image_format(file)
    if file.exists() and file.is_dir():
        raise Medi2iInputError("output path is a folder", path=file, field="path", expected="a file path")
    t = _as_cpu(tensor, file)
    if kind == "photo":
        return _write_photo(file, t, meta)
    return _write_nifti(file, t, meta, intensity)
