"""Whole-volume translation: geometry, orientation, normalisation round trip, masks, bad input."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from medi2i.errors import Medi2iInputError
from medi2i.synthesis.model_files import Translator
from medi2i.synthesis.volume import ManifestTranslator, synthesize_file, translate_volume
from tests.conftest import oblique_affine, write_nifti


class _SliceMethod(torch.nn.Module):
    """Stands in for a trained method: identity, or a flip of each slice's last in-plane axis."""

    def __init__(self, flip: bool = False):
        super().__init__()
        self.network = torch.nn.Conv2d(1, 1, 1)
        self.flip = flip
        self.calls: list[tuple[int, ...]] = []

    def sample(self, x: torch.Tensor, direction: str, *, num_steps: int | None = None) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        return torch.flip(x, dims=(-1,)) if self.flip else x.clone()


def _translator(size, modalities=("ct", "ct"), flip=False, fit_mode="pad_crop") -> Translator:
    settings = {"model_size": list(size), "fit_mode": fit_mode, "modalities": dict(zip("ab", modalities, strict=True))}
    return Translator(_SliceMethod(flip), settings)


def _ct(shape, rng) -> np.ndarray:
    return rng.uniform(-1000.0, 2900.0, size=shape).astype(np.float32)


def test_identity_round_trip_keeps_geometry_and_hu(tmp_path, rng) -> None:
    affine = oblique_affine(spacing=(0.9, 1.1, 2.5), angle_deg=17.0)
    ct = _ct((7, 9, 5), rng)
    src = write_nifti(tmp_path / "ct.nii.gz", ct, affine)
    out = synthesize_file(_translator((12, 12)), src, tmp_path / "out.nii.gz", "a2b", batch_size=2)
    img = nib.load(out)
    assert img.shape == ct.shape
    assert np.allclose(img.affine, affine, atol=1e-5)
    assert img.get_data_dtype() == np.float32
    assert np.allclose(np.asarray(img.dataobj), ct, atol=1e-2)  # window inverse within float32 rounding


def test_slices_along_the_axial_axis_of_the_affine(tmp_path, rng) -> None:
    # stored sagittally: array axis 0 is superior-inferior, so slices are (Y, Z) planes
    perm = np.zeros((4, 4))
    perm[2, 0] = perm[0, 1] = perm[1, 2] = perm[3, 3] = 1.0
    ct = _ct((6, 8, 10), rng)
    src = write_nifti(tmp_path / "ct.nii.gz", ct, oblique_affine() @ perm)
    translator = _translator((8, 10), flip=True)
    array, _ = translate_volume(translator, src, "a2b", batch_size=4)
    assert translator.method.calls == [(4, 1, 8, 10), (2, 1, 8, 10)]
    assert np.allclose(array, np.flip(ct, axis=2), atol=1e-2)  # flipped along the slice's last axis (Z)


def test_mask_sets_target_background(tmp_path, rng) -> None:
    ct = _ct((6, 6, 4), rng)
    mask = np.zeros(ct.shape, dtype=np.uint8)
    mask[1:5, 1:5] = 1
    src = write_nifti(tmp_path / "ct.nii.gz", ct, oblique_affine())
    msk = write_nifti(tmp_path / "mask.nii.gz", mask, oblique_affine())
    array, _ = translate_volume(_translator((6, 6)), src, "a2b", mask=msk)
    assert np.all(array[mask == 0] == -1024.0)
    assert np.allclose(array[mask == 1], ct[mask == 1], atol=1e-2)
    mr_array, _ = translate_volume(_translator((6, 6), ("ct", "mr")), src, "a2b", mask=msk)
    assert np.all(mr_array[mask == 0] == 0.0)


def test_mr_to_mr_uses_the_source_window(tmp_path, rng) -> None:
    mr = rng.uniform(100.0, 900.0, size=(6, 6, 5)).astype(np.float32)
    src = write_nifti(tmp_path / "mr.nii.gz", mr, oblique_affine())
    array, _ = translate_volume(_translator((6, 6), ("mr", "mr")), src, "b2a")
    lo, hi = np.quantile(mr, [0.005, 0.995])
    assert np.allclose(array, np.clip(mr, lo, hi), rtol=1e-4, atol=1e-2)


def test_bad_inputs_raise_before_writing(tmp_path, rng) -> None:
    out = tmp_path / "out.nii.gz"
    nan = _ct((4, 4, 3), rng)
    nan[1, 1, 1] = np.nan
    bad = write_nifti(tmp_path / "nan.nii.gz", nan, oblique_affine())
    four_d = write_nifti(tmp_path / "4d.nii.gz", _ct((4, 4, 3, 2), rng), oblique_affine())
    good = write_nifti(tmp_path / "ct.nii.gz", _ct((4, 4, 3), rng), oblique_affine())
    mask = write_nifti(tmp_path / "m.nii.gz", np.ones((4, 4, 4), np.uint8), oblique_affine())
    translator = _translator((4, 4))
    for kwargs in ({"input_path": bad}, {"input_path": four_d}, {"input_path": good, "mask": mask}):
        with pytest.raises(Medi2iInputError):
            synthesize_file(translator, output_path=out, direction="a2b", **kwargs)
        assert not out.exists()
    with pytest.raises(Medi2iInputError, match="direction"):
        synthesize_file(translator, good, out, "x2y")


def test_manifest_translator_writes_subject_files(tmp_path, rng) -> None:
    rows = []
    for k in range(2):
        ct = write_nifti(tmp_path / f"ct{k}.nii.gz", _ct((5, 5, 3), rng), oblique_affine(origin=(k, 0.0, 0.0)))
        rows.append({"subject_id": f"sub-{k}", "source": str(ct), "target": str(ct)})
    rows.append({"subject_id": "sub-bad", "source": str(tmp_path / "missing.nii.gz"), "target": ""})
    with pytest.raises(Medi2iInputError):
        ManifestTranslator(_translator((5, 5)), rows, tmp_path / "pred").run()
    assert not (tmp_path / "pred").exists()  # nothing written when one row is bad
    written = ManifestTranslator(_translator((5, 5)), rows[:2], tmp_path / "pred").run()
    assert [p.name for p in written] == ["sub-0.nii.gz", "sub-1.nii.gz"]
    assert np.allclose(nib.load(written[1]).affine, oblique_affine(origin=(1, 0.0, 0.0)), atol=1e-5)
