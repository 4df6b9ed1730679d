"""check_same_grid: pairs share one voxel grid, or the error names both files and shows both grids."""

from __future__ import annotations

import numpy as np
import pytest

from medi2i.errors import Medi2iInputError
from medi2i.io import Volume, check_same_grid, load_volume, save_volume
from medi2i.io.geometry import format_affine
from tests.conftest import oblique_affine


def _pair(tmp_path, shape_b=(4, 5, 6), affine_b=None):
    a = save_volume(tmp_path / "mr.nii.gz", np.ones((4, 5, 6), np.float32), oblique_affine())
    b = save_volume(
        tmp_path / "ct.nii.gz", np.ones(shape_b, np.float32), oblique_affine() if affine_b is None else affine_b
    )
    return load_volume(a), load_volume(b)


def test_identical_grids_pass(tmp_path):
    a, b = _pair(tmp_path)
    check_same_grid(a, b)
    check_same_grid(b, a, names=("fixed", "moving"))


def test_differences_within_tolerance_pass(tmp_path):
    shifted = oblique_affine()
    shifted[:3, 3] += 5e-4 / np.sqrt(3)  # 0.5 micrometre along a diagonal
    a, b = _pair(tmp_path, affine_b=shifted)
    check_same_grid(a, b)
    with pytest.raises(Medi2iInputError):
        check_same_grid(a, b, atol_mm=1e-4)


def test_shape_mismatch_names_both_files_and_shapes(tmp_path):
    a, b = _pair(tmp_path, shape_b=(4, 5, 7))
    with pytest.raises(Medi2iInputError) as info:
        check_same_grid(a, b, names=("source", "target"))
    text = str(info.value)
    assert info.value.field == "shape"
    assert f"source ({tmp_path / 'mr.nii.gz'})" in text and f"target ({tmp_path / 'ct.nii.gz'})" in text
    assert "source (4, 5, 6) vs target (4, 5, 7)" in text


def test_2d_against_3d_is_a_shape_mismatch():
    plane = Volume(np.zeros((4, 5), np.float32), np.eye(4))
    with pytest.raises(Medi2iInputError, match=r"\(4, 5\) vs target \(4, 5, 1\)"):
        check_same_grid(plane, Volume(np.zeros((4, 5, 1), np.float32), np.eye(4)))


def test_affine_mismatch_names_both_files_and_affines(tmp_path):
    moved = oblique_affine()
    moved[1, 3] += 1.0
    a, b = _pair(tmp_path, affine_b=moved)
    with pytest.raises(Medi2iInputError) as info:
        check_same_grid(a, b, names=("fixed", "moving"))
    text = str(info.value)
    assert info.value.field == "affine"
    assert str(tmp_path / "mr.nii.gz") in text and str(tmp_path / "ct.nii.gz") in text
    assert format_affine(a.affine) in text and format_affine(b.affine) in text
    assert "fixed affine" in text and "moving affine" in text and "1 mm apart" in text


def test_rotated_single_slice_is_caught():
    # the corners of a one-slice grid sit in one plane; its slice normal must still be compared
    base = np.diag([1.0, 1.0, 3.0, 1.0])
    tilted = base.copy()
    tilted[:3, 2] = [0.0, 3.0 * np.sin(0.01), 3.0 * np.cos(0.01)]
    a = Volume(np.zeros((4, 5, 1), np.float32), base)
    with pytest.raises(Medi2iInputError, match="grid corners are up to 0.03 mm apart"):
        check_same_grid(a, Volume(np.zeros((4, 5, 1), np.float32), tilted))


def test_in_memory_volumes_are_labelled():
    a = Volume(np.zeros((2, 2, 2), np.float32), np.eye(4))
    b = Volume(np.zeros((2, 2, 2), np.float32), np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(Medi2iInputError, match=r"source \(in memory\) and target \(in memory\)"):
        check_same_grid(a, b)


def test_negative_tolerance_is_refused():
    a = Volume(np.zeros((2, 2, 2), np.float32), np.eye(4))
    with pytest.raises(Medi2iInputError) as info:
        check_same_grid(a, a, atol_mm=-1.0)
    assert info.value.field == "atol_mm"
