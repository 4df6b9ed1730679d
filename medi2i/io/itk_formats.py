"""ITK-readable formats (``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``) through SimpleITK, imported lazily.

ITK describes a grid in LPS+ world coordinates with ``origin``, ``spacing`` and a ``direction``
matrix whose columns are the unit directions of the image axes (x fastest), so

    p_LPS = origin + direction @ diag(spacing) @ (i, j, k)

and, with ``F = diag(-1, -1, 1)`` flipping L->R and P->A, the RAS+ affine is
``[F @ direction @ diag(spacing) | F @ origin]``. SimpleITK's ``GetArrayFromImage`` returns
``(Z, Y, X)``; we transpose to ``(X, Y, Z)`` so the array index order matches the affine (and nibabel).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medi2i.errors import Medi2iInputError
from medi2i.io.geometry import check_affine
from medi2i.io.header import SUPPORTED_DTYPES, DiskHeader

ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _reason(err: RuntimeError) -> str:
    """The informative part of an ITK exception (its text spans many lines of C++ source locations)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [line for line in lines if "ERROR" in line or "Reason" in line or "trouble" in line] or lines[-1:]
    return " | ".join(useful)[:400]


def _pixel_dtypes(sitk: Any) -> dict[int, tuple[np.dtype, bool]]:
    """SimpleITK pixel id -> (numpy element type, is a vector pixel)."""
    table = {}
    for dtype in SUPPORTED_DTYPES:
        suffix = dtype.name.replace("uint", "UInt").replace("int", "Int").replace("float", "Float")
        table[getattr(sitk, f"sitk{suffix}")] = (dtype, False)
        table[getattr(sitk, f"sitkVector{suffix}")] = (dtype, True)
    return table


def ras_affine_from_itk(direction: np.ndarray, spacing: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Build the ``(4, 4)`` voxel -> RAS+ affine from ITK's LPS geometry of a 2D or 3D grid.

    Args:
        direction: ``(D, D)`` direction cosines (columns = image axes), D = 2 or 3.
        spacing: ``(D,)`` voxel size in mm.
        origin: ``(D,)`` LPS position of voxel 0.

    Returns:
        ``(4, 4)`` float64 affine; a 2D grid gets a unit slice normal along +S.

    Example:
        >>> ras_affine_from_itk(np.eye(3), np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0]))[:3].tolist()
        [[-1.0, 0.0, 0.0, -10.0], [0.0, -2.0, 0.0, -20.0], [0.0, 0.0, 3.0, 30.0]]
    """
    n = len(spacing)
    lps = np.eye(4)
    lps[:n, :n] = np.asarray(direction, dtype=np.float64) * np.asarray(spacing, dtype=np.float64)
    lps[:n, 3] = origin
    return _LPS_TO_RAS @ lps


def read_itk_header(path: Path, *, repair: bool = False) -> DiskHeader:
    """Validate an ITK image's header (no pixels read); the returned ``read()`` loads the voxels as ``(X, Y[, Z])``.

    Args:
        path: an existing ``.mha``/``.mhd``/``.nrrd``/``.nhdr`` file.
        repair: orthogonalize a sheared direction matrix (with a warning) instead of raising.

    Raises:
        Medi2iInputError: unreadable file, unsupported pixel type, non-finite or non-positive spacing,
            non-finite origin/direction, singular or sheared direction, a non-spatial axis mixed with space.

    Example:
        >>> import tempfile, pathlib, SimpleITK as sitk
        >>> out = str(pathlib.Path(tempfile.mkdtemp()) / "x.mha")
        >>> img = sitk.GetImageFromArray(np.arange(24, dtype=np.int16).reshape(4, 3, 2))  # (Z, Y, X)
        >>> img.SetSpacing((0.5, 1.0, 2.0)); img.SetOrigin((10.0, 20.0, 30.0)); sitk.WriteImage(img, out)
        >>> disk = read_itk_header(pathlib.Path(out))
        >>> disk.dims, disk.affine.diagonal().tolist(), disk.affine[:3, 3].tolist(), int(disk.read()[1, 2, 3])
        ((2, 3, 4), [-0.5, -1.0, 2.0, 1.0], [-10.0, -20.0, 30.0], 23)
    """
    import SimpleITK as sitk  # lazy: ~100 MB of native libraries most runs never need

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise Medi2iInputError(
            "cannot read the image header", path=path, field="header", found=_reason(err), expected="a valid ITK image"
        ) from err
    ndim, size = reader.GetDimension(), tuple(int(n) for n in reader.GetSize())
    pixel = _pixel_dtypes(sitk).get(reader.GetPixelID())
    if pixel is None:
        raise Medi2iInputError(
            "unsupported pixel type",
            path=path,
            field="pixel type",
            found=sitk.GetPixelIDValueAsString(reader.GetPixelID()),
            expected=f"scalar or vector of {[d.name for d in SUPPORTED_DTYPES]}",
        )
    dtype, is_vector = pixel
    components = int(reader.GetNumberOfComponents())
    spacing = np.array(reader.GetSpacing(), dtype=np.float64)
    origin = np.array(reader.GetOrigin(), dtype=np.float64)
    direction = np.array(reader.GetDirection(), dtype=np.float64).reshape(ndim, ndim)
    for field, values in (("spacing", spacing), ("origin", origin), ("direction", direction)):
        if not np.all(np.isfinite(values)):
            raise Medi2iInputError(f"non-finite {field}", path=path, field=field, found=values.tolist())
    if np.any(spacing <= 0):
        raise Medi2iInputError(
            "voxel spacing must be positive", path=path, field="spacing", found=spacing.tolist(), expected="> 0"
        )
    n = min(ndim, 3)
    if ndim > 3 and (np.any(direction[:3, 3:]) or np.any(direction[3:, :3])):
        raise Medi2iInputError(
            "a non-spatial axis is rotated into space",
            path=path,
            field="direction",
            found=direction.tolist(),
            expected="block-diagonal direction (space x time/channels)",
        )
    affine = check_affine(
        ras_affine_from_itk(direction[:n, :n], spacing[:n], origin[:n]),
        path=path,
        field="direction/spacing/origin",
        repair=repair,
        shape=size[:3],
    )
    dims = size + ((components,) if is_vector else ())

    def read() -> np.ndarray:
        try:
            image = reader.Execute()
        except RuntimeError as err:
            raise Medi2iInputError(
                "cannot read the voxel data (truncated or corrupt?)",
                path=path,
                field="data",
                found=_reason(err),
                expected=f"{np.prod(dims)} voxels of {dtype.name}",
            ) from err
        array = sitk.GetArrayFromImage(image)  # (Z, Y, X[, C]): reverse the spatial axes
        order = list(reversed(range(ndim))) + ([ndim] if is_vector else [])
        return array.transpose(order).reshape(dims)

    return DiskHeader(path=path, dims=dims, dtype=dtype, affine=affine, scaling=None, read=read)
