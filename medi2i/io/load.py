"""``load_volume``: one entry point that validates header, dimensions and values for every format."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medi2i.errors import Medi2iInputError
from medi2i.io.header import DiskHeader
from medi2i.io.itk_formats import ITK_SUFFIXES, read_itk_header
from medi2i.io.nifti import read_nifti_header
from medi2i.io.volume import Volume, VolumeKind
from medi2i.options import choose

if TYPE_CHECKING:  # medi2i.typing imports torch (seconds); the alias is only needed by type checkers
    from medi2i.typing import PathLike

logger = logging.getLogger("medi2i.io")

NIFTI_SUFFIXES = (".nii", ".nii.gz")
FLOAT32_EXACT = 2**24
"""Largest integer magnitude float32 holds exactly; label ids beyond it would merge in any float32 step
(resampling, augmentation, a MONAI transform), so they are refused on load."""

_LABEL_DTYPES = tuple(np.dtype(name) for name in ("uint8", "int16", "int32", "int64"))


def file_suffix(path: Path) -> str:
    """Lower-case suffix, counting ``.nii.gz`` as one.

    Example:
        >>> file_suffix(Path("sub-01_T1w.NII.GZ")), file_suffix(Path("ct.mha"))
        ('.nii.gz', '.mha')
    """
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def spatial_layout(
    dims: tuple[int, ...], *, spatial_dims: int | None, vector: bool, path: Path | None = None
) -> tuple[int, ...]:
    """Map the stored dimensions to the in-memory shape, or raise if they do not fit the request.

    Rules: with ``vector`` the last stored axis holds the components (NIfTI's ``(X, Y, Z, 1, C)``
    vector layout is accepted too). Trailing singleton spatial axes beyond the requested rank are
    dropped; a ``(X, Y, 1)`` slice becomes ``(X, Y)`` unless ``spatial_dims=3`` (then ``(X, Y)``
    becomes ``(X, Y, 1)``). Anything else that is not 2D/3D (e.g. ``(X, Y, Z, T)`` with ``T > 1``)
    is an error.

    Example:
        >>> spatial_layout((64, 64, 1), spatial_dims=None, vector=False)
        (64, 64)
        >>> spatial_layout((8, 9, 10, 1, 3), spatial_dims=3, vector=True)
        (8, 9, 10, 3)
    """
    spatial, components = list(dims), []
    if vector:
        if len(spatial) == 5 and spatial[3] == 1:
            del spatial[3]
        if len(spatial) < 3:
            raise Medi2iInputError(
                "a vector volume needs a trailing component axis",
                path=path,
                field="dim",
                found=dims,
                expected="(X, Y[, Z], C)",
            )
        components = [spatial.pop()]
    limit = spatial_dims or 3
    while len(spatial) > limit and spatial[-1] == 1:
        spatial.pop()
    if spatial_dims != 3 and len(spatial) == 3 and spatial[2] == 1:
        spatial.pop()
    if not 2 <= len(spatial) <= limit:
        want = {None: "2D or 3D", 2: "2D", 3: "3D"}[spatial_dims]
        hint = "" if vector or len(spatial) <= limit else "; for vector-valued data pass vector=True"
        raise Medi2iInputError(
            f"expected a {want} {'vector ' if vector else ''}volume{hint}",
            path=path,
            field="dim",
            found=dims,
            expected=f"{want} spatial grid (trailing singleton axes are dropped)",
        )
    if spatial_dims == 3 and len(spatial) == 2:
        spatial.append(1)
    return tuple(spatial + components)


def smallest_label_dtype(low: int, high: int) -> np.dtype:
    """Smallest of uint8 / int16 / int32 / int64 that holds every integer in ``[low, high]``.

    Example:
        >>> smallest_label_dtype(0, 255).name, smallest_label_dtype(-1, 3).name, smallest_label_dtype(0, 40000).name
        ('uint8', 'int16', 'int32')
    """
    for dtype in _LABEL_DTYPES:
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return dtype
    raise OverflowError(f"[{low}, {high}] exceeds int64")


def _apply_scaling(raw: np.ndarray, scaling: tuple[float, float] | None) -> np.ndarray:
    if scaling is None:
        return raw
    slope, inter = scaling
    return raw.astype(np.float64) * slope + inter  # float64: exact for every stored integer type up to 2**53


def _check_finite(values: np.ndarray, path: Path, kind: VolumeKind) -> None:
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)):
            nan, inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
            raise Medi2iInputError(
                f"{kind} contains NaN or Inf voxels",
                path=path,
                field="data",
                found=f"{nan} NaN and {inf} Inf of {values.size} voxels",
                expected="finite values",
            )


def _as_image(values: np.ndarray, path: Path) -> np.ndarray:
    _check_finite(values, path, VolumeKind.IMAGE)
    with np.errstate(over="ignore"):  # overflow is reported below, with the file name
        out = values.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise Medi2iInputError(
            "values overflow float32",
            path=path,
            field="data",
            found=f"max |value| {float(np.abs(values).max()):.6g}",
            expected=f"|value| <= {float(np.finfo(np.float32).max):.6g}",
        )
    return out


def _integral(values: np.ndarray, path: Path, kind: VolumeKind, scaled: bool) -> np.ndarray:
    """Check that (scaled) values are finite integers; return them unchanged."""
    _check_finite(values, path, kind)
    if np.issubdtype(values.dtype, np.floating):
        fractional = values != np.rint(values)
        if fractional.any():
            example = float(values[fractional].flat[0])
            raise Medi2iInputError(
                f"{kind} values are not integers" + (" after applying scl_slope/scl_inter" if scaled else ""),
                path=path,
                field="scl_slope/scl_inter" if scaled else "data",
                found=f"{int(fractional.sum())} fractional voxels (e.g. {example!r})",
                expected=f"integer-valued {kind}s" + ("; integer scaling or none" if scaled else ""),
            )
    return values


def _as_label(values: np.ndarray, path: Path, scaled: bool) -> np.ndarray:
    values = _integral(values, path, VolumeKind.LABEL, scaled)
    low, high = values.min().item(), values.max().item()
    if max(abs(low), abs(high)) > FLOAT32_EXACT:
        raise Medi2iInputError(
            "label values would not survive a float32 step (resampling, augmentation)",
            path=path,
            field="data",
            found=f"range [{low:.0f}, {high:.0f}]",
            expected=f"|label| <= 2**24 = {FLOAT32_EXACT}; relabel to consecutive ids",
        )
    return values.astype(smallest_label_dtype(int(low), int(high)))


def _as_mask(values: np.ndarray, path: Path, scaled: bool, repair: bool) -> np.ndarray:
    _check_finite(values, path, VolumeKind.MASK)
    binary = (values == 0) | (values == 1)
    if not binary.all():
        others = np.unique(values[~binary])
        shown = ", ".join(f"{v:g}" for v in others[:5].tolist()) + (", ..." if len(others) > 5 else "")
        if not repair:
            raise Medi2iInputError(
                "mask is not binary" + (" after applying scl_slope/scl_inter" if scaled else ""),
                path=path,
                field="data",
                found=f"{int((~binary).sum())} voxels with other values ({shown})",
                expected="only 0 and 1; pass repair=True to use value > 0 as foreground",
            )
        logger.warning(
            "%s: mask held %d voxels with values other than 0/1 (%s); using value > 0 as foreground",
            path,
            int((~binary).sum()),
            shown,
        )
    mask = values > 0
    if not mask.any():
        raise Medi2iInputError(
            "mask is empty", path=path, field="data", found="no nonzero voxel", expected="at least one foreground voxel"
        )
    return mask


def _read_header(path: Path, repair: bool) -> DiskHeader:
    suffix = file_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return read_nifti_header(path, repair=repair)
    if suffix in ITK_SUFFIXES:
        return read_itk_header(path, repair=repair)
    raise Medi2iInputError(
        "unsupported file format",
        path=path,
        field="suffix",
        found=repr(suffix) if suffix else "no suffix",
        expected=f"one of {', '.join(NIFTI_SUFFIXES + ITK_SUFFIXES)}",
    )


def load_volume(
    path: PathLike,
    *,
    kind: str | VolumeKind = "image",
    spatial_dims: int | None = None,
    repair: bool = False,
    vector: bool = False,
) -> Volume:
    """Load a 2D/3D volume with its RAS+ affine after validating header, dimensions and values.

    Every header check (file present and readable, format, data type, dimensions, scaling, geometry,
    declared size versus bytes in the file) runs before the voxel array is allocated. The array keeps
    the on-disk axis order; nothing is reoriented or resampled.

    Args:
        path: ``.nii``/``.nii.gz`` (read by medi2i's strict NIfTI reader) or ``.mha``/``.mhd``/``.nrrd``/``.nhdr``
            (SimpleITK, imported on first use).
        kind: ``"image"`` (float32), ``"label"`` (smallest safe of uint8/int16/int32/int64) or ``"mask"`` (bool).
        spatial_dims: required spatial rank, 2 or 3; None accepts either. Trailing singleton axes are
            dropped, so ``(X, Y, 1)`` loads as ``(X, Y)`` unless ``spatial_dims=3`` (then ``(X, Y)`` loads as
            ``(X, Y, 1)``). ``(X, Y, Z, T)`` with ``T > 1`` is an error.
        repair: instead of raising, fix what has one unambiguous fix, logging a warning on ``medi2i.io``
            that names the file and the change: negative ``pixdim`` -> absolute value; a sheared sform/direction
            -> nearest orthogonal; no qform/sform -> NIfTI method 1 (``pixdim`` only); a non-binary mask -> ``> 0``.
        vector: the last stored axis holds components (displacement fields ``(X, Y, Z, 3)``); ``kind`` must be
            ``"image"``. The array is then ``(X, Y[, Z], C)``.

    Returns:
        The :class:`Volume` (``path`` set, ``disk_dtype`` = stored element type).

    Raises:
        Medi2iInputError: naming the file, the field, what was found and what was expected, for: a missing,
            unreadable, truncated or corrupt file; a size that disagrees with the header; unsupported data
            types; non-finite, zero or negative spacing or affine entries, singular or sheared affines;
            qform and sform that disagree; ambiguous scaling; units other than mm; the wrong
            dimensionality; NaN/Inf voxels; labels that are fractional or beyond ``2**24``; masks that are
            empty or not binary.

    Example:
        >>> import tempfile, pathlib
        >>> from medi2i.io import save_volume
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "seg.nii.gz"
        >>> _ = save_volume(out, np.array([[[0, 1], [2, 3]]], np.int32), np.diag([1.0, 1.0, 2.0, 1.0]))
        >>> seg = load_volume(out, kind="label")
        >>> seg.array.dtype.name, seg.shape, seg.spacing, seg.disk_dtype.name
        ('uint8', (1, 2, 2), (1.0, 1.0, 2.0), 'int32')
    """
    kind = choose(kind, VolumeKind, field="kind")
    if spatial_dims not in (None, 2, 3):
        raise Medi2iInputError(
            "invalid spatial rank", field="spatial_dims", found=spatial_dims, expected="None, 2 or 3"
        )
    if vector and kind is not VolumeKind.IMAGE:
        raise Medi2iInputError(
            "only images can be vector-valued", field="vector", found=f"vector=True with kind={kind}", expected="image"
        )
    file = Path(path)
    if not file.exists():
        raise Medi2iInputError("file not found", path=file, field="path", expected="an existing file")
    if not file.is_file():
        raise Medi2iInputError("not a regular file", path=file, field="path", found="a directory or special file")
    disk = _read_header(file, repair)
    shape = spatial_layout(disk.dims, spatial_dims=spatial_dims, vector=vector, path=file)
    values = _apply_scaling(disk.read().reshape(shape), disk.scaling)
    scaled = disk.scaling is not None
    if kind is VolumeKind.IMAGE:
        array = _as_image(values, file)
    elif kind is VolumeKind.LABEL:
        array = _as_label(values, file, scaled)
    else:
        array = _as_mask(values, file, scaled, repair)
    return Volume(array=array, affine=disk.affine, path=file, kind=kind, disk_dtype=disk.dtype, vector=vector)
