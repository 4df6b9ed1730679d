"""Safe volume I/O: NIfTI (and ITK-readable formats) in and out with geometry intact.

Conventions (docs/conventions.md): arrays stay in the array order stored on disk (never
reoriented); the affine maps voxel indices to RAS+ world millimetres; every file written
carries qform = sform = the affine (codes: aligned); writes are atomic (temporary file in the
destination folder, fsync, then ``os.replace``), so a killed process never leaves a partial file
at the final path.

Reading is strict: every header field the geometry or the values depend on is validated, and the
declared data size is checked against the file, before the voxel array is allocated. Bad input
raises :class:`~medi2i.errors.Medi2iInputError` naming the file, the header field, what was found
and what was expected. ``repair=True`` fixes the few problems that have one unambiguous fix and
logs each fix on the ``medi2i.io`` logger.

Modules: :mod:`~medi2i.io.volume` (the :class:`Volume` type, pair check, summary),
:mod:`~medi2i.io.load` (:func:`load_volume`), :mod:`~medi2i.io.nifti` (strict NIfTI reader),
:mod:`~medi2i.io.itk_formats` (SimpleITK reader, imported lazily), :mod:`~medi2i.io.write`
(atomic writers), :mod:`~medi2i.io.geometry` (affine checks and tolerances).

``import medi2i.io`` never imports itk, SimpleITK, torchio, nilearn, monai or torch (``medi2i check``
answers in well under a second); SimpleITK loads on the first ITK-format file, monai and torch on
:meth:`Volume.to_metatensor`.
"""

from __future__ import annotations

from medi2i.io.geometry import ATOL_MM, COSINE_ATOL
from medi2i.io.itk_formats import ITK_SUFFIXES
from medi2i.io.load import FLOAT32_EXACT, NIFTI_SUFFIXES, load_volume
from medi2i.io.volume import Volume, VolumeKind, check_same_grid, describe
from medi2i.io.write import atomic_path, save_like, save_volume

__all__ = [
    "ATOL_MM",
    "COSINE_ATOL",
    "FLOAT32_EXACT",
    "ITK_SUFFIXES",
    "NIFTI_SUFFIXES",
    "Volume",
    "VolumeKind",
    "atomic_path",
    "check_same_grid",
    "describe",
    "load_volume",
    "save_like",
    "save_volume",
]
