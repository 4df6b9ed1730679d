"""Atomic NIfTI writing: ``atomic_path``, ``save_volume`` and ``save_like``.

A write goes to a temporary file in the destination folder, is flushed to disk (``fsync``), then
renamed over the final path with ``os.replace`` (atomic on POSIX), and the folder entry is synced.
A process killed at any moment leaves either the previous file or the complete new one at the
final path, never a partial file; an exception also removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

from medi2i.errors import Medi2iInputError
from medi2i.io.geometry import ATOL_MM, check_affine, corner_distance, format_affine
from medi2i.io.header import SUPPORTED_DTYPES
from medi2i.io.load import NIFTI_SUFFIXES, file_suffix
from medi2i.io.nifti import qform_affine, sform_affine
from medi2i.io.volume import Volume

if TYPE_CHECKING:  # medi2i.typing imports torch (seconds); the alias is only needed by type checkers
    from medi2i.typing import PathLike

_DESCRIP_BYTES = 80


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask() is a racy set-and-restore)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    current = os.umask(0o022)
    os.umask(current)
    return current


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; some file systems (and Windows) cannot open a folder, which is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    The temporary file keeps the final suffix (writers pick the format from it) and lives in
    the same folder, so ``os.replace`` is an atomic rename on POSIX file systems. Its content is
    fsynced before the rename, and it gets the permissions a plain ``open()`` would give (``mkstemp``
    alone would leave it private, 0600).

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
    suffix = file_suffix(final)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".part{suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(final.parent)


def _as_numpy(array: Any) -> np.ndarray:
    # torch tensors / MetaTensors (possibly on a GPU) are accepted without importing torch here
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _target_dtype(data: np.ndarray, dtype: Any, path: Path) -> np.dtype:
    target = np.dtype(dtype) if dtype is not None else data.dtype
    if target == np.bool_:
        target = np.dtype(np.uint8)
    elif target == np.float16:
        target = np.dtype(np.float32)  # NIfTI-1 has no float16; float32 holds every float16 exactly
    target = target.newbyteorder("=")
    if target not in SUPPORTED_DTYPES:
        raise Medi2iInputError(
            "unsupported data type for NIfTI",
            path=path,
            field="dtype",
            found=target,
            expected=[d.name for d in SUPPORTED_DTYPES],
        )
    return target


def _finite_after_cast(data: np.ndarray, target: np.dtype) -> bool:
    with np.errstate(over="ignore"):  # the overflow is the error we report
        return bool(np.all(np.isfinite(data.astype(target))))


def _check_values_fit(data: np.ndarray, target: np.dtype, path: Path) -> None:
    """Refuse casts that would change values: out-of-range or fractional -> integer, lossy integer -> float."""
    if data.size == 0 or data.dtype == target:
        return
    source_is_int = np.issubdtype(data.dtype, np.integer) or data.dtype == np.bool_
    if np.issubdtype(target, np.integer):
        info = np.iinfo(target)
        low, high = data.min().item(), data.max().item()
        integral = source_is_int or bool(np.all(data == np.rint(data)))
        if low < info.min or high > info.max or not integral:
            raise Medi2iInputError(
                "values do not fit the requested integer type",
                path=path,
                field="dtype",
                found=f"range [{low}, {high}] ({data.dtype}){'' if integral else ', fractional values'}",
                expected=f"integers in [{info.min}, {info.max}] for {target.name}",
            )
    elif source_is_int:
        cast = data.astype(target)
        if not np.array_equal(cast.astype(data.dtype), data):
            raise Medi2iInputError(
                f"integer values are not exactly representable in {target.name}",
                path=path,
                field="dtype",
                found=f"range [{data.min()}, {data.max()}] ({data.dtype})",
                expected=f"|value| <= 2**{np.finfo(target).nmant + 1}, or an integer dtype",
            )
    elif not _finite_after_cast(data, target):
        raise Medi2iInputError(
            f"values overflow {target.name}",
            path=path,
            field="dtype",
            found=f"max |value| {float(np.abs(data).max()):.6g}",
            expected=f"|value| <= {float(np.finfo(target).max):.6g}",
        )


def save_volume(
    path: PathLike,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    dtype: np.dtype | type | str | None = None,
    description: str | None = None,
) -> Path:
    """Write a 2D/3D (or vector-valued) volume as NIfTI-1, atomically, with qform = sform = ``affine``.

    Both transform codes are set to 2 ("aligned"), units to mm, and ``scl_slope``/``scl_inter`` to
    "no scaling", so every standard reader sees exactly the values and geometry given here. Before
    anything is written, the header is read back in memory: if float32 storage would move the grid
    corners by more than 1e-3 mm (e.g. translations of ~1e5 mm) the write is refused.

    Args:
        path: destination, ``.nii`` or ``.nii.gz``; parent folders are created.
        array: voxel data in array order, shape ``(X, Y[, Z][, C])``, numpy or torch (moved to CPU); must be finite.
        affine: ``(4, 4)`` voxel -> RAS+ mm; finite, non-singular and not sheared (a qform cannot hold shear).
        dtype: on-disk data type (default: the array's; bool -> uint8, float16 -> float32). The cast must
            not change any value: integers must be in range and integral, integers cast to float exact.
        description: stored in the header's ``descrip`` field (80 bytes at most; non-ASCII becomes ``?``).

    Returns:
        The final path.

    Raises:
        Medi2iInputError: non-finite data or affine, singular or sheared affine, values that do not fit ``dtype``,
            an unsupported dtype, a suffix other than ``.nii``/``.nii.gz``, or a description longer than 80 bytes.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.nii.gz"
        >>> _ = save_volume(out, np.zeros((4, 5, 6), np.int16), np.diag([2.0, 2.0, 3.0, 1.0]))
        >>> img = nib.load(out)
        >>> bool(np.allclose(img.get_qform(), img.get_sform())), tuple(float(z) for z in img.header.get_zooms())
        (True, (2.0, 2.0, 3.0))
    """
    out = Path(path)
    if file_suffix(out) not in NIFTI_SUFFIXES:
        raise Medi2iInputError(
            "unsupported output format",
            path=out,
            field="suffix",
            found=repr(file_suffix(out)),
            expected="'.nii' or '.nii.gz'",
        )
    data = _as_numpy(array)
    if not 2 <= data.ndim <= 7:
        raise Medi2iInputError(
            "volume must have 2 to 7 dimensions", path=out, field="shape", found=data.shape, expected="(X, Y[, Z][, C])"
        )
    if data.size == 0:
        raise Medi2iInputError("volume is empty", path=out, field="shape", found=data.shape, expected="every axis >= 1")
    aff = check_affine(affine, path=out, field="affine")
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise Medi2iInputError(
            "volume contains NaN or Inf",
            path=out,
            field="data",
            found=f"{int(np.sum(~np.isfinite(data)))} non-finite voxels",
            expected="finite values",
        )
    target = _target_dtype(data, dtype, out)
    _check_values_fit(data, target, out)
    image = nib.Nifti1Image(data.astype(target, copy=False), aff)
    header = image.header
    header.set_data_dtype(target)
    image.set_qform(aff, code="aligned")
    image.set_sform(aff, code="aligned")
    header["scl_slope"] = np.nan  # nibabel's spelling of "no scaling"; medi2i reads NaN/NaN as stored = value
    header["scl_inter"] = np.nan
    header.set_xyzt_units(xyz="mm")
    if description is not None:
        encoded = description.encode("ascii", errors="replace")
        if len(encoded) > _DESCRIP_BYTES:
            raise Medi2iInputError(
                "description longer than the 80 bytes NIfTI allows",
                path=out,
                field="descrip",
                found=len(encoded),
                expected="<= 80 bytes",
            )
        header["descrip"] = encoded
    grid = data.shape[:3]
    stored = {
        "sform": sform_affine(header),
        "qform": qform_affine(header, np.asarray(header["pixdim"][1:4], dtype=np.float64), out),
    }
    for name, written in stored.items():
        if corner_distance(written, aff, grid) > ATOL_MM:
            raise Medi2iInputError(
                f"affine cannot be stored in the NIfTI {name} (float32) without moving the grid",
                path=out,
                field="affine",
                found=f"{format_affine(aff)} stored as {format_affine(written)}",
                expected=f"corners within {ATOL_MM:g} mm after float32 rounding",
            )
    with atomic_path(out) as tmp:
        nib.save(image, tmp)
    return out


def save_like(
    path: PathLike,
    array: np.ndarray,
    reference: Volume,
    *,
    dtype: np.dtype | type | str | None = None,
    description: str | None = None,
) -> Path:
    """Write ``array`` on the grid of ``reference`` (its affine), atomically, as :func:`save_volume` does.

    Args:
        path: destination, ``.nii`` or ``.nii.gz``.
        array: ``reference.shape`` (a scalar volume) or ``reference.shape + (C,)`` (e.g. a displacement field).
        reference: the volume whose grid the array lives on.
        dtype: on-disk data type (default: the array's).
        description: ``descrip`` header text.

    Returns:
        The final path.

    Raises:
        Medi2iInputError: the array's spatial shape differs from the reference's, plus anything
            :func:`save_volume` raises.

    Example:
        >>> import tempfile, pathlib
        >>> ref = Volume(np.zeros((4, 5, 6), np.float32), np.diag([0.8, 0.8, 2.0, 1.0]))
        >>> out = save_like(pathlib.Path(tempfile.mkdtemp()) / "pred.nii.gz", np.ones((4, 5, 6), np.float32), ref)
        >>> bool(np.allclose(nib.load(out).affine, ref.affine))
        True
    """
    data = _as_numpy(array)
    spatial = reference.shape
    if data.shape[: len(spatial)] != spatial or data.ndim not in (len(spatial), len(spatial) + 1):
        raise Medi2iInputError(
            "array is not on the reference grid",
            path=path,
            field="shape",
            found=data.shape,
            expected=f"{spatial} or {spatial} + (C,), the grid of {reference.path or 'the reference'}",
        )
    return save_volume(path, data, reference.affine, dtype=dtype, description=description)
