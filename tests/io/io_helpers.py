"""Test helpers for medi2i.io: affines, NIfTI byte patching, and checking what an input error names."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

import medi2i
from medi2i.errors import Medi2iInputError

REPO_ROOT = Path(medi2i.__file__).resolve().parents[1]
SPACING = np.array([0.7, 1.3, 2.5])


def axis_aligned(perm: tuple[int, ...], signs: tuple[int, ...]) -> np.ndarray:
    """Array axis i runs along world axis perm[i] with sign signs[i]; anisotropic spacing; non-zero origin."""
    affine = np.eye(4)
    affine[:3, :3] = 0
    for axis, (world, sign) in enumerate(zip(perm, signs, strict=True)):
        affine[world, axis] = sign * SPACING[axis]
    affine[:3, 3] = [12.5, -40.25, 7.0]
    return affine


def file_payload(path: Path) -> bytes:
    """The NIfTI bytes of a file (decompressed for .nii.gz)."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def store_payload(path: Path, payload: bytes) -> Path:
    """Write NIfTI bytes back (compressing for .nii.gz)."""
    path.write_bytes(gzip.compress(payload) if path.name.endswith(".gz") else payload)
    return path


def patch_header(path: Path, **fields) -> Path:
    """Set NIfTI-1 header fields in an existing file, byte for byte, without letting nibabel fix anything."""
    payload = bytearray(file_payload(path))
    header = nib.Nifti1Header(bytes(payload[:348]), check=False)
    for name, value in fields.items():
        header[name] = value
    payload[:348] = header.binaryblock
    return store_payload(path, bytes(payload))


def assert_names(err: Medi2iInputError, path: Path | None, field: str) -> str:
    """Check an error names the file and the header field (attributes and rendered text); return the text."""
    text = str(err)
    assert err.field == field, text
    assert f": {field}: " in text or text.startswith(f"{field}: "), text
    if path is not None:
        assert err.path == str(path), text
        assert text.startswith(str(path)), text
    return text
