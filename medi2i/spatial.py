"""Grids, warping and composition of dense displacement fields (DDFs): the one spatial convention of medi2i.

Convention (docs/conventions.md), used by every module that touches a DDF:

* A DDF ``u`` has shape ``(B, ndim, *spatial)`` (``ndim`` = 2 or 3), is defined on the *fixed* grid and is
  in **voxel units** of that grid.
* **Channel order = array axis order**: channel ``c`` is the displacement along array axis ``c`` of the
  spatial dimensions (for ``(B, C, X, Y, Z)`` images, channel 0 moves along ``X``). It is *not* the
  ``(x, y, z)``-reversed order that ``torch.nn.functional.grid_sample`` uses for its grids.
* **Pull (backward) convention**: ``warped(x) = moving(x + u(x))`` for every fixed-grid voxel ``x``.
* **Composition** of a step ``a`` applied after an accumulated field ``U`` (first warp by ``U``, then warp
  the result by ``a``): ``U_new = a + warp(U, a)``, because
  ``warp(warp(m, U), a)(x) = m(x + a(x) + U(x + a(x)))``.
* On disk a DDF follows the Learn2Reg layout ``(X, Y, Z, 3)`` (or ``(X, Y, 2)`` in 2D), float, voxel
  units, on the fixed grid with the fixed image's affine (:func:`write_ddf`, :func:`read_ddf`).

Warping delegates to MONAI's :class:`monai.networks.blocks.Warp`. Checked by experiment on MONAI 1.6.1
(see ``tests/test_spatial.py::test_warp_sign``): a constant ``ddf[:, c] = +2`` gives
``warped[..., i, ...] == image[..., i + 2, ...]`` along array axis ``c`` for every ``c``, i.e. MONAI
``Warp`` samples at ``x + u(x)`` with channels in array-axis order and voxel units, mapping voxel
centres with ``align_corners=True`` semantics (voxel 0 and voxel ``n - 1`` are the grid end points).
So MONAI's convention *is* ours and no channel flip or rescaling is needed on our side.

World (mm, RAS+) displacements are only used at the edges (metrics such as TRE, exchange with tools
that store mm fields); :func:`ddf_voxel_to_mm` and :func:`ddf_mm_to_voxel` convert with the affine's
linear part.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.networks.blocks import Warp
from monai.utils import StrEnum, look_up_option

from medi2i.errors import Medi2iInputError
from medi2i.io import atomic_path, load_volume, save_volume
from medi2i.typing import ArrayLike, PathLike

__all__ = [
    "DDF_DESCRIPTION_2D",
    "DDF_DESCRIPTION_3D",
    "MAX_EXACT_LABEL",
    "WarpMode",
    "WarpPadding",
    "compose",
    "ddf_mm_to_voxel",
    "ddf_voxel_to_mm",
    "identity_grid",
    "read_ddf",
    "warp",
    "write_ddf",
]

# float32 represents every integer with |v| <= 2**24 exactly; labels are warped through float32.
MAX_EXACT_LABEL = 2**24

DDF_DESCRIPTION_3D = "DDF voxel units, pull, L2R (X,Y,Z,3)"
DDF_DESCRIPTION_2D = "DDF voxel units, pull, L2R (X,Y,2)"

# Learn2Reg's evaluation reads ``np.load(f)["arr_0"]`` (MDL-UzL/L2R evaluation/utils.py, load_disp), i.e.
# the default key of ``np.savez``; we add the fixed affine under a second key that L2R ignores.
_NPZ_DISP_KEY = "arr_0"
_NPZ_AFFINE_KEY = "affine"
_DDF_DTYPES = (np.float16, np.float32, np.float64)


class WarpMode(StrEnum):
    """Interpolation of :func:`warp` (``bilinear`` is trilinear in 3D, as in ``grid_sample``)."""

    BILINEAR = "bilinear"
    NEAREST = "nearest"


class WarpPadding(StrEnum):
    """Value used where ``x + u(x)`` leaves the moving grid."""

    BORDER = "border"
    ZEROS = "zeros"
    REFLECTION = "reflection"


def identity_grid(
    shape: Sequence[int], *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Voxel coordinates of a grid: ``grid[c, i0, i1, ...] = i_c``.

    Args:
        shape: spatial shape ``(X, Y[, Z])``.
        device: device of the result (default: torch's default device).
        dtype: floating dtype of the result (default ``torch.float32``).

    Returns:
        Tensor of shape ``(ndim, *shape)``; ``identity_grid(s) + ddf[0]`` are the sampling positions of
        :func:`warp`.

    Example:
        >>> g = identity_grid((2, 3))
        >>> tuple(g.shape), g[0, :, 0].tolist(), g[1, 0, :].tolist()
        ((2, 2, 3), [0.0, 1.0], [0.0, 1.0, 2.0])
    """
    dims = tuple(int(s) for s in shape)
    if not dims or any(s < 1 for s in dims):
        raise ValueError(f"shape must be a non-empty sequence of positive sizes, got {tuple(shape)}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    axes = [torch.arange(s, device=device, dtype=dtype) for s in dims]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)


def _check_pair(image: torch.Tensor, ddf: torch.Tensor) -> int:
    """Check the ``(image, ddf)`` contract of :func:`warp`; return the number of spatial dims."""
    if not isinstance(image, torch.Tensor) or not isinstance(ddf, torch.Tensor):
        raise TypeError(f"image and ddf must be torch tensors, got {type(image).__name__}, {type(ddf).__name__}")
    if image.ndim not in (4, 5):
        raise ValueError(f"expected image of shape (B, C, H, W[, D]) (4 or 5 dims), got shape {tuple(image.shape)}")
    spatial_dims = image.ndim - 2
    if ddf.ndim != image.ndim:
        raise ValueError(
            f"expected ddf with {image.ndim} dims (B, {spatial_dims}, *spatial) to match the image, "
            f"got shape {tuple(ddf.shape)}"
        )
    if ddf.shape[1] != spatial_dims:
        raise ValueError(f"expected ddf with {spatial_dims} channels, got {ddf.shape[1]}")
    if ddf.shape[0] != image.shape[0]:
        raise ValueError(f"expected ddf batch size {image.shape[0]} (the image's), got {ddf.shape[0]}")
    if ddf.shape[2:] != image.shape[2:]:
        raise ValueError(
            f"expected ddf spatial shape {tuple(image.shape[2:])} (the image's), got {tuple(ddf.shape[2:])}"
        )
    if not ddf.is_floating_point():
        raise ValueError(f"expected a floating-point ddf, got dtype {ddf.dtype}")
    return spatial_dims


def _monai_warp(image: torch.Tensor, ddf: torch.Tensor, mode: str, padding_mode: str) -> torch.Tensor:
    # A fresh Warp per call: Warp caches its reference grid keyed by shape only, so a shared instance would
    # hand a CPU/float32 grid to a later CUDA/float64 call. Building the grid is cheap next to grid_sample.
    # Warp warns on every construction that it uses torch's native grid_sample; that is expected here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Using PyTorch native grid_sample.*")
        layer = Warp(mode=mode, padding_mode=padding_mode)
    return layer(image, ddf)


def warp(
    image: torch.Tensor, ddf: torch.Tensor, *, mode: str = WarpMode.BILINEAR, padding_mode: str = WarpPadding.BORDER
) -> torch.Tensor:
    """Resample ``image`` at ``x + ddf(x)`` (pull convention, voxel units, channels in array-axis order).

    Integer (and bool) images are label maps: they must use ``mode="nearest"``; they are warped through
    float32 (exact for ``|label| <= 2**24``) and returned with their own dtype, so the output holds only
    values present in the input (or the padding value for ``padding_mode="zeros"``).

    Args:
        image: moving image ``(B, C, H, W[, D])``, float or integer.
        ddf: displacement ``(B, ndim, H, W[, D])`` on the same grid, floating point, voxel units.
        mode: ``"bilinear"`` (default; trilinear in 3D) or ``"nearest"``.
        padding_mode: ``"border"`` (default: repeat the edge voxel, so a shifted image does not fade to
            zero at the edge), ``"zeros"`` or ``"reflection"``.

    Returns:
        Warped image ``(B, C, H, W[, D])`` with the dtype of ``image``.

    Raises:
        ValueError: shapes that break the contract ("expected ddf with 3 channels, got 2"), an unknown
            mode, an integer image with a mode other than ``nearest``, or labels beyond ``+-2**24``.

    Example:
        >>> img = torch.arange(5.0).reshape(1, 1, 5, 1).expand(1, 1, 5, 2)
        >>> ddf = torch.zeros(1, 2, 5, 2)
        >>> ddf[:, 0] = 1.0  # pull from one voxel further along axis 0
        >>> warp(img, ddf)[0, 0, :, 0].tolist()
        [1.0, 2.0, 3.0, 4.0, 4.0]
    """
    _check_pair(image, ddf)
    mode_value = look_up_option(mode, WarpMode)
    padding_value = look_up_option(padding_mode, WarpPadding)
    if image.is_floating_point():
        # grid_sample needs one dtype for image and grid: compute in the wider one, return the image's.
        work = torch.promote_types(image.dtype, ddf.dtype)
        out = _monai_warp(image.to(work), ddf.to(work), mode_value, padding_value)
        return out.to(image.dtype)
    if image.is_complex():
        raise ValueError(f"expected a real image, got dtype {image.dtype}")
    if mode_value != WarpMode.NEAREST:
        raise ValueError(
            f"integer image (label map, dtype {image.dtype}) must be warped with mode='nearest', got mode='{mode}'"
        )
    if image.numel() and image.dtype != torch.bool:
        lo, hi = int(image.min()), int(image.max())
        if max(abs(lo), abs(hi)) > MAX_EXACT_LABEL:
            raise ValueError(
                f"label values must lie in [-2**24, 2**24] to be warped exactly through float32, got range [{lo}, {hi}]"
            )
    out = _monai_warp(image.to(torch.float32), ddf.to(torch.float32), mode_value, padding_value)
    # Nearest sampling returns stored values unchanged, so rounding only guards against -0.0 and the like.
    return out.round().to(image.dtype)


def compose(step: torch.Tensor, accumulated: torch.Tensor, *, padding_mode: str = WarpPadding.BORDER) -> torch.Tensor:
    """Compose a step ``a`` applied after an accumulated field ``U``: ``U_new = a + warp(U, a)``.

    ``warp(warp(moving, U), a)`` equals ``warp(moving, compose(a, U))`` up to interpolation error.

    Args:
        step: the later displacement ``a``, ``(B, ndim, *spatial)``.
        accumulated: the earlier displacement ``U``, same shape.
        padding_mode: how ``U`` is extended outside the grid (default ``"border"``: the edge displacement,
            which is the best guess for a smooth field; MONAI's ``DVF2DDF`` uses zeros instead).

    Returns:
        The composed DDF, ``(B, ndim, *spatial)``.

    Example:
        >>> a = torch.full((1, 2, 4, 4), 0.5)
        >>> u = torch.full((1, 2, 4, 4), 1.0)
        >>> compose(a, u)[0, :, 1, 1].tolist()  # constant fields simply add
        [1.5, 1.5]
    """
    if step.shape != accumulated.shape:
        raise ValueError(
            f"expected step and accumulated ddfs of the same shape, got {tuple(step.shape)} and "
            f"{tuple(accumulated.shape)}"
        )
    _check_pair(accumulated, step)
    return step + warp(accumulated, step, mode=WarpMode.BILINEAR, padding_mode=padding_mode)


def _linear_part(affine: ArrayLike) -> np.ndarray:
    """The ``(n, n)`` linear part of an ``(n + 1, n + 1)`` affine (n = 2 or 3), checked."""
    aff = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    if aff.shape not in ((3, 3), (4, 4)):
        raise ValueError(f"expected a (4, 4) affine (3D ddf) or (3, 3) affine (2D ddf), got shape {aff.shape}")
    spatial_dims = aff.shape[0] - 1
    lin = aff[:spatial_dims, :spatial_dims]
    if not np.all(np.isfinite(lin)) or abs(np.linalg.det(lin)) < 1e-12:
        raise ValueError(f"affine must be finite and non-singular, got linear part {lin.tolist()}")
    return lin


def _apply_matrix(ddf: ArrayLike, matrix: np.ndarray) -> ArrayLike:
    n = matrix.shape[0]
    if ddf.ndim == n + 1:
        channel_axis = 0
    elif ddf.ndim == n + 2:
        channel_axis = 1
    else:
        raise ValueError(
            f"expected a {n}D ddf of shape ({n}, *spatial) or (B, {n}, *spatial), got shape {tuple(ddf.shape)}"
        )
    if ddf.shape[channel_axis] != n:
        raise ValueError(f"expected ddf with {n} channels, got {ddf.shape[channel_axis]}")
    if isinstance(ddf, torch.Tensor):
        if not ddf.is_floating_point():
            raise ValueError(f"expected a floating-point ddf, got dtype {ddf.dtype}")
        mat = torch.as_tensor(matrix, dtype=ddf.dtype, device=ddf.device)
        moved = torch.movedim(ddf, channel_axis, -1)
        return torch.movedim(moved @ mat.T, -1, channel_axis)
    arr = np.asarray(ddf)
    out_dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    moved = np.moveaxis(arr, channel_axis, -1)
    return np.moveaxis(moved @ matrix.T.astype(out_dtype), -1, channel_axis).astype(out_dtype, copy=False)


def ddf_voxel_to_mm(ddf: ArrayLike, affine: ArrayLike) -> ArrayLike:
    """Convert displacement vectors from voxel units to world millimetres: ``d_mm = A[:n, :n] @ d_vox``.

    Only the affine's linear part is used: a displacement is a difference of two positions, so the
    translation cancels. Direction cosines and anisotropic spacing are both applied.

    Args:
        ddf: channel-first field ``(n, *spatial)`` or ``(B, n, *spatial)``, numpy or torch.
        affine: ``(n + 1, n + 1)`` voxel -> RAS+ mm affine of the grid the field lives on; its size sets
            ``n`` (a 2D field needs a ``(3, 3)`` affine, e.g. the in-plane rows/columns of a slice's affine).

    Returns:
        The field in mm (same shape and type; torch keeps dtype and device).

    Example:
        >>> d = np.ones((3, 2, 2, 2), np.float32)
        >>> ddf_voxel_to_mm(d, np.diag([2.0, 3.0, 4.0, 1.0]))[:, 0, 0, 0].tolist()
        [2.0, 3.0, 4.0]
    """
    return _apply_matrix(ddf, _linear_part(affine))


def ddf_mm_to_voxel(ddf: ArrayLike, affine: ArrayLike) -> ArrayLike:
    """Convert displacement vectors from world millimetres to voxel units: ``d_vox = inv(A[:n, :n]) @ d_mm``.

    Args:
        ddf: channel-first field ``(n, *spatial)`` or ``(B, n, *spatial)`` in mm, numpy or torch.
        affine: ``(n + 1, n + 1)`` voxel -> RAS+ mm affine of the grid the field lives on.

    Returns:
        The field in voxel units (same shape and type).

    Example:
        >>> d = np.array([2.0, 3.0, 4.0]).reshape(3, 1, 1, 1)
        >>> ddf_mm_to_voxel(d, np.diag([2.0, 3.0, 4.0, 1.0])).ravel().tolist()
        [1.0, 1.0, 1.0]
    """
    return _apply_matrix(ddf, np.linalg.inv(_linear_part(affine)))


def _to_numpy_field(ddf: ArrayLike) -> np.ndarray:
    arr = ddf.detach().cpu().numpy() if isinstance(ddf, torch.Tensor) else np.asarray(ddf)
    if arr.ndim in (4, 5) and arr.shape[0] == 1 and arr.ndim == arr.shape[1] + 2:
        arr = arr[0]  # a batch of one, (1, n, *spatial)
    if arr.ndim not in (3, 4) or arr.shape[0] != arr.ndim - 1:
        raise ValueError(
            f"expected a channel-first ddf (n, *spatial) or (1, n, *spatial) with n = 2 or 3, got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected a floating-point ddf, got dtype {arr.dtype}")
    return arr


def write_ddf(path: PathLike, ddf: ArrayLike, fixed_affine: ArrayLike, *, dtype: np.dtype | type = np.float32) -> Path:
    """Write a DDF in the Learn2Reg layout, atomically.

    The file holds ``(X, Y, Z, 3)`` (``(X, Y, 2)`` in 2D), voxel units, pull convention, on the fixed grid.
    ``.nii``/``.nii.gz`` files carry the fixed image's affine (qform = sform) and the description
    ``"DDF voxel units, pull, L2R (X,Y,Z,3)"``; ``.npz`` files store the field under ``"arr_0"`` (the key
    Learn2Reg's evaluation reads) and the affine under ``"affine"``.

    Args:
        path: destination; ``.nii.gz``, ``.nii`` or ``.npz``.
        ddf: channel-first field ``(n, *spatial)`` or ``(1, n, *spatial)``, numpy or torch, finite.
        fixed_affine: ``(4, 4)`` voxel -> RAS+ mm affine of the fixed image.
        dtype: on-disk float type: float32 (default), float64, or float16 (``.npz`` only: Learn2Reg accepts it,
            NIfTI-1 has no half-float type).

    Returns:
        The final path.

    Raises:
        Medi2iInputError: unknown suffix, non-finite values, bad affine, or a non-float ``dtype``.
        ValueError: a field that is not channel-first ``(n, *spatial)``.

    Example:
        >>> import tempfile, pathlib
        >>> import nibabel as nib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "disp_0001_0002.nii.gz"
        >>> _ = write_ddf(out, np.zeros((3, 4, 5, 6), np.float32), np.diag([2.0, 2.0, 3.0, 1.0]))
        >>> nib.load(out).shape
        (4, 5, 6, 3)
    """
    out = Path(path)
    target = np.dtype(dtype)
    if target.type not in _DDF_DTYPES:
        raise Medi2iInputError(
            "a DDF must be stored as float",
            path=out,
            field="dtype",
            found=str(target),
            expected="float16, float32 or float64",
        )
    arr = _to_numpy_field(ddf)
    if not np.all(np.isfinite(arr)):
        raise Medi2iInputError(
            "DDF contains NaN or Inf",
            path=out,
            field="ddf",
            found=f"{int(np.sum(~np.isfinite(arr)))} non-finite values",
            expected="finite values",
        )
    aff = np.asarray(
        fixed_affine.detach().cpu() if isinstance(fixed_affine, torch.Tensor) else fixed_affine, dtype=np.float64
    )
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) < 1e-12:
        raise Medi2iInputError(
            "fixed affine must be a finite, non-singular 4x4 matrix",
            path=out,
            field="fixed_affine",
            found=aff.shape,
            expected="finite (4, 4), det != 0",
        )
    channels_last = np.moveaxis(arr, 0, -1).astype(target)
    name = out.name.lower()
    if name.endswith(".npz"):
        with atomic_path(out) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, **{_NPZ_DISP_KEY: channels_last, _NPZ_AFFINE_KEY: aff})
        return out
    if name.endswith((".nii", ".nii.gz")):
        if target == np.float16:
            raise Medi2iInputError(
                "NIfTI-1 has no float16 type; use float32 or a .npz file",
                path=out,
                field="dtype",
                found="float16",
                expected="float32 or float64 for NIfTI",
            )
        description = DDF_DESCRIPTION_3D if arr.shape[0] == 3 else DDF_DESCRIPTION_2D
        return save_volume(out, channels_last, aff, dtype=target, description=description)
    raise Medi2iInputError(
        "unsupported DDF format", path=out, field="suffix", found=out.suffix, expected="'.nii.gz', '.nii' or '.npz'"
    )


def _load_raw(path: Path) -> tuple[np.ndarray, np.ndarray]:
    name = path.name.lower()
    if name.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                key = _NPZ_DISP_KEY if _NPZ_DISP_KEY in keys else ("disp" if "disp" in keys else None)
                if key is None:
                    raise Medi2iInputError(
                        "no displacement array in the archive",
                        path=path,
                        field="keys",
                        found=keys,
                        expected=f"'{_NPZ_DISP_KEY}' (Learn2Reg) or 'disp'",
                    )
                data = np.asarray(archive[key])
                affine = np.asarray(archive[_NPZ_AFFINE_KEY], np.float64) if _NPZ_AFFINE_KEY in keys else np.eye(4)
        except Medi2iInputError:
            raise
        except Exception as exc:  # zipfile/pickle/format errors all mean the same thing to the user
            raise Medi2iInputError(f"cannot read the .npz archive ({type(exc).__name__}: {exc})", path=path) from exc
        return data, affine
    if name.endswith((".nii", ".nii.gz")):
        # the strict loader: header size, qform/sform agreement, shear, scaling and NaN checks as for images
        volume = load_volume(path, kind="image", vector=True)
        return volume.array, np.asarray(volume.affine, np.float64)
    raise Medi2iInputError(
        "unsupported DDF format", path=path, field="suffix", found=path.suffix, expected="'.nii.gz', '.nii' or '.npz'"
    )


def read_ddf(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a DDF written in the Learn2Reg layout (by :func:`write_ddf` or any Learn2Reg tool).

    Accepted on-disk shapes: ``(X, Y, Z, 3)``, NIfTI vector-intent ``(X, Y, Z, 1, 3)``, and in 2D
    ``(X, Y, 2)`` or ``(X, Y, 1, 1, 2)``. The values are taken to be voxel units of the fixed grid.

    Args:
        path: ``.nii.gz``, ``.nii`` or ``.npz`` file.

    Returns:
        ``(ddf, affine)``: ``ddf`` channel-first ``(n, *spatial)`` float32 in voxel units; ``affine`` the
        ``(4, 4)`` fixed-image affine from the NIfTI header, or from the archive's ``"affine"`` entry
        (identity when an ``.npz`` has none).

    Raises:
        Medi2iInputError: missing or unreadable file, wrong shape, non-numeric or non-finite values; the
            message names the file and the field.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "disp.npz"
        >>> _ = write_ddf(out, np.ones((2, 3, 4), np.float32), np.eye(4))
        >>> ddf, aff = read_ddf(out)
        >>> ddf.shape, ddf.dtype.name, aff.shape
        ((2, 3, 4), 'float32', (4, 4))
    """
    src = Path(path)
    if not src.is_file():
        raise Medi2iInputError("DDF file not found", path=src, found="no such file")
    data, affine = _load_raw(src)
    if data.ndim == 5 and data.shape[3] == 1 and data.shape[4] == 3:
        data = data[:, :, :, 0, :]  # NIfTI vector intent: vectors on the 5th axis
    elif data.ndim == 5 and data.shape[2] == 1 and data.shape[3] == 1 and data.shape[4] == 2:
        data = data[:, :, 0, 0, :]
    if not ((data.ndim == 4 and data.shape[-1] == 3) or (data.ndim == 3 and data.shape[-1] == 2)):
        raise Medi2iInputError(
            "DDF has the wrong shape",
            path=src,
            field="shape",
            found=data.shape,
            expected="(X, Y, Z, 3), (X, Y, Z, 1, 3), (X, Y, 2) or (X, Y, 1, 1, 2)",
        )
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise Medi2iInputError(
            "DDF values must be numeric", path=src, field="dtype", found=str(data.dtype), expected="float"
        )
    if not np.all(np.isfinite(data)):
        raise Medi2iInputError(
            "DDF contains NaN or Inf",
            path=src,
            field="data",
            found=f"{int(np.sum(~np.isfinite(data)))} non-finite values",
            expected="finite values",
        )
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise Medi2iInputError(
            "fixed affine must be a finite 4x4 matrix", path=src, field="affine", found=affine.shape, expected="(4, 4)"
        )
    ddf = np.ascontiguousarray(np.moveaxis(data, -1, 0), dtype=np.float32)
    return ddf, affine
