"""NIfTI-1/2 header validation and data reading (``.nii`` and ``.nii.gz``), stricter than nibabel.

nibabel and MONAI load many malformed files silently: a sheared or NaN sform, qform and sform that
point at different places, ``scl_slope = 0`` with an intercept that is then ignored, negative ``pixdim``
(quietly made positive), truncated data. This reader parses the header itself (``check=False``, so
nibabel fixes nothing behind our back), checks every field it relies on, then checks that the file
holds exactly the bytes the header declares, and only then allocates and reads the voxels.

Scaling follows the NIfTI-1 standard (``nifti1.h``): "if the scl_slope field is nonzero, then each
voxel value in the dataset should be scaled as y = scl_slope * x + scl_inter". So slope 0 means
"no scaling". Where the standard and nibabel could disagree, or the header is ambiguous, we refuse:

===========================  ===========================  =====================================
scl_slope                    scl_inter                    medi2i
===========================  ===========================  =====================================
0 or NaN                     0 or NaN                     no scaling (standard and nibabel agree)
0 or NaN                     anything else                error: intercept would be ignored
+-inf                        anything                     error (nibabel ignores it silently)
finite, nonzero              NaN or +-inf                 error (nibabel raises, nifti1_io uses 0)
1                            0                            no scaling
finite, nonzero              finite                       ``slope * stored + inter`` in float64
===========================  ===========================  =====================================
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import math
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.quaternions import quat2mat

from medi2i.errors import Medi2iInputError
from medi2i.io.geometry import ATOL_MM, COSINE_ATOL, check_affine, corner_distance, cosine_difference, format_affine
from medi2i.io.header import DiskHeader

logger = logging.getLogger("medi2i.io")

_DATATYPES = {
    2: "uint8",
    4: "int16",
    8: "int32",
    16: "float32",
    64: "float64",
    256: "int8",
    512: "uint16",
    768: "uint32",
    1024: "int64",
    1280: "uint64",
}
# sizeof_hdr -> (header class, magic of a single-file image, smallest vox_offset: header + 4 extension bytes)
_FORMATS: dict[int, tuple[Any, bytes, int]] = {
    348: (nib.Nifti1Header, b"n+1", 352),
    540: (nib.Nifti2Header, b"n+2", 544),
}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # 1 MiB: streaming reads keep memory flat whatever the header claims
_XFORM_CODES = range(0, 6)  # unknown, scanner, aligned, talairach, mni, template (NIfTI-1 2019 adds 5)
_QUAT_SNAP = 1e-7  # nifti1_io: a^2 below this is float32 rounding of |(b, c, d)| = 1, i.e. a 180-degree rotation


def is_compressed(path: Path) -> bool:
    """Whether ``path`` names a gzip-compressed NIfTI (``.nii.gz``)."""
    return path.name.lower().endswith(".gz")


def _open(path: Path) -> gzip.GzipFile | io.BufferedReader:
    return gzip.GzipFile(path, "rb") if is_compressed(path) else open(path, "rb")


@contextlib.contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """Turn low-level read failures into one input error naming the file and what was being read."""
    try:
        yield
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise Medi2iInputError(
            f"corrupt or truncated gzip stream while reading the {what}",
            path=path,
            field="gzip stream",
            found=f"{type(err).__name__}: {err}",
            expected="a complete gzip file (.nii.gz)",
        ) from err
    except OSError as err:
        raise Medi2iInputError(
            f"cannot read the {what}",
            path=path,
            field="file",
            found=f"{type(err).__name__}: {err.strerror or err}",
            expected="a readable file",
        ) from err


def _read_upto(stream: gzip.GzipFile | io.BufferedReader, size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at end of file (a single read() may return less)."""
    parts, remaining = [], size
    while remaining > 0:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _parse_header(path: Path) -> tuple[Any, str, int]:
    """Read and identify the header block. Returns ``(header, endianness, smallest vox_offset)``."""
    with _reading(path, "header"), _open(path) as stream:
        start = _read_upto(stream, 4)
        if start[:2] == _GZIP_MAGIC and not is_compressed(path):
            raise Medi2iInputError(
                "file is gzip-compressed but not named .nii.gz",
                path=path,
                field="suffix",
                found=".nii",
                expected="'.nii.gz' for compressed data",
            )
        if len(start) < 4:
            raise Medi2iInputError(
                "file too short to hold a NIfTI header", path=path, field="sizeof_hdr", found=f"{len(start)} bytes"
            )
        for endian in "<>":
            size = int(np.frombuffer(start, dtype=f"{endian}i4")[0])
            if size in _FORMATS:
                break
        else:
            raise Medi2iInputError(
                "not a NIfTI file",
                path=path,
                field="sizeof_hdr",
                found=int(np.frombuffer(start, dtype="<i4")[0]),
                expected="348 (NIfTI-1) or 540 (NIfTI-2), in either byte order",
            )
        block = start + _read_upto(stream, size - 4)
    if len(block) < size:
        raise Medi2iInputError(
            "header is truncated", path=path, field="header", found=f"{len(block)} bytes", expected=f"{size} bytes"
        )
    klass, magic, min_offset = _FORMATS[size]
    header = klass(block, endianness=endian, check=False)  # check=False: nibabel must not "fix" fields silently
    found_magic = header["magic"].item()
    if found_magic != magic:
        hint = "; this is the header of a .hdr/.img pair" if found_magic in (b"ni1", b"ni2") else ""
        raise Medi2iInputError(f"bad magic string{hint}", path=path, field="magic", found=found_magic, expected=magic)
    if size == 540 and header["eol_check"].tolist() != [13, 10, 26, 10]:
        # NIfTI-2's guard against text-mode transfers that rewrite line endings (and so every byte after them)
        raise Medi2iInputError(
            "file was altered by a text-mode transfer",
            path=path,
            field="eol_check",
            found=header["eol_check"].tolist(),
            expected=[13, 10, 26, 10],
        )
    return header, endian, min_offset


def _data_dtype(header: Any, path: Path, endian: str) -> np.dtype:
    code = int(header["datatype"])
    if code not in _DATATYPES:
        try:
            name = nib.nifti1.data_type_codes.label[code]
        except KeyError:
            name = "unknown"
        raise Medi2iInputError(
            "unsupported data type",
            path=path,
            field="datatype",
            found=f"{code} ({name})",
            expected=f"one of {sorted(_DATATYPES.values())}",
        )
    dtype = np.dtype(_DATATYPES[code]).newbyteorder("<" if endian == "<" else ">")
    bitpix = int(header["bitpix"])
    if bitpix != dtype.itemsize * 8:
        raise Medi2iInputError(
            f"bitpix does not match datatype {code} ({dtype.name})",
            path=path,
            field="bitpix",
            found=bitpix,
            expected=dtype.itemsize * 8,
        )
    return dtype


def _dims(header: Any, path: Path) -> tuple[int, ...]:
    dim = [int(v) for v in header["dim"]]
    if not 1 <= dim[0] <= 7:
        raise Medi2iInputError("invalid number of dimensions", path=path, field="dim[0]", found=dim[0], expected="1..7")
    dims = tuple(dim[1 : dim[0] + 1])
    if min(dims) < 1:
        raise Medi2iInputError("every dimension must hold at least one voxel", path=path, field="dim", found=dims)
    return dims


def _vox_offset(header: Any, path: Path, min_offset: int) -> int:
    offset = float(header["vox_offset"])
    if not (math.isfinite(offset) and offset == int(offset) and offset >= min_offset):
        raise Medi2iInputError(
            "invalid data offset", path=path, field="vox_offset", found=offset, expected=f"an integer >= {min_offset}"
        )
    return int(offset)


def _check_units(header: Any, path: Path) -> None:
    # NIfTI affines are in the file's spatial unit; medi2i promises millimetres and will not rescale by guesswork.
    unit = int(header["xyzt_units"]) & 0x07
    if unit not in (0, 2):
        names = {1: "meter", 3: "micron"}
        raise Medi2iInputError(
            "spatial unit is not millimetres",
            path=path,
            field="xyzt_units",
            found=f"{unit} ({names.get(unit, 'invalid')})",
            expected="2 (mm) or 0 (unknown, read as mm)",
        )


def scaling(header: Any, path: Path | None) -> tuple[float, float] | None:
    """Resolve ``scl_slope`` / ``scl_inter`` per the NIfTI-1 standard (see the module table).

    Returns:
        ``(slope, inter)`` or None when stored values are the values.

    Raises:
        Medi2iInputError: an ambiguous or non-finite combination.

    Example:
        >>> hdr = nib.Nifti1Header()
        >>> hdr["scl_slope"], hdr["scl_inter"] = 0, 0
        >>> scaling(hdr, None) is None
        True
        >>> hdr["scl_slope"], hdr["scl_inter"] = 2, -1
        >>> scaling(hdr, None)
        (2.0, -1.0)
    """
    slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    found = f"scl_slope={slope}, scl_inter={inter}"
    if math.isinf(slope):
        raise Medi2iInputError(
            "infinite scale factor", path=path, field="scl_slope", found=found, expected="finite, or 0 for no scaling"
        )
    if slope == 0 or math.isnan(slope):
        if inter == 0 or math.isnan(inter):
            return None
        raise Medi2iInputError(
            "intercept without a slope is ambiguous: the standard (and nibabel) would ignore it",
            path=path,
            field="scl_inter",
            found=found,
            expected="scl_inter 0 when scl_slope is 0 (no scaling), or a nonzero scl_slope",
        )
    if not math.isfinite(inter):
        raise Medi2iInputError(
            "non-finite intercept with a valid slope", path=path, field="scl_inter", found=found, expected="finite"
        )
    if slope == 1 and inter == 0:
        return None
    return slope, inter


def _zooms(header: Any, path: Path, n_used: int, repair: bool) -> np.ndarray:
    """Return ``pixdim[1:4]`` after checking the first ``n_used`` (the axes the file has).

    An axis the file does not have (the third of a 2D image) gets spacing 1 when its pixdim is not a
    positive number, as the reference implementation (nifti1_io) does when it builds the qform.
    """
    zooms = np.asarray(header["pixdim"], dtype=np.float64)[1:4].copy()
    absent = zooms[n_used:]
    zooms[n_used:] = np.where(np.isfinite(absent) & (absent > 0), absent, 1.0)
    used = zooms[:n_used]
    if not np.all(np.isfinite(used)) or np.any(used == 0):
        raise Medi2iInputError(
            "voxel spacing must be nonzero and finite",
            path=path,
            field="pixdim",
            found=tuple(float(v) for v in used),
            expected="> 0 and finite",
        )
    if np.any(used < 0):
        if not repair:
            raise Medi2iInputError(
                "negative voxel spacing (NIfTI encodes handedness in qfac, not in pixdim)",
                path=path,
                field="pixdim",
                found=tuple(float(v) for v in used),
                expected="> 0; pass repair=True to use the absolute values",
            )
        logger.warning("%s: pixdim %s had negative entries; using their absolute values", path, used.tolist())
        zooms[:n_used] = np.abs(used)
    return zooms


def qform_affine(header: Any, zooms: np.ndarray, path: Path | None) -> np.ndarray:
    """The qform (NIfTI "method 2") as a ``(4, 4)`` affine: ``R(quaternion) @ diag(zooms * [1, 1, qfac]) + qoffset``.

    Follows the reference implementation (nifti1_io): ``pixdim[0] = 0`` means qfac = 1, and when
    ``1 - (b^2 + c^2 + d^2)`` is below float32 rounding the rotation is taken as exactly 180 degrees
    with ``(b, c, d)`` renormalized.

    Raises:
        Medi2iInputError: non-finite quaternion or offset, ``|(b, c, d)| > 1``, or qfac not in {0, 1, -1}.

    Example:
        >>> hdr = nib.Nifti1Header()
        >>> hdr.set_qform(np.diag([-2.0, 2.0, 3.0, 1.0]), code=1)
        >>> qform_affine(hdr, np.array([2.0, 2.0, 3.0]), None).diagonal().tolist()
        [-2.0, 2.0, 3.0, 1.0]
    """
    quat = np.array([float(header[k]) for k in ("quatern_b", "quatern_c", "quatern_d")])
    offset = np.array([float(header[k]) for k in ("qoffset_x", "qoffset_y", "qoffset_z")])
    if not np.all(np.isfinite(quat)):
        raise Medi2iInputError("non-finite quaternion", path=path, field="quatern_b/c/d", found=quat.tolist())
    if not np.all(np.isfinite(offset)):
        raise Medi2iInputError("non-finite qform offset", path=path, field="qoffset_x/y/z", found=offset.tolist())
    norm2 = float(quat @ quat)
    if norm2 > 1 + 1e-6:
        raise Medi2iInputError(
            "quaternion is not a rotation",
            path=path,
            field="quatern_b/c/d",
            found=quat.tolist(),
            expected="|b,c,d| <= 1",
        )
    a2 = 1.0 - norm2
    if a2 < _QUAT_SNAP:
        a, quat = 0.0, quat / math.sqrt(norm2)
    else:
        a = math.sqrt(a2)
    qfac = float(header["pixdim"][0])
    if qfac == 0:
        qfac = 1.0  # nifti1.h: "if pixdim[0] = 0 (which should not occur), we take qfac = 1"
    if qfac not in (1.0, -1.0):
        raise Medi2iInputError("invalid qfac", path=path, field="pixdim[0]", found=qfac, expected="1 or -1 (or 0)")
    affine = np.eye(4)
    affine[:3, :3] = quat2mat([a, *quat]) * (zooms * [1.0, 1.0, qfac])
    affine[:3, 3] = offset
    return affine


def sform_affine(header: Any) -> np.ndarray:
    """The sform (NIfTI "method 3") rows ``srow_x/y/z`` as a ``(4, 4)`` affine (not yet validated)."""
    affine = np.eye(4)
    affine[:3] = np.array([header[k] for k in ("srow_x", "srow_y", "srow_z")], dtype=np.float64)
    return affine


def _affine(header: Any, path: Path, dims: tuple[int, ...], repair: bool) -> np.ndarray:
    grid = dims[:3]
    qcode, scode = int(header["qform_code"]), int(header["sform_code"])
    for name, code in (("qform_code", qcode), ("sform_code", scode)):
        if code not in _XFORM_CODES:
            raise Medi2iInputError("invalid transform code", path=path, field=name, found=code, expected="0..5")
    if qcode == 0 and scode == 0 and not repair:
        raise Medi2iInputError(
            "no orientation: neither qform nor sform is set, so where the voxels are in space is unknown",
            path=path,
            field="qform_code/sform_code",
            found=(0, 0),
            expected="at least one > 0; pass repair=True to use pixdim only (NIfTI method 1: no rotation, no origin)",
        )
    zooms = _zooms(header, path, min(len(dims), 3), repair)
    if qcode == 0 and scode == 0:
        method1 = np.diag([*zooms, 1.0])
        logger.warning(
            "%s: qform_code and sform_code are 0; using NIfTI method 1 (pixdim only) %s", path, format_affine(method1)
        )
        return check_affine(method1, path=path, field="pixdim (method 1)")
    qform_field = "qform (quatern/qoffset/pixdim)"
    if scode == 0:
        return check_affine(qform_affine(header, zooms, path), path=path, field=qform_field)
    sform = check_affine(sform_affine(header), path=path, field="sform (srow_x/y/z)", repair=repair, shape=grid)
    if qcode > 0:
        qform = check_affine(qform_affine(header, zooms, path), path=path, field=qform_field)
        distance, cosines = corner_distance(qform, sform, grid), cosine_difference(qform, sform)
        if distance > ATOL_MM or cosines > COSINE_ATOL:
            raise Medi2iInputError(
                f"qform and sform disagree: grid corners up to {distance:.4g} mm apart, direction cosines differ by "
                f"{cosines:.3g}",
                path=path,
                field="qform/sform",
                found=f"qform (code {qcode}) {format_affine(qform)} vs sform (code {scode}) {format_affine(sform)}",
                expected=f"agreement within {ATOL_MM:g} mm and {COSINE_ATOL:g} in direction cosines; re-save with "
                "one of them (e.g. fslorient -copysform2qform) once you know which is right",
            )
    return sform


def _gzip_payload_size(path: Path) -> int:
    """Count the decompressed bytes in chunks (memory stays flat; the gzip CRC and length are verified at the end)."""
    total, buffer = 0, bytearray(_CHUNK)
    with _reading(path, "compressed data"), gzip.open(path, "rb") as stream:
        while count := stream.readinto(buffer):
            total += count
    return total


def _read_data(path: Path, offset: int, dims: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    declared = offset + math.prod(dims) * dtype.itemsize
    actual = _gzip_payload_size(path) if is_compressed(path) else os.stat(path).st_size
    if actual != declared:
        what = "truncated" if actual < declared else "longer than declared"
        raise Medi2iInputError(
            f"data size does not match the header (file is {what})",
            path=path,
            field="dim/bitpix/vox_offset",
            found=f"{actual} bytes{' after decompression' if is_compressed(path) else ''}",
            expected=f"vox_offset {offset} + prod(dim[1:]) {math.prod(dims)} x bitpix/8 {dtype.itemsize} "
            f"= {declared} bytes",
        )
    count = math.prod(dims)
    data = np.empty(count, dtype=dtype)
    with _reading(path, "voxel data"), _open(path) as stream:
        stream.seek(offset)
        view, filled = data.view(np.uint8).data, 0  # a writable memoryview of the array's bytes
        while filled < view.nbytes:
            got = stream.readinto(view[filled:])
            if not got:
                raise Medi2iInputError("file changed while reading (now shorter)", path=path, field="file")
            filled += got
    data = data.reshape(dims, order="F")  # NIfTI stores the first index fastest
    return data if data.dtype.isnative else data.astype(data.dtype.newbyteorder("="))


def read_nifti_header(path: Path, *, repair: bool = False) -> DiskHeader:
    """Validate a ``.nii`` / ``.nii.gz`` header; the returned ``read()`` checks the data size, then reads.

    Args:
        path: an existing NIfTI-1 or NIfTI-2 single file.
        repair: fix what can be fixed unambiguously (negative pixdim, sheared sform, no transform at all)
            with a warning on the ``medi2i.io`` logger, instead of raising.

    Returns:
        The validated :class:`~medi2i.io.header.DiskHeader`.

    Raises:
        Medi2iInputError: any header problem (the message names the file, the field, what was found and
            what was expected).

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.nii.gz"
        >>> img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([2.0, 2.0, 3.0, 1.0]))
        >>> img.set_qform(img.affine, code=1); img.set_sform(img.affine, code=1); nib.save(img, out)
        >>> disk = read_nifti_header(out)
        >>> disk.dims, disk.dtype.name, int(disk.read()[1, 2, 3])
        ((2, 3, 4), 'int16', 23)
    """
    header, endian, min_offset = _parse_header(path)
    dtype = _data_dtype(header, path, endian)
    dims = _dims(header, path)
    offset = _vox_offset(header, path, min_offset)
    _check_units(header, path)
    scale = scaling(header, path)
    affine = _affine(header, path, dims, repair)
    return DiskHeader(
        path=path,
        dims=dims,
        dtype=dtype,
        affine=affine,
        scaling=scale,
        read=lambda: _read_data(path, offset, dims, dtype),
    )
