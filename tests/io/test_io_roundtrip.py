"""save_volume -> load_volume keeps voxels and geometry for every orientation, dtype and kind."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import torch

from medi2i.errors import Medi2iInputError
from medi2i.io import Volume, describe, load_volume, save_like, save_volume
from medi2i.io.geometry import corner_distance
from tests.conftest import oblique_affine
from tests.io.io_helpers import SPACING, assert_names, axis_aligned

SHAPE = (4, 5, 6)


ORIENTATIONS = [
    pytest.param(axis_aligned(perm, signs), id=f"p{''.join(map(str, perm))}{''.join('+-'[s < 0] for s in signs)}")
    for perm in itertools.permutations(range(3))
    for signs in itertools.product((1, -1), repeat=3)
]
AFFINES = [*ORIENTATIONS, pytest.param(oblique_affine(), id="oblique")]

# (kind, on-disk dtype, in-memory dtype, values)
CASES = {
    "image-float32": ("image", np.float32, np.float32, lambda r: r.normal(0, 100, SHAPE)),
    "image-int16": ("image", np.int16, np.float32, lambda r: r.integers(-1024, 3000, SHAPE)),
    "label-uint8": ("label", np.uint8, np.uint8, lambda r: r.integers(0, 6, SHAPE)),
    "label-int32": ("label", np.int32, np.int32, lambda r: r.integers(-3, 70000, SHAPE)),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("affine", AFFINES)
def test_round_trip(tmp_path, rng, affine, case):
    kind, disk_dtype, memory_dtype, make = CASES[case]
    data = make(rng).astype(disk_dtype)
    path = save_volume(tmp_path / "x.nii.gz", data, affine)
    volume = load_volume(path, kind=kind)
    assert volume.array.dtype == memory_dtype and volume.disk_dtype == disk_dtype
    assert np.array_equal(volume.array, data.astype(memory_dtype))
    assert corner_distance(volume.affine, affine, SHAPE) < 1e-4
    assert np.allclose(volume.affine, affine, atol=1e-5)
    assert np.allclose(volume.spacing, np.linalg.norm(affine[:3, :3], axis=0), atol=1e-6)
    header = nib.load(path).header  # checked with nibabel's own qform code, independently of medi2i's
    assert int(header["qform_code"]) == 2 and int(header["sform_code"]) == 2
    assert np.allclose(header.get_qform(), header.get_sform(), atol=1e-5)
    assert header.get_data_dtype() == disk_dtype


@pytest.mark.parametrize("affine", [ORIENTATIONS[7], AFFINES[-1]])
def test_2d_slice_round_trip(tmp_path, rng, affine):
    data = rng.normal(size=(6, 7, 1)).astype(np.float32)
    path = save_volume(tmp_path / "slice.nii", data, affine)
    for spatial_dims in (None, 2):
        volume = load_volume(path, spatial_dims=spatial_dims)
        assert volume.shape == (6, 7) and volume.ndim == 2
        assert np.array_equal(volume.array, data[..., 0])
        assert np.allclose(volume.affine, affine, atol=1e-5)
        assert len(volume.spacing) == 2 and len(volume.orientation) == 2
    as_3d = load_volume(path, spatial_dims=3)
    assert as_3d.shape == (6, 7, 1) and np.array_equal(as_3d.array, data)


def test_2d_file_loads_as_one_slice_volume(tmp_path, rng):
    data = rng.integers(0, 3, (6, 7)).astype(np.uint8)
    path = save_volume(tmp_path / "slice.nii.gz", data, oblique_affine())
    assert nib.load(path).shape == (6, 7)
    volume = load_volume(path, kind="label", spatial_dims=3)
    assert volume.shape == (6, 7, 1) and np.array_equal(volume.array[..., 0], data)


def test_trailing_singleton_time_axis_is_dropped(tmp_path):
    data = np.arange(120, dtype=np.float32).reshape(4, 5, 6, 1)
    path = save_volume(tmp_path / "x.nii", data, oblique_affine())
    assert load_volume(path).shape == (4, 5, 6)


def test_vector_round_trip(tmp_path, rng):
    field = rng.normal(size=(4, 5, 6, 3)).astype(np.float32)
    path = save_volume(tmp_path / "ddf.nii.gz", field, oblique_affine(), description="ddf voxel units pull")
    volume = load_volume(path, vector=True)
    assert volume.array.shape == (4, 5, 6, 3) and volume.shape == (4, 5, 6) and volume.ndim == 3
    assert np.array_equal(volume.array, field)
    assert nib.load(path).header["descrip"].item() == b"ddf voxel units pull"
    tensor = volume.to_metatensor()
    assert tuple(tensor.shape) == (3, 4, 5, 6) and torch.equal(tensor[1], torch.from_numpy(field[..., 1]))


def test_nifti_vector_layout_5d(tmp_path, rng):
    field = rng.normal(size=(4, 5, 6, 1, 3)).astype(np.float32)  # the NIfTI standard's vector layout
    img = nib.Nifti1Image(field, oblique_affine())
    img.set_qform(oblique_affine(), code=1)
    img.set_sform(oblique_affine(), code=1)
    nib.save(img, tmp_path / "ddf.nii")
    volume = load_volume(tmp_path / "ddf.nii", vector=True)
    assert np.array_equal(volume.array, field[:, :, :, 0, :])


def test_big_endian_file(tmp_path, rng):
    data = rng.integers(-500, 500, SHAPE).astype(np.int16)
    img = nib.Nifti1Image(data, oblique_affine())
    img.set_qform(oblique_affine(), code=1)
    img.set_sform(oblique_affine(), code=1)
    swapped = img.header.as_byteswapped(">")  # nibabel itself writes native order, so build the bytes here
    swapped["vox_offset"] = 352
    path = tmp_path / "be.nii"
    path.write_bytes(swapped.binaryblock + b"\x00" * 4 + data.astype(">i2").tobytes(order="F"))
    assert nib.load(path).header.endianness == ">"
    volume = load_volume(path, kind="label")
    assert volume.array.dtype == np.int16 and volume.array.dtype.isnative
    assert np.array_equal(volume.array, data)
    assert np.allclose(volume.affine, oblique_affine(), atol=1e-5)


def test_nifti2_file(tmp_path, rng):
    data = rng.normal(size=SHAPE)
    img = nib.Nifti2Image(data, oblique_affine())
    img.set_qform(oblique_affine(), code=1)
    img.set_sform(oblique_affine(), code=1)
    nib.save(img, tmp_path / "n2.nii.gz")
    volume = load_volume(tmp_path / "n2.nii.gz")
    assert volume.disk_dtype == np.float64 and np.array_equal(volume.array, data.astype(np.float32))
    assert np.allclose(volume.affine, oblique_affine(), atol=1e-5)


def test_save_like_writes_the_reference_grid(tmp_path, rng):
    reference = Volume(np.zeros(SHAPE, np.float32), oblique_affine(), path=tmp_path / "ref.nii.gz")
    labels = rng.integers(0, 4, SHAPE).astype(np.int16)
    loaded = load_volume(save_like(tmp_path / "seg.nii.gz", labels, reference), kind="label")
    assert np.array_equal(loaded.array, labels) and np.allclose(loaded.affine, reference.affine, atol=1e-5)
    field = save_like(tmp_path / "ddf.nii.gz", np.zeros((*SHAPE, 3), np.float32), reference)
    assert load_volume(field, vector=True).array.shape == (*SHAPE, 3)
    for wrong in [(4, 5, 7), (1, *SHAPE), (*SHAPE, 3, 1)]:
        with pytest.raises(Medi2iInputError) as info:
            save_like(tmp_path / "bad.nii.gz", np.zeros(wrong, np.float32), reference)
        text = assert_names(info.value, tmp_path / "bad.nii.gz", "shape")
        assert str(wrong) in text and str(SHAPE) in text and "ref.nii.gz" in text
    assert not (tmp_path / "bad.nii.gz").exists()


def test_save_accepts_torch_and_converts_bool_and_float16(tmp_path):
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[1, 2, 3] = True
    path = save_volume(tmp_path / "mask.nii.gz", mask, oblique_affine())
    assert nib.load(path).get_data_dtype() == np.uint8
    assert np.array_equal(load_volume(path, kind="mask").array, mask.numpy())
    half = save_volume(tmp_path / "half.nii", np.full(SHAPE, 0.1, np.float16), oblique_affine())
    assert nib.load(half).get_data_dtype() == np.float32
    assert np.all(load_volume(half).array == np.float32(np.float16(0.1)))


@pytest.mark.parametrize(
    ("array", "affine", "kwargs", "field", "needle"),
    [
        (np.full(SHAPE, 300), oblique_affine(), {"dtype": np.uint8}, "dtype", "[300, 300]"),
        (np.full(SHAPE, 1.5), oblique_affine(), {"dtype": np.int16}, "dtype", "fractional"),
        (np.full(SHAPE, 2**24 + 1, np.int32), oblique_affine(), {"dtype": np.float32}, "dtype", "exactly"),
        (np.full(SHAPE, 1e300), oblique_affine(), {"dtype": np.float32}, "dtype", "overflow"),
        (np.zeros(SHAPE, np.complex64), oblique_affine(), {}, "dtype", "complex64"),
        (np.full(SHAPE, np.nan), oblique_affine(), {}, "data", "120 non-finite"),
        (np.zeros(SHAPE), np.diag([1.0, 1.0, np.nan, 1.0]), {}, "affine", "non-finite"),
        (np.zeros(SHAPE), np.diag([1.0, 0.0, 1.0, 1.0]), {}, "affine", "singular"),
        (
            np.zeros(SHAPE),
            np.array([[1, 0.3, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
            {},
            "affine",
            "shear",
        ),
        (np.zeros(SHAPE), np.eye(4) + np.eye(4, k=3) * (1e6 + 0.01), {}, "affine", "float32"),
        (np.zeros(SHAPE), oblique_affine(), {"description": "x" * 81}, "descrip", "81"),
        (np.zeros((5,)), oblique_affine(), {}, "shape", "(5,)"),
    ],
)
def test_save_refuses(tmp_path, array, affine, kwargs, field, needle):
    path = tmp_path / "out.nii.gz"
    with pytest.raises(Medi2iInputError) as info:
        save_volume(path, array, affine, **kwargs)
    assert needle in assert_names(info.value, path, field)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_save_refuses_other_formats(tmp_path):
    with pytest.raises(Medi2iInputError) as info:
        save_volume(tmp_path / "x.mha", np.zeros(SHAPE), oblique_affine())
    assert "'.mha'" in assert_names(info.value, tmp_path / "x.mha", "suffix")


def test_volume_properties_and_metatensor(tmp_path, rng):
    lps = np.diag([-0.8, -0.8, 3.0, 1.0])
    labels = rng.integers(0, 3, SHAPE).astype(np.uint8)
    volume = Volume(labels, lps, path=str(tmp_path / "x.nii"), kind="label")
    assert volume.orientation == "LPS" and volume.spacing == (0.8, 0.8, 3.0) and volume.shape == SHAPE
    assert volume.path == tmp_path / "x.nii" and volume.affine.dtype == np.float64
    tensor = volume.to_metatensor()
    assert tuple(tensor.shape) == (1, *SHAPE) and tensor.dtype == torch.uint8
    assert torch.equal(tensor.affine, torch.from_numpy(lps)) and tensor.affine.dtype == torch.float64
    assert tensor.meta["filename_or_obj"] == str(tmp_path / "x.nii") and tensor.meta["space"] == "RAS"
    tensor[0, 0, 0, 0] = 99
    assert volume.array[0, 0, 0] == labels[0, 0, 0]  # the tensor does not alias the frozen volume


@pytest.mark.parametrize(
    ("array", "affine", "kwargs", "needle"),
    [
        (np.zeros(SHAPE, np.float32), np.diag([1.0, 1.0, 1.0, 1.0]), {"kind": "label"}, "integer"),
        (np.zeros(SHAPE, np.uint8), np.eye(4), {"kind": "mask"}, "bool"),
        (np.zeros(SHAPE, np.int16), np.eye(4), {}, "floating"),
        (np.zeros((5,), np.float32), np.eye(4), {}, "2D or 3D"),
        (np.zeros(SHAPE, np.float32), np.eye(3), {}, "4x4"),
        (np.zeros(SHAPE, np.float32), np.diag([1.0, np.inf, 1.0, 1.0]), {}, "non-finite"),
        (np.zeros(SHAPE, np.float32), np.eye(4), {"kind": "segmentation"}, "unknown option"),
    ],
)
def test_volume_refuses_inconsistent_contents(array, affine, kwargs, needle):
    with pytest.raises(Medi2iInputError, match=needle):
        Volume(array, affine, **kwargs)


def test_describe_a_loaded_file(tmp_path):
    data = np.full(SHAPE, -1000, np.int16)
    data[0, 0, 0] = 2000
    volume = load_volume(save_volume(tmp_path / "ct.nii.gz", data, axis_aligned((0, 1, 2), (-1, -1, 1))))
    info = describe(volume)
    assert info["path"] == str(tmp_path / "ct.nii.gz") and info["kind"] == "image"
    assert info["shape"] == SHAPE and info["components"] == 1
    assert np.allclose(info["spacing"], SPACING) and info["orientation"] == "LPS"
    assert info["dtype"] == "int16" and info["array_dtype"] == "float32"
    assert info["value_range"] == (-1000.0, 2000.0)
    assert np.allclose(info["affine"], volume.affine)
    mask = describe(Volume(data > 0, np.eye(4), kind="mask"))
    assert mask["value_range"] == (0, 1) and mask["dtype"] == "bool"
