"""Intensity presets (forward formulas and exact inverses), slicing by affine, model sizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd

from medi2i.data.transforms import (
    CTWindow,
    CTWindowd,
    LinearIntensityMap,
    MRPercentileNormalize,
    MRPercentileNormalized,
    RandAxialSliced,
    RegistrationNormalize,
    axial_axis,
    extract_slice,
    model_size_transform,
    slices_to_volume,
    synthesis_preprocessing,
    volume_to_slices,
)
from medi2i.errors import Medi2iInputError
from tests.conftest import oblique_affine


def test_ct_window_matches_formula_and_inverts_inside_window(rng):
    hu = torch.from_numpy(rng.uniform(-1500, 3500, size=(1, 6, 7, 8)).astype(np.float32))
    y = CTWindow()(MetaTensor(hu))
    expected = (np.clip(hu.numpy(), -1024, 3000) + 1024) / 4024 * 2 - 1
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-6)
    t = CTWindow()
    back = t.inverse(t(MetaTensor(hu)))
    np.testing.assert_allclose(back.numpy(), np.clip(hu.numpy(), -1024, 3000), atol=2e-3)


def test_mr_percentiles_are_foreground_only_and_background_is_minus_one(rng):
    img = np.zeros((1, 20, 20, 5), np.float32)
    img[0, 5:15, 5:15] = rng.uniform(100, 1100, size=(10, 10, 5))
    mask = img > 0
    fg = img[mask]
    lo, hi = np.percentile(fg, [0.5, 99.5])
    t = MRPercentileNormalize()
    y = t(MetaTensor(torch.from_numpy(img)), torch.from_numpy(mask))
    expected = np.where(mask, (np.clip(img, lo, hi) - lo) / (hi - lo) * 2 - 1, -1.0)
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-5)
    assert float(y.min()) == -1.0 and float(y.max()) == pytest.approx(1.0)
    back = t.inverse(y)
    inside = mask & (img >= lo) & (img <= hi)
    np.testing.assert_allclose(back.numpy()[inside], img[inside], rtol=1e-5)


def test_mr_without_mask_uses_positive_voxels():
    img = torch.cat([torch.zeros(1, 50), torch.linspace(1, 100, 50)[None]], dim=1)
    y = MRPercentileNormalize(lower=0.0, upper=100.0)(img)
    assert torch.all(y[0, :50] == -1.0)
    np.testing.assert_allclose(y[0, 50:].numpy(), np.linspace(-1, 1, 50), atol=1e-6)


def test_registration_preset_range(rng):
    img = torch.from_numpy(rng.normal(300, 80, size=(1, 16, 16, 16)).astype(np.float32))
    y = RegistrationNormalize()(img)
    assert float(y.min()) == 0.0 and float(y.max()) == 1.0
    # 0.5 % of voxels sit above the 99.5th percentile and clip to 1
    assert 0.003 < float((y == 1.0).float().mean()) < 0.007


def test_invertd_restores_hu_and_mr_scale_through_a_pipeline(rng):
    hu = rng.uniform(-1000, 2000, size=(1, 10, 12)).astype(np.float32)
    mr = rng.uniform(10, 500, size=(1, 10, 12)).astype(np.float32)
    data = {"ct": MetaTensor(torch.from_numpy(hu)), "mr": MetaTensor(torch.from_numpy(mr))}
    pipeline = Compose([CTWindowd("ct"), MRPercentileNormalized("mr"), model_size_transform(["ct", "mr"], (16, 16))])
    out = pipeline(data)
    assert tuple(out["ct"].shape) == (1, 16, 16)
    out["pred_ct"], out["pred_mr"] = out["ct"].clone(), out["mr"].clone()
    inverted = Invertd(["pred_ct", "pred_mr"], pipeline, orig_keys=["ct", "mr"], nearest_interp=False)(out)
    np.testing.assert_allclose(inverted["pred_ct"].numpy(), hu, atol=1e-3)
    lo, hi = np.percentile(mr, [0.5, 99.5])
    np.testing.assert_allclose(inverted["pred_mr"].numpy(), np.clip(mr, lo, hi), rtol=1e-5)


def test_bad_intensity_inputs():
    with pytest.raises(Medi2iInputError, match="NaN or Inf"):
        CTWindow()(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(Medi2iInputError, match="no foreground"):
        MRPercentileNormalize()(torch.zeros(1, 4, 4))
    with pytest.raises(Medi2iInputError, match="finite and increasing"):
        LinearIntensityMap(10.0, 10.0, -1.0, 1.0)
    with pytest.raises(ValueError, match="lower=50"):
        MRPercentileNormalize(lower=50, upper=10)


@pytest.mark.parametrize("perm", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
def test_axial_axis_follows_the_affine(perm):
    aff = np.eye(4)
    aff[:3, :3] = np.eye(3)[:, list(perm)] @ np.diag([1.0, 2.0, 3.0])
    # array axis j points along world axis perm[j]; the axial axis is the one along world z
    assert axial_axis(aff) == list(perm).index(2)
    assert axial_axis(oblique_affine()) == 2


def test_extract_slice_geometry():
    aff = oblique_affine()
    vol = MetaTensor(torch.arange(2 * 4 * 5 * 6, dtype=torch.float32).reshape(2, 4, 5, 6), affine=torch.from_numpy(aff))
    s = extract_slice(vol, axis=2, index=3)
    assert tuple(s.shape) == (2, 4, 5) and torch.equal(s.as_tensor(), vol.as_tensor()[:, :, :, 3])
    # voxel (i, j) of the slice is at world aff @ (i, j, 3)
    world = s.affine.numpy() @ np.array([1.0, 2.0, 0.0, 1.0])
    np.testing.assert_allclose(world, aff @ np.array([1.0, 2.0, 3.0, 1.0]), atol=1e-9)
    assert s.meta["slice_axis"] == 2 and s.meta["slice_index"] == 3
    with pytest.raises(Medi2iInputError, match="out of range"):
        extract_slice(vol, axis=2, index=6)


def test_volume_slices_round_trip(rng):
    vol = torch.from_numpy(rng.normal(size=(2, 3, 4, 5)).astype(np.float32))
    for axis in range(3):
        slices = volume_to_slices(vol, axis)
        assert slices.shape[0] == vol.shape[axis + 1]
        assert torch.equal(slices_to_volume(slices, axis), vol)


def test_rand_axial_slices_only_foreground_and_same_index_for_all_keys():
    img = MetaTensor(torch.arange(4 * 4 * 10, dtype=torch.float32).reshape(1, 4, 4, 10), affine=torch.eye(4))
    mask = torch.zeros(1, 4, 4, 10)
    mask[..., 6:8] = 1
    sampler = RandAxialSliced(["a", "b"], num_samples=20, foreground_key="mask").set_random_state(1)
    out = sampler({"a": img, "b": img * 2, "mask": mask})
    indices = {sample["a"].meta["slice_index"] for sample in out}
    assert indices <= {6, 7} and len(indices) == 2
    for sample in out:
        assert torch.equal(sample["b"].as_tensor(), 2 * sample["a"].as_tensor())
    with pytest.raises(Medi2iInputError, match="no slice has enough foreground"):
        RandAxialSliced(["a"], foreground_key="mask")({"a": img, "mask": torch.zeros(1, 4, 4, 10)})
    with pytest.raises(Medi2iInputError, match="MetaTensor"):
        RandAxialSliced(["a"])({"a": torch.zeros(1, 4, 4, 4)})


def test_model_size_pad_is_exactly_invertible(rng):
    img = MetaTensor(torch.from_numpy(rng.normal(size=(1, 37, 45)).astype(np.float32)))
    t = model_size_transform("image", (64, 48))
    out = t({"image": img})
    assert tuple(out["image"].shape) == (1, 64, 48)
    assert float(out["image"][0, 0, 0]) == -1.0  # padded with the background value
    assert torch.equal(t.inverse(out)["image"].as_tensor(), img.as_tensor())


def test_synthesis_preset_validates_arguments():
    with pytest.raises(ValueError, match="slices_per_volume needs spatial_dims=3"):
        synthesis_preprocessing(spatial_dims=2, slices_per_volume=2)
    with pytest.raises(ValueError, match="source and the target"):
        synthesis_preprocessing(keys=("a",))
    with pytest.raises(ValueError):
        synthesis_preprocessing(source_modality="pet")


def test_inverse_clamps_network_outputs_to_the_window():
    t = CTWindow()
    y = t(MetaTensor(torch.tensor([[0.0, 1000.0]])))
    y = y + torch.tensor([[-5.0, 1.5]])  # a network may overshoot [-1, 1]
    assert t.inverse(y).tolist() == [[-1024.0, 3000.0]]


def test_load_volumed_names_a_missing_key(nifti_factory):
    from medi2i.data.transforms import LoadVolumed

    path = nifti_factory("a.nii.gz", np.ones((3, 4, 5), np.float32))
    with pytest.raises(Medi2iInputError, match="lacks a key") as info:
        LoadVolumed(["source", "mask"])({"source": str(path)})
    assert "mask" in str(info.value)
    out = LoadVolumed(["source", "mask"], allow_missing_keys=True)({"source": str(path)})
    assert tuple(out["source"].shape) == (1, 3, 4, 5) and "mask" not in out
