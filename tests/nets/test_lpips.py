"""Tests for medi2i.nets.lpips: metric properties, the v0.1 formula, head loading and lookup, errors."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch

import medi2i.nets.lpips as lpips_module
from medi2i.errors import Medi2iInputError
from medi2i.nets.lpips import LPIPS, LPIPS_LAYERS, LPIPS_SCALE, LPIPS_SHIFT, find_lpips_heads
from medi2i.nets.vgg import VGGFeatures
from medi2i.weights import WEIGHTS_ENV

LPIPS_CHANNELS = (64, 128, 256, 512, 512)
_REAL_WHEEL_LOOKUP = lpips_module._wheel_heads  # kept before the autouse fixture replaces it
REAL_HEADS = Path("/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/lpips/weights/v0.1/vgg.pth")


@pytest.fixture(autouse=True)
def _no_weights(monkeypatch, tmp_path):
    """Empty weights folder and no lpips wheel: tests only see the files they make."""
    empty = tmp_path / "no_weights"
    empty.mkdir()
    monkeypatch.setenv(WEIGHTS_ENV, str(empty))
    monkeypatch.setattr(lpips_module, "_wheel_heads", lambda: None)


@pytest.fixture(scope="module")
def metric() -> LPIPS:
    return LPIPS(pretrained=False, width=0.125)


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory) -> Path:
    """A full-width random VGG16 trunk saved in the torchvision layout (the format of vgg16-397923af.pth)."""
    path = tmp_path_factory.mktemp("w") / "vgg16-397923af.pth"
    torch.save(VGGFeatures("vgg16", ("relu5_3",), pretrained=False, seed=5).state_dict(), path)
    return path


def heads_state(channels=LPIPS_CHANNELS, seed=0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen) for k, c in enumerate(channels)}


def smooth_image(batch: int = 2, channels: int = 3, size: int = 32) -> torch.Tensor:
    g = torch.linspace(0, 2 * math.pi, size)
    base = torch.sin(g)[:, None] * torch.cos(2 * g)[None, :]
    return (0.8 * base).expand(batch, channels, size, size).clone()


# ---------------------------------------------------------------------------------------------------- properties


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("batch", [1, 2])
def test_identity_is_exactly_zero(metric, batch, channels):
    x = torch.rand(batch, channels, 32, 32) * 2 - 1
    d = metric(x, x.clone())
    assert d.shape == (batch,)
    assert torch.equal(d, torch.zeros(batch))
    assert torch.equal(metric.distance_map(x, x), torch.zeros(batch, 1, 32, 32))


def test_symmetric_and_positive(metric):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    y = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    assert torch.equal(metric(x, y), metric(y, x))
    assert (metric(x, y) > 0).all()
    dmap = metric.distance_map(x, y)
    assert dmap.shape == (2, 1, 32, 32) and (dmap >= 0).all()
    assert torch.equal(dmap, metric.distance_map(y, x))


def test_grows_with_noise_level(metric):
    x = smooth_image()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    levels = [0.02, 0.05, 0.1, 0.2, 0.4]
    d = torch.stack([metric(x, (x + s * noise).clamp(-1, 1)) for s in levels])  # (levels, B)
    assert (d[1:] > d[:-1]).all(), d


def test_single_channel_equals_grey_rgb(metric):
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    y = torch.rand(2, 1, 32, 32) * 2 - 1
    assert torch.equal(metric(x, y), metric(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)))


def test_gradients_reach_inputs_not_weights(metric):
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_(True)
    metric(x, y).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in metric.parameters())
    assert not metric.training


def test_scaling_layer_is_torchvision_preprocessing_of_minus_one_one():
    """v0.1 shift/scale (read from lpips/lpips.py ScalingLayer) = 2*mean-1 and 2*std of ImageNet."""
    vgg = VGGFeatures("vgg16", ("relu1_1",), pretrained=False, width=0.125, input_range="[-1,1]")
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    shift = torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1)
    scale = torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1)
    torch.testing.assert_close((x - shift) / scale, vgg.preprocess(x), atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------- weights


def reference_lpips(vgg: VGGFeatures, heads: dict[str, torch.Tensor], x, y) -> torch.Tensor:
    """LPIPS v0.1 recomputed from the paper's Eq. 1 (+ v0.1 scaling), independently of LPIPS._layer_distances."""
    shift = torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1)
    scale = torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1)
    fx = vgg.forward_preprocessed((x - shift) / scale)
    fy = vgg.forward_preprocessed((y - shift) / scale)
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for k, name in enumerate(LPIPS_LAYERS):
        a, b = fx[name].double(), fy[name].double()
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        w = heads[f"lin{k}.model.1.weight"].double().view(1, -1, 1, 1)
        total += ((a - b) ** 2 * w).sum(dim=1).mean(dim=(1, 2))
    return total


def test_heads_load_from_lpips_key_layout(tmp_path, vgg16_file):
    heads = heads_state(seed=3)
    torch.save(heads, tmp_path / "heads.pth")
    metric = LPIPS(vgg_weights=vgg16_file, lin_weights=tmp_path / "heads.pth")
    for k, lin in enumerate(metric.lins):
        assert torch.equal(lin.weight, heads[f"lin{k}.model.1.weight"])
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    y = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    torch.testing.assert_close(metric(x, y).double(), reference_lpips(metric.vgg, heads, x, y), rtol=1e-5, atol=1e-7)


def test_heads_lookup_order(monkeypatch, tmp_path):
    # 1. an installed lpips wheel (found through importlib's finder, never imported)
    monkeypatch.setattr(lpips_module, "_wheel_heads", _REAL_WHEEL_LOOKUP)
    fake_site = tmp_path / "site"
    wheel_file = fake_site / "lpips" / "weights" / "v0.1" / "vgg.pth"
    wheel_file.parent.mkdir(parents=True)
    (fake_site / "lpips" / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    torch.save(heads_state(), wheel_file)
    monkeypatch.syspath_prepend(str(fake_site))
    assert find_lpips_heads() == wheel_file
    # 2. the weights folder wins over the wheel
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(heads_state(), folder / "lpips_vgg_v0.1.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(folder))
    assert find_lpips_heads() == folder / "lpips_vgg_v0.1.pth"
    # 3. an explicit path wins over both
    torch.save(heads_state(), tmp_path / "mine.pth")
    assert find_lpips_heads(tmp_path / "mine.pth") == tmp_path / "mine.pth"


def test_missing_heads_error_text(tmp_path, vgg16_file):
    with pytest.raises(Medi2iInputError) as info:
        LPIPS(vgg_weights=vgg16_file)
    text = str(info.value)
    assert "lpips_vgg_v0.1.pth" in text and WEIGHTS_ENV in text and str(tmp_path / "no_weights") in text
    assert "lpips/weights/v0.1/vgg.pth" in text


def test_missing_vgg_error_text():
    with pytest.raises(Medi2iInputError, match=r"vgg16-397923af.pth.*MEDI2I_WEIGHTS"):
        LPIPS()


@pytest.mark.parametrize(
    ("heads", "message"),
    [
        ({"lin0.model.1.weight": torch.ones(1, 64, 1, 1)}, "lin1.model.1.weight: LPIPS heads file lacks"),
        (heads_state(channels=(64, 192, 384, 256, 256)), r"lin1.model.1.weight: wrong shape .*AlexNet"),
        ({**heads_state(), "lin2.model.1.weight": -torch.ones(1, 256, 1, 1)}, "non-negative"),
    ],
)
def test_bad_heads_file(tmp_path, vgg16_file, heads, message):
    torch.save(heads, tmp_path / "heads.pth")
    with pytest.raises(Medi2iInputError, match=message):
        LPIPS(vgg_weights=vgg16_file, lin_weights=tmp_path / "heads.pth")


def test_heads_without_dropout_layer_accepted(tmp_path, vgg16_file):
    torch.save({k.replace("model.1", "model.0"): v for k, v in heads_state().items()}, tmp_path / "h.pth")
    LPIPS(vgg_weights=vgg16_file, lin_weights=tmp_path / "h.pth")


def test_caffe_vgg_refused(tmp_path, vgg16_file):
    names = [f"conv{b}_{i}" for b, n in enumerate((2, 2, 3, 3, 3), start=1) for i in range(1, n + 1)]
    tv = torch.load(vgg16_file, weights_only=True)
    indices = sorted({int(k.split(".")[1]) for k in tv})
    caffe = {
        f"{names[j]}.{kind}": tv[f"features.{i}.{kind}"] for j, i in enumerate(indices) for kind in ("weight", "bias")
    }
    torch.save(caffe, tmp_path / "vgg16_conv.pth")
    torch.save(heads_state(), tmp_path / "heads.pth")
    with pytest.raises(Medi2iInputError, match="vgg_weights: LPIPS needs torchvision-layout VGG16"):
        LPIPS(vgg_weights=tmp_path / "vgg16_conv.pth", lin_weights=tmp_path / "heads.pth")


@pytest.mark.skipif(not REAL_HEADS.is_file(), reason="lpips wheel's v0.1 vgg.pth not on this machine")
def test_real_lpips_heads_file_loads(vgg16_file):
    metric = LPIPS(vgg_weights=vgg16_file, lin_weights=REAL_HEADS)
    assert [lin.weight.shape[1] for lin in metric.lins] == list(LPIPS_CHANNELS)
    assert all((lin.weight >= 0).all() for lin in metric.lins)


# ---------------------------------------------------------------------------------------------------- errors


def test_random_init_warns(caplog):
    with caplog.at_level(logging.WARNING):
        LPIPS(pretrained=False, width=0.125)
    assert any("pretrained=False" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pretrained": False, "lin_weights": "x.pth"}, "pretrained=False"),
        ({"pretrained": False, "vgg_weights": "x.pth"}, "pretrained=False"),
        ({"pretrained": True, "width": 0.5}, "needs pretrained=False"),
        ({"pretrained": False, "width": 0.0}, "width=0.0"),
    ],
)
def test_illegal_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LPIPS(**kwargs)


@pytest.mark.parametrize(
    ("x_shape", "y_shape", "message"),
    [
        ((1, 3, 32, 32), (1, 3, 32, 16), "same shape"),
        ((1, 2, 32, 32), (1, 2, 32, 32), "C in"),
        ((3, 32, 32), (3, 32, 32), r"\(B, C, H, W\)"),
        ((1, 3, 8, 8), (1, 3, 8, 8), "H, W >= 16"),
    ],
)
def test_forward_contract(metric, x_shape, y_shape, message):
    with pytest.raises(ValueError, match=message):
        metric(torch.zeros(x_shape), torch.zeros(y_shape))


def test_state_dict_round_trip(metric):
    clone = LPIPS(pretrained=False, width=0.125, seed=9)
    clone.load_state_dict(metric.state_dict())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(clone(x, y), metric(x, y))
