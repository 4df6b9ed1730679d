"""Shared fixtures: synthetic NIfTI volumes with non-identity affines and anisotropic spacing."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch


def oblique_affine(spacing=(0.9, 1.1, 2.5), angle_deg: float = 12.0, origin=(-90.0, 110.0, -70.0)) -> np.ndarray:
    """A rotated (about z), anisotropic, translated voxel -> RAS affine."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write with plain nibabel (independent of medi2i.io) so tests can make any file they need."""
    img = nib.Nifti1Image(np.asarray(array), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(0)


@pytest.fixture
def nifti_factory(tmp_path: Path):
    """Return ``make(name, array, affine=oblique_affine())`` writing a NIfTI under ``tmp_path``."""

    def make(name: str, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
        return write_nifti(tmp_path / name, array, oblique_affine() if affine is None else affine)

    return make
