"""``medi2i translate``: a tiny CycleGAN model file applied to png images and NIfTI volumes (geometry kept)."""

from __future__ import annotations

import argparse

import nibabel as nib
import numpy as np
import pytest
import torch

from medi2i.cli import translate as translate_cli
from medi2i.errors import Medi2iInputError
from tests.conftest import oblique_affine, write_nifti


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="medi2i")
    translate_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["translate", *argv])


def _model(tmp_path, channels: int, data: dict | None = None):
    from medi2i.natural.cyclegan import CycleGAN
    from medi2i.natural.model_files import save_model

    torch.manual_seed(0)
    method = CycleGAN(in_channels=channels, out_channels=channels, ngf=4, ndf=4, n_blocks=1, n_layers_d=1)
    path = save_model(tmp_path / f"model{channels}.pt", method)
    if data is not None:  # the data record the trainer should store beside the config
        payload = torch.load(path, weights_only=True)
        payload["data"] = data
        torch.save(payload, path)
    return path


def test_nifti_volume_translated_slice_by_slice_with_input_geometry(tmp_path):
    model = _model(tmp_path, 1, {"A": {"kind": "mr"}, "B": {"kind": "ct"}})
    sagittal = np.array([[0, 0, 1.5, -10], [1.2, 0, 0, 5], [0, 1.2, 0, 2], [0, 0, 0, 1]])  # axial axis = 1
    volume = np.random.default_rng(0).uniform(0, 1000, (6, 5, 7)).astype(np.float32)
    src = write_nifti(tmp_path / "t1.nii.gz", volume, sagittal)
    assert (
        translate_cli.run(_parse(["--model", str(model), "--input", str(src), "--output", str(tmp_path / "o.nii.gz")]))
        == 0
    )
    out, ref = nib.load(tmp_path / "o.nii.gz"), nib.load(src)
    assert out.shape == ref.shape and np.array_equal(out.affine, ref.affine)
    hu = np.asarray(out.dataobj)
    assert hu.dtype == np.float32 and hu.min() >= -1024.0 and hu.max() <= 3000.0  # A -> B = MR -> CT in HU

    # the same numbers by hand: MR preset, axial slices along array axis 1, G_A, inverse CT window
    from medi2i.data.intensity import CTWindow
    from medi2i.natural.data.image_io import read_image
    from medi2i.natural.model_files import load_model

    slices, meta = read_image(src, modality="mr")
    assert meta["slice_axis"] == 1 and slices.shape == (5, 1, 6, 7)
    expected = CTWindow().mapping.inverse(load_model(model).translate(slices).clamp(-1, 1))
    assert np.allclose(hu, expected[:, 0].permute(1, 0, 2).numpy(), atol=1e-3)


def test_png_both_directions_and_grey_input_to_rgb_model(tmp_path):
    from PIL import Image

    model = _model(tmp_path, 3)
    rgb = np.random.default_rng(1).integers(0, 256, (18, 22, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    outputs = {}
    for direction in ("AtoB", "BtoA"):
        out = tmp_path / f"{direction}.png"
        args = _parse(["--model", str(model), "--input", str(tmp_path / "in.png"), "--output", str(out),
                       "--direction", direction, "--device", "cpu"])  # fmt: skip
        assert translate_cli.run(args) == 0
        outputs[direction] = np.asarray(Image.open(out))
        assert outputs[direction].shape == (18, 22, 3)  # odd sizes: padded inside, cropped back
    assert not np.array_equal(outputs["AtoB"], outputs["BtoA"])  # two generators
    assert translate_cli.run(_parse(["--model", str(model), "--input", str(tmp_path / "grey.png"),
                                     "--output", str(tmp_path / "g.png")])) == 0  # fmt: skip
    assert np.asarray(Image.open(tmp_path / "g.png")).shape == (18, 22, 3)


def test_bad_inputs_fail_before_writing(tmp_path):
    from PIL import Image

    model = _model(tmp_path, 1)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "in.png")
    before = sorted(p.name for p in tmp_path.iterdir())
    cases = [
        (["--model", str(tmp_path / "none.pt"), "--input", str(tmp_path / "in.png")], "model file not found"),
        (["--model", str(model), "--input", str(tmp_path / "missing.png")], "not found"),
        (["--model", str(model), "--input", str(tmp_path / "in.png"), "--direction", "sideways"], "direction"),
        (["--model", str(model), "--input", str(tmp_path / "in.png"), "--batch-size", "0"], "batch size"),
    ]
    for argv, message in cases:
        with pytest.raises(Medi2iInputError, match=message):
            translate_cli.run(_parse([*argv, "--output", str(tmp_path / "out.png")]))
    with pytest.raises(Medi2iInputError, match="must match the input"):
        translate_cli.run(_parse(["--model", str(model), "--input", str(tmp_path / "in.png"),
                                  "--output", str(tmp_path / "out.nii.gz")]))  # fmt: skip
    torch.save({"data": {"A": {"kind": "xray"}}}, tmp_path / "odd.pt")
    with pytest.raises(Medi2iInputError, match="data record"):
        translate_cli.read_data_record(tmp_path / "odd.pt")
    (tmp_path / "odd.pt").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(SystemExit):  # --bundle and --model are exclusive
        _parse(["--bundle", "b", "--model", "m", "--input", "i.png", "--output", "o.png"])


def test_volume_input_on_oblique_grid_with_mr_output(tmp_path):
    model = _model(tmp_path, 1)  # no data record: NIfTI input is MR, output on the input's MR scale
    volume = np.zeros((5, 6, 4), np.float32)
    volume[1:4, 1:5, :] = np.random.default_rng(2).uniform(100, 900, (3, 4, 4))
    src = write_nifti(tmp_path / "mr.nii", volume, oblique_affine())
    args = _parse(
        ["--model", str(model), "--input", str(src), "--output", str(tmp_path / "o.nii.gz"), "--batch-size", "3"]
    )
    assert translate_cli.run(args) == 0
    out = nib.load(tmp_path / "o.nii.gz")
    assert np.array_equal(out.affine, nib.load(src).affine)
    data = np.asarray(out.dataobj)
    fg = volume[volume > 0]
    lo, hi = np.quantile(fg, [0.005, 0.995])
    assert data.min() >= lo - 1e-3 and data.max() <= hi + 1e-3  # inverse of the input's percentile window


class _LabelPainter(torch.nn.Module):
    """A stand-in label -> image method (SPADE-like call): paints class k with grey level k / 2 - 1."""

    config = {"out_channels": 1}

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def translate(self, label):
        self.seen.append(tuple(label.shape))
        assert label.dtype == torch.int64
        return label.float() / 2.0 - 1.0


def test_label_inputs_resized_to_the_model_size_and_back(tmp_path):
    from PIL import Image

    labels = np.zeros((20, 24), np.uint8)
    labels[:, 12:] = 2
    labels[5:15, 3:9] = 4
    Image.fromarray(labels).save(tmp_path / "labels.png")
    painter = _LabelPainter()
    data = {"A": {"kind": "label", "size": [16, 16]}, "B": {"kind": "photo"}}
    translate_cli.translate_file(painter, tmp_path / "labels.png", tmp_path / "img.png", data=data)
    assert painter.seen == [(1, 1, 16, 16)]  # nearest-resized class ids, int64
    out = np.asarray(Image.open(tmp_path / "img.png")).astype(float)
    assert out.shape == (20, 24)
    expected = (labels / 2.0 - 1.0 + 1.0) * 127.5
    assert np.median(np.abs(out - expected)) < 2.0  # interior pixels keep their class's grey level


def test_swapping_autoencoder_takes_the_exemplar_as_texture(tmp_path):
    from PIL import Image

    from medi2i.natural.model_files import save_model
    from medi2i.natural.sae import SwappingAutoencoder

    tiny = dict(
        in_channels=3, image_size=32, encoder_channels=(16, 32, 64), structure_channels=4,
        texture_channels=(128, 128), texture_dim=32, generator_base_channels=(64,), generator_up_channels=(32, 16),
        discriminator_channels=(16, 32, 64, 64), patch_size=16, patch_channels=(16, 32, 64),
        patch_hidden=(256, 256), patch_num_crops=4,
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path / "models" / "sae"  # a folder holding model.pt is accepted like a bundle folder
    save_model(folder / "model.pt", SwappingAutoencoder(**tiny), data={"A": {"kind": "photo", "size": [32, 32]}})
    rng = np.random.default_rng(0)
    for name in ("in", "style_a", "style_b"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    outputs = []
    for style in ("style_a", "style_b"):
        out = tmp_path / f"out_{style}.png"
        argv = ["--bundle", str(folder), "--input", str(tmp_path / "in.png"), "--output", str(out)]
        assert translate_cli.run(_parse([*argv, "--exemplar", str(tmp_path / f"{style}.png")])) == 0
        outputs.append(np.asarray(Image.open(out)).astype(int))
    assert outputs[0].shape == (32, 32, 3) and np.abs(outputs[0] - outputs[1]).max() > 0  # texture follows the exemplar
