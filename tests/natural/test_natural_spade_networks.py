"""Tests of medi2i.natural.spade_networks: SPADE block, ResBlk, generator, VAE encoder (park_thesis.md 2.1, 2.6)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medi2i.errors import Medi2iInputError
from medi2i.natural.spade_networks import (
    SPADEGenerator,
    SPADENorm,
    SPADEResBlock,
    SPADEStyleEncoder,
    kl_divergence,
    one_hot_labels,
    reparameterize,
)

torch.set_num_threads(1)


def _is_spectral(conv: nn.Module) -> bool:
    # torch.nn.utils.spectral_norm (as the toolkit's discriminators; init_weights initialises weight_orig)
    return hasattr(conv, "weight_orig") and hasattr(conv, "weight_u")


def _uniform(num_classes: int, cls: int, size: int, batch: int = 1) -> torch.Tensor:
    return one_hot_labels(torch.full((batch, 1, size, size), cls, dtype=torch.long), num_classes)


# ---------------------------------------------------------------- one-hot handling


def test_one_hot_labels_values_and_shape():
    label = torch.tensor([[[[0, 1], [2, 1]]]])
    onehot = one_hot_labels(label, 4)
    assert onehot.shape == (1, 4, 2, 2) and onehot.dtype == torch.float32
    assert torch.equal(onehot.sum(1), torch.ones(1, 2, 2))
    assert torch.equal(onehot.argmax(1, keepdim=True), label)
    assert torch.equal(onehot[:, 3], torch.zeros(1, 2, 2))  # class 3 is absent


@pytest.mark.parametrize(
    ("label", "needle"),
    [
        (torch.tensor([[[[0, 255]]]]), "values in [0, 255]"),  # a 0/255 mask (official issue #137)
        (torch.tensor([[[[-1, 0]]]]), "values in [-1, 0]"),
        (torch.zeros(1, 1, 2, 2), "integer class indices"),  # float
        (torch.zeros(1, 3, 2, 2, dtype=torch.long), "(B, 1, H, W)"),  # one-hot / RGB passed by mistake
        (torch.zeros(3, 2, 2, dtype=torch.long), "(B, 1, H, W)"),
    ],
)
def test_one_hot_labels_rejects_bad_maps(label, needle):
    with pytest.raises(Medi2iInputError) as err:
        one_hot_labels(label, 3)
    assert needle in str(err.value) and err.value.field == "label"


# ---------------------------------------------------------------- SPADE normalisation


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_modulation_identity(norm):
    """Digest 2.6 check 2: gamma and beta convs zeroed -> SPADE(x, m) == param_free_norm(x) for any m."""
    torch.manual_seed(0)
    block = SPADENorm(6, 4, hidden_channels=8, param_free_norm=norm)
    for conv in (block.mlp_gamma, block.mlp_beta):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    x = torch.randn(3, 6, 8, 8) * 3 + 1
    segmap = one_hot_labels(torch.randint(0, 4, (3, 1, 16, 16)), 4)
    out = block(x, segmap)
    dims = (0, 2, 3) if norm == "batch" else (2, 3)
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, unbiased=False, keepdim=True)
    torch.testing.assert_close(out, (x - mean) / torch.sqrt(var + 1e-5), atol=1e-5, rtol=1e-5)


def test_uniform_label_map_gives_spatially_uniform_modulation():
    """Constant map -> gamma and beta constant over space per channel (away from the zero-padded border)."""
    torch.manual_seed(0)
    block = SPADENorm(5, 3, hidden_channels=8, param_free_norm="instance")
    for cls in range(3):
        gamma, beta = block.modulation(_uniform(3, cls, 12), (12, 12))
        for t in (gamma, beta):
            interior = t[..., 2:-2, 2:-2]  # two 3x3 convs: the border influence reaches 2 pixels
            spread = (interior - interior[..., :1, :1]).abs().max()
            assert spread < 1e-5
            assert interior.abs().max() > 1e-3  # and not trivially zero
    # Activations constant over space (different per sample and channel), BN statistics over the batch: the
    # SPADE output is then constant over the interior per sample and channel, and differs between samples.
    block = SPADENorm(5, 3, hidden_channels=8, param_free_norm="batch")
    x = torch.randn(3, 5, 1, 1).expand(3, 5, 12, 12)
    out = block(x, _uniform(3, 2, 12, batch=3))[..., 2:-2, 2:-2]
    assert (out - out[..., :1, :1]).abs().max() < 1e-5
    assert (out[0] - out[1]).abs().max() > 1e-2


def test_uniform_label_map_keeps_class_information_unlike_conv_then_norm():
    """Digest 2.6 check 1 / thesis Fig. 2.3: SPADE G(all class 0) != G(all class 1), conv -> IN control gives ~0."""
    torch.manual_seed(0)
    size, classes = 16, 3
    gen = SPADEGenerator(
        classes, 3, nf=8, crop_size=size, channel_mults=(4, 2, 1), hidden_channels=16, param_free_norm="instance"
    )
    gen.eval()
    with torch.no_grad():
        diff_spade = (gen(_uniform(classes, 0, size)) - gen(_uniform(classes, 1, size))).abs().mean()
        # pix2pixHD-style control: reflection-padded conv, then InstanceNorm of the *label features*.
        control = nn.Sequential(nn.Conv2d(classes, 8, 3, padding=1, padding_mode="reflect"), nn.InstanceNorm2d(8))
        diff_control = (control(_uniform(classes, 0, size)) - control(_uniform(classes, 1, size))).abs().mean()
    assert diff_spade > 0.05
    assert diff_control < 1e-3
    assert diff_spade > 100 * diff_control


def test_spade_norm_matches_monai_block_once_its_quirks_are_removed():
    """Same formula as monai.networks.blocks.SPADE after swapping its ADN sub-modules for the official ones."""
    from monai.networks.blocks import SPADE as MonaiSPADE

    torch.manual_seed(0)
    ours = SPADENorm(6, 4, hidden_channels=16, param_free_norm="instance")
    theirs = MonaiSPADE(4, 6, hidden_channels=16, norm=("INSTANCE", {"affine": False}))
    theirs.mlp_shared.adn = nn.ReLU()  # MONAI: LeakyReLU(0.01)
    theirs.mlp_gamma.adn = nn.Identity()  # MONAI: InstanceNorm on gamma
    theirs.mlp_beta.adn = nn.Identity()
    ours.mlp_shared[0].load_state_dict(theirs.mlp_shared.conv.state_dict())
    ours.mlp_gamma.load_state_dict(theirs.mlp_gamma.conv.state_dict())
    ours.mlp_beta.load_state_dict(theirs.mlp_beta.conv.state_dict())
    x, segmap = torch.randn(2, 6, 8, 8), one_hot_labels(torch.randint(0, 4, (2, 1, 8, 8)), 4)
    torch.testing.assert_close(ours(x, segmap), theirs(x, segmap))


def test_spade_norm_shapes_and_contract_errors():
    block = SPADENorm(8, 3, hidden_channels=4)
    assert block(torch.randn(2, 8, 5, 7), torch.ones(2, 3, 10, 14)).shape == (2, 8, 5, 7)
    assert isinstance(block.param_free_norm, nn.BatchNorm2d) and not block.param_free_norm.affine
    assert isinstance(block.mlp_shared[1], nn.ReLU) and block.mlp_shared[0].out_channels == 4
    assert SPADENorm(8, 3).mlp_shared[0].out_channels == 128  # official nhidden
    with pytest.raises(ValueError, match="expected x"):
        block(torch.randn(2, 7, 5, 5), torch.ones(2, 3, 5, 5))
    with pytest.raises(ValueError, match="one-hot segmap"):
        block(torch.randn(2, 8, 5, 5), torch.ones(2, 4, 5, 5))


# ---------------------------------------------------------------- ResBlk and spectral norm


@pytest.mark.parametrize(("fin", "fout", "learned"), [(8, 8, False), (8, 4, True), (4, 8, True)])
def test_resblock_shapes_shortcut_and_spectral_norm(fin, fout, learned):
    blk = SPADEResBlock(fin, fout, 3, hidden_channels=4)
    assert blk.learned_shortcut is learned
    assert blk(torch.randn(2, fin, 6, 6), torch.ones(2, 3, 6, 6)).shape == (2, fout, 6, 6)
    assert blk.conv_0.out_channels == min(fin, fout)
    convs = [blk.conv_0, blk.conv_1] + ([blk.conv_s] if learned else [])
    assert all(_is_spectral(c) for c in convs)
    if learned:
        assert blk.conv_s.bias is None and blk.conv_s.kernel_size == (1, 1)
    # The SPADE convs themselves carry no spectral norm (as in the code).
    assert not any(_is_spectral(m) for m in blk.norm_0.modules() if isinstance(m, nn.Conv2d))
    plain = SPADEResBlock(fin, fout, 3, hidden_channels=4, spectral=False)
    assert not any(_is_spectral(m) for m in plain.modules() if isinstance(m, nn.Conv2d))


def test_spectral_norm_bounds_the_largest_singular_value():
    torch.manual_seed(0)
    blk = SPADEResBlock(8, 8, 2, hidden_channels=4)
    with torch.no_grad():
        blk.conv_0.weight_orig.mul_(50.0)
        for _ in range(30):  # power iterations run on each training-mode access
            blk(torch.randn(1, 8, 4, 4), torch.ones(1, 2, 4, 4))
        sigma = torch.linalg.matrix_norm(blk.conv_0.weight.flatten(1), ord=2)
    assert abs(float(sigma) - 1.0) < 1e-2


def test_resblock_identity_shortcut_is_exact():
    torch.manual_seed(0)
    blk = SPADEResBlock(4, 4, 2, hidden_channels=4, spectral=False)
    for conv in (blk.conv_1,):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(blk(x, torch.ones(2, 2, 5, 5)), x)


# ---------------------------------------------------------------- generator


@pytest.mark.parametrize(
    ("kwargs", "label_size", "out_size", "n_blocks", "n_up"),
    [
        ({"crop_size": 32}, (32, 32), (32, 32), 7, 5),  # normal: 5 upsamplings, start 1x1
        ({"crop_size": 64, "aspect_ratio": 2.0}, (32, 64), (32, 64), 7, 5),  # sw 2, sh 1
        ({"crop_size": 64, "num_upsampling_layers": "more"}, (64, 64), (64, 64), 7, 6),
        ({"crop_size": 128, "num_upsampling_layers": "most"}, (128, 128), (128, 128), 8, 7),
        ({"crop_size": 32, "channel_mults": (4, 2, 1, 1)}, (32, 32), (32, 32), 4, 3),  # digest tiny: 4x4 start
        ({"crop_size": 32, "channel_mults": (4, 2, 1, 1)}, (16, 48), (16, 48), 4, 3),  # fully convolutional
    ],
)
@pytest.mark.parametrize("batch", [1, 2])
def test_generator_shape_table(kwargs, label_size, out_size, n_blocks, n_up, batch):
    gen = SPADEGenerator(5, 1, nf=2, hidden_channels=4, **kwargs)
    assert len(gen.blocks) == n_blocks and gen.n_up == n_up
    if batch == 1:
        gen.eval()  # BN needs more than one value per channel in training mode at the 1x1 start
    out = gen(one_hot_labels(torch.randint(0, 5, (batch, 1, *label_size)), 5))
    assert out.shape == (batch, 1, *out_size)
    assert out.abs().max() <= 1.0  # tanh


def test_generator_official_layout_channels_and_parameter_count():
    gen = SPADEGenerator(3, 3, nf=4, hidden_channels=4, crop_size=128, num_upsampling_layers="most")
    channels = [(b.in_channels, b.out_channels) for b in gen.blocks]
    assert channels == [(64, 64), (64, 64), (64, 64), (64, 32), (32, 16), (16, 8), (8, 4), (4, 2)]
    assert gen.upsample_before == (False, True, True, True, True, True, True, True)
    normal = SPADEGenerator(3, 3, nf=4, hidden_channels=4, crop_size=128)
    assert normal.upsample_before == (False, True, False, True, True, True, True) and normal.sw == 4
    # Thesis Table 2.3 reports 96M parameters; the layer shapes give 96.49M for ADE20K's 151 classes.
    with torch.device("meta"):
        full = SPADEGenerator(151, 3)
    assert sum(p.numel() for p in full.parameters()) == 96_492_483


def test_generator_vae_path():
    torch.manual_seed(0)
    gen = SPADEGenerator(3, 3, nf=2, hidden_channels=4, crop_size=16, channel_mults=(2, 1), use_vae=True, z_dim=6)
    assert isinstance(gen.fc, nn.Linear) and gen.fc.out_features == 4 * 8 * 8 and gen.output_size == (16, 16)
    gen.eval()
    seg = _uniform(3, 1, 16, batch=2)
    z = torch.randn(2, 6)
    torch.testing.assert_close(gen(seg, z), gen(seg, z))
    assert not torch.allclose(gen(seg), gen(seg))  # z ~ N(0, I) when not given: multimodal
    with pytest.raises(Medi2iInputError, match="configured size"):
        gen(_uniform(3, 1, 32))
    with pytest.raises(ValueError, match="z of shape"):
        gen(seg, torch.randn(2, 5))


def test_generator_input_errors():
    gen = SPADEGenerator(3, 1, nf=2, hidden_channels=4, crop_size=16, channel_mults=(2, 1, 1))
    with pytest.raises(Medi2iInputError, match="divisible"):
        gen(_uniform(3, 0, 18))
    with pytest.raises(ValueError, match="use_vae=False"):
        gen(_uniform(3, 0, 16), torch.zeros(1, 256))
    with pytest.raises(ValueError, match="one-hot segmap"):
        gen(torch.zeros(1, 1, 16, 16))


def test_generator_state_dict_round_trip():
    torch.manual_seed(0)
    kwargs = {"nf": 2, "hidden_channels": 4, "crop_size": 16, "channel_mults": (2, 1, 1)}
    gen = SPADEGenerator(3, 2, **kwargs)
    seg = one_hot_labels(torch.randint(0, 3, (2, 1, 16, 16)), 3)
    gen(seg)  # one training step's power iteration and BN statistics
    torch.manual_seed(1)
    copy = SPADEGenerator(3, 2, **kwargs)
    copy.load_state_dict(gen.state_dict())
    gen.eval()
    copy.eval()
    torch.testing.assert_close(copy(seg), gen(seg), atol=0, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_upsampling_layers": "sideways"}, "sideways"),
        ({"num_upsampling_layers": "normal", "channel_mults": (2, 1)}, "not both"),
        ({"channel_mults": (2,)}, "at least 2"),
        ({"channel_mults": (2, 0)}, "at least 2"),
        ({"crop_size": 48}, "divisible by 2\\*\\*5"),
        ({"aspect_ratio": 0.0}, "aspect_ratio"),
        ({"aspect_ratio": 80.0, "crop_size": 64}, "start height"),
        ({"kernel_size": 2}, "kernel_size"),
        ({"param_free_norm": "group"}, "group"),
        ({"nf": 0}, "nf"),
    ],
)
def test_generator_illegal_configs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SPADEGenerator(3, 3, **kwargs)


# ---------------------------------------------------------------- VAE encoder and KL


@pytest.mark.parametrize(("input_size", "n_layers", "last"), [(256, 6, 32), (32, 3, 16), (8, 1, 4)])
def test_style_encoder_layout(input_size, n_layers, last):
    enc = SPADEStyleEncoder(3, ndf=4, z_dim=5, input_size=input_size)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == n_layers and convs[-1].out_channels == last
    assert all(_is_spectral(c) and c.stride == (2, 2) and c.bias is None for c in convs)
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in enc.modules()) == n_layers
    mu, logvar = enc(torch.randn(2, 3, 20, 28))  # any size: resized to input_size first
    assert mu.shape == logvar.shape == (2, 5)


def test_style_encoder_full_size_parameter_count():
    with torch.device("meta"):
        enc = SPADEStyleEncoder(3)
    assert [m.out_channels for m in enc.modules() if isinstance(m, nn.Conv2d)] == [64, 128, 256, 512, 512, 512]
    assert round(sum(p.numel() for p in enc.parameters()) / 1e6, 1) == 10.5  # digest: about 10.5M


@pytest.mark.parametrize(("size", "match"), [(12, "power of two"), (4, "power of two"), (True, "power of two")])
def test_style_encoder_illegal_sizes(size, match):
    with pytest.raises(ValueError, match=match):
        SPADEStyleEncoder(3, input_size=size)


def test_kl_divergence_formula_and_reductions():
    mu = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [math.log(0.25), 0.0]])
    # Closed form per dim: 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2).
    per_dim = [[0.5 * (1 + 1 - 1 - 0), 0.5 * (4 + 4 - 1 - math.log(4))], [0.5 * (0 + 0.25 - 1 - math.log(0.25)), 0.5]]
    expected_sum = sum(map(sum, per_dim))
    assert float(kl_divergence(mu, logvar)) == pytest.approx(expected_sum, rel=1e-6)
    assert float(kl_divergence(mu, logvar, "mean")) == pytest.approx(expected_sum / 2, rel=1e-6)
    dist = torch.distributions
    reference = dist.kl_divergence(dist.Normal(mu, (0.5 * logvar).exp()), dist.Normal(0.0, 1.0)).sum()
    assert float(kl_divergence(mu, logvar)) == pytest.approx(float(reference), rel=1e-6)
    assert float(kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4))) == 0.0
    with pytest.raises(ValueError, match="sideways"):
        kl_divergence(mu, logvar, "sideways")


def test_reparameterize_statistics():
    torch.manual_seed(0)
    mu, logvar = torch.full((20000, 1), 2.0), torch.full((20000, 1), math.log(9.0))
    z = reparameterize(mu, logvar)
    assert abs(float(z.mean()) - 2.0) < 0.1 and abs(float(z.std()) - 3.0) < 0.1
