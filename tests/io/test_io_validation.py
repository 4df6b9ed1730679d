"""Every file medi2i.io must refuse (or repair only when asked), each made here byte by byte.

Each rejection asserts that the error names the file and the header field; most also check what
was found. Where nibabel would load the file silently, that is asserted too, to show the check matters.
"""

from __future__ import annotations

import gzip
import logging

import nibabel as nib
import numpy as np
import pytest

from medi2i.errors import Medi2iInputError
from medi2i.io import load_volume
from medi2i.io.geometry import shear
from tests.conftest import oblique_affine
from tests.io.io_helpers import assert_names, file_payload, patch_header, store_payload

ARRAY = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)


def _reject(path, field, **kwargs) -> str:
    with pytest.raises(Medi2iInputError) as info:
        load_volume(path, **kwargs)
    return assert_names(info.value, path, field)


# ---------------------------------------------------------------- files and formats


def test_missing_file(tmp_path):
    text = _reject(tmp_path / "absent.nii.gz", "path")
    assert "not found" in text


def test_directory_is_not_a_volume(tmp_path):
    (tmp_path / "dir.nii").mkdir()
    _reject(tmp_path / "dir.nii", "path")


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG")
    assert "'.png'" in _reject(path, "suffix")


def test_garbage_bytes(tmp_path):
    path = tmp_path / "x.nii"
    path.write_bytes(b"this is not an image at all, just text" * 20)
    assert "348" in _reject(path, "sizeof_hdr")


def test_empty_file(tmp_path):
    path = tmp_path / "x.nii"
    path.write_bytes(b"")
    _reject(path, "sizeof_hdr")


def test_garbage_gzip(tmp_path):
    path = tmp_path / "x.nii.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    assert "gzip" in _reject(path, "gzip stream")


def test_plain_file_named_gz(nifti_factory):
    path = nifti_factory("x.nii", ARRAY)
    renamed = path.rename(path.with_name("x.nii.gz"))
    assert "BadGzipFile" in _reject(renamed, "gzip stream")


def test_gzip_file_named_nii(nifti_factory):
    path = nifti_factory("x.nii.gz", ARRAY)
    renamed = path.rename(path.with_name("x.nii"))
    assert "compressed" in _reject(renamed, "suffix")


def test_truncated_header(nifti_factory):
    path = nifti_factory("x.nii", ARRAY)
    path.write_bytes(path.read_bytes()[:200])
    assert "200 bytes" in _reject(path, "header")


def test_truncated_nii_data(nifti_factory):
    path = nifti_factory("x.nii", ARRAY)
    path.write_bytes(path.read_bytes()[:-10])
    text = _reject(path, "dim/bitpix/vox_offset")
    assert "truncated" in text and f"{352 + ARRAY.nbytes} bytes" in text and f"{352 + ARRAY.nbytes - 10} bytes" in text


def test_nii_longer_than_declared(nifti_factory):
    path = nifti_factory("x.nii", ARRAY)
    path.write_bytes(path.read_bytes() + b"\x00" * 8)
    assert "longer than declared" in _reject(path, "dim/bitpix/vox_offset")


def test_truncated_gzip_stream(nifti_factory):
    path = nifti_factory("x.nii.gz", ARRAY)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "EOFError" in _reject(path, "gzip stream")


def test_gzip_with_corrupt_crc(nifti_factory):
    path = nifti_factory("x.nii.gz", ARRAY)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # CRC32 field of the trailer: the payload decompresses but fails verification
    path.write_bytes(bytes(data))
    assert "CRC" in _reject(path, "gzip stream")


def test_complete_gzip_with_fewer_bytes_than_declared(nifti_factory):
    path = nifti_factory("x.nii.gz", ARRAY)
    store_payload(path, file_payload(path)[:-24])  # a valid gzip stream of a short payload
    text = _reject(path, "dim/bitpix/vox_offset")
    assert "after decompression" in text and "truncated" in text


def test_absurd_declared_size_fails_before_allocating(nifti_factory):
    path = nifti_factory("x.nii.gz", ARRAY)
    patch_header(path, dim=[3, 2000, 2000, 2000, 1, 1, 1, 1], datatype=64, bitpix=64)  # 64 GB of float64
    assert "64000000352 bytes" in _reject(path, "dim/bitpix/vox_offset")


# ---------------------------------------------------------------- header fields


@pytest.mark.parametrize(
    ("fields", "field", "needle"),
    [
        ({"magic": b"abc"}, "magic", "b'abc'"),
        ({"magic": b"ni1"}, "magic", ".hdr/.img pair"),
        ({"datatype": 32, "bitpix": 64}, "datatype", "complex64"),
        ({"datatype": 128, "bitpix": 24}, "datatype", "RGB"),
        ({"datatype": 1536, "bitpix": 128}, "datatype", "float128"),
        ({"bitpix": 16}, "bitpix", "found 16"),
        ({"dim": [0, 4, 5, 6, 1, 1, 1, 1]}, "dim[0]", "found 0"),
        ({"dim": [8, 4, 5, 6, 1, 1, 1, 1]}, "dim[0]", "found 8"),
        ({"dim": [3, 4, 0, 6, 1, 1, 1, 1]}, "dim", "(4, 0, 6)"),
        ({"vox_offset": 100}, "vox_offset", "100"),
        ({"vox_offset": 352.5}, "vox_offset", "352.5"),
        ({"xyzt_units": 1}, "xyzt_units", "meter"),
        ({"xyzt_units": 3}, "xyzt_units", "micron"),
        ({"qform_code": 7}, "qform_code", "found 7"),
        ({"sform_code": -1}, "sform_code", "found -1"),
    ],
)
def test_bad_header_field(nifti_factory, fields, field, needle):
    path = patch_header(nifti_factory("x.nii", ARRAY), **fields)
    assert needle in _reject(path, field)


@pytest.mark.parametrize("value", [0.0, np.nan, np.inf, -1.1])
def test_bad_pixdim(nifti_factory, value):
    path = patch_header(nifti_factory("x.nii", ARRAY), pixdim=[1.0, 0.9, value, 2.5, 1, 1, 1, 1])
    _reject(path, "pixdim")


def test_negative_pixdim_repaired_when_asked(nifti_factory, caplog):
    path = patch_header(nifti_factory("x.nii", ARRAY), pixdim=[1.0, -0.9, 1.1, 2.5, 1, 1, 1, 1])
    assert nib.load(path).header.get_zooms()[0] > 0  # nibabel "fixes" it without a word
    with caplog.at_level(logging.WARNING, logger="medi2i.io"):
        volume = load_volume(path, repair=True)
    assert np.allclose(volume.spacing, (0.9, 1.1, 2.5), atol=1e-6)
    assert str(path) in caplog.text and "pixdim" in caplog.text


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_sform(nifti_factory, bad):
    path = patch_header(nifti_factory("x.nii", ARRAY), srow_y=[0.0, bad, 0.0, 5.0])
    assert "non-finite" in _reject(path, "sform (srow_x/y/z)")


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        ({"srow_x": [0.0, -0.2, 0.0, 1.0], "srow_y": [0.0, 1.1, 0.0, 1.0]}, "zero length"),
        ({"srow_x": [0.0, 0.0, 0.0, 1.0]}, "collinear"),
        ({"srow_x": [1.0, 1.0, 0.0, 0.0], "srow_y": [1.0, 1.0, 0.0, 0.0], "srow_z": [0, 0, 2.5, 0]}, "collinear"),
    ],
)
def test_singular_sform(nifti_factory, rows, needle):
    path = patch_header(nifti_factory("x.nii", ARRAY), qform_code=0, **rows)
    text = _reject(path, "sform (srow_x/y/z)")
    assert "singular" in text and needle in text


def _sheared_file(nifti_factory):
    sheared = np.array([[0.9, 0.2, 0.0, -10], [0.0, 1.1, 0.0, 20], [0.0, 0.0, 2.5, 30], [0, 0, 0, 1]])
    path = nifti_factory("x.nii", ARRAY)
    patch_header(path, srow_x=sheared[0], srow_y=sheared[1], srow_z=sheared[2], qform_code=0)
    return path, sheared


def test_sheared_sform(nifti_factory):
    path, sheared = _sheared_file(nifti_factory)
    assert np.allclose(nib.load(path).affine, sheared, atol=1e-6)  # nibabel takes it as is
    text = _reject(path, "sform (srow_x/y/z)")
    assert "sheared" in text and "repair=True" in text


def test_sheared_sform_repaired_when_asked(nifti_factory, caplog):
    path, sheared = _sheared_file(nifti_factory)
    with caplog.at_level(logging.WARNING, logger="medi2i.io"):
        volume = load_volume(path, repair=True)
    assert shear(volume.affine) < 1e-9
    assert np.allclose(volume.spacing, np.linalg.norm(sheared[:3, :3], axis=0))
    assert np.array_equal(volume.affine[:3, 3], sheared[:3, 3])
    assert str(path) in caplog.text and "sheared" in caplog.text


def test_sheared_sform_with_nibabel_qform_agrees_after_repair(tmp_path):
    # nibabel stores the nearest rigid transform in the qform; after orthogonalizing, the sform must agree with it
    sheared = np.array([[0.9, 0.05, 0.0, -10], [0.0, 1.1, 0.0, 20], [0.0, 0.0, 2.5, 30], [0, 0, 0, 1]])
    img = nib.Nifti1Image(ARRAY, sheared)
    img.set_qform(sheared, code=1)
    img.set_sform(sheared, code=1)
    nib.save(img, tmp_path / "x.nii")
    _reject(tmp_path / "x.nii", "sform (srow_x/y/z)")
    volume = load_volume(tmp_path / "x.nii", repair=True)
    assert np.allclose(volume.affine, img.header.get_qform(), atol=1e-4)


def test_qform_and_sform_disagree_by_a_shift(nifti_factory):
    path = nifti_factory("x.nii", ARRAY)
    srow = nib.load(path).header["srow_x"].copy()
    srow[3] += 1.0
    patch_header(path, srow_x=srow)
    nib.load(path).get_fdata()  # nibabel silently prefers the sform
    text = _reject(path, "qform/sform")
    assert "qform (code 1)" in text and "sform (code 1)" in text and "1 mm apart" in text


def test_qform_and_sform_disagree_in_rotation_of_a_thin_slab(nifti_factory):
    # a one-slice grid: the corners hardly move, the slice normal does
    path = nifti_factory("x.nii", ARRAY[:, :, :1])
    rotated = oblique_affine(angle_deg=12.0)
    tilt = np.deg2rad(0.5)
    rotated[:3, :3] = (
        np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]]) @ (rotated[:3, :3])
    )
    patch_header(path, srow_x=rotated[0], srow_y=rotated[1], srow_z=rotated[2])
    assert "direction cosines differ" in _reject(path, "qform/sform")


def test_qform_and_sform_within_tolerance_load(nifti_factory):
    path = nifti_factory("x.nii", ARRAY)
    srow = nib.load(path).header["srow_x"].copy()
    srow[3] += 2e-4  # 0.2 micrometre
    patch_header(path, srow_x=srow)
    assert np.isclose(load_volume(path).affine[0, 3], srow[3])


def test_no_transform_at_all(nifti_factory, caplog):
    path = patch_header(nifti_factory("x.nii", ARRAY), qform_code=0, sform_code=0)
    assert "repair=True" in _reject(path, "qform_code/sform_code")
    with caplog.at_level(logging.WARNING, logger="medi2i.io"):
        volume = load_volume(path, repair=True)
    assert np.allclose(volume.affine, np.diag([0.9, 1.1, 2.5, 1.0]), atol=1e-6)  # NIfTI method 1, not a guess
    assert str(path) in caplog.text and "method 1" in caplog.text


def test_qform_only_is_used(nifti_factory):
    path = patch_header(nifti_factory("x.nii", ARRAY), sform_code=0, srow_x=[np.nan] * 4)
    assert np.allclose(load_volume(path).affine, oblique_affine(), atol=1e-4)


def test_qfac_zero_means_one(nifti_factory):
    path = nifti_factory("x.nii", ARRAY)
    pixdim = nib.load(path).header["pixdim"].copy()
    assert pixdim[0] == 1
    pixdim[0] = 0
    patch_header(path, sform_code=0, pixdim=pixdim)
    assert np.allclose(load_volume(path).affine, oblique_affine(), atol=1e-4)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"quatern_b": 0.9, "quatern_c": 0.9}, "quatern_b/c/d"),
        ({"quatern_d": np.nan}, "quatern_b/c/d"),
        ({"qoffset_y": np.inf}, "qoffset_x/y/z"),
    ],
)
def test_bad_qform(nifti_factory, fields, field):
    path = patch_header(nifti_factory("x.nii", ARRAY), sform_code=0, **fields)
    _reject(path, field)


def test_bad_qfac(nifti_factory):
    path = patch_header(nifti_factory("x.nii", ARRAY), sform_code=0, pixdim=[0.5, 0.9, 1.1, 2.5, 1, 1, 1, 1])
    assert "0.5" in _reject(path, "pixdim[0]")


# ---------------------------------------------------------------- scaling


def _int16_file(nifti_factory, slope, inter, name="x.nii"):
    path = nifti_factory(name, np.arange(120, dtype=np.int16).reshape(4, 5, 6))
    return patch_header(path, scl_slope=slope, scl_inter=inter)


@pytest.mark.parametrize(
    ("slope", "inter", "field"),
    [
        (0.0, 5.0, "scl_inter"),  # nibabel ignores the intercept
        (np.nan, 3.0, "scl_inter"),  # nibabel ignores the intercept
        (np.inf, 0.0, "scl_slope"),  # nibabel ignores the slope
        (-np.inf, 1.0, "scl_slope"),
        (2.0, np.nan, "scl_inter"),  # nibabel raises a HeaderDataError
        (2.0, np.inf, "scl_inter"),
    ],
)
def test_ambiguous_scaling(nifti_factory, slope, inter, field):
    path = _int16_file(nifti_factory, slope, inter)
    assert f"scl_slope={slope}" in _reject(path, field)


@pytest.mark.parametrize(("slope", "inter"), [(0.0, 0.0), (np.nan, np.nan), (np.nan, 0.0), (0.0, np.nan), (1.0, 0.0)])
def test_no_scaling(nifti_factory, slope, inter):
    path = _int16_file(nifti_factory, slope, inter)
    volume = load_volume(path)
    assert np.array_equal(volume.array, np.arange(120, dtype=np.float32).reshape(4, 5, 6))
    assert np.array_equal(volume.array, nib.load(path).get_fdata())  # nibabel agrees on these


def test_scaling_applied_per_standard(nifti_factory):
    path = _int16_file(nifti_factory, 0.5, -3.0)
    volume = load_volume(path)
    assert volume.array.dtype == np.float32 and volume.disk_dtype == np.int16
    assert np.array_equal(volume.array, np.arange(120).reshape(4, 5, 6) * 0.5 - 3.0)


def test_integer_scaling_of_labels_is_allowed(nifti_factory):
    path = _int16_file(nifti_factory, 2.0, 1.0)
    labels = load_volume(path, kind="label")
    assert labels.array.dtype == np.uint8 and np.array_equal(labels.array, np.arange(120).reshape(4, 5, 6) * 2 + 1)


def test_fractional_scaling_of_labels_is_refused(nifti_factory):
    path = _int16_file(nifti_factory, 0.1, 0.0)
    assert "fractional" in _reject(path, "scl_slope/scl_inter", kind="label")


# ---------------------------------------------------------------- values and dimensions


def test_nan_and_inf_voxels(nifti_factory):
    data = ARRAY.copy()
    data[0, 0, 0] = data[1, 1, 1] = np.nan
    data[2, 2, 2] = -np.inf
    text = _reject(nifti_factory("x.nii.gz", data), "data")
    assert "2 NaN and 1 Inf of 120 voxels" in text


def test_image_overflowing_float32(nifti_factory):
    data = ARRAY.astype(np.float64)
    data[0, 0, 0] = 1e300
    assert "overflow" in _reject(nifti_factory("x.nii", data), "data")


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((4, 5, 6, 3), {}),  # a real 4D series where a volume is expected
        ((4, 5, 6, 2), {"spatial_dims": 3}),
        ((4, 5, 6), {"spatial_dims": 2}),
        ((4, 5, 6, 1, 3), {}),
        ((7,), {}),
    ],
)
def test_wrong_dimensionality(nifti_factory, shape, kwargs):
    path = nifti_factory("x.nii", np.zeros(shape, np.float32))
    text = _reject(path, "dim", **kwargs)
    assert str(shape) in text
    if len(shape) > 3:
        assert "vector=True" in text


def test_vector_file_needs_a_component_axis(nifti_factory):
    path = nifti_factory("x.nii", np.zeros((4, 5), np.float32))
    assert "component axis" in _reject(path, "dim", vector=True)


def test_fractional_labels(nifti_factory):
    data = np.zeros((4, 5, 6), np.float32)
    data[1, 2, 3] = 1.5
    assert "1 fractional voxels (e.g. 1.5)" in _reject(nifti_factory("x.nii", data), "data", kind="label")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_labels_beyond_float32_exactness(nifti_factory, dtype):
    data = np.zeros((4, 5, 6), dtype)
    data[0, 0, 0] = 2**24 + 2  # float32 holds it; 2**24 + 1 would already be lost on disk
    assert "2**24" in _reject(nifti_factory("x.nii", data), "data", kind="label")


def test_label_nan(nifti_factory):
    data = np.zeros((4, 5, 6), np.float32)
    data[0, 0, 0] = np.nan
    assert "1 NaN" in _reject(nifti_factory("x.nii", data), "data", kind="label")


def test_integer_valued_float_labels_load_as_integers(nifti_factory):
    data = np.zeros((4, 5, 6), np.float32)
    data[0, 0, 0], data[1, 0, 0] = 300, -2
    labels = load_volume(nifti_factory("x.nii", data), kind="label")
    assert labels.array.dtype == np.int16 and labels.array[0, 0, 0] == 300 and labels.array[1, 0, 0] == -2


def test_empty_mask(nifti_factory):
    path = nifti_factory("x.nii", np.zeros((4, 5, 6), np.uint8))
    assert "empty" in _reject(path, "data", kind="mask")
    assert "empty" in _reject(path, "data", kind="mask", repair=True)  # nothing to repair


def test_non_binary_mask(nifti_factory, caplog):
    data = np.zeros((4, 5, 6), np.int16)
    data[0, 0, :3] = [1, 2, -1]
    path = nifti_factory("x.nii", data)
    assert "2 voxels with other values (-1, 2)" in _reject(path, "data", kind="mask")
    with caplog.at_level(logging.WARNING, logger="medi2i.io"):
        mask = load_volume(path, kind="mask", repair=True)
    assert mask.array.dtype == np.bool_ and np.array_equal(mask.array, data > 0)
    assert str(path) in caplog.text and "value > 0" in caplog.text


def test_mask_with_nan(nifti_factory):
    data = np.ones((4, 5, 6), np.float32)
    data[0, 0, 0] = np.nan
    _reject(nifti_factory("x.nii", data), "data", kind="mask", repair=True)


def test_float_binary_mask_loads(nifti_factory):
    data = np.zeros((4, 5, 6), np.float32)
    data[1:3, 1:3, 1:3] = 1
    mask = load_volume(nifti_factory("x.nii.gz", data), kind="mask")
    assert mask.array.dtype == np.bool_ and int(mask.array.sum()) == 8


# ---------------------------------------------------------------- arguments


def test_kind_typo_suggests_the_option(nifti_factory):
    with pytest.raises(Medi2iInputError) as info:
        load_volume(nifti_factory("x.nii", ARRAY), kind="imgae")
    assert info.value.field == "kind" and "did you mean 'image'" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"spatial_dims": 4}, "spatial_dims"), ({"vector": True, "kind": "label"}, "vector")]
)
def test_bad_arguments(nifti_factory, kwargs, field):
    with pytest.raises(Medi2iInputError) as info:
        load_volume(nifti_factory("x.nii", ARRAY), **kwargs)
    assert info.value.field == field


def test_gzip_module_agrees_the_fixture_is_valid(nifti_factory):
    # guards the tests above: the untouched files are valid, so each rejection is due to its one change
    for name in ("x.nii", "y.nii.gz"):
        path = nifti_factory(name, ARRAY)
        volume = load_volume(path)
        assert np.array_equal(volume.array, ARRAY) and np.allclose(volume.affine, oblique_affine(), atol=1e-4)
    assert gzip.decompress((path).read_bytes())[:4] == np.int32(348).tobytes()


def test_nifti2_mangled_by_text_mode_transfer(tmp_path):
    img = nib.Nifti2Image(ARRAY, oblique_affine())
    img.set_qform(oblique_affine(), code=1)
    img.set_sform(oblique_affine(), code=1)
    path = tmp_path / "x.nii"
    nib.save(img, path)
    payload = bytearray(path.read_bytes())
    assert payload[8:12] == b"\r\n\x1a\n"  # eol_check, right after sizeof_hdr and the 4-byte magic
    payload[8:12] = b"\n\n\x1a\n"
    path.write_bytes(bytes(payload))
    assert "[10, 10, 26, 10]" in _reject(path, "eol_check")


def test_2d_file_without_slice_thickness_uses_one(nifti_factory):
    path = nifti_factory("x.nii", np.ones((4, 5), np.float32))
    patch_header(path, sform_code=0, pixdim=[1.0, 0.9, 1.1, 0.0, 1, 1, 1, 1])  # qform only, pixdim[3] unset
    volume = load_volume(path, spatial_dims=3)
    assert np.allclose(volume.spacing, (0.9, 1.1, 1.0), atol=1e-6)
    assert np.allclose(volume.affine[:3, :2], oblique_affine()[:3, :2], atol=1e-5)


def test_extensions_before_the_data_are_skipped(tmp_path):
    img = nib.Nifti1Image(ARRAY, oblique_affine())
    img.set_qform(oblique_affine(), code=1)
    img.set_sform(oblique_affine(), code=1)
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"acquired on a Tuesday" * 10))
    nib.save(img, tmp_path / "x.nii.gz")
    assert int(nib.Nifti1Header(file_payload(tmp_path / "x.nii.gz")[:348], check=False)["vox_offset"]) > 352
    assert np.array_equal(load_volume(tmp_path / "x.nii.gz").array, ARRAY)
