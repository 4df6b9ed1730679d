"""The in-memory volume (:class:`Volume`), its kinds, the pair-grid check and the header summary."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from nibabel.orientations import aff2axcodes

from medi2i.errors import Medi2iInputError
from medi2i.io.geometry import ATOL_MM, check_affine, corner_distance, format_affine
from medi2i.options import choose

if TYPE_CHECKING:
    from monai.data import MetaTensor


class VolumeKind(str, enum.Enum):
    """What the voxels mean, which fixes the in-memory dtype and the checks applied on load.

    - ``image``: intensities, loaded as float32; NaN/Inf rejected.
    - ``label``: integer class ids, loaded with the smallest safe integer dtype (uint8/int16/int32/int64);
      fractional values and values a float32 pipeline would corrupt (``|v| > 2**24``) rejected.
    - ``mask``: binary foreground, loaded as bool; values other than 0/1 and empty masks rejected.

    Option strings resolve through :func:`medi2i.options.choose` (what ``monai.utils.look_up_option`` does,
    without importing MONAI, which pulls in itk and takes seconds). ``str`` + ``Enum`` rather than
    ``enum.StrEnum`` so the package still runs on Python 3.10.

    Example:
        >>> from medi2i.options import choose
        >>> choose("label", VolumeKind, field="kind") is VolumeKind.LABEL
        True
    """

    IMAGE = "image"
    LABEL = "label"
    MASK = "mask"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, eq=False)
class Volume:
    """A volume's voxels in on-disk array order plus its voxel -> RAS+ mm affine.

    Args:
        array: voxels, never reoriented: ``(X, Y)`` or ``(X, Y, Z)``, or ``(X, Y[, Z], C)`` when ``vector``.
            ``image`` -> floating (float32 from :func:`~medi2i.io.load_volume`), ``label`` -> integer,
            ``mask`` -> bool.
        affine: ``(4, 4)`` voxel -> RAS+ mm; stored as a float64 copy.
        path: the file it was loaded from, if any.
        kind: ``"image"``, ``"label"`` or ``"mask"`` (a :class:`VolumeKind`).
        disk_dtype: the element type stored in the file (before scaling), if loaded from one.
        vector: the last array axis holds components (e.g. a displacement field), not space.

    Attributes:
        shape: the spatial grid shape ``(X, Y[, Z])`` (the component axis of a vector volume excluded).
        ndim: number of spatial dimensions, 2 or 3.
        spacing: voxel size along each array axis in mm (norms of the affine's columns).
        orientation: axis codes such as ``"RAS"`` or ``"LPS"`` (nearest world axis of each array axis).

    Volumes compare by identity (``eq=False``): array equality has no single truth value.

    Raises:
        Medi2iInputError: an array of the wrong rank or dtype for its kind, or an affine that is not a finite,
            non-singular ``(4, 4)`` with last row ``[0, 0, 0, 1]``.

    Example:
        >>> vol = Volume(np.zeros((4, 5, 6), np.float32), np.diag([-1.0, 2.0, 3.0, 1.0]))
        >>> vol.shape, vol.ndim, vol.spacing, vol.orientation
        ((4, 5, 6), 3, (1.0, 2.0, 3.0), 'LAS')
        >>> vol.to_metatensor().shape
        torch.Size([1, 4, 5, 6])
    """

    array: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    kind: VolumeKind = VolumeKind.IMAGE
    disk_dtype: np.dtype | None = None
    vector: bool = False

    def __post_init__(self) -> None:
        kind = choose(self.kind, VolumeKind, field="kind")
        array = np.asarray(self.array)
        path = None if self.path is None else Path(self.path)
        # In-memory volumes may legitimately be sheared (never written that way: save_volume refuses).
        affine = check_affine(np.array(self.affine, dtype=np.float64), path=path, field="affine", allow_shear=True)
        ranks = (3, 4) if self.vector else (2, 3)
        if array.ndim not in ranks:
            layout = "(X, Y[, Z], C)" if self.vector else "(X, Y) or (X, Y, Z)"
            raise Medi2iInputError(
                f"a {kind} volume must be 2D or 3D", path=path, field="array", found=array.shape, expected=layout
            )
        wanted = {
            VolumeKind.IMAGE: (np.floating, "a floating dtype"),
            VolumeKind.LABEL: (np.integer, "an integer dtype"),
            VolumeKind.MASK: (np.bool_, "bool"),
        }[kind]
        if not np.issubdtype(array.dtype, wanted[0]):
            raise Medi2iInputError(
                f"wrong array dtype for a {kind} volume",
                path=path,
                field="array",
                found=array.dtype,
                expected=wanted[1],
            )
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "disk_dtype", None if self.disk_dtype is None else np.dtype(self.disk_dtype))

    @property
    def ndim(self) -> int:
        return self.array.ndim - 1 if self.vector else self.array.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.array.shape[: self.ndim])

    @property
    def spacing(self) -> tuple[float, ...]:
        norms = np.linalg.norm(self.affine[:3, : self.ndim], axis=0)
        return tuple(float(v) for v in norms)

    @property
    def orientation(self) -> str:
        return "".join(str(code) for code in aff2axcodes(self.affine))[: self.ndim]

    def to_metatensor(self) -> MetaTensor:
        """Return a channel-first MONAI ``MetaTensor`` ``(1, X, Y[, Z])`` (or ``(C, X, Y[, Z])`` for a vector
        volume) carrying the affine, ``space="RAS"`` and the source file name. The voxels are copied, so the
        tensor never aliases this frozen volume.
        """
        import torch
        from monai.data import MetaTensor

        data = np.moveaxis(self.array, -1, 0) if self.vector else self.array[None]
        meta = {"filename_or_obj": "" if self.path is None else str(self.path), "space": "RAS"}
        return MetaTensor(torch.from_numpy(np.array(data, order="C")), affine=torch.from_numpy(self.affine), meta=meta)


def _label(volume: Volume, name: str) -> str:
    return f"{name} ({volume.path if volume.path is not None else 'in memory'})"


def check_same_grid(
    a: Volume,
    b: Volume,
    *,
    names: tuple[str, str] = ("source", "target"),
    atol_mm: float = ATOL_MM,
) -> None:
    """Raise unless two volumes share one voxel grid: equal spatial shapes and affines within ``atol_mm``.

    Affines are compared by where they put the grid's corners (see :func:`medi2i.io.geometry.corner_distance`),
    so the tolerance is a distance in millimetres whatever the rotation or field of view. medi2i never resamples
    a pair silently; a mismatch is the user's to fix.

    Args:
        a: first volume.
        b: second volume.
        names: what to call ``a`` and ``b`` in the message (e.g. ``("fixed", "moving")``).
        atol_mm: largest corner distance (mm) still counted as the same grid; default 1e-3.

    Raises:
        Medi2iInputError: the shapes differ (both shapes reported) or the affines differ by more than ``atol_mm``
            (both affines reported); the message names both files.

    Example:
        >>> aff = np.diag([1.0, 1.0, 2.0, 1.0])
        >>> a = Volume(np.zeros((4, 5, 6), np.float32), aff)
        >>> check_same_grid(a, Volume(np.ones((4, 5, 6), np.float32), aff))  # passes silently
        >>> check_same_grid(a, Volume(np.ones((4, 5, 7), np.float32), aff))
        Traceback (most recent call last):
          ...
        medi2i.errors.Medi2iInputError: shape: source (in memory) and target (in memory) are not on the same voxel grid (found source (4, 5, 6) vs target (4, 5, 7); expected identical spatial shapes)
    """  # noqa: E501
    if not (np.isfinite(atol_mm) and atol_mm >= 0):
        raise Medi2iInputError("tolerance must be a finite distance", field="atol_mm", found=atol_mm, expected=">= 0")
    first, second = _label(a, names[0]), _label(b, names[1])
    if a.shape != b.shape:
        raise Medi2iInputError(
            f"{first} and {second} are not on the same voxel grid",
            field="shape",
            found=f"{names[0]} {a.shape} vs {names[1]} {b.shape}",
            expected="identical spatial shapes",
        )
    distance = corner_distance(a.affine, b.affine, a.shape)
    if distance > atol_mm:
        raise Medi2iInputError(
            f"{first} and {second} are not on the same voxel grid: their grid corners are up to "
            f"{distance:.4g} mm apart",
            field="affine",
            found=f"{names[0]} affine {format_affine(a.affine)} vs {names[1]} affine {format_affine(b.affine)}",
            expected=f"affines within {atol_mm:g} mm at the grid corners",
        )


def describe(volume: Volume) -> dict[str, Any]:
    """Summarize a volume's header and value range (what ``medi2i check`` prints).

    Args:
        volume: a loaded (or in-memory) volume.

    Returns:
        A dict with keys ``path`` (str or None), ``kind``, ``shape`` (spatial), ``components`` (1 unless vector),
        ``spacing`` (mm), ``orientation`` (axis codes), ``dtype`` (element type in the file, before scaling; the
        array's for an in-memory volume), ``array_dtype`` (in memory), ``value_range`` (min, max of the loaded
        values, as Python numbers) and ``affine`` (nested lists).

    Example:
        >>> info = describe(Volume(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.diag([1.0, 1.0, 2.5, 1.0])))
        >>> info["shape"], info["spacing"], info["orientation"], info["value_range"], info["kind"]
        ((2, 3, 4), (1.0, 1.0, 2.5), 'RAS', (0.0, 23.0), 'image')
    """
    values = volume.array
    low, high = values.min().item(), values.max().item()
    if volume.kind is VolumeKind.MASK:
        low, high = int(low), int(high)
    return {
        "path": None if volume.path is None else str(volume.path),
        "kind": volume.kind.value,
        "shape": volume.shape,
        "components": int(values.shape[-1]) if volume.vector else 1,
        "spacing": volume.spacing,
        "orientation": volume.orientation,
        "dtype": (values.dtype if volume.disk_dtype is None else volume.disk_dtype).name,
        "array_dtype": values.dtype.name,
        "value_range": (low, high),
        "affine": volume.affine.tolist(),
    }
