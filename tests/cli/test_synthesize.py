"""``medi2i synthesize``: whole-volume translation from the command line."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import medi2i.cli
from medi2i.synthesis import build_method
from medi2i.synthesis.model_files import save_translator, translator_settings
from tests.conftest import oblique_affine, write_nifti


@pytest.fixture(autouse=True)
def _registered(monkeypatch) -> None:
    if "synthesize" not in medi2i.cli.SUBCOMMANDS:
        monkeypatch.setitem(medi2i.cli.SUBCOMMANDS, "synthesize", "medi2i.cli.synthesize")


@pytest.fixture
def bundle(tmp_path):
    # an untrained Bi-DPM samples the identity (MONAI zero-initialises the output conv): a CT -> CT model
    method = build_method({"method": "bidpm", "num_steps": 2, "paired_metric": "l1", "network": {
        "channels": [8, 8], "attention_levels": [False, False], "num_res_blocks": 1, "num_head_channels": 8,
        "norm_num_groups": 8}})  # fmt: skip
    settings = translator_settings(method, model_size=(8, 8), modalities=("ct", "ct"))
    save_translator(tmp_path / "bundle" / "models" / "model.pt", method.network, settings)
    return tmp_path / "bundle"


def test_synthesize_writes_input_geometry(tmp_path, bundle, rng, capsys) -> None:
    ct = rng.uniform(-1000, 2000, size=(6, 7, 4)).astype(np.float32)
    affine = oblique_affine(spacing=(0.8, 1.2, 3.0))
    src = write_nifti(tmp_path / "ct.nii.gz", ct, affine)
    out = tmp_path / "sct.nii.gz"
    argv = ["synthesize", "--bundle", str(bundle), "--input", str(src), "--output", str(out), "--batch-size", "3"]
    assert medi2i.cli.main([*argv, "--direction", "a2b", "--device", "cpu"]) == 0
    img = nib.load(out)
    assert img.shape == ct.shape and np.allclose(img.affine, affine, atol=1e-5)
    assert np.allclose(np.asarray(img.dataobj), ct, atol=1e-2)
    assert "wrote" in capsys.readouterr().out


def test_synthesize_bad_input_exit_2_and_nothing_written(tmp_path, bundle, rng, capsys) -> None:
    vol = rng.uniform(0, 100, size=(4, 4, 3)).astype(np.float32)
    vol[0, 0, 0] = np.nan
    src = write_nifti(tmp_path / "nan.nii.gz", vol, oblique_affine())
    out = tmp_path / "out.nii.gz"
    code = medi2i.cli.main(["synthesize", "--bundle", str(bundle), "--input", str(src), "--output", str(out)])
    assert code == 2 and not out.exists()
    assert "error" in capsys.readouterr().err


def test_synthesize_without_a_trained_model_says_how_to_train(tmp_path, rng, capsys) -> None:
    src = write_nifti(tmp_path / "ct.nii.gz", rng.uniform(0, 100, size=(4, 4, 3)).astype(np.float32), oblique_affine())
    code = medi2i.cli.main(
        ["synthesize", "--bundle", str(tmp_path / "empty"), "--input", str(src), "--output", str(tmp_path / "o.nii.gz")]
    )
    assert code == 2 and "train" in capsys.readouterr().err
