"""Gallery figures of the natural-image methods (medi2i.viz.gallery): panels, ranges, errors, PNG/HTML, model lookup."""

from __future__ import annotations

import base64
import re

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from medi2i.errors import Medi2iInputError  # noqa: E402
from medi2i.viz import gallery  # noqa: E402
from medi2i.viz.gallery import (  # noqa: E402
    MODELS_ENV,
    display_image,
    gallery_figure,
    image_axes,
    load_or_train,
    row_headings,
    save_figure,
    trained_model_path,
    write_gallery_index,
)


def _ramp(channels: int, size: int = 8) -> torch.Tensor:
    """(C, size, size) with values from -1.5 to 1.5 along the width (so clipping is visible)."""
    row = torch.linspace(-1.5, 1.5, size)
    return row.expand(channels, size, size).clone()


def _data(ax) -> np.ndarray:
    return np.asarray(ax.get_images()[0].get_array())


# --------------------------------------------------------------------------------------------- display_image
def test_display_image_maps_minus_one_one_to_unit_range_and_clips():
    grey, kind = display_image(torch.tensor([[[-1.0, -0.5, 0.0, 1.0, 3.0, -7.0]]]))
    assert kind == "grey" and grey.shape == (1, 6)
    np.testing.assert_allclose(grey[0], [0.0, 0.25, 0.5, 1.0, 1.0, 0.0])
    rgb, kind = display_image(torch.stack([torch.full((2, 3), v) for v in (-1.0, 0.0, 1.0)])[None])  # (1, 3, H, W)
    assert kind == "rgb" and rgb.shape == (2, 3, 3)
    np.testing.assert_allclose(rgb[0, 0], [0.0, 0.5, 1.0])
    half, _ = display_image(torch.tensor([[-1.0, 1.0]], dtype=torch.bfloat16))  # no numpy bfloat16: converted
    np.testing.assert_allclose(half[0], [0.0, 1.0])
    # another value range, and numpy input
    custom, _ = display_image(np.array([[0.0, 127.5, 255.0]], dtype=np.float32), value_range=(0, 255))
    np.testing.assert_allclose(custom[0], [0.0, 0.5, 1.0])


def test_display_image_label_maps_keep_class_ids():
    label = torch.tensor([[[0, 1], [5, 2]]], dtype=torch.int64)  # (1, H, W) like the data contract
    array, kind = display_image(label)
    assert kind == "label" and array.dtype == np.int64 and array.tolist() == [[0, 1], [5, 2]]
    mask, kind = display_image(np.array([[True, False]]))
    assert kind == "label" and mask.tolist() == [[1, 0]]


@pytest.mark.parametrize(
    "shape", [(2, 3, 8, 8), (2, 8, 8), (4, 8, 8), (8,), (1, 1, 1, 8, 8), (1, 2, 8, 8)], ids=lambda s: str(s)
)
def test_display_image_rejects_bad_shapes_clearly(shape):
    with pytest.raises(Medi2iInputError, match=r"not a single image.*found \(") as err:
        display_image(torch.zeros(shape), field="CUT: output")
    assert "CUT: output" in str(err.value) and "C = 1 or 3" in str(err.value)


def test_display_image_rejects_other_bad_input():
    with pytest.raises(Medi2iInputError, match="non-finite"):
        display_image(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(Medi2iInputError, match="label map must have one channel"):
        display_image(torch.zeros(3, 4, 4, dtype=torch.int64))
    with pytest.raises(Medi2iInputError, match="empty image"):
        display_image(torch.zeros(1, 0, 4))
    with pytest.raises(Medi2iInputError, match="image tensor or array"):
        display_image([[0.0, 1.0]])
    with pytest.raises(ValueError, match="value_range"):
        display_image(torch.zeros(4, 4), value_range=(1, 1))


# --------------------------------------------------------------------------------------------- gallery_figure
def test_gallery_figure_panels_titles_and_headings_for_rgb_grey_and_labels():
    rgb, grey = _ramp(3), _ramp(1)
    label = torch.arange(4).repeat_interleave(16).reshape(1, 8, 8)
    rows = {
        "CUT [tiny]": {"input": rgb, "output": grey},
        "SPADE [tiny]": {"input": label, "output": grey[0].numpy(), "reference": None},
        "RABIT [tiny]": {"input": label, "exemplar": grey, "reference": rgb},
    }
    fig = gallery_figure(rows, title="smoke-level outputs, not quality results")
    axes = image_axes(fig)
    assert row_headings(fig) == ["CUT [tiny]", "SPADE [tiny]", "RABIT [tiny]"]
    # columns: union of the row keys in first-seen order (input, output, reference, exemplar); blank cells (None or
    # missing) get no panel; the rest are titled with their column, row by row
    assert [ax.get_title() for ax in axes] == ["input", "output", "input", "output", "input", "reference", "exemplar"]
    assert "not quality results" in fig._suptitle.get_text()
    assert all(not ax.get_xticks().size and not ax.get_yticks().size for ax in axes)
    # panels of one column share an x position, rows go down the figure
    x = {ax.get_title(): round(ax.get_position().x0, 4) for ax in axes[:2]}
    assert round(axes[2].get_position().x0, 4) == x["input"] and round(axes[3].get_position().x0, 4) == x["output"]
    assert axes[0].get_position().y0 > axes[2].get_position().y0 > axes[4].get_position().y0
    # RGB: (H, W, 3) in [0, 1] with [-1, 1] mapped and clipped; grey: gray map fixed at [0, 1]
    rgb_shown = _data(axes[0])
    assert rgb_shown.shape == (8, 8, 3) and rgb_shown.min() == 0.0 and rgb_shown.max() == 1.0
    np.testing.assert_allclose(rgb_shown[0, :, 0], np.clip((np.linspace(-1.5, 1.5, 8) + 1) / 2, 0, 1), atol=1e-6)
    grey_img = axes[1].get_images()[0]
    assert grey_img.get_cmap().name == "gray" and grey_img.get_clim() == (0.0, 1.0)
    assert _data(axes[1]).shape == (8, 8)
    # label maps: class ids, categorical colours with one fixed colour per class
    label_img = axes[2].get_images()[0]
    assert label_img.get_cmap().name == "tab10" and label_img.get_clim() == (-0.5, 3.5)
    assert _data(axes[2]).dtype == np.int64 and int(_data(axes[2]).max()) == 3


def test_gallery_figure_column_order_notes_and_num_classes():
    x = _ramp(1)
    fig = gallery_figure(
        {"a": {"output": x, "input": x}, "b": {"exemplar": x}},
        columns=["input", "exemplar", "output"],
        notes={"a": "SSIM to content 0.93"},
        num_classes=12,
    )
    axes = image_axes(fig)
    assert [ax.get_title() for ax in axes] == ["input", "output", "exemplar"]
    assert axes[0].get_position().x0 < axes[2].get_position().x0 < axes[1].get_position().x0
    assert axes[0].get_xlabel() == "SSIM to content 0.93" and axes[1].get_xlabel() == ""
    with pytest.raises(ValueError, match="does not list the row keys"):
        gallery_figure({"a": {"input": x, "output": x}}, columns=["input"])
    label = torch.zeros(1, 4, 4, dtype=torch.int64)
    assert image_axes(gallery_figure({"a": {"l": label}}, num_classes=12))[0].get_images()[0].get_cmap().name == "tab20"


def test_class_legend_colours_match_the_label_panels():
    label = torch.tensor([[[0, 1, 2], [3, 4, 5]]])
    names = ("background", "csf", "gray_matter", "white_matter", "bone", "scalp")
    fig = gallery_figure({"SPADE": {"label map": label, "output": _ramp(1)}}, class_names=names)
    image = image_axes(fig)[0].get_images()[0]
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [f"{k} {n}" for k, n in enumerate(names)]
    for k, patch in enumerate(legend.get_patches()):
        np.testing.assert_allclose(patch.get_facecolor(), image.to_rgba(np.array([k]))[0])
    assert len({tuple(p.get_facecolor()) for p in legend.get_patches()}) == len(names)  # distinct colours


def test_gallery_figure_rejects_bad_input_before_drawing():
    with pytest.raises(Medi2iInputError, match=r"CUT: output: not a single image"):
        gallery_figure({"CUT": {"input": _ramp(3), "output": torch.zeros(2, 3, 8, 8)}})
    with pytest.raises(ValueError, match="at least one row"):
        gallery_figure({})
    with pytest.raises(ValueError, match="no images"):
        gallery_figure({"a": {"input": None}})
    with pytest.raises(ValueError, match="panel_size"):
        gallery_figure({"a": {"input": _ramp(1)}}, panel_size=0)


def test_long_titles_are_wrapped_inside_the_figure():
    fig = gallery_figure({"a": {"input": _ramp(1)}}, title="word " * 40)
    assert fig._suptitle.get_text().count("\n") >= 2


def test_gallery_png_is_written(tmp_path):
    fig = gallery_figure({"CycleGAN": {"T1w": _ramp(1), "T2w": -_ramp(1)}, "CUT": {"T1w": _ramp(3)}}, panel_size=1.5)
    path = save_figure(fig, tmp_path / "sub" / "gallery.png", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    width, height = fig.get_size_inches() * 50
    assert image.shape[:2] == (round(height), round(width)) and image.shape[2] in (3, 4)
    assert image[..., :3].std() > 0.05  # something was drawn


# --------------------------------------------------------------------------------------------- index page
def test_gallery_index_is_self_contained(tmp_path):
    png = save_figure(gallery_figure({"a": {"input": _ramp(3)}}), tmp_path / "a.png")
    index = write_gallery_index(tmp_path / "out", [("1. CUT", png, "SMOKE-LEVEL <tiny>")], intro="about")
    text = index.read_text()
    assert index.name == "index.html" and "1. CUT" in text and "SMOKE-LEVEL &lt;tiny&gt;" in text
    encoded = re.search(r'src="data:image/png;base64,([^"]+)"', text).group(1)
    assert base64.b64decode(encoded) == png.read_bytes()
    assert "http" not in text and "a.png" not in text  # no link to anything outside the page
    with pytest.raises(Medi2iInputError, match="gallery figure not found"):
        write_gallery_index(tmp_path / "other", [("x", tmp_path / "missing.png", "")])
    assert not (tmp_path / "other").exists()


# --------------------------------------------------------------------------------------------- trained or tiny
def _unpaired(n: int = 4, size: int = 16) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"A": torch.rand(1, size, size, generator=g) * 2 - 1, "B": torch.rand(1, size, size, generator=g) * 2 - 1}
            for _ in range(n)]  # fmt: skip


TINY = dict(in_channels=1, out_channels=1, ngf=4, n_blocks=1, n_downsampling=1, ndf=4, n_layers_d=2)


@pytest.fixture
def no_models(tmp_path, monkeypatch):
    monkeypatch.delenv(MODELS_ENV, raising=False)
    monkeypatch.setattr(gallery, "_repo_bundle_models", lambda: tmp_path / "no_bundle_models")
    return tmp_path


def test_trained_model_path_lookup_order(no_models, monkeypatch):
    assert trained_model_path("cyclegan") is None
    env, extra = no_models / "env", no_models / "extra"
    (env / "cyclegan").mkdir(parents=True)
    (env / "cyclegan" / "model.pt").write_bytes(b"x")
    (env / "cut.pt").write_bytes(b"x")
    monkeypatch.setenv(MODELS_ENV, str(env))
    assert trained_model_path("cyclegan") == env / "cyclegan" / "model.pt"
    assert trained_model_path("cut") == env / "cut.pt"
    (extra / "cyclegan").mkdir(parents=True)
    (extra / "cyclegan" / "model.pt").write_bytes(b"x")
    assert trained_model_path("cyclegan", models_dir=extra) == extra / "cyclegan" / "model.pt"  # explicit wins
    assert trained_model_path("sae") is None


def test_load_or_train_trains_a_tiny_labelled_model_without_a_file(no_models):
    result = load_or_train("cyclegan", TINY, _unpaired(), iterations=2, seed=3)
    assert not result.trained and result.label == "CycleGAN [tiny smoke model, 2 it]"
    assert "SMOKE-LEVEL" in result.provenance and "no trained model file" in result.provenance
    assert not result.method.training
    # seeded: the same call gives the same weights, another seed other weights
    again = load_or_train("cyclegan", TINY, _unpaired(), iterations=2, seed=3)
    other = load_or_train("cyclegan", TINY, _unpaired(), iterations=2, seed=4)
    w = [m.method.G_A.state_dict() for m in (result, again, other)]
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    assert not all(torch.equal(w[0][k], w[2][k]) for k in w[0])
    with pytest.raises(ValueError, match="iterations"):
        load_or_train("cyclegan", TINY, _unpaired(), iterations=0)


def test_load_or_train_uses_a_fitting_model_file_and_skips_others(no_models):
    from medi2i.natural.cyclegan import CycleGAN
    from medi2i.natural.model_files import save_model

    models = no_models / "models"
    trained = CycleGAN(**{**TINY, "ngf": 6}, seed=7)  # a different width: the file's config is what counts
    save_model(models / "cyclegan" / "model.pt", trained, data={"A": {"kind": "mr"}, "B": {"kind": "mr"}})
    loaded = load_or_train("cyclegan", TINY, _unpaired(), iterations=1, kinds={"A": "mr"}, models_dir=models)
    assert loaded.trained and loaded.label == "CycleGAN [trained model]" and "model.pt" in loaded.provenance
    ref = trained.G_A.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.method.G_A.state_dict().items())

    # a file whose domains do not fit the gallery's data is not used (and the provenance says why)
    photo = load_or_train("cyclegan", TINY, _unpaired(), iterations=1, kinds={"A": "photo"}, models_dir=models)
    assert not photo.trained and "does not fit" in photo.provenance and "'mr'" in photo.provenance
    # nor one recorded at another image size
    save_model(models / "cyclegan" / "model.pt", trained, data={"A": {"kind": "mr", "size": [128, 128]}})
    small = load_or_train("cyclegan", TINY, _unpaired(), iterations=1, size=(16, 16), models_dir=models)
    assert not small.trained and "trained at 128x128 px, the gallery shows 16x16 px" in small.provenance
    assert load_or_train("cyclegan", TINY, _unpaired(), iterations=1, size=(128, 128), models_dir=models).trained
    rgb = CycleGAN(**{**TINY, "in_channels": 3, "out_channels": 3})
    save_model(models / "cyclegan" / "model.pt", rgb)
    grey = load_or_train("cyclegan", TINY, _unpaired(), iterations=1, models_dir=models)
    assert not grey.trained and "in_channels=3" in grey.provenance
