"""``medi2i register`` and the agent files behind it."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

import medi2i.cli
import medi2i.registration.inference as inference
from medi2i.errors import Medi2iInputError
from medi2i.metrics import dice, folding_fraction
from medi2i.registration import RLI2ITAgent, smoke_config
from medi2i.registration.model_files import agent_settings, config_from_settings, load_agent, save_agent
from medi2i.spatial import read_ddf
from tests.conftest import oblique_affine, write_nifti

SHAPE = (40, 24)  # model size 32 x 32: X is centre-cropped by 4 per side, Y padded by 4 per side
AFFINE = oblique_affine(spacing=(0.9, 1.1, 2.0))


@pytest.fixture(autouse=True)
def _registered(monkeypatch) -> None:
    if "register" not in medi2i.cli.SUBCOMMANDS:
        monkeypatch.setitem(medi2i.cli.SUBCOMMANDS, "register", "medi2i.cli.register")


@pytest.fixture
def bundle(tmp_path):
    save_agent(tmp_path / "bundle" / "models" / "model.pt", RLI2ITAgent(smoke_config(), (32, 32)))
    return tmp_path / "bundle"


def _disc(center: tuple[float, float], radius: float) -> np.ndarray:
    x, y = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    return ((x - center[0]) ** 2 + (y - center[1]) ** 2 <= radius**2).astype(np.uint8)


@pytest.fixture
def pair(tmp_path):
    fixed_label = _disc((20, 12), 7) + _disc((20, 12), 3)  # labels 1 (ring) and 2 (core)
    moving_label = _disc((22, 12), 7) + _disc((22, 12), 3)
    paths = {}
    for name, label in (("fixed", fixed_label), ("moving", moving_label)):
        paths[name] = write_nifti(tmp_path / f"{name}.nii.gz", (300.0 * label + 10).astype(np.float32), AFFINE)
        paths[f"{name}_label"] = write_nifti(tmp_path / f"{name}_label.nii.gz", label, AFFINE)
    return paths


def _argv(bundle, pair, out, *extra: str) -> list[str]:
    argv = ["register", "--bundle", str(bundle), "--fixed", str(pair["fixed"]), "--moving", str(pair["moving"])]
    return [*argv, "--out", str(out), "--device", "cpu", *extra]


def _labels(pair) -> list[str]:
    return ["--moving-label", str(pair["moving_label"]), "--fixed-label", str(pair["fixed_label"])]


def test_agent_file_round_trip(tmp_path) -> None:
    config = smoke_config(test_steps=3, reward_label_ids=(1, 2))
    agent = RLI2ITAgent(config, (32, 32))
    assert config_from_settings(json.loads(json.dumps(agent_settings(config, (32, 32))))["config"]) == config
    loaded = load_agent(save_agent(tmp_path / "m.pt", agent), device="cpu")
    assert loaded.config == config and loaded.image_size == (32, 32) and not loaded.training
    for (name, a), (_, b) in zip(agent.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    torch.save({"network": {}}, tmp_path / "other.pt")
    with pytest.raises(Medi2iInputError, match="not a medi2i registration agent file"):
        load_agent(tmp_path / "other.pt")
    with pytest.raises(Medi2iInputError, match="no trained registration model"):
        load_agent(tmp_path / "missing")


def test_register_writes_outputs_on_the_fixed_grid(tmp_path, bundle, pair, capsys) -> None:
    out = tmp_path / "out"
    assert medi2i.cli.main([*_argv(bundle, pair, out, "--steps", "3"), *_labels(pair)]) == 0
    printed = capsys.readouterr().out
    assert "Dice" in printed and "folding" in printed
    ddf_img = nib.load(out / "ddf.nii.gz")
    assert ddf_img.shape == (*SHAPE, 2)  # Learn2Reg layout (X, Y, n)
    for name in ("ddf", "warped", "jacobian", "warped_label"):
        assert np.allclose(nib.load(out / f"{name}.nii.gz").affine, AFFINE, atol=1e-4), name
    assert nib.load(out / "warped.nii.gz").shape == SHAPE
    label_img = nib.load(out / "warped_label.nii.gz")
    assert np.issubdtype(label_img.get_data_dtype(), np.integer)
    warped_label = np.asarray(label_img.dataobj)
    assert set(np.unique(warped_label)) <= {0, 1, 2}
    # the reported Dice is the Dice of the written labels against the fixed labels (re-derived here)
    metrics = json.loads((out / "metrics.json").read_text())
    fixed_label = np.asarray(nib.load(pair["fixed_label"]).dataobj)
    expected = np.mean(list(dice(warped_label, fixed_label).values()))
    assert metrics["dice"] == pytest.approx(expected, abs=1e-9) and metrics["steps"] == 3
    assert f"{expected:.4f}" in printed
    jac = np.asarray(nib.load(out / "jacobian.nii.gz").dataobj)
    assert metrics["folding_fraction"] == pytest.approx(float((jac <= 0).mean()))


def _fake_register(field_fn):
    def fake(agent, fixed, moving, **kwargs):
        ddf = field_fn(fixed)
        return inference.RegistrationResult(ddf, moving, fixed.new_zeros(1, 0), fixed.new_zeros(1, 0), ddf[:0])

    return fake


def test_register_restores_exact_geometry(tmp_path, bundle, pair, monkeypatch, capsys) -> None:
    # a known field at model size: x-displacement = 2 voxels (pull: warped(x) = moving(x + 2))
    def shift(fixed):
        ddf = torch.zeros(1, 2, *fixed.shape[2:])
        ddf[:, 0] = 2.0
        return ddf

    monkeypatch.setattr(inference, "register", _fake_register(shift))
    out = tmp_path / "out"
    assert medi2i.cli.main([*_argv(bundle, pair, out), *_labels(pair)]) == 0
    ddf, _ = read_ddf(out / "ddf.nii.gz")
    assert ddf.shape == (2, *SHAPE)
    # the X crop (4 voxels per side) is undone with the edge displacement, the Y padding is dropped
    assert np.all(ddf[0] == 2.0) and np.all(ddf[1] == 0)
    moving_label = np.asarray(nib.load(pair["moving_label"]).dataobj)
    fixed_label = np.asarray(nib.load(pair["fixed_label"]).dataobj)
    warped_label = np.asarray(nib.load(out / "warped_label.nii.gz").dataobj)
    assert np.array_equal(warped_label[:38], moving_label[2:])  # the 2-voxel shift, exactly
    assert np.array_equal(warped_label, fixed_label)  # which registers the pair
    assert json.loads((out / "metrics.json").read_text())["dice"] == pytest.approx(1.0)
    assert "note" not in capsys.readouterr().err


def test_register_reports_folding_on_stderr(tmp_path, bundle, pair, monkeypatch, capsys) -> None:
    def fold(fixed):  # u_x = -2 x locally: d(x + u)/dx = -1 < 0 everywhere inside
        x = torch.arange(fixed.shape[2], dtype=torch.float32)[:, None].expand(*fixed.shape[2:])
        return torch.stack([-2.0 * (x - x.mean()), torch.zeros_like(x)])[None]

    monkeypatch.setattr(inference, "register", _fake_register(fold))
    out = tmp_path / "out"
    assert medi2i.cli.main(_argv(bundle, pair, out)) == 0
    err = capsys.readouterr().err
    assert "folds" in err and len(err.strip().splitlines()) == 1
    ddf, _ = read_ddf(out / "ddf.nii.gz")
    assert folding_fraction(ddf) > 0
    assert not (out / "warped_label.nii.gz").exists()


def test_register_bad_inputs_exit_2_and_write_nothing(tmp_path, bundle, pair, capsys) -> None:
    shifted = AFFINE.copy()
    shifted[:3, 3] += 5.0
    other_grid = write_nifti(tmp_path / "other.nii.gz", np.zeros(SHAPE, np.float32), shifted)
    volume_3d = write_nifti(tmp_path / "vol3d.nii.gz", np.zeros((*SHAPE, 4), np.float32), AFFINE)
    fractional = write_nifti(tmp_path / "frac.nii.gz", np.full(SHAPE, 0.5, np.float32), AFFINE)
    out = tmp_path / "out"
    cases = [
        _argv(bundle, {**pair, "moving": other_grid}, out),  # moving on another grid
        [*_argv(bundle, pair, out), "--moving-label", str(other_grid)],  # label on another grid
        [*_argv(bundle, pair, out), "--moving-label", str(fractional)],  # labels must be integers
        [*_argv(bundle, pair, out), "--fixed-label", str(pair["fixed_label"])],  # fixed label alone
        _argv(bundle, {**pair, "fixed": volume_3d, "moving": volume_3d}, out),  # 3D images, 2D model
        _argv(tmp_path / "no_bundle", pair, out),  # no trained model
        [*_argv(bundle, pair, out), "--steps", "-1"],
        _argv(bundle, {**pair, "fixed": tmp_path / "missing.nii.gz"}, out),
    ]
    for argv in cases:
        assert medi2i.cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("medi2i register: error:") and len(err.strip().splitlines()) == 1, err
        assert not out.exists(), argv


def test_register_help_lists_the_options(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        medi2i.cli.main(["register", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--fixed", "--moving", "--moving-label", "--fixed-label", "--steps", "--checkpoint", "--out"):
        assert option in text
