"""Locate and prepare the MNI ICBM152 2009a template that the demo cohort is made from.

The nilearn wheel ships three 1 mm volumes of the symmetric ICBM152 2009a nonlinear template
(``nilearn/datasets/data/mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``, 197x233x189,
RAS, uint8). They are found with :func:`importlib.util.find_spec`, which reads the package's
location without importing it (importing ``nilearn.datasets`` costs seconds and is not needed).

The volumes carry the notice in :data:`TEMPLATE_NOTICE`, which must travel with every volume
derived from them. The nilearn wheel ships no licence file for them (its dataset description
says "unknown"); the notice is the one the McConnell Brain Imaging Centre publishes with the
ICBM 2009 templates.

References (the ones nilearn cites for the template): Fonov et al., "Unbiased nonlinear average
age-appropriate brain templates from birth to adulthood", NeuroImage 47 S1:S102 (2009); Fonov et al.,
"Unbiased average age-appropriate atlases for pediatric studies", NeuroImage 54:313-327 (2011);
Collins et al., "ANIMAL+INSECT: improved cortical structure segmentation", IPMI 1999, LNCS 1613:210-223.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from medi2i.errors import Medi2iInputError

TEMPLATE_NOTICE = (
    "Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, "
    "McGill University. Permission to use, copy, modify, and distribute this software and its documentation for "
    "any purpose and without fee is hereby granted, provided that the above copyright notice appear in all copies. "
    "The authors and McGill University make no representations about the suitability of this software for any "
    'purpose. It is provided "as is" without express or implied warranty. The authors are not responsible for any '
    "data loss, equipment damage, property loss, or injury to subjects or patients resulting from the use or misuse "
    "of this software package."
)
TEMPLATE_FILES: dict[str, str] = {
    key: f"mni_icbm152_{key}_tal_nlin_sym_09a_converted.nii.gz" for key in ("t1", "gm", "wm")
}
SUPPORTED_RESOLUTIONS: tuple[float, ...] = (1.0, 2.0)

# The cohort's field of view at 1 mm: 192x224x192 voxels (divisible by 16 at 1 and 2 mm, so
# U-Nets with 4 poolings need no padding) starting at this RAS corner. It crops 2-3 mm of empty
# template border in x and y and pads 3 empty slices above the template in z.
BOX_SHAPE_1MM: tuple[int, int, int] = (192, 224, 192)
BOX_ORIGIN_MM: tuple[float, float, float] = (-96.0, -130.0, -72.0)
AXIAL_SLICE_Z_MM = 12.0  # world z of the 2D cohort's axial slice (through the lateral ventricles)


def template_dir() -> Path:
    """Folder of the nilearn wheel that holds the ICBM152 2009a volumes (nilearn is not imported).

    Returns:
        The folder ``<site-packages>/nilearn/datasets/data``.

    Raises:
        Medi2iInputError: nilearn is not installed, or one of :data:`TEMPLATE_FILES` is missing.

    Example:
        >>> sorted(p.name for p in template_dir().glob("mni_icbm152_*_09a_converted.nii.gz"))[0]
        'mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz'
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise Medi2iInputError(
            "the demo cohort is made from the MNI ICBM152 template shipped with nilearn, which is not installed",
            field="nilearn",
            found="not importable",
            expected="pip install 'nilearn>=0.10'",
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    for name in TEMPLATE_FILES.values():
        if not (folder / name).is_file():
            raise Medi2iInputError(
                "template file missing from the nilearn installation",
                path=folder / name,
                found="no such file",
                expected="a nilearn wheel that ships the ICBM152 2009a volumes (nilearn>=0.10); reinstall nilearn",
            )
    return folder


def box_geometry(resolution: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and voxel -> RAS affine of the cohort's 3D grid at ``resolution`` mm.

    The grid at ``r`` mm averages ``r x r x r`` blocks of the 1 mm grid, so its first voxel centre
    sits ``(r - 1) / 2`` mm inside the 1 mm box corner. Needs no template file.

    Args:
        resolution: voxel size in mm, one of :data:`SUPPORTED_RESOLUTIONS`.

    Returns:
        ``(shape, affine)``: ``(X, Y, Z)`` and a ``(4, 4)`` float64 RAS affine.

    Raises:
        Medi2iInputError: unsupported resolution.

    Example:
        >>> shape, affine = box_geometry(2.0)
        >>> shape, affine[:3, 3].tolist()
        ((96, 112, 96), [-95.5, -129.5, -71.5])
    """
    factor = _resolution_factor(resolution)
    shape = tuple(n // factor for n in BOX_SHAPE_1MM)
    affine = np.diag([float(factor)] * 3 + [1.0])
    affine[:3, 3] = np.asarray(BOX_ORIGIN_MM) + (factor - 1) / 2.0
    return shape, affine  # type: ignore[return-value]


def axial_slice_index(resolution: float) -> int:
    """Index along z of the 2D cohort's axial slice (nearest to MNI z = +12 mm).

    Example:
        >>> axial_slice_index(2.0), axial_slice_index(1.0)
        (42, 84)
    """
    _, affine = box_geometry(resolution)
    return int(np.floor((AXIAL_SLICE_Z_MM - affine[2, 3]) / affine[2, 2] + 0.5))


def slice_affine(resolution: float) -> np.ndarray:
    """Affine of the 2D cohort's files, stored as ``(X, Y, 1)``: the 3D affine moved to the slice.

    Example:
        >>> slice_affine(2.0)[:3, 3].tolist()
        [-95.5, -129.5, 12.5]
    """
    _, affine = box_geometry(resolution)
    shift = np.eye(4)
    shift[2, 3] = axial_slice_index(resolution)
    return affine @ shift


@dataclass(frozen=True)
class DemoTemplate:
    """The template's tissue channels on the cohort grid (arrays are read-only, shape ``(X, Y[, Z])``).

    Attributes:
        resolution: voxel size in mm.
        affine: ``(4, 4)`` voxel -> RAS affine of the grid (for 2D: of the ``(X, Y, 1)`` files).
        t1: real template T1w intensity, white matter median = 1, 0 outside the brain.
        gm: grey-matter fraction in [0, 1].
        wm: white-matter fraction in [0, 1].
        csf: internal CSF fraction (brain mask minus GM and WM); ``gm + wm + csf`` is the brain fraction.
        sdist: signed distance to the brain surface in mm, > 0 outside.
    """

    resolution: float
    affine: np.ndarray
    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    sdist: np.ndarray

    CHANNELS = ("t1", "gm", "wm", "csf", "sdist")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.t1.shape)

    def stack(self) -> np.ndarray:
        """All channels stacked in :attr:`CHANNELS` order, ``(5, X, Y[, Z])`` float32."""
        return np.stack([getattr(self, key) for key in self.CHANNELS])

    def axial_slice(self) -> DemoTemplate:
        """The 2D template: the axial slice at :func:`axial_slice_index` (3D signed distance kept)."""
        if len(self.shape) != 3:
            raise ValueError(f"axial_slice needs a 3D template, got shape {self.shape}")
        k = axial_slice_index(self.resolution)
        channels = {key: _readonly(np.ascontiguousarray(getattr(self, key)[..., k])) for key in self.CHANNELS}
        return DemoTemplate(resolution=self.resolution, affine=slice_affine(self.resolution), **channels)


@functools.lru_cache(maxsize=len(SUPPORTED_RESOLUTIONS))
def load_template(resolution: float = 2.0) -> DemoTemplate:
    """Load the template from the nilearn wheel and prepare its channels on the cohort grid.

    The brain mask is the support of the (skull-stripped) template T1. Internal CSF is what the
    mask holds beyond GM and WM. Everything, the signed distance included, is computed at 1 mm;
    coarser grids average ``r x r x r`` blocks of it (partial volumes, sub-voxel surface). Results
    are cached in memory per resolution (the 1 mm one too, ~170 MB, since coarser ones derive
    from it); preparing the 1 mm channels takes about 3 s on 2 cores, mostly distance transforms.

    Args:
        resolution: voxel size in mm, one of :data:`SUPPORTED_RESOLUTIONS`.

    Returns:
        The 3D :class:`DemoTemplate` on the grid of :func:`box_geometry`.

    Raises:
        Medi2iInputError: unsupported resolution, nilearn missing, or a template file that is not the
            expected 1 mm RAS volume.
    """
    factor = _resolution_factor(resolution)
    _, affine = box_geometry(resolution)
    if factor > 1:
        fine = load_template(1.0)
        channels = {key: _block_mean(getattr(fine, key), factor) for key in DemoTemplate.CHANNELS}
    else:
        channels = _prepare_1mm()
    return DemoTemplate(
        resolution=float(resolution),
        affine=affine,
        **{key: _readonly(value.astype(np.float32)) for key, value in channels.items()},
    )


def _prepare_1mm() -> dict[str, np.ndarray]:
    folder = template_dir()
    reference = _load_nifti(folder / TEMPLATE_FILES["t1"]).affine
    raw = {key: _read_checked(folder / name, reference) for key, name in TEMPLATE_FILES.items()}
    offset = _box_offset(reference, folder / TEMPLATE_FILES["t1"])
    t1, gm, wm = (_crop_to_box(raw.pop(key), offset) for key in ("t1", "gm", "wm"))
    gm /= 255.0
    wm /= 255.0

    brain = t1 > 0
    gm[~brain] = 0.0
    wm[~brain] = 0.0
    total = gm + wm
    over = total > 1.0
    gm[over] /= total[over]
    wm[over] /= total[over]
    csf = np.where(brain, 1.0 - gm - wm, 0.0).astype(np.float32)
    # White matter is the MR reference tissue: the T1 is rescaled so its WM median is 1, like the model.
    t1 /= float(np.median(t1[wm > 0.95]))
    return {"t1": t1, "gm": gm, "wm": wm, "csf": csf, "sdist": _signed_distance(brain)}


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Signed Euclidean distance (voxels) to the surface of ``mask``, > 0 outside.

    Half-voxel offsets put the zero level between the last mask voxel and the first outside one.
    The inside transform runs on the mask's bounding box plus one voxel (5x fewer voxels here),
    which is exact because that margin is background wherever it lies inside the volume.
    """
    outside = ndi.distance_transform_edt(~mask).astype(np.float32)
    box = tuple(
        slice(max(s.start - 1, 0), min(s.stop + 1, n))
        for s, n in zip(ndi.find_objects(mask.astype(np.uint8))[0], mask.shape, strict=True)
    )
    inside = np.zeros(mask.shape, np.float32)
    inside[box] = ndi.distance_transform_edt(mask[box])
    return np.where(mask, 0.5 - inside, outside - 0.5).astype(np.float32)


def _resolution_factor(resolution: float) -> int:
    if isinstance(resolution, bool) or resolution not in SUPPORTED_RESOLUTIONS:
        raise Medi2iInputError(
            "unsupported demo cohort resolution",
            field="resolution",
            found=resolution,
            expected=f"one of {list(SUPPORTED_RESOLUTIONS)} (mm)",
        )
    return int(resolution)


def _load_nifti(path: Path) -> nib.Nifti1Image:
    return cast(nib.Nifti1Image, nib.load(path))  # a .nii.gz file loads as a Nifti1Image


def _read_checked(path: Path, reference_affine: np.ndarray) -> np.ndarray:
    img = _load_nifti(path)
    if img.ndim != 3 or not np.allclose(img.affine, reference_affine):
        raise Medi2iInputError(
            "template volumes disagree in geometry",
            path=path,
            found=f"shape {img.shape}, affine {img.affine.tolist()}",
            expected=f"3D with affine {reference_affine.tolist()}",
        )
    return np.asarray(img.dataobj, dtype=np.float32)


def _box_offset(affine: np.ndarray, path: Path) -> np.ndarray:
    """Template voxel index of the box corner; the template must be 1 mm, RAS, axis-aligned."""
    if not np.allclose(affine[:3, :3], np.eye(3)):
        raise Medi2iInputError(
            "unexpected template orientation or spacing",
            path=path,
            field="affine",
            found=affine[:3, :3].tolist(),
            expected="1 mm RAS identity",
        )
    offset = np.asarray(BOX_ORIGIN_MM) - affine[:3, 3]
    if not np.allclose(offset, np.round(offset)):
        raise Medi2iInputError(
            "template origin is not on the cohort's 1 mm grid",
            path=path,
            field="affine",
            found=affine[:3, 3].tolist(),
            expected="integer offset from the box corner",
        )
    return np.round(offset).astype(int)


def _crop_to_box(volume: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Copy the part of ``volume`` that falls into the 1 mm box (zeros where the template ends)."""
    out = np.zeros(BOX_SHAPE_1MM, dtype=np.float32)
    src, dst = [], []
    for start, size, n_in in zip(offset, BOX_SHAPE_1MM, volume.shape, strict=True):
        lo, hi = max(start, 0), min(start + size, n_in)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def _block_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    shape = [n // factor for n in volume.shape]
    blocks = volume[: shape[0] * factor, : shape[1] * factor, : shape[2] * factor]
    return blocks.reshape(shape[0], factor, shape[1], factor, shape[2], factor).mean(axis=(1, 3, 5))


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False  # the template is cached and shared between subjects
    return array
