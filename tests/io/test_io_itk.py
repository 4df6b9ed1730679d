"""ITK formats through SimpleITK: LPS -> RAS geometry and axis order match the NIfTI path; imports stay lazy."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from medi2i.errors import Medi2iInputError
from medi2i.io import load_volume
from tests.conftest import oblique_affine, write_nifti
from tests.io.io_helpers import REPO_ROOT, assert_names, axis_aligned

sitk = pytest.importorskip("SimpleITK")


def _convert(nifti, suffix):
    """Convert with SimpleITK's own NIfTI reader (an independent LPS implementation), geometry only."""
    image = sitk.ReadImage(str(nifti))
    clean = sitk.GetImageFromArray(sitk.GetArrayFromImage(image), isVector=image.GetNumberOfComponentsPerPixel() > 1)
    clean.CopyInformation(image)  # origin, spacing, direction; no NIfTI metadata for the writer to warn about
    out = nifti.with_name(nifti.name.split(".")[0] + suffix)
    sitk.WriteImage(clean, str(out))
    return out


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".nhdr"])
@pytest.mark.parametrize(
    "affine",
    [
        pytest.param(oblique_affine(), id="oblique"),
        pytest.param(axis_aligned((1, 0, 2), (-1, 1, -1)), id="permuted-flipped"),
        pytest.param(axis_aligned((0, 1, 2), (-1, -1, 1)), id="lps"),
    ],
)
def test_itk_file_matches_the_nifti_it_came_from(tmp_path, rng, affine, suffix):
    data = rng.integers(-1000, 3000, (4, 5, 6)).astype(np.int16)
    nifti = write_nifti(tmp_path / "ct.nii.gz", data, affine)
    reference = load_volume(nifti)
    converted = load_volume(_convert(nifti, suffix))
    assert converted.disk_dtype == np.int16 and converted.array.dtype == np.float32
    assert np.array_equal(converted.array, reference.array)  # (X, Y, Z) order, not ITK's (Z, Y, X)
    assert np.allclose(converted.affine, reference.affine, atol=1e-4)
    assert converted.orientation == reference.orientation


def test_itk_2d_and_vector_images(tmp_path, rng):
    plane = sitk.GetImageFromArray(rng.normal(size=(7, 6)).astype(np.float32))  # (Y, X)
    plane.SetSpacing((0.5, 2.0))
    plane.SetOrigin((3.0, -4.0))
    sitk.WriteImage(plane, str(tmp_path / "plane.mha"))
    volume = load_volume(tmp_path / "plane.mha")
    assert volume.shape == (6, 7) and np.array_equal(volume.array, sitk.GetArrayFromImage(plane).T)
    assert np.allclose(volume.affine, [[-0.5, 0, 0, -3.0], [0, -2.0, 0, 4.0], [0, 0, 1, 0], [0, 0, 0, 1]])

    field = rng.normal(size=(6, 5, 4, 3)).astype(np.float32)  # (Z, Y, X, C)
    sitk.WriteImage(sitk.GetImageFromArray(field, isVector=True), str(tmp_path / "ddf.nrrd"))
    ddf = load_volume(tmp_path / "ddf.nrrd", vector=True)
    assert ddf.array.shape == (4, 5, 6, 3) and np.array_equal(ddf.array, field.transpose(2, 1, 0, 3))
    with pytest.raises(Medi2iInputError) as info:
        load_volume(tmp_path / "ddf.nrrd")
    assert "vector=True" in assert_names(info.value, tmp_path / "ddf.nrrd", "dim")


def test_itk_labels_and_masks(tmp_path):
    labels = np.zeros((6, 5, 4), np.uint16)
    labels[1, 2, 3] = 40000
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(tmp_path / "seg.mha"))
    loaded = load_volume(tmp_path / "seg.mha", kind="label")
    assert loaded.array.dtype == np.int32 and loaded.array[3, 2, 1] == 40000
    with pytest.raises(Medi2iInputError) as info:
        load_volume(tmp_path / "seg.mha", kind="mask")
    assert "40000" in assert_names(info.value, tmp_path / "seg.mha", "data")


def test_truncated_and_garbage_itk_files(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((6, 5, 4), np.int16)), str(tmp_path / "x.mha"))
    data = (tmp_path / "x.mha").read_bytes()
    (tmp_path / "x.mha").write_bytes(data[:-50])
    with pytest.raises(Medi2iInputError) as info:
        load_volume(tmp_path / "x.mha")
    assert_names(info.value, tmp_path / "x.mha", "data")
    (tmp_path / "y.nrrd").write_bytes(b"not an image at all")
    with pytest.raises(Medi2iInputError) as info:
        load_volume(tmp_path / "y.nrrd")
    assert_names(info.value, tmp_path / "y.nrrd", "header")


def test_sheared_nrrd_is_refused_unless_repaired(tmp_path):
    header = (
        "NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 2 2 2\n"
        "space directions: (1,0,0) (0.3,1,0) (0,0,1)\nkinds: domain domain domain\nendian: little\n"
        "encoding: raw\nspace origin: (0,0,0)\n\n"
    )
    path = tmp_path / "sheared.nrrd"
    path.write_bytes(header.encode() + np.arange(8, dtype="<f4").tobytes())
    with pytest.raises(Medi2iInputError) as info:
        load_volume(path)
    assert "sheared" in assert_names(info.value, path, "direction/spacing/origin")
    repaired = load_volume(path, repair=True)
    cosines = repaired.affine[:3, :3] / np.linalg.norm(repaired.affine[:3, :3], axis=0)
    assert np.allclose(cosines.T @ cosines, np.eye(3), atol=1e-9)


_IMPORT_PROBE = """
import json, sys, tempfile, pathlib
import numpy as np
import medi2i, medi2i.io
heavy = ("itk", "SimpleITK", "torchio", "nilearn", "monai", "torch")
after_import = [name for name in heavy if name in sys.modules]
out = pathlib.Path(tempfile.mkdtemp()) / "x.nii.gz"
medi2i.io.save_volume(out, np.ones((4, 5, 6), np.float32), np.eye(4))
medi2i.io.load_volume(out, kind="mask")
print(json.dumps({"after_import": after_import, "after_nifti_io": [name for name in heavy if name in sys.modules]}))
"""


def test_import_and_nifti_io_stay_lazy():
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {"after_import": [], "after_nifti_io": []}
