"""Safe volume I/O: NIfTI (and ITK-readable formats) in and out with geometry intact.

Conventions (ARCHITECTURE.md section 3): arrays stay in the array order stored on disk (never
reoriented); the affine maps voxel indices to RAS+ world millimetres; every file written
carries qform = sform = the affine (codes: aligned/scanner); writes are atomic (temporary file
in the destination folder, then ``os.replace``), so a killed process never leaves a partial
file at the final path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np

from medi2i.errors import Medi2iInputError
from medi2i.typing import PathLike

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _nifti_suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    The temporary file keeps the final suffix (writers pick the format from it) and lives in
    the same folder, so ``os.replace`` is an atomic rename on POSIX file systems.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_path(d / "a.txt") as tmp:
        ...     _ = tmp.write_text("done")
        >>> (d / "a.txt").read_text(), sorted(p.name for p in d.iterdir())
        ('done', ['a.txt'])
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = _nifti_suffix(final)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".part{suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def save_volume(
    path: PathLike,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    dtype: np.dtype | type | str | None = None,
    description: str | None = None,
) -> Path:
    """Write a 2D/3D (or vector-valued) volume as NIfTI-1, atomically, with qform = sform = ``affine``.

    Args:
        path: destination, ``.nii`` or ``.nii.gz``.
        array: voxel data in array order, shape ``(X, Y[, Z][, C])``; must be finite.
        affine: ``(4, 4)`` voxel -> RAS+ mm; finite, non-singular.
        dtype: on-disk data type (default: the array's). Integer dtypes must hold the values exactly.
        description: stored in the header's ``descrip`` field (80 bytes at most).

    Returns:
        The final path.

    Raises:
        Medi2iInputError: non-finite data or affine, singular affine, values that do not fit ``dtype``,
            a suffix other than ``.nii``/``.nii.gz``, or a description longer than 80 bytes.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.nii.gz"
        >>> _ = save_volume(out, np.zeros((4, 5, 6), np.int16), np.diag([2.0, 2.0, 3.0, 1.0]))
        >>> img = nib.load(out)
        >>> bool(np.allclose(img.get_qform(), img.get_sform())), tuple(float(z) for z in img.header.get_zooms())
        (True, (2.0, 2.0, 3.0))
    """
    out = Path(path)
    if _nifti_suffix(out) not in NIFTI_SUFFIXES:
        raise Medi2iInputError("unsupported output format", path=out, field="suffix", found=_nifti_suffix(out),
                               expected="'.nii' or '.nii.gz'")
    data = np.asarray(array)
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) < 1e-12:
        raise Medi2iInputError("affine must be a finite, non-singular 4x4 matrix", path=out, field="affine",
                               found=aff.tolist() if aff.size == 16 else aff.shape, expected="finite 4x4, det != 0")
    if data.ndim < 2:
        raise Medi2iInputError("volume must have at least 2 dimensions", path=out, field="shape", found=data.shape,
                               expected="(X, Y[, Z][, C])")
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise Medi2iInputError("volume contains NaN or Inf", path=out, field="data",
                               found=f"{int(np.sum(~np.isfinite(data)))} non-finite voxels", expected="finite values")
    target = np.dtype(dtype) if dtype is not None else data.dtype
    if target == np.bool_:
        target = np.dtype(np.uint8)
    if np.issubdtype(target, np.integer) and data.size:
        info = np.iinfo(target)
        lo, hi = data.min(), data.max()
        rounded_ok = np.issubdtype(data.dtype, np.integer) or data.dtype == np.bool_ or np.array_equal(data, np.round(data))
        if lo < info.min or hi > info.max or not rounded_ok:
            raise Medi2iInputError("values do not fit the requested integer type", path=out, field="dtype",
                                   found=f"range [{lo}, {hi}] ({data.dtype})", expected=f"integers in [{info.min}, {info.max}]")
    data = data.astype(target, copy=False)
    image = nib.Nifti1Image(data, aff)
    image.set_qform(aff, code="aligned")
    image.set_sform(aff, code="aligned")
    header = image.header
    header.set_data_dtype(target)
    header["scl_slope"] = np.nan  # no scaling: stored values are the values
    header["scl_inter"] = np.nan
    header.set_xyzt_units(xyz="mm")
    if description is not None:
        encoded = description.encode("ascii", errors="replace")
        if len(encoded) > 80:
            raise Medi2iInputError("description longer than the 80 bytes NIfTI allows", path=out, field="descrip",
                                   found=len(encoded), expected="<= 80 bytes")
        header["descrip"] = encoded
    with atomic_path(out) as tmp:
        nib.save(image, tmp)
    return out
