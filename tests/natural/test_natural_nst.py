"""Gatys NST (medi2i.natural.nst): Gram/loss math against hand computation, colour preservation, and
seeded learning checks on a tiny synthetic pair with a 1/8-width random VGG19 (digest section 3.5)."""

from __future__ import annotations

import pytest
import torch

from medi2i.natural.nst import (
    NeuralStyleTransfer,
    content_loss,
    gram_matrix,
    histogram_match_colours,
    rgb_to_yiq,
    style_layer_loss,
)

torch.set_num_threads(1)


def synthetic_pair(size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Content: smooth grey disk on a ramp; style: blue stripes plus noise (differ in colour and texture)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    disk = ((xx**2 + yy**2) < 0.35).float()
    grey = (0.5 * xx + 0.8 * disk - 0.3).clamp(-1, 1)
    content = grey.expand(3, -1, -1).clone()
    g = torch.Generator().manual_seed(1)
    stripes = torch.sin(xx * 12.0 + yy * 6.0)
    noise = 0.2 * torch.randn(size, size, generator=g)
    style = torch.stack([-0.8 + 0.1 * stripes + noise, -0.3 + 0.3 * stripes + noise, 0.6 + 0.35 * stripes + noise])
    return content, style.clamp(-1, 1)


def make(**kw) -> NeuralStyleTransfer:
    kw.setdefault("pretrained", False)
    kw.setdefault("vgg_width", 0.125)
    kw.setdefault("device", "cpu")
    return NeuralStyleTransfer(**kw)


# --- Gram and loss math --------------------------------------------------------------------------------------
def test_gram_known_values_and_normalisations():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]]])  # (1, C=2, 2, 2), M = 4
    raw = torch.tensor([[[30.0, 10.0], [10.0, 4.0]]])
    assert torch.equal(gram_matrix(f, "none"), raw)
    assert torch.allclose(gram_matrix(f, "hw"), raw / 4)
    assert torch.allclose(gram_matrix(f, "chw"), raw / 8)
    with pytest.raises(ValueError, match="normalize"):
        gram_matrix(f, "bchw")


def test_gram_symmetric_psd_and_position_permutation_invariant():
    f = torch.randn(2, 5, 6, 7)
    g = gram_matrix(f, "chw")
    assert torch.allclose(g, g.transpose(1, 2))
    assert (torch.linalg.eigvalsh(g.double()) > -1e-6).all()
    perm = torch.randperm(42)
    shuffled = f.reshape(2, 5, 42)[:, :, perm].reshape(2, 5, 6, 7)
    assert torch.allclose(gram_matrix(shuffled, "chw"), g, atol=1e-5)


def test_style_layer_loss_paper_equals_formula_with_raw_grams():
    f, a = torch.randn(1, 4, 3, 5), torch.randn(1, 4, 3, 5)
    n, m = 4, 15
    expected = ((gram_matrix(f, "none") - gram_matrix(a, "none")) ** 2).sum() / (4 * n**2 * m**2)
    got = style_layer_loss(gram_matrix(f, "hw"), gram_matrix(a, "hw"), "paper")
    assert torch.allclose(got, expected, rtol=1e-5)
    chw = style_layer_loss(gram_matrix(f, "chw"), gram_matrix(a, "chw"), "chw")
    assert torch.allclose(chw, ((gram_matrix(f, "none") - gram_matrix(a, "none")) / (n * m)).pow(2).mean())


def test_content_loss_formulas():
    f, p = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert torch.allclose(content_loss(f, p, "mean"), ((f - p) ** 2).mean())
    assert torch.allclose(content_loss(f, p, "paper"), 0.5 * ((f - p) ** 2).sum() / 2)


def test_collection_targets_are_the_mean_of_single_targets():
    nst = make(optimizer="adam", steps=1)
    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 48, 40) * 2 - 1
    ta, tb, tab = nst.style_targets([a]), nst.style_targets([b]), nst.style_targets([a, b])
    for name in nst.style_layers:
        assert torch.allclose(tab[name], (ta[name] + tb[name]) / 2, atol=1e-7)
    assert all(torch.equal(nst.style_targets([a, a])[k], ta[k]) for k in ta)


# --- learning checks -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("optimizer", "steps"), [("lbfgs", 4), ("adam", 120)])
def test_style_loss_halves_while_content_is_kept(optimizer, steps):
    content, style = synthetic_pair()
    nst = make(optimizer=optimizer, steps=steps, style_weight=300.0, seed=0)
    out, report = nst(content, style)
    assert out.shape == content.shape and torch.isfinite(out).all() and out.abs().max() <= 1.0
    # (a) style loss <= 50 % of its start
    assert report["style_loss_end"] <= 0.5 * report["style_loss_start"], report
    # (c) content criterion: content loss of the output stays below that of the style image itself
    with torch.no_grad():
        target = nst.features(content[None])[nst.content_layer]
        style_as_output = content_loss(nst.features(style[None])[nst.content_layer], target).item()
    assert report["content_loss_end"] < 0.5 * style_as_output, (report["content_loss_end"], style_as_output)

    # (b) per-channel pixel mean/std move toward the style
    def stats(x):
        return torch.cat([x.mean((1, 2)), x.std((1, 2))])

    assert (stats(out) - stats(style)).norm() < (stats(content) - stats(style)).norm()
    assert 0.0 < report["ssim_to_content"] <= 1.0


def test_noise_init_decreases_both_losses_and_is_deterministic():
    content, style = synthetic_pair(32)
    out1, r1 = make(optimizer="adam", steps=60, init="noise", seed=3, style_weight=300.0)(content, style)
    out2, _ = make(optimizer="adam", steps=60, init="noise", seed=3, style_weight=300.0)(content, style)
    assert r1["content_loss_end"] < r1["content_loss_start"]
    assert r1["style_loss_end"] < r1["style_loss_start"]
    assert torch.equal(out1, out2)


# --- colour preservation and medical slices -------------------------------------------------------------------
def test_luminance_mode_keeps_content_chroma():
    content, style = synthetic_pair(32)
    content = content * torch.tensor([0.9, 0.5, 0.2])[:, None, None]  # coloured content
    out, report = make(optimizer="adam", steps=20, colour="luminance", style_weight=300.0)(content, style)
    assert report["colour"] == "luminance"
    yo, yc = rgb_to_yiq(out[None]), rgb_to_yiq(content[None])
    inside = (out.abs() < 0.999).all(0)  # pixels not touched by the final clamp
    assert inside.float().mean() > 0.9
    assert torch.allclose(yo[0, 1:, inside], yc[0, 1:, inside], atol=1e-4)
    assert not torch.allclose(yo[0, 0], yc[0, 0], atol=1e-3)  # luminance was stylised


def test_histogram_matching_gives_content_colour_moments():
    content, style = synthetic_pair(32)
    content = content * torch.tensor([0.9, 0.5, 0.2])[:, None, None] + 0.05 * torch.randn(3, 32, 32)
    mapped = histogram_match_colours(style[None], content[None]).reshape(3, -1).double()
    c = content.reshape(3, -1).double()
    assert torch.allclose(mapped.mean(1), c.mean(1), atol=1e-5)
    assert torch.allclose(torch.cov(mapped, correction=0), torch.cov(c, correction=0), atol=1e-4)
    _, report = make(optimizer="adam", steps=2, colour="histogram")(content, style)
    assert report["colour"] == "histogram"


def test_single_channel_slice_with_rgb_style():
    content, style = synthetic_pair(32)
    out, report = make(optimizer="adam", steps=5)(content[:1], style)
    assert out.shape == (1, 32, 32)
    assert report["colour"] == "none" and -1.0 <= report["ssim_to_content"] <= 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        make(steps=0)
    with pytest.raises(ValueError, match="style_layer_weights"):
        make(style_layer_weights=(1.0,))
    with pytest.raises(ValueError):
        make(optimizer="sgd")
    nst = make(optimizer="adam", steps=1)
    with pytest.raises(ValueError, match="content"):
        nst(torch.zeros(2, 32, 32), torch.zeros(3, 32, 32))


def test_missing_vgg_weights_is_a_clear_input_error(tmp_path, monkeypatch):
    from medi2i.errors import Medi2iInputError
    from medi2i.natural.dtp import DeepTranslationPrior

    monkeypatch.setenv("MEDI2I_WEIGHTS", str(tmp_path))
    for cls in (NeuralStyleTransfer, DeepTranslationPrior):
        with pytest.raises(Medi2iInputError, match="vgg19-dcbb9e9d.pth") as err:
            cls(device="cpu")
        assert str(tmp_path) in str(err.value)


@pytest.mark.slow
def test_full_width_random_vgg_lbfgs_digest_configuration():
    """Digest 3.5: 64 px, full-width VGG19 (random), L-BFGS (strong Wolfe) 5 x 20 iterations, content init.

    Measured: style loss to 0.3 % of its start, content loss 0.35 x that of the style image (about 40 s)."""
    content, style = synthetic_pair(64)
    nst = make(vgg_width=1.0, optimizer="lbfgs", steps=5, style_weight=1e5)
    out, report = nst(content, style)
    assert report["style_loss_end"] <= 0.5 * report["style_loss_start"]
    with torch.no_grad():
        target = nst.features(content[None])[nst.content_layer]
        style_as_output = content_loss(nst.features(style[None])[nst.content_layer], target).item()
    assert report["content_loss_end"] < 0.5 * style_as_output
