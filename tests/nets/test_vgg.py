"""Tests for medi2i.nets.vgg: layer table, both weight layouts and their preprocessing, errors, random init."""

from __future__ import annotations

import logging

import pytest
import torch

from medi2i.errors import Medi2iInputError
from medi2i.nets.vgg import (
    CAFFE_MEAN_BGR,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGGFeatures,
    WeightLayout,
    convert_vgg_state_dict,
    vgg_layer_names,
)
from medi2i.weights import WEIGHTS_ENV

SHALLOW = ("relu1_1", "relu1_2", "relu2_2")  # enough depth for layout tests, fast at full width


@pytest.fixture(autouse=True)
def _empty_weights_dir(monkeypatch, tmp_path):
    """No test may find real weights by accident: point the weights folder at an empty directory."""
    empty = tmp_path / "no_weights"
    empty.mkdir()
    monkeypatch.setenv(WEIGHTS_ENV, str(empty))


def random_vgg(arch="vgg16", layers=SHALLOW, **kwargs) -> VGGFeatures:
    return VGGFeatures(arch, layers, pretrained=False, **kwargs)


def to_caffe(tv_state: dict[str, torch.Tensor], arch: str = "vgg16") -> dict[str, torch.Tensor]:
    """Convert torchvision-layout weights to the caffe layout *computing the same function*.

    Documented preprocessing: torchvision sees (x01 - mean) / std in RGB; caffe sees 255 * x01 - mean_bgr
    in BGR. So the first conv gets its input channels reversed, divided by 255 * std, and a bias that
    absorbs the difference of the two mean offsets. Exact away from the zero-padded border.
    """
    names = {}
    index = 0
    for block, n in enumerate({"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}[arch], start=1):
        for i in range(1, n + 1):
            names[index] = f"conv{block}_{i}"
            index += 2
        index += 1
    out = {}
    for key, value in tv_state.items():
        _, idx, kind = key.split(".")
        out[f"{names[int(idx)]}.{kind}"] = value.clone()
    w = tv_state["features.0.weight"].double()
    b = tv_state["features.0.bias"].double()
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    caffe_mean = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64)
    w_bgr = (w / (255.0 * std).view(1, 3, 1, 1)).flip(1)
    bias = (
        b
        + (w_bgr * caffe_mean.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
        - (w * (mean / std).view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
    )
    out["conv1_1.weight"] = w_bgr.float()
    out["conv1_1.bias"] = bias.float()
    return out


# ---------------------------------------------------------------------------------------------------- layer table

_TABLE = {
    "vgg16": {"relu1_2": 64, "relu2_2": 128, "relu3_3": 256, "relu4_3": 512, "relu5_3": 512, "pool5": 512},
    "vgg19": {"relu1_2": 64, "relu2_2": 128, "relu3_4": 256, "relu4_2": 512, "relu5_4": 512, "pool5": 512},
}
_SIZE = {"relu1": 32, "relu2": 16, "relu3": 8, "relu4": 4, "relu5": 2, "pool5": 1}


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
@pytest.mark.parametrize("batch", [1, 2])
def test_layer_table_full_width(arch, batch):
    layers = tuple(_TABLE[arch])
    net = random_vgg(arch, layers)
    feats = net(torch.rand(batch, 3, 32, 32) * 2 - 1)
    assert list(feats) == list(layers)
    for name, f in feats.items():
        side = _SIZE[name[:5]]
        assert tuple(f.shape) == (batch, _TABLE[arch][name], side, side), name
    assert net.feature_channels == _TABLE[arch]


def test_layer_names_counts():
    assert len(vgg_layer_names("vgg16")) == 13 * 2 + 5
    assert len(vgg_layer_names("vgg19")) == 16 * 2 + 5
    assert "relu3_4" in vgg_layer_names("vgg19") and "relu3_4" not in vgg_layer_names("vgg16")


def test_reduced_width_and_avg_pooling():
    net = random_vgg("vgg19", ("conv1_1", "relu3_4", "relu5_4"), width=0.125, pooling="avg")
    feats = net(torch.zeros(1, 3, 32, 32))
    assert [tuple(f.shape) for f in feats.values()] == [(1, 8, 32, 32), (1, 32, 8, 8), (1, 64, 2, 2)]
    assert isinstance(net.features[4], torch.nn.AvgPool2d)
    params = sum(p.numel() for p in random_vgg("vgg19", ("relu5_4",), width=0.125).parameters())
    assert params < 400_000  # about 0.31 M at 1/8 width (digest 0.1)


def test_conv_output_survives_relu():
    net = random_vgg("vgg16", ("conv1_1", "relu1_1"))
    feats = net(torch.rand(1, 3, 16, 16))
    assert (feats["conv1_1"] < 0).any()
    torch.testing.assert_close(feats["relu1_1"], feats["conv1_1"].clamp_min(0))


def test_frozen_by_default_and_trainable_on_request():
    net = random_vgg()
    assert not net.training
    assert all(not p.requires_grad for p in net.parameters())
    trainable = random_vgg(requires_grad=True)
    assert all(p.requires_grad for p in trainable.parameters())
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    net(x)["relu2_2"].sum().backward()
    assert x.grad is not None  # frozen weights still pass gradients to the image (perceptual losses)


def test_seeded_random_init(caplog):
    with caplog.at_level(logging.WARNING, logger="medi2i.nets.vgg"):
        a = random_vgg(seed=1)
    assert any("pretrained=False" in r.getMessage() and "random weights" in r.getMessage() for r in caplog.records)
    b = random_vgg(seed=1)
    c = random_vgg(seed=2)
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    assert torch.count_nonzero(a.features[0].bias) == 0
    # Kaiming normal, fan_out, relu: std = sqrt(2 / (out_channels * 9)) for the 3x3 convs
    w = random_vgg("vgg16", ("relu2_2",)).features[7].weight
    assert abs(float(w.std()) - (2.0 / (128 * 9)) ** 0.5) < 0.005


# ---------------------------------------------------------------------------------------------------- preprocessing


def test_single_channel_is_repeated():
    net = random_vgg(in_channels=1)
    ref = random_vgg(in_channels=3)
    grey = torch.rand(2, 1, 16, 16) * 2 - 1
    a = net(grey)
    b = ref(grey.repeat(1, 3, 1, 1))
    for name in SHALLOW:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_input_ranges_agree():
    net11 = random_vgg(input_range="[-1,1]")
    net01 = random_vgg(input_range="[0,1]")
    x01 = torch.rand(1, 3, 16, 16)
    for name in SHALLOW:
        torch.testing.assert_close(net11(2 * x01 - 1)[name], net01(x01)[name], atol=1e-5, rtol=1e-5)


def test_preprocessing_values_per_layout(tmp_path):
    pixel = torch.tensor([1.0, -1.0, 0.0]).view(1, 3, 1, 1)  # RGB in [-1,1] -> (1, 0, 0.5) in [0,1]
    tv = random_vgg()
    expected_tv = [(1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], (0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1],
                   (0.5 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]]  # fmt: skip
    torch.testing.assert_close(tv.preprocess(pixel).flatten(), torch.tensor(expected_tv))
    torch.save(to_caffe(tv.state_dict()), tmp_path / "caffe.pth")
    caffe = VGGFeatures("vgg16", SHALLOW, weights_path=tmp_path / "caffe.pth")
    assert caffe.layout == WeightLayout.CAFFE
    expected_caffe = [0.5 * 255 - CAFFE_MEAN_BGR[0], 0 * 255 - CAFFE_MEAN_BGR[1], 1 * 255 - CAFFE_MEAN_BGR[2]]  # BGR
    torch.testing.assert_close(caffe.preprocess(pixel).flatten(), torch.tensor(expected_caffe))


# ---------------------------------------------------------------------------------------------------- loading


def test_torchvision_layout_round_trip(tmp_path):
    source = random_vgg(seed=7)
    state = dict(source.state_dict())
    assert sorted(state) == sorted(f"features.{i}.{k}" for i in (0, 2, 5, 7) for k in ("weight", "bias"))
    state["classifier.0.weight"] = torch.zeros(4, 4)  # classifier keys are ignored
    torch.save(state, tmp_path / "vgg16-397923af.pth")
    loaded = VGGFeatures("vgg16", SHALLOW, weights_path=tmp_path / "vgg16-397923af.pth")
    assert loaded.layout == WeightLayout.TORCHVISION
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.rand(2, 3, 20, 20) * 2 - 1
    for name in SHALLOW:
        assert torch.equal(loaded(x)[name], source(x)[name])


def test_default_file_from_weights_dir(monkeypatch, tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    torch.save(random_vgg("vgg19", ("relu1_1",)).state_dict(), folder / "vgg19-dcbb9e9d.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(folder))
    net = VGGFeatures("vgg19", ("relu1_1",))
    assert net.layout == WeightLayout.TORCHVISION


def test_caffe_layout_detected_and_same_function(tmp_path):
    """Caffe weights = BGR/255-scaled/bias-shifted torchvision weights give the same features (interior)."""
    tv = random_vgg(seed=3)
    torch.save(to_caffe(tv.state_dict()), tmp_path / "vgg16_conv.pth")
    caffe = VGGFeatures("vgg16", SHALLOW, weights_path=tmp_path / "vgg16_conv.pth")
    assert caffe.layout == WeightLayout.CAFFE
    x = torch.rand(2, 3, 24, 24) * 2 - 1
    a, b = tv(x), caffe(x)
    torch.testing.assert_close(a["relu1_1"][..., 1:-1, 1:-1], b["relu1_1"][..., 1:-1, 1:-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a["relu1_2"][..., 2:-2, 2:-2], b["relu1_2"][..., 2:-2, 2:-2], atol=1e-5, rtol=1e-5)
    # The zero-padded border differs (measured max 4e-3 vs 5e-7 inside: zero padding is a slightly different
    # colour in the two conventions), so the match above tests the preprocessing math, not one shared code path.
    assert (a["relu1_1"] - b["relu1_1"]).abs().max() > 1e-3
    # feeding caffe weights the torchvision-normalised input (a wrong convention) is far off (measured 0.18)
    wrong = caffe.forward_preprocessed(tv.preprocess(x))["relu1_2"]
    assert (wrong - a["relu1_2"]).abs().mean() > 0.05


def test_missing_file_error_text(tmp_path):
    with pytest.raises(Medi2iInputError) as info:
        VGGFeatures("vgg19", SHALLOW)  # pretrained=True is the default: never silently random
    text = str(info.value)
    assert "vgg19-dcbb9e9d.pth" in text and WEIGHTS_ENV in text and str(tmp_path / "no_weights") in text
    assert "download.pytorch.org" in text


def test_corrupt_file_error(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"\x00" * 100)
    with pytest.raises(Medi2iInputError, match="bad.pth: cannot read the weights file"):
        VGGFeatures("vgg16", SHALLOW, weights_path=tmp_path / "bad.pth")


def test_wrong_architecture_names_the_key(tmp_path):
    vgg19_state = random_vgg("vgg19", ("relu3_4",)).state_dict()
    torch.save(vgg19_state, tmp_path / "v19.pth")
    with pytest.raises(Medi2iInputError, match=r"v19.pth: features.16.weight: key has no convolution in vgg16"):
        VGGFeatures("vgg16", SHALLOW, weights_path=tmp_path / "v19.pth")
    torch.save(to_caffe(vgg19_state, "vgg19"), tmp_path / "v19c.pth")
    with pytest.raises(Medi2iInputError, match=r"conv3_4.weight: key has no convolution in vgg16"):
        VGGFeatures("vgg16", SHALLOW, weights_path=tmp_path / "v19c.pth")


def test_wrong_shape_names_the_key(tmp_path):
    thin = random_vgg(width=0.5).state_dict()
    torch.save(thin, tmp_path / "thin.pth")
    with pytest.raises(Medi2iInputError, match=r"features.0.weight: wrong shape for vgg16 \(found \(32, 3, 3, 3\)"):
        VGGFeatures("vgg16", SHALLOW, weights_path=tmp_path / "thin.pth")


def test_missing_conv_tensors_name_the_key(tmp_path):
    torch.save(random_vgg("vgg16", ("relu1_2",)).state_dict(), tmp_path / "short.pth")
    with pytest.raises(Medi2iInputError, match=r"features.5.weight: weights file lacks 4 conv tensors"):
        VGGFeatures("vgg16", SHALLOW, weights_path=tmp_path / "short.pth")
    # the same file is enough for a trunk that stops at relu1_2
    assert VGGFeatures("vgg16", ("relu1_2",), weights_path=tmp_path / "short.pth").layout == WeightLayout.TORCHVISION


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"features.0.weight": torch.zeros(64, 3, 3, 3), "conv1_2.weight": torch.zeros(64, 64, 3, 3)}, "both"),
        ({"classifier.0.weight": torch.zeros(2, 2)}, "no conv keys"),
        ({"features.1.running_mean": torch.zeros(64)}, "features.1.running_mean: unexpected key"),
        ({"features.0.weight": torch.zeros(64, 3, 3, 3, dtype=torch.int64)}, "floating point"),
    ],
)
def test_convert_rejects_bad_state(state, message):
    with pytest.raises(Medi2iInputError, match=message):
        convert_vgg_state_dict(state, "vgg16", source="w.pth")


# ---------------------------------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "vgg11"}, "vgg16"),
        ({"layers": ("relu9_9",)}, r"layers=\('relu9_9',\)"),
        ({"layers": ()}, "unknown or empty"),
        ({"layers": "relu1_1"}, "sequence of layer names"),
        ({"layers": ("relu1_1", "relu1_1")}, "duplicates"),
        ({"width": 0.0}, r"width=0.0 must be in \(0, 1\]"),
        ({"width": 1.5}, r"width=1.5 must be in \(0, 1\]"),
        ({"width": 0.5, "pretrained": True}, "needs pretrained=False"),
        ({"in_channels": 2}, "in_channels=2"),
        ({"weights_path": "x.pth"}, "pretrained=False"),
        ({"input_range": "[0,255]"}, r"\[-1,1\]"),
        ({"pooling": "median"}, "max"),
    ],
)
def test_illegal_config(kwargs, message):
    args = {"arch": "vgg16", "layers": SHALLOW, "pretrained": False} | kwargs
    with pytest.raises(ValueError, match=message):
        VGGFeatures(args.pop("arch"), args.pop("layers"), **args)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 1, 16, 16), "expected images with 3 channels"),
        ((3, 16, 16), r"expected images of shape \(B, C, H, W\)"),
        ((1, 3, 1, 16), "expected H, W >= 2"),
    ],
)
def test_forward_contract(shape, message):
    net = random_vgg()
    with pytest.raises(ValueError, match=message):
        net(torch.zeros(shape))


def test_forward_rejects_integer_images():
    with pytest.raises(ValueError, match="floating-point"):
        random_vgg()(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
