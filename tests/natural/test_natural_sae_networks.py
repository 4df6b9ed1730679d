"""Tests for medi2i.natural.sae_networks: StyleGAN2 pieces and the Swapping Autoencoder networks (digest 5.1, 5.6)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medi2i.natural.sae_networks import (
    Blur,
    CooccurrenceDiscriminator,
    EqualConv2d,
    EqualLinear,
    ImageDiscriminator,
    ModulatedConv2d,
    ResBlock,
    SAEEncoder,
    SAEGenerator,
    random_crops,
    stylegan2_channels,
    upfirdn2d,
)

TINY_E = {"channels": (8, 16, 32), "structure_channels": 4, "texture_channels": (32, 32), "texture_dim": 16}
TINY_G = {"structure_channels": 4, "texture_dim": 16, "base_channels": (32,), "up_channels": (16, 8)}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---- equalised learning rate -------------------------------------------------------------------------------


def test_equal_conv_applies_runtime_scale():
    conv = EqualConv2d(6, 5, 3, padding=1)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 6, 9, 9)
    expected = F.conv2d(x, conv.weight / math.sqrt(6 * 9), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected)
    # stored weights are N(0, 1); the effective weights have std 1/sqrt(fan_in)
    assert abs(conv.weight.std().item() - 1.0) < 0.15
    assert conv.scale == pytest.approx(1 / math.sqrt(54))


def test_equal_conv_reflect_padding_matches_manual_pad():
    conv = EqualConv2d(2, 3, 3, padding=1, padding_mode="reflect")
    x = torch.randn(1, 2, 7, 7)
    expected = F.conv2d(F.pad(x, [1] * 4, mode="reflect"), conv.weight * conv.scale, conv.bias)
    torch.testing.assert_close(conv(x), expected)


def test_equal_linear_scale_and_lr_mul():
    lin = EqualLinear(8, 4, bias_init=0.5, lr_mul=0.01)
    x = torch.randn(3, 8)
    w_eff = lin.weight * 0.01 / math.sqrt(8)
    torch.testing.assert_close(lin(x), x @ w_eff.T + 0.5)
    # the effective initial weights are N(0, 1/fan_in) whatever lr_mul is
    assert abs((lin.weight * lin.scale).std().item() * math.sqrt(8) - 1.0) < 0.5


def test_equal_linear_activation_is_scaled_leaky_relu():
    lin = EqualLinear(5, 7, activation=True)
    x = torch.randn(4, 5)
    pre = x @ (lin.weight * lin.scale).T
    torch.testing.assert_close(lin(x), F.leaky_relu(pre, 0.2) * math.sqrt(2))


# ---- resampling ----------------------------------------------------------------------------------------------


def test_upfirdn2d_plain_filter_is_true_convolution():
    k = torch.arange(1.0, 10.0).view(3, 3)
    x = torch.randn(1, 2, 6, 6)
    out = upfirdn2d(x, k, pad=(1, 1))
    expected = F.conv2d(F.pad(x, [1] * 4), k.flip(0, 1)[None, None].expand(2, 1, 3, 3), groups=2)
    torch.testing.assert_close(out, expected)


def test_blur_and_upsample_preserve_constants():
    x = torch.full((1, 3, 8, 8), 0.7)
    blur = Blur((1, 2))
    torch.testing.assert_close(blur.kernel.sum(), torch.tensor(1.0))
    assert blur(x).shape == (1, 3, 8, 8)
    up = Blur((2, 1), up=2)(x)  # zero insertion + blur x4 = antialiased x2 upsampling
    assert up.shape == (1, 3, 16, 16)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 0.7))


def test_resblock_downsamples_by_two():
    block = ResBlock(4, 6, padding_mode="reflect")
    assert block(torch.randn(2, 4, 12, 12)).shape == (2, 6, 6, 6)
    same = ResBlock(4, 4, downsample=False)
    assert same(torch.randn(1, 4, 5, 5)).shape == (1, 4, 5, 5)


# ---- modulated convolution -----------------------------------------------------------------------------------


def test_modulated_conv_equals_per_sample_convolution():
    conv = ModulatedConv2d(5, 4, 3, style_dim=6)
    x, style = torch.randn(3, 5, 8, 8), torch.randn(3, 6)
    out = conv(x, style)
    w = conv.modulated_weight(style)
    for b in range(3):
        torch.testing.assert_close(out[b : b + 1], F.conv2d(x[b : b + 1], w[b], padding=1), atol=1e-5, rtol=1e-5)
    # demodulation: each output filter of each sample has unit L2 norm
    torch.testing.assert_close(w.pow(2).sum(dim=(2, 3, 4)), torch.ones(3, 4), atol=1e-4, rtol=1e-4)


def test_demodulated_conv_output_variance_is_one():
    """Unit-variance i.i.d. input -> unit-variance output for any style (tolerance 0.05 on 4x16 maps of 30x30)."""
    conv = ModulatedConv2d(32, 16, 3, style_dim=8)
    style = torch.randn(4, 8) * 3.0  # a strong, uneven style
    x = torch.randn(4, 32, 32, 32)
    with torch.no_grad():
        out = conv(x, style)[..., 1:-1, 1:-1]  # interior (zero padding lowers the border variance)
    var = out.var(dim=(2, 3))  # per sample and output channel
    assert abs(var.mean().item() - 1.0) < 0.05
    assert (var - 1).abs().max().item() < 0.2
    # without demodulation the variance follows the style instead
    raw = ModulatedConv2d(32, 16, 3, style_dim=8, demodulate=False)
    raw.load_state_dict(conv.state_dict())
    with torch.no_grad():
        assert abs(raw(x, style).var().item() - 1.0) > 0.2


def test_demodulation_makes_output_invariant_to_style_scale():
    conv = ModulatedConv2d(4, 4, 3, style_dim=5)
    x, style = torch.randn(2, 4, 6, 6), torch.randn(2, 5)
    ref = conv(x, style)
    with torch.no_grad():
        conv.modulation.weight.mul_(3.0)
        conv.modulation.bias.mul_(3.0)
    torch.testing.assert_close(conv(x, style), ref, atol=1e-5, rtol=1e-4)


def test_modulated_conv_upsample_shape():
    conv = ModulatedConv2d(3, 2, 3, style_dim=4, upsample=True)
    assert conv(torch.randn(2, 3, 5, 7), torch.randn(2, 4)).shape == (2, 2, 10, 14)


# ---- encoder / generator -------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(32, 32), (32, 48)])
def test_encoder_generator_shapes(batch, channels, size):
    enc = SAEEncoder(channels, **TINY_E)
    gen = SAEGenerator(channels, **TINY_G)
    x = torch.rand(batch, channels, *size) * 2 - 1
    structure, texture = enc(x)
    assert structure.shape == (batch, 4, size[0] // 4, size[1] // 4)
    assert texture.shape == (batch, 16)
    # L2-normalised codes: per location over channels, and per texture vector
    torch.testing.assert_close(structure.norm(dim=1), torch.ones(batch, size[0] // 4, size[1] // 4))
    torch.testing.assert_close(texture.norm(dim=1), torch.ones(batch))
    assert gen(structure, texture).shape == (batch, channels, *size)


def test_sae_networks_have_no_normalisation_layers():
    nets = [SAEEncoder(3, **TINY_E), SAEGenerator(3, **TINY_G)]
    norms = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm)
    assert not any(isinstance(m, norms) for net in nets for m in net.modules())


def test_texture_code_is_nearly_shift_invariant_structure_code_is_not():
    """Digest 5.6: reflect/valid padding + average pooling -> texture code ~ invariant to circular shifts.

    At random init the invariance is approximate (borders): a 16 px circular shift of a periodic image must
    move the texture code (1 - cosine) less than half as far as a different image does, while the structure
    code moves clearly more than the texture code.
    """
    enc = SAEEncoder(1, **{**TINY_E, "texture_padding": "reflect"})
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    wave = 2 * math.pi / 64
    img = (torch.sin(3 * wave * xx) * torch.cos(2 * wave * yy) + 0.5 * torch.sin(wave * (xx + 2 * yy)))[None, None]
    other = (torch.sin(5 * wave * xx + 1) * torch.cos(7 * wave * yy))[None, None]
    with torch.no_grad():
        s1, t1 = enc(img)
        s2, t2 = enc(torch.roll(img, shifts=(16, 16), dims=(2, 3)))
        _, t3 = enc(other)
    tex_shift = 1 - F.cosine_similarity(t1, t2).item()
    tex_other = 1 - F.cosine_similarity(t1, t3).item()
    struct_shift = 1 - F.cosine_similarity(s1.flatten(1), s2.flatten(1)).item()
    assert tex_shift < 0.5 * tex_other
    assert struct_shift > tex_shift + 0.1


def test_generator_noise_modes():
    gen = SAEGenerator(1, **TINY_G)
    for m in gen.modules():
        if hasattr(m, "seed"):
            nn.init.constant_(m.weight, 1.0)
    s = F.normalize(torch.randn(2, 4, 8, 8), dim=1)
    t = F.normalize(torch.randn(2, 16), dim=1)
    with torch.no_grad():
        fixed1, fixed2 = gen(s, t, noise_mode="fixed"), gen(s, t, noise_mode="fixed")
        rand1, rand2 = gen(s, t), gen(s, t)
        none = gen(s, t, noise_mode="none")
    torch.testing.assert_close(fixed1, fixed2)
    assert (rand1 - rand2).abs().max() > 1e-3
    assert (none - fixed1).abs().max() > 1e-3


def test_generator_state_dict_round_trip():
    gen, twin = SAEGenerator(3, **TINY_G), SAEGenerator(3, **TINY_G)
    twin.load_state_dict(gen.state_dict())
    s, t = F.normalize(torch.randn(1, 4, 8, 8), dim=1), F.normalize(torch.randn(1, 16), dim=1)
    with torch.no_grad():
        torch.testing.assert_close(gen(s, t, noise_mode="fixed"), twin(s, t, noise_mode="fixed"))


# ---- discriminators ------------------------------------------------------------------------------------------


def test_stylegan2_channel_table():
    assert stylegan2_channels(256) == [128, 256, 512, 512, 512, 512, 512]
    assert stylegan2_channels(32) == [512, 512, 512, 512]


@pytest.mark.parametrize("channels", [1, 3])
def test_image_discriminator_shape_and_grad(channels):
    disc = ImageDiscriminator(channels, 32, channels=(8, 16, 16, 16))
    x = torch.randn(2, channels, 32, 32, requires_grad=True)
    out = disc(x)
    assert out.shape == (2, 1)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.abs().sum() > 0


def test_cooccurrence_discriminator_averages_references():
    disc = CooccurrenceDiscriminator(3, patch_size=16, channels=(8, 16, 32), hidden=(32, 32))
    assert disc.feature_dim == 32 * 2 * 2
    query, ref = torch.randn(2, 3, 3, 16, 16), torch.randn(2, 4, 3, 16, 16)
    out = disc(query, ref)
    assert out.shape == (2, 3)
    # the references enter only through their mean feature: permuting them changes nothing
    torch.testing.assert_close(disc(query, ref.flip(1)), out, atol=1e-5, rtol=1e-5)
    # each query is scored on its own: query j of image b does not depend on other queries
    torch.testing.assert_close(disc(query[:, :1], ref), out[:, :1], atol=1e-5, rtol=1e-5)


def test_random_crops_full_scale_is_identity_or_flip():
    x = torch.randn(2, 3, 16, 16)
    crops = random_crops(x, 3, size=16, min_scale=1.0, max_scale=1.0, flip=False)
    assert crops.shape == (2, 3, 3, 16, 16)
    torch.testing.assert_close(crops, x[:, None].expand(2, 3, 3, 16, 16), atol=1e-5, rtol=1e-5)
    flipped = random_crops(x, 8, size=16, min_scale=1.0, max_scale=1.0, generator=torch.Generator().manual_seed(1))
    for b in range(2):
        for c in range(8):
            same = torch.allclose(flipped[b, c], x[b], atol=1e-5)
            mirrored = torch.allclose(flipped[b, c], x[b].flip(-1), atol=1e-5)
            assert same or mirrored


def test_random_crops_stay_inside_and_are_seeded():
    xx = torch.linspace(-1, 1, 64).view(1, 1, 1, 64).expand(1, 1, 64, 64)
    gen = torch.Generator().manual_seed(3)
    crops = random_crops(xx, 16, size=8, min_scale=0.25, max_scale=0.5, generator=gen)
    # each crop spans at most half of the x range (plus one sample of interpolation slack)
    spans = crops.amax(dim=(2, 3, 4)) - crops.amin(dim=(2, 3, 4))
    assert spans.max().item() <= 1.0 + 2 / 63
    assert spans.min().item() >= 0.25 * 2 * (7 / 8) - 2 / 63
    again = random_crops(xx, 16, size=8, min_scale=0.25, max_scale=0.5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(crops, again)


# ---- illegal configurations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: EqualConv2d(0, 3, 3),
        lambda: EqualConv2d(3, 3, 3, padding_mode="circular"),
        lambda: EqualLinear(3, 3, lr_mul=0.0),
        lambda: ModulatedConv2d(3, 3, 2, style_dim=4),
        lambda: Blur((1, 1), up=2, padding_mode="reflect"),
        lambda: SAEEncoder(3, channels=(8,)),
        lambda: SAEEncoder(3, texture_channels=(8, 8, 8)),
        lambda: SAEEncoder(3, texture_padding="zeros"),
        lambda: SAEGenerator(3, base_channels=()),
        lambda: ImageDiscriminator(3, 48),
        lambda: ImageDiscriminator(3, 32, channels=(8, 8, 8, 8, 8, 8)),
        lambda: CooccurrenceDiscriminator(3, patch_size=16, channels=(8, 8, 8, 8)),
    ],
)
def test_illegal_configs_raise(build):
    with pytest.raises(ValueError):
        build()


def test_illegal_inputs_raise():
    enc = SAEEncoder(3, **TINY_E)
    with pytest.raises(ValueError, match="divisible"):
        enc(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="too small"):
        enc(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="shape"):
        enc(torch.randn(1, 1, 32, 32))
    gen = SAEGenerator(3, **TINY_G)
    s, t = torch.randn(1, 4, 8, 8), torch.randn(1, 16)
    with pytest.raises(ValueError, match="noise_mode"):
        gen(s, t, noise_mode="sometimes")
    with pytest.raises(ValueError, match="texture"):
        gen(s, torch.randn(2, 16))
    with pytest.raises(ValueError, match="shape"):
        ImageDiscriminator(3, 32, channels=(8, 8, 8, 8))(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="min_scale"):
        random_crops(torch.randn(1, 3, 8, 8), 2, size=4, min_scale=0.5, max_scale=0.25)
