"""Shared GAN toolkit: shape tables, receptive field, blur-pool, GAN-loss formulas, image pool, init, schedule,
feature losses (park_thesis.md sections 1, 2.2, 3.1-3.3, 4.1, 8)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medi2i.natural.toolkit.discriminators import (
    MultiScaleDiscriminator,
    PatchDiscriminator,
    patch_output_size,
    patch_receptive_field,
)
from medi2i.natural.toolkit.feature_losses import VGGPerceptualLoss, feature_matching_loss
from medi2i.natural.toolkit.gan_losses import discriminator_loss, generator_loss, r1_penalty
from medi2i.natural.toolkit.generators import BlurDownsample, BlurUpsample, ResnetGenerator
from medi2i.natural.toolkit.init import init_weights
from medi2i.natural.toolkit.pool import ImagePool
from medi2i.natural.toolkit.schedules import linear_decay, linear_decay_factor


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------- generators
def test_resnet_generator_256_shape_and_parameter_count():
    g = ResnetGenerator(3, 3)  # resnet_9blocks, ngf 64
    assert _n_params(g) == 11_378_179  # digest 3.1: 11.378M per G
    # antialiasing changes the sampling, not the parameters (blur filters are fixed buffers)
    assert _n_params(ResnetGenerator(3, 3, antialias=True)) == 11_378_179
    small = ResnetGenerator(3, 2, ngf=4, n_blocks=2)
    y = small(torch.randn(1, 3, 256, 256))
    assert y.shape == (1, 2, 256, 256)
    assert y.abs().max() <= 1.0  # tanh


@pytest.mark.parametrize("antialias", [False, True])
def test_generator_encode_matches_flat_sequential(antialias):
    g = ResnetGenerator(1, 1, ngf=4, n_blocks=3, antialias=antialias)
    x = torch.randn(2, 1, 32, 32)
    last = len(g.model) - 1
    (out,) = g.encode(x, [last])
    torch.testing.assert_close(out, g(x))
    feats = g.encode(x, [3, 0])  # order as requested
    torch.testing.assert_close(feats[1], F.pad(x, (3, 3, 3, 3), mode="reflect"))
    torch.testing.assert_close(feats[0], g.model[:4](x))
    with pytest.raises(ValueError, match="layer_ids"):
        g.encode(x, [last + 1])


def test_cut_nce_layer_table_antialiased_and_plain():
    """Digest 4.1: CUT's (0, 4, 8, 12, 16) on the antialiased layout = pixels, the 2 down convs (before the
    blur-pool, full and half resolution), res blocks 1 and 5, channels 3/128/256/256/256."""
    g = ResnetGenerator(3, 3, ngf=8, antialias=True)
    assert g.nce_layers() == (0, 4, 8, 12, 16)
    assert g.layer_channels(g.nce_layers()) == [3, 16, 32, 32, 32]
    assert isinstance(g.model[4], nn.Conv2d) and isinstance(g.model[8], nn.Conv2d)
    assert type(g.model[12]).__name__ == type(g.model[16]).__name__ == "ResnetBlock"
    feats = g.encode(torch.zeros(1, 3, 64, 64), g.nce_layers())
    assert [tuple(f.shape[-2:]) for f in feats] == [(70, 70), (64, 64), (32, 32), (16, 16), (16, 16)]
    plain = ResnetGenerator(3, 3, ngf=8)
    assert plain.nce_layers() == (0, 4, 7, 10, 14)
    assert [plain.model[i].stride for i in (4, 7)] == [(2, 2), (2, 2)]
    assert plain.layer_channels(plain.nce_layers()) == [3, 16, 32, 32, 32]
    assert ResnetGenerator(1, 1, ngf=4, n_blocks=2).nce_layers() == (0, 4, 7, 10, 11)


def test_blur_pool_keeps_constants_and_matches_definitions():
    const = torch.full((1, 2, 8, 8), 0.7)
    torch.testing.assert_close(BlurDownsample(2)(const), torch.full((1, 2, 4, 4), 0.7))
    torch.testing.assert_close(BlurUpsample(2)(const), torch.full((1, 2, 16, 16), 0.7))
    x = torch.randn(2, 3, 6, 10)
    # [1,3,3,1]/8 zero-insertion upsampling with edge replication = bilinear interpolation (half-pixel centres)
    torch.testing.assert_close(
        BlurUpsample(3)(x), F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    )
    # downsampling = reflect-pad, [1,2,1]x[1,2,1]/16 blur, keep every second pixel
    k = torch.tensor([1.0, 2.0, 1.0])
    k2 = (torch.outer(k, k) / 16).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k2, groups=3)
    torch.testing.assert_close(BlurDownsample(3)(x), blurred[..., ::2, ::2])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ngf": 0},
        {"n_blocks": -1},
        {"norm": "group"},
        {"padding": "circular"},
        {"dropout": 1.0},
        {"n_downsampling": 1.5},
    ],
)
def test_generator_illegal_config_raises(kwargs):
    with pytest.raises(ValueError):
        ResnetGenerator(1, 1, **kwargs)


# ---------------------------------------------------------------------------------------------- discriminators
def _empirical_receptive_field(d: nn.Module, size: int) -> int:
    x = torch.randn(1, 1, size, size, requires_grad=True)
    out = d(x)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(dim=1)).flatten()
    return int(rows.max() - rows.min() + 1)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_patchgan_receptive_field_and_output_size(n_layers):
    """70x70 for n_layers=3 (digest 3.1), measured from gradients of one score (no IN, which couples pixels)."""
    d = PatchDiscriminator(1, ndf=4, n_layers=n_layers, norm="none")
    init_weights(d, "normal", 1.0)
    assert _empirical_receptive_field(d, 160) == patch_receptive_field(n_layers)
    assert d(torch.zeros(1, 1, 64, 64)).shape[-1] == patch_output_size(64, n_layers)
    assert patch_receptive_field(3) == 70


def test_patchgan_256_gives_30x30_and_matches_monai_layout():
    d = PatchDiscriminator(3)
    assert d(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30) and patch_output_size(256) == 30
    assert _n_params(d) == 2_764_737  # digest 3.1: 2.765M per D
    from monai.networks.nets import PatchDiscriminator as MonaiPatchDiscriminator

    monai_d = MonaiPatchDiscriminator(spatial_dims=2, channels=64, in_channels=3, norm="INSTANCE", bias=True)
    assert _n_params(monai_d) == _n_params(d)
    assert monai_d(torch.zeros(1, 3, 256, 256))[-1].shape == (1, 1, 30, 30)


def test_patchgan_features_and_spectral_norm():
    d = PatchDiscriminator(2, ndf=4, n_layers=3, spectral=True, return_features=True)
    feats = d(torch.randn(1, 2, 64, 64))
    assert [f.shape[1] for f in feats] == [4, 8, 16, 32, 1]
    sn = [hasattr(block[0], "weight_orig") for block in d.blocks]
    assert sn == [False, True, True, True, False]  # SPADE: first and last conv stay plain
    capped = PatchDiscriminator(1, ndf=4, n_layers=5, return_features=True)
    assert [f.shape[1] for f in capped(torch.zeros(1, 1, 256, 256))] == [4, 8, 16, 32, 32, 32, 1]


def test_multiscale_discriminator_pools_input_for_second_scale():
    d = MultiScaleDiscriminator(3, num_d=2, ndf=4, n_layers=4).eval()  # eval: no power-iteration update
    x = torch.randn(2, 3, 64, 64)
    out = d(x)
    assert len(out) == 2 and all(len(scale) == 5 for scale in out)  # 4 blocks + score
    assert [f.shape[1] for f in out[0]] == [4, 8, 16, 32, 1]
    pooled = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
    torch.testing.assert_close(out[1][-1], d.discriminators[1](pooled)[-1])
    torch.testing.assert_close(out[0][-1], d.discriminators[0](x)[-1])
    # padding 2 as pix2pixHD/SPADE: 64 -> 33 -> 17 -> 9 -> 10 -> 11 and 32 -> 17 -> 9 -> 5 -> 6 -> 7
    assert out[0][-1].shape[-1] == 11 == patch_output_size(64, 3, padding=2)
    assert out[1][-1].shape[-1] == 7 == patch_output_size(32, 3, padding=2)
    assert all(hasattr(d.discriminators[0].blocks[i][0], "weight_orig") for i in (1, 2, 3))


@pytest.mark.parametrize(
    "kwargs", [{"n_layers": -1}, {"ndf": 0}, {"norm": "layer"}, {"padding": -1}, {"in_channels": 0}]
)
def test_patchgan_illegal_config_raises(kwargs):
    args = {"in_channels": 1, **kwargs}
    with pytest.raises(ValueError):
        PatchDiscriminator(args.pop("in_channels"), **args)


def test_multiscale_illegal_config_raises():
    with pytest.raises(ValueError, match="n_layers"):
        MultiScaleDiscriminator(3, n_layers=1)
    with pytest.raises(ValueError, match="num_d"):
        MultiScaleDiscriminator(3, num_d=0)


# ---------------------------------------------------------------------------------------------- GAN losses
def test_gan_losses_match_formulas():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(2, 1, 5, 5, generator=g), torch.randn(2, 1, 5, 5, generator=g)
    close = torch.testing.assert_close
    close(discriminator_loss("lsgan", real, fake), 0.5 * (((real - 1) ** 2).mean() + (fake**2).mean()))
    close(generator_loss("lsgan", fake), ((fake - 1) ** 2).mean())
    close(
        discriminator_loss("hinge", real, fake),
        torch.clamp(1 - real, min=0).mean() + torch.clamp(1 + fake, min=0).mean(),
    )
    close(generator_loss("hinge", fake), -fake.mean())
    sp = lambda t: torch.log1p(torch.exp(t))  # noqa: E731
    close(discriminator_loss("nonsaturating", real, fake), sp(-real).mean() + sp(fake).mean())
    close(generator_loss("nonsaturating", fake), sp(-fake).mean())
    sig = torch.sigmoid
    close(
        discriminator_loss("vanilla", real, fake),
        -0.5 * (torch.log(sig(real)).mean() + torch.log(1 - sig(fake)).mean()),
    )
    close(generator_loss("vanilla", fake), -torch.log(sig(fake)).mean())
    close(discriminator_loss("vanilla", real, fake), 0.5 * discriminator_loss("nonsaturating", real, fake))


def test_gan_losses_average_scales_and_use_last_feature():
    a, b = torch.full((1, 1, 2, 2), 2.0), torch.zeros(1, 1, 3, 3)
    junk = torch.full((1, 4, 2, 2), 100.0)  # intermediate features are ignored
    multi = [[junk, a], [junk, b]]
    expected = 0.5 * (generator_loss("lsgan", a) + generator_loss("lsgan", b))
    torch.testing.assert_close(generator_loss("lsgan", multi), expected)
    torch.testing.assert_close(generator_loss("hinge", [a, b]), torch.tensor(-1.0))
    with pytest.raises(ValueError, match="scales"):
        discriminator_loss("lsgan", [a, b], [a])
    with pytest.raises(ValueError, match="lsgan"):
        generator_loss("wgan", a)


def test_r1_penalty_is_squared_gradient_norm():
    w = torch.randn(1, 3, 4, 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    scores = (x * w).sum(dim=(1, 2, 3))
    torch.testing.assert_close(r1_penalty(scores, x), (w**2).sum())
    # the penalty is differentiable (create_graph) so D can minimise it
    net = nn.Conv2d(3, 1, 3)
    pen = r1_penalty(net(x), x)
    pen.backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="requires_grad|require grad"):
        r1_penalty(scores, torch.zeros(1, 3, 4, 4))


# ---------------------------------------------------------------------------------------------- image pool
def test_image_pool_size_zero_is_passthrough():
    pool = ImagePool(0)
    x = torch.randn(3, 1, 4, 4)
    assert pool.query(x) is x and len(pool) == 0


def test_image_pool_fills_first_then_swaps_half():
    pool = ImagePool(4, seed=3)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    torch.testing.assert_close(pool.query(first), first)  # returned as is while filling
    assert len(pool) == 4
    n = 4000
    new = torch.arange(100.0, 100.0 + n).view(n, 1, 1, 1)
    history = {float(v) for v in first.flatten()}
    returned_old = 0
    for i in range(n):
        stored_before = {float(img) for img in pool.images}
        out = float(pool.query(new[i : i + 1]))
        if out == float(new[i]):
            assert float(new[i]) not in {float(img) for img in pool.images}  # not stored
        else:
            returned_old += 1
            assert out in stored_before and out in history  # an older fake, now replaced by the new one
            assert float(new[i]) in {float(img) for img in pool.images} and out not in {float(x) for x in pool.images}
        history.add(float(new[i]))
        assert len(pool) == 4
    assert abs(returned_old / n - 0.5) < 0.03  # 50/50 (binomial sd 0.008)


def test_image_pool_state_roundtrip_continues_identically():
    pool = ImagePool(3, seed=1)
    for i in range(5):
        pool.query(torch.full((2, 1, 2, 2), float(i)))
    state = pool.state_dict()
    twin = ImagePool(3, seed=99)
    twin.load_state_dict(state)
    for i in range(5, 12):
        x = torch.full((2, 1, 2, 2), float(i))
        torch.testing.assert_close(pool.query(x), twin.query(x))
    with pytest.raises(ValueError, match="size"):
        ImagePool(4).load_state_dict(state)
    with pytest.raises(ValueError):
        ImagePool(-1)


# ---------------------------------------------------------------------------------------------- init, schedule
def test_init_weights_kinds():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(16, 64, 3), nn.BatchNorm2d(64), nn.ConvTranspose2d(64, 32, 3), nn.Linear(8, 8))
    init_weights(net, "normal", 0.02)
    assert abs(float(net[0].weight.detach().std()) - 0.02) < 2e-3
    assert abs(float(net[1].weight.detach().mean()) - 1.0) < 0.02 and float(net[1].bias.detach().abs().max()) == 0
    assert float(net[0].bias.detach().abs().max()) == 0
    init_weights(net, "xavier", 0.02)
    fan_in, fan_out = 16 * 9, 64 * 9
    expected = 0.02 * (2.0 / (fan_in + fan_out)) ** 0.5
    assert abs(float(net[0].weight.detach().std()) / expected - 1) < 0.1
    init_weights(net, "orthogonal", 1.0)
    w = net[3].weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(8), atol=1e-5, rtol=0)
    sn = nn.utils.spectral_norm(nn.Conv2d(4, 4, 3))
    init_weights(sn, "normal", 0.5)
    assert abs(float(sn.weight_orig.detach().std()) - 0.5) < 0.15
    with pytest.raises(ValueError):
        init_weights(net, "uniform")
    with pytest.raises(ValueError, match="gain"):
        init_weights(net, "normal", 0.0)


def test_linear_decay_is_the_cyclegan_rule():
    """100 + 100 epochs: base lr for epochs 1-100, then 1 - k/101 down to 1/101 in epoch 200 (digest 3.3)."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2e-4)
    sched = linear_decay(opt, 100, 100)
    lrs = []
    for _ in range(200):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:100] == [2e-4] * 100
    assert lrs[100] == pytest.approx(2e-4 * (1 - 1 / 101))
    assert lrs[199] == pytest.approx(2e-4 / 101)
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    assert linear_decay_factor(5, 0, 0) == 0.0
    with pytest.raises(ValueError, match="n_decay"):
        linear_decay(opt, 1, -1)


# ---------------------------------------------------------------------------------------------- feature losses
def test_feature_matching_loss_formula():
    g = torch.Generator().manual_seed(0)
    real = [[torch.randn(1, 2, 4, 4, generator=g), torch.randn(1, 3, 2, 2, generator=g), torch.randn(1, 1, 2, 2)]
            for _ in range(2)]  # fmt: skip
    fake = [[torch.randn_like(t).requires_grad_() for t in scale] for scale in real]
    loss = feature_matching_loss(real, fake)
    expected = sum((fake[s][j] - real[s][j]).abs().mean() for s in range(2) for j in range(2)) / 2
    torch.testing.assert_close(loss, expected)
    real_param = [[t.clone().requires_grad_() for t in scale] for scale in real]
    feature_matching_loss(real_param, fake).backward()
    assert all(t.grad is None for scale in real_param for t in scale)  # real features are detached
    assert fake[0][0].grad is not None and fake[0][-1].grad is None  # the score is not matched


def test_vgg_perceptual_loss_weights_and_gradients():
    loss = VGGPerceptualLoss(pretrained=False, width=0.0625, in_channels=1)
    assert loss.layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert loss.layer_weights == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    real = torch.rand(2, 1, 32, 32) * 2 - 1
    fake = (real + 0.3 * torch.randn_like(real)).requires_grad_()
    value = loss(fake, real)
    feats_f, feats_r = loss.vgg(fake), loss.vgg(real)
    expected = sum(
        w * (feats_f[n] - feats_r[n]).abs().mean() for n, w in zip(loss.layers, loss.layer_weights, strict=True)
    )
    torch.testing.assert_close(value, expected)
    value.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.vgg.parameters())  # frozen trunk
    assert float(loss(real, real)) == 0.0
    with pytest.raises(ValueError, match="weights"):
        VGGPerceptualLoss((1.0, 1.0), pretrained=False, width=0.0625)


def test_init_weights_reaches_parametrized_spectral_norm_weights():
    from torch.nn.utils import parametrizations

    from medi2i.natural.toolkit.init import init_weights

    torch.manual_seed(0)
    layer = parametrizations.spectral_norm(torch.nn.Conv2d(8, 64, 3))
    before = layer.parametrizations.weight.original.detach().clone()
    init_weights(layer, "normal", 0.02)
    after = layer.parametrizations.weight.original.detach()
    assert not torch.equal(before, after) and abs(float(after.std()) - 0.02) < 0.004


def test_patch_discriminator_names_the_smallest_input_it_can_take():
    from medi2i.natural.toolkit.discriminators import PatchDiscriminator

    d = PatchDiscriminator(1, ndf=4, n_layers=2)
    with pytest.raises(ValueError, match=r"at least \d+ px"):
        d(torch.zeros(1, 1, 8, 8))
    smallest = int(__import__("re").search(r"at least (\d+) px", _message(d)).group(1))
    assert d(torch.zeros(1, 1, smallest, smallest)).shape[0] == 1  # the size it names does work


def _message(d) -> str:
    try:
        d(torch.zeros(1, 1, 4, 4))
    except ValueError as err:
        return str(err)
    raise AssertionError("no error")
