"""Tests for medi2i.nets.inception: FID Inception-v3 shapes, pytorch-fid key layout, loading, errors."""

from __future__ import annotations

import logging

import pytest
import torch

from medi2i.errors import Medi2iInputError
from medi2i.nets.inception import FID_INCEPTION_WEIGHTS, FIDInceptionFeatures
from medi2i.weights import WEIGHTS_ENV


@pytest.fixture(autouse=True)
def _empty_weights_dir(monkeypatch, tmp_path):
    empty = tmp_path / "no_weights"
    empty.mkdir()
    monkeypatch.setenv(WEIGHTS_ENV, str(empty))


@pytest.fixture(scope="module")
def net() -> FIDInceptionFeatures:
    return FIDInceptionFeatures(pretrained=False, resize_input=False, seed=1)


def file_state(net: FIDInceptionFeatures) -> dict[str, torch.Tensor]:
    """The module's weights as a pt_inception file holds them: + fc (1008 classes), no BN counters."""
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"] = torch.zeros(1008, 2048)
    state["fc.bias"] = torch.zeros(1008)
    return state


@pytest.mark.parametrize("batch", [1, 2])
def test_pool_features_shape(net, batch):
    feats = net(torch.rand(batch, 3, 75, 80) * 2 - 1)
    assert feats.shape == (batch, 2048)
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # average of ReLU outputs


@pytest.mark.slow
def test_full_size_forward():
    net = FIDInceptionFeatures(pretrained=False)  # resize_input=True: any input size works
    assert net(torch.rand(1, 3, 32, 40) * 2 - 1).shape == (1, 2048)


def test_pytorch_fid_key_layout(net):
    state = net.state_dict()
    expected = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_4a_3x3.bn.running_var": (192,),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7c.branch3x3dbl_3b.bn.weight": (384,),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    convs = sum(1 for k in state if k.endswith("conv.weight"))
    assert convs == 94  # Inception-v3 without the auxiliary head
    n_params = sum(p.numel() for p in net.parameters())
    assert 21_700_000 < n_params < 21_900_000  # 21.8 M conv+BN parameters


def test_round_trip_through_file(net, tmp_path):
    torch.save(file_state(net), tmp_path / FID_INCEPTION_WEIGHTS)
    loaded = FIDInceptionFeatures(weights_path=tmp_path, resize_input=False)
    x = torch.rand(1, 3, 75, 75) * 2 - 1
    assert torch.equal(loaded(x), net(x))


def test_preprocess_range_grey_and_resize(net):
    x01 = torch.rand(2, 3, 75, 80)
    torch.testing.assert_close(net.preprocess(2 * x01 - 1), 2 * x01 - 1)  # [-1,1] input is the network input
    net01 = FIDInceptionFeatures(pretrained=False, resize_input=True, input_range="[0,1]", in_channels=1)
    grey = torch.rand(2, 1, 40, 50)
    out = net01.preprocess(grey)
    assert out.shape == (2, 3, 299, 299)
    assert torch.equal(out[:, 0], out[:, 2])
    expected = torch.nn.functional.interpolate(2 * grey - 1, size=(299, 299), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[:, :1], expected, atol=1e-6, rtol=1e-6)


def test_missing_file_error_text(tmp_path):
    with pytest.raises(Medi2iInputError) as info:
        FIDInceptionFeatures()
    text = str(info.value)
    assert FID_INCEPTION_WEIGHTS in text and WEIGHTS_ENV in text and str(tmp_path / "no_weights") in text
    assert "github.com/mseitzer/pytorch-fid/releases" in text


def test_wrong_shape_names_the_key(net, tmp_path):
    state = file_state(net)
    state["Mixed_5b.branch1x1.conv.weight"] = torch.zeros(64, 192, 3, 3)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(Medi2iInputError, match=r"Mixed_5b.branch1x1.conv.weight: wrong shape"):
        FIDInceptionFeatures(weights_path=tmp_path / "shape.pth")


@pytest.mark.slow
def test_missing_and_unexpected_keys(net, tmp_path):
    state = file_state(net)
    del state["Mixed_7c.branch_pool.bn.running_mean"]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(Medi2iInputError, match=r"Mixed_7c.branch_pool.bn.running_mean: weights file lacks 1"):
        FIDInceptionFeatures(weights_path=tmp_path / "short.pth")
    torch.save({**file_state(net), "Mixed_8a.conv.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(Medi2iInputError, match="Mixed_8a.conv.weight: unexpected key"):
        FIDInceptionFeatures(weights_path=tmp_path / "extra.pth")


def test_random_warns_and_is_frozen(caplog):
    with caplog.at_level(logging.WARNING, logger="medi2i.nets.inception"):
        net = FIDInceptionFeatures(pretrained=False, resize_input=False, seed=2)
    assert any("pretrained=False" in r.getMessage() for r in caplog.records)
    assert not net.training and all(not p.requires_grad for p in net.parameters())
    # a fresh random net is seeded: same seed -> same weights
    again = FIDInceptionFeatures(pretrained=False, resize_input=False, seed=2)
    assert torch.equal(net.Mixed_7c.branch1x1.conv.weight, again.Mixed_7c.branch1x1.conv.weight)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_channels": 4}, "in_channels=4"),
        ({"weights_path": "x.pth"}, "pretrained=False"),
        ({"input_range": "[0,255]"}, r"\[-1,1\]"),
    ],
)
def test_illegal_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FIDInceptionFeatures(pretrained=False, **kwargs)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 1, 75, 75), r"\(B, 3, H, W\)"),
        ((3, 75, 75), r"\(B, 3, H, W\)"),
        ((1, 3, 64, 75), "H, W >= 75"),
        ((1, 3, 75, 75), "floating-point"),
    ],
)
def test_forward_contract(net, shape, message):
    x = torch.zeros(shape, dtype=torch.uint8 if message == "floating-point" else torch.float32)
    with pytest.raises(ValueError, match=message):
        net(x)
