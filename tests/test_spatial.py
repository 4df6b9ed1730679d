"""Tests for medi2i.spatial: the DDF convention (voxel units, array-axis channels, pull), warp, compose, files."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
import torch

from medi2i.errors import Medi2iInputError
from medi2i.spatial import (
    DDF_DESCRIPTION_3D,
    MAX_EXACT_LABEL,
    compose,
    ddf_mm_to_voxel,
    ddf_voxel_to_mm,
    identity_grid,
    read_ddf,
    warp,
    write_ddf,
)
from tests.conftest import oblique_affine, write_nifti


def smooth_image(shape: tuple[int, ...]) -> torch.Tensor:
    """A smooth (B=1, C=1) test image with structure along every axis."""
    g = identity_grid(shape)
    return sum(torch.sin(2 * math.pi * (i + 1) * g[i] / shape[i]) for i in range(len(shape)))[None, None]


def smooth_field(shape: tuple[int, ...], amplitude: float, phase: int, freq: float) -> torch.Tensor:
    """A smooth (1, ndim, *shape) displacement whose channel i varies along another axis than i."""
    g = identity_grid(shape)
    n = len(shape)
    return torch.stack(
        [amplitude * torch.sin(2 * math.pi * freq * g[(i + phase) % n] / shape[0] + i) for i in range(n)]
    )[None]


def interior(n: int, margin: int) -> tuple[slice, ...]:
    return (slice(None), slice(None)) + (slice(margin, -margin),) * n


# ---------------------------------------------------------------------------------------------------- grids


def test_identity_grid_values():
    g = identity_grid((3, 4, 5), dtype=torch.float64)
    assert g.shape == (3, 3, 4, 5) and g.dtype == torch.float64
    i, j, k = 2, 1, 3
    assert g[:, i, j, k].tolist() == [2.0, 1.0, 3.0]


@pytest.mark.parametrize("bad", [(), (0, 3), (-1,)])
def test_identity_grid_rejects_bad_shape(bad):
    with pytest.raises(ValueError, match="shape"):
        identity_grid(bad)


def test_identity_grid_rejects_integer_dtype():
    with pytest.raises(ValueError, match="floating dtype"):
        identity_grid((2, 2), dtype=torch.int64)


# ---------------------------------------------------------------------------------------------------- warp


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_warp_sign(axis):
    """MONAI Warp convention, checked: ddf[:, c] = +2 pulls from index i + 2 along array axis c."""
    shape = (7, 8, 9)
    image = torch.rand(1, 1, *shape)
    ddf = torch.zeros(1, 3, *shape)
    ddf[:, axis] = 2.0
    warped = warp(image, ddf)
    src = [slice(None)] * 3
    dst = [slice(None)] * 3
    src[axis] = slice(2, None)
    dst[axis] = slice(0, -2)
    torch.testing.assert_close(warped[0, 0][tuple(dst)], image[0, 0][tuple(src)], atol=1e-5, rtol=0)
    # border padding: the last two slices repeat the edge slice instead of fading to zero
    edge = [slice(None)] * 3
    edge[axis] = slice(-1, None)
    last = [slice(None)] * 3
    last[axis] = slice(-2, None)
    torch.testing.assert_close(
        warped[0, 0][tuple(last)], image[0, 0][tuple(edge)].expand_as(warped[0, 0][tuple(last)]), atol=1e-5, rtol=0
    )


def test_warp_sign_2d_and_zeros_padding():
    image = torch.arange(1.0, 6.0).reshape(1, 1, 5, 1).repeat(1, 1, 1, 3)
    ddf = torch.zeros(1, 2, 5, 3)
    ddf[:, 0] = -1.0
    out = warp(image, ddf, padding_mode="zeros")
    assert out[0, 0, :, 1].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("spatial", [(6, 7), (5, 6, 7)])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("channels", [1, 3])
def test_warp_shape_table(spatial, batch, channels):
    image = torch.rand(batch, channels, *spatial)
    ddf = torch.randn(batch, len(spatial), *spatial)
    out = warp(image, ddf)
    assert out.shape == image.shape and out.dtype == image.dtype


@pytest.mark.parametrize("spatial", [(6, 7), (5, 6, 7)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_zero_ddf_is_identity(spatial, mode):
    image = torch.rand(2, 2, *spatial)
    out = warp(image, torch.zeros(2, len(spatial), *spatial), mode=mode)
    torch.testing.assert_close(out, image, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.int16])
def test_zero_ddf_keeps_labels_exactly(dtype):
    labels = torch.randint(0, 100, (1, 1, 6, 7, 8)).to(dtype)
    out = warp(labels, torch.zeros(1, 3, 6, 7, 8), mode="nearest")
    assert out.dtype == dtype
    assert torch.equal(out, labels)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_labels_keep_dtype_and_value_set(dtype):
    gen = torch.Generator().manual_seed(1)
    high = 2 if dtype == torch.bool else 40
    labels = torch.randint(0, high, (2, 1, 9, 10), generator=gen).to(dtype)
    ddf = 1.7 * torch.randn(2, 2, 9, 10, generator=gen)
    out = warp(labels, ddf, mode="nearest")
    assert out.dtype == dtype
    assert set(out.unique().tolist()) <= set(labels.unique().tolist())


def test_large_labels_exact_up_to_2_pow_24():
    labels = torch.tensor([MAX_EXACT_LABEL, MAX_EXACT_LABEL - 1, -MAX_EXACT_LABEL, 7], dtype=torch.int64)
    labels = labels.reshape(1, 1, 2, 2)
    ddf = torch.zeros(1, 2, 2, 2)
    ddf[:, 1, :, 0] = 1.0  # swap nothing, just pull column 1 into column 0
    out = warp(labels, ddf, mode="nearest")
    assert out[0, 0, :, 0].tolist() == [MAX_EXACT_LABEL - 1, 7]
    assert out[0, 0, :, 1].tolist() == [MAX_EXACT_LABEL - 1, 7]


def test_labels_beyond_2_pow_24_are_refused():
    labels = torch.full((1, 1, 2, 2), MAX_EXACT_LABEL + 1, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"2\*\*24"):
        warp(labels, torch.zeros(1, 2, 2, 2), mode="nearest")


def test_labels_need_nearest():
    labels = torch.zeros(1, 1, 3, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="mode='nearest'"):
        warp(labels, torch.zeros(1, 2, 3, 3))


def test_warp_float64_and_mixed_precision():
    image = torch.rand(1, 1, 5, 6, dtype=torch.float64)
    out = warp(image, torch.zeros(1, 2, 5, 6))  # float32 ddf, float64 image
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, image)


@pytest.mark.parametrize(
    ("image_shape", "ddf_shape", "message"),
    [
        ((1, 1, 4, 4, 4), (1, 2, 4, 4, 4), "expected ddf with 3 channels, got 2"),
        ((1, 1, 4, 4), (1, 3, 4, 4), "expected ddf with 2 channels, got 3"),
        ((1, 1, 4, 4), (1, 2, 4, 4, 1), "expected ddf with 4 dims"),
        ((2, 1, 4, 4), (1, 2, 4, 4), "expected ddf batch size 2"),
        ((1, 1, 4, 4), (1, 2, 4, 5), r"expected ddf spatial shape \(4, 4\)"),
        ((1, 4, 4), (1, 2, 4), r"expected image of shape \(B, C, H, W\[, D\]\)"),
    ],
)
def test_warp_contract_errors(image_shape, ddf_shape, message):
    with pytest.raises(ValueError, match=message):
        warp(torch.zeros(image_shape), torch.zeros(ddf_shape))


def test_warp_rejects_integer_ddf_and_unknown_mode():
    with pytest.raises(ValueError, match="floating-point ddf"):
        warp(torch.zeros(1, 1, 3, 3), torch.zeros(1, 2, 3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="bilinear"):
        warp(torch.zeros(1, 1, 3, 3), torch.zeros(1, 2, 3, 3), mode="bilinearr")
    with pytest.raises(ValueError, match="border"):
        warp(torch.zeros(1, 1, 3, 3), torch.zeros(1, 2, 3, 3), padding_mode="edge")


def test_warp_is_differentiable_in_ddf():
    image = smooth_image((12, 12))
    ddf = torch.zeros(1, 2, 12, 12, requires_grad=True)
    warp(image, ddf).sum().backward()
    assert ddf.grad is not None and ddf.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------- compose


@pytest.mark.parametrize("shape", [(64, 64), (32, 32, 32)])
def test_compose_matches_sequential_warps(shape):
    """warp(warp(m, U), a) == warp(m, compose(a, U)); the reversed order is >= 10x worse (measured: 20-50x)."""
    n = len(shape)
    image = smooth_image(shape)
    accumulated = smooth_field(shape, amplitude=3.0, phase=1, freq=1.0)
    step = smooth_field(shape, amplitude=3.0, phase=2, freq=2.0)
    sequential = warp(warp(image, accumulated), step)
    composed = warp(image, compose(step, accumulated))
    reversed_order = warp(image, compose(accumulated, step))
    inner = interior(n, 6)
    err = (sequential - composed)[inner].abs().mean()
    err_reversed = (sequential - reversed_order)[inner].abs().mean()
    moved = (sequential - image)[inner].abs().mean()
    assert err < 0.1 * err_reversed
    assert err < 0.05 * moved
    assert compose(step, accumulated).shape == step.shape


def test_compose_zero_is_neutral():
    u = smooth_field((10, 11, 12), amplitude=2.0, phase=1, freq=1.0)
    z = torch.zeros_like(u)
    torch.testing.assert_close(compose(z, u), u)
    torch.testing.assert_close(compose(u, z), u)


def test_compose_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        compose(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))


# ---------------------------------------------------------------------------------------------------- voxel <-> mm


def test_voxel_mm_round_trip_oblique_numpy_and_torch(rng):
    affine = oblique_affine(spacing=(0.9, 1.1, 2.5), angle_deg=23.0)
    ddf = rng.normal(size=(3, 4, 5, 6)).astype(np.float64)
    mm = ddf_voxel_to_mm(ddf, affine)
    # a displacement of one voxel along axis 2 is 2.5 mm along world z (rotation is about z)
    one = np.zeros((3, 1, 1, 1))
    one[2] = 1.0
    np.testing.assert_allclose(ddf_voxel_to_mm(one, affine).ravel(), [0.0, 0.0, 2.5], atol=1e-12)
    # length along axis 0 scales by the spacing 0.9, direction follows the rotated column
    one = np.zeros((3, 1, 1, 1))
    one[0] = 1.0
    np.testing.assert_allclose(ddf_voxel_to_mm(one, affine).ravel(), affine[:3, 0], atol=1e-12)
    np.testing.assert_allclose(ddf_mm_to_voxel(mm, affine), ddf, atol=1e-10)
    batched = torch.as_tensor(ddf[None], dtype=torch.float64)
    mm_t = ddf_voxel_to_mm(batched, torch.as_tensor(affine))
    assert isinstance(mm_t, torch.Tensor) and mm_t.dtype == torch.float64
    np.testing.assert_allclose(mm_t[0].numpy(), mm, atol=1e-10)
    torch.testing.assert_close(ddf_mm_to_voxel(mm_t, affine), batched)


def test_voxel_mm_2d_and_errors():
    aff2 = np.array([[0.0, -2.0, 5.0], [3.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    d = np.zeros((2, 1, 1))
    d[0] = 1.0
    np.testing.assert_allclose(ddf_voxel_to_mm(d, aff2).ravel(), [0.0, 3.0])
    with pytest.raises(ValueError, match="expected ddf with 3 channels, got 2"):
        ddf_voxel_to_mm(np.zeros((2, 4, 4, 4)), np.eye(4))
    with pytest.raises(ValueError, match="affine"):
        ddf_voxel_to_mm(np.zeros((3, 4, 4, 4)), np.eye(5))
    with pytest.raises(ValueError, match="non-singular"):
        ddf_voxel_to_mm(np.zeros((3, 4, 4, 4)), np.diag([1.0, 0.0, 1.0, 1.0]))


# ---------------------------------------------------------------------------------------------------- files


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".npz"])
def test_write_read_round_trip(tmp_path, rng, suffix):
    affine = oblique_affine()
    ddf = rng.normal(size=(3, 5, 6, 7)).astype(np.float32)
    out = write_ddf(tmp_path / f"disp_0001_0002{suffix}", torch.as_tensor(ddf)[None], affine)
    if suffix == ".npz":
        with np.load(out) as archive:
            assert archive["arr_0"].shape == (5, 6, 7, 3)  # the key and layout Learn2Reg's evaluation reads
            np.testing.assert_allclose(archive["arr_0"][1, 2, 3], ddf[:, 1, 2, 3])
    else:
        img = nib.load(out)
        assert img.shape == (5, 6, 7, 3)
        np.testing.assert_allclose(np.asarray(img.dataobj)[1, 2, 3], ddf[:, 1, 2, 3])
        np.testing.assert_allclose(img.affine, affine, atol=1e-5)
        np.testing.assert_allclose(img.get_qform(), img.get_sform(), atol=1e-5)
        assert img.header["descrip"].item().decode() == DDF_DESCRIPTION_3D
        assert img.get_data_dtype() == np.float32
    back, back_affine = read_ddf(out)
    assert back.dtype == np.float32 and back.shape == ddf.shape
    np.testing.assert_array_equal(back, ddf)
    np.testing.assert_allclose(back_affine, affine, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # atomic: no temporary left behind


def test_write_2d_nifti_and_float16_npz(tmp_path):
    ddf = np.linspace(-2, 2, 2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    out = write_ddf(tmp_path / "d2.nii.gz", ddf, np.diag([0.5, 0.7, 1.0, 1.0]))
    assert nib.load(out).shape == (4, 5, 2)
    back, _ = read_ddf(out)
    np.testing.assert_array_equal(back, ddf)
    half = write_ddf(tmp_path / "d2.npz", ddf, np.eye(4), dtype=np.float16)
    with np.load(half) as archive:
        assert archive["arr_0"].dtype == np.float16 and archive["arr_0"].shape == (4, 5, 2)
    back, _ = read_ddf(half)
    np.testing.assert_allclose(back, ddf, atol=2e-3)
    with pytest.raises(Medi2iInputError, match="NIfTI-1 has no float16"):
        write_ddf(tmp_path / "d3.nii.gz", ddf, np.eye(4), dtype=np.float16)


def test_read_vector_intent_5d_and_l2r_npz_without_affine(tmp_path, rng):
    data = rng.normal(size=(4, 5, 6, 1, 3)).astype(np.float32)
    path = write_nifti(tmp_path / "v.nii.gz", data, oblique_affine())
    ddf, affine = read_ddf(path)
    np.testing.assert_array_equal(ddf, np.moveaxis(data[:, :, :, 0], -1, 0))
    np.testing.assert_allclose(affine, oblique_affine(), atol=1e-5)
    np.savez(tmp_path / "plain.npz", rng.normal(size=(4, 5, 6, 3)).astype(np.float16))  # key arr_0, as in L2R
    ddf, affine = read_ddf(tmp_path / "plain.npz")
    assert ddf.shape == (3, 4, 5, 6) and ddf.dtype == np.float32
    np.testing.assert_array_equal(affine, np.eye(4))


def test_read_errors_name_file_and_field(tmp_path, rng):
    with pytest.raises(Medi2iInputError, match="missing.nii.gz: DDF file not found"):
        read_ddf(tmp_path / "missing.nii.gz")
    wrong = write_nifti(tmp_path / "wrong.nii.gz", np.zeros((4, 5, 6, 2), np.float32), np.eye(4))
    with pytest.raises(Medi2iInputError, match=r"wrong.nii.gz: shape: DDF has the wrong shape \(found \(4, 5, 6, 2\)"):
        read_ddf(wrong)
    bad = rng.normal(size=(4, 5, 6, 3)).astype(np.float32)
    bad[1, 1, 1, 0] = np.nan
    nan_file = write_nifti(tmp_path / "nan.nii.gz", bad, np.eye(4))
    with pytest.raises(Medi2iInputError, match=r"nan.nii.gz: data: .*NaN or Inf"):
        read_ddf(nan_file)
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"not a nifti file at all")
    with pytest.raises(Medi2iInputError, match="corrupt.nii.gz: gzip stream: corrupt or truncated"):
        read_ddf(corrupt)
    np.savez(tmp_path / "keys.npz", flow=np.zeros((2, 2, 2, 3)))
    with pytest.raises(Medi2iInputError, match="keys.npz: keys: no displacement array"):
        read_ddf(tmp_path / "keys.npz")
    (tmp_path / "x.mha").write_bytes(b"")
    with pytest.raises(Medi2iInputError, match="x.mha: suffix: unsupported DDF format"):
        read_ddf(tmp_path / "x.mha")


def test_write_errors(tmp_path):
    ddf = np.zeros((3, 2, 2, 2), np.float32)
    with pytest.raises(Medi2iInputError, match="dtype: a DDF must be stored as float"):
        write_ddf(tmp_path / "a.nii.gz", ddf, np.eye(4), dtype=np.int16)
    with pytest.raises(Medi2iInputError, match="suffix: unsupported DDF format"):
        write_ddf(tmp_path / "a.mha", ddf, np.eye(4))
    with pytest.raises(Medi2iInputError, match="fixed_affine"):
        write_ddf(tmp_path / "a.nii.gz", ddf, np.zeros((4, 4)))
    nan = ddf.copy()
    nan[0, 0, 0, 0] = np.inf
    with pytest.raises(Medi2iInputError, match="ddf: DDF contains NaN or Inf"):
        write_ddf(tmp_path / "a.nii.gz", nan, np.eye(4))
    with pytest.raises(ValueError, match="channel-first"):
        write_ddf(tmp_path / "a.nii.gz", np.zeros((2, 2, 2, 3), np.float32), np.eye(4))
    assert list(tmp_path.iterdir()) == []  # nothing written on any error
