"""``medi2i stylize``: png and NIfTI round trips (geometry bit-identical), both methods, bad inputs -> exit 2.

Thin random VGG19 (``--random-vgg --vgg-width 0.125``) and a few steps: these are wiring tests, not quality tests.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import medi2i.cli
from tests.conftest import oblique_affine, write_nifti

torch.set_num_threads(1)
FAST = ["--random-vgg", "--vgg-width", "0.125", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _registered(monkeypatch) -> None:
    if "stylize" not in medi2i.cli.SUBCOMMANDS:
        monkeypatch.setitem(medi2i.cli.SUBCOMMANDS, "stylize", "medi2i.cli.stylize")


def write_png(path, array: np.ndarray):
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def photos(tmp_path, rng):
    yy, xx = np.mgrid[0:40, 0:36]
    content = np.stack([xx * 6, yy * 5, ((xx - 18) ** 2 + (yy - 20) ** 2 < 120) * 200], -1).astype(np.uint8)
    style = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    return write_png(tmp_path / "content.png", content), write_png(tmp_path / "style.png", style)


@pytest.mark.parametrize("method", ["nst", "dtp"])
def test_png_round_trip(tmp_path, photos, method, capsys):
    content, style = photos
    out, report = tmp_path / "out" / "styled.png", tmp_path / "report.json"
    extra = ["--optimizer", "adam"] if method == "nst" else []
    argv = ["stylize", "--content", str(content), "--style", str(style), "--output", str(out), "--method", method]
    assert medi2i.cli.main([*argv, "--steps", "2", *extra, *FAST, "--report", str(report)]) == 0
    with Image.open(out) as img, Image.open(content) as ref:
        assert img.size == ref.size and img.mode == ref.mode
        assert not np.array_equal(np.asarray(img), np.asarray(ref))
    summary = json.loads(report.read_text())
    assert summary["stylised"] == 1 and summary["per_image"][0]["method"] == method
    assert -1.0 <= summary["mean_ssim_to_content"] <= 1.0
    assert "wrote" in capsys.readouterr().out


def test_nifti_stack_keeps_geometry_bit_identical(tmp_path, photos):
    rng = np.random.default_rng(0)
    volume = np.zeros((24, 20, 3), np.float32)
    volume[4:20, 3:17, 0] = 100 + 50 * rng.random((16, 14))
    volume[2:22, 2:18, 2] = 300 + 80 * rng.random((20, 16))  # slice 1 stays empty (constant): copied
    affine = oblique_affine()
    content = write_nifti(tmp_path / "content.nii.gz", volume, affine)
    style = write_nifti(tmp_path / "style.nii.gz", (rng.random((20, 20, 5)) * 900 + 100).astype(np.float32), affine)
    out, report = tmp_path / "styled.nii.gz", tmp_path / "r.json"
    argv = ["stylize", "--content", str(content), "--style", str(style), "--output", str(out)]
    assert medi2i.cli.main([*argv, "--optimizer", "adam", "--steps", "2", *FAST, "--report", str(report)]) == 0
    ref, img = nib.load(content), nib.load(out)
    assert img.shape == ref.shape
    assert np.array_equal(img.affine, ref.affine)
    assert np.array_equal(img.get_sform(), ref.get_sform())
    # the qform quaternion is re-encoded by medi2i.io's writer: equal up to float32 quaternion rounding
    assert np.allclose(img.get_qform(), ref.get_qform(), atol=1e-6)
    data = np.asarray(img.dataobj)
    assert np.isfinite(data).all() and data.dtype == np.float32
    assert np.ptp(data[:, :, 1]) == 0  # the constant slice is copied (on the style's intensity scale)
    summary = json.loads(report.read_text())
    assert summary["images"] == 3 and summary["stylised"] == 2
    assert [r.get("style_slice") for r in summary["per_image"]] == [0, None, 4]  # same relative position
    # a png style for a NIfTI content works too (RGB style turned into its luminance)
    out2 = tmp_path / "styled2.nii"
    argv = ["stylize", "--content", str(content), "--style", str(photos[1]), "--output", str(out2), "--method", "dtp"]
    assert medi2i.cli.main([*argv, "--steps", "1", *FAST]) == 0
    assert np.array_equal(nib.load(out2).affine, ref.affine)


def test_bad_inputs_exit_2_before_writing(tmp_path, photos, capsys):
    content, style = photos
    out = tmp_path / "o.png"
    base = ["stylize", "--content", str(content), "--style", str(style)]
    cases = [
        ([*base, "--output", str(tmp_path / "o.nii.gz"), *FAST], "same kind"),
        (
            ["stylize", "--content", str(tmp_path / "missing.png"), "--style", str(style), "--output", str(out)],
            "not found",
        ),
        ([*base, "--output", str(tmp_path / "o.txt"), *FAST], "unsupported image format"),
        ([*base, "--output", str(out), "--steps", "0", *FAST], "steps"),
        ([*base, "--output", str(out), "--method", "dtp", "--optimizer", "adam", *FAST], "NST options"),
        ([*base, "--output", str(out), "--vgg-width", "0.5"], "--random-vgg"),
        ([*base, "--output", str(out), "--vgg-weights", str(tmp_path / "nope.pth"), "--device", "cpu"], "nope.pth"),
    ]
    for argv, needle in cases:
        assert medi2i.cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "medi2i stylize: error:" in err and needle in err, (needle, err)
    tiny = write_png(tmp_path / "tiny.png", np.zeros((8, 8, 3), np.uint8))
    assert medi2i.cli.main(["stylize", "--content", str(tiny), "--style", str(style), "--output", str(out), *FAST]) == 2
    assert "too small" in capsys.readouterr().err
    assert not out.exists()
