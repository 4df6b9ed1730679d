"""Tests of medi2i.natural.spade: losses, optimisers, VGG policy, learning checks (park_thesis.md 2.2-2.6)."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from torch import nn

from medi2i.errors import Medi2iInputError
from medi2i.natural.data.synthetic import nearest_colour_segmentation, pixel_accuracy, random_layout, tiny_spade_task
from medi2i.natural.spade import SPADE
from medi2i.natural.spade_networks import kl_divergence, one_hot_labels
from medi2i.natural.toolkit.feature_losses import feature_matching_loss
from medi2i.natural.toolkit.gan_losses import discriminator_loss, generator_loss

torch.set_num_threads(1)

# A small model for fast unit tests (16 px, 2 upsamplings).
SMALL = {
    "crop_size": 16,
    "nf": 4,
    "channel_mults": (2, 1, 1),
    "hidden_channels": 8,
    "ndf": 4,
    "n_layers_d": 3,
    "lambda_vgg": 0.0,
}


def _batch(n: int = 2, size: int = 16, classes: int = 3, channels: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, classes, (n, 1, size, size), generator=g)
    return {"label": label, "image": torch.rand(n, channels, size, size, generator=g) * 2 - 1}


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


# ---------------------------------------------------------------- construction, config, optimisers


def test_defaults_follow_the_code():
    model = SPADE(3, 3, crop_size=32, nf=2, hidden_channels=4, ndf=2, lambda_vgg=0.0)
    assert model.G.layout_name == "normal" and model.G.n_up == 5
    assert model.lambda_feat == 10.0 and model.lambda_kl == 0.05 and model.gan_mode == "hinge"
    opts = model.configure_optimizers()
    assert set(opts) == {"G", "D"}
    assert opts["G"].defaults["lr"] == 1e-4 and opts["D"].defaults["lr"] == 4e-4  # TTUR
    assert opts["G"].defaults["betas"] == (0.0, 0.9) == opts["D"].defaults["betas"]  # the code's (discrepancy 1)
    # Multi-scale D (2 scales) on concat(one-hot, image): 3 + 3 input channels, spectral norm inside.
    assert model.D.num_d == 2
    first = model.D.discriminators[0].blocks[0][0]
    assert first.in_channels == 6
    assert any(hasattr(m, "weight_orig") for m in model.D.modules())
    assert model.E is None and set(model.inference_modules()) == {"G"}


def test_config_is_json_and_rebuilds_the_same_networks():
    torch.manual_seed(0)
    model = SPADE(4, 1, use_vae=True, z_dim=8, encoder_ndf=4, encoder_input_size=16, **SMALL)
    config = json.loads(json.dumps(model.config))
    copy = SPADE.from_config(config)
    assert copy.config == model.config
    assert model.state_dict().keys() == copy.state_dict().keys()
    copy.load_state_dict(model.state_dict())
    label = torch.randint(0, 4, (2, 1, 16, 16))
    style = torch.rand(2, 1, 16, 16) * 2 - 1
    torch.testing.assert_close(copy.translate(label, style), model.translate(label, style))
    assert set(model.inference_modules()) == {"G", "E"}
    g_params = {id(p) for group in model.configure_optimizers()["G"].param_groups for p in group["params"]}
    assert all(id(p) in g_params for p in model.E.parameters())  # E trains with G, as the code


def test_xavier_init_gain():
    torch.manual_seed(0)
    model = SPADE(3, 3, **{**SMALL, "nf": 16, "hidden_channels": 64})
    weight = model.G.blocks[0].norm_0.mlp_shared[0].weight  # not spectral-normed: the init is visible
    fan_in, fan_out = weight.shape[1] * 9, weight.shape[0] * 9
    expected = 0.02 * math.sqrt(2.0 / (fan_in + fan_out))
    assert abs(float(weight.detach().std()) / expected - 1) < 0.15
    assert float(model.G.blocks[0].norm_0.mlp_shared[0].bias.detach().abs().max()) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"out_channels": 0}, "out_channels"),
        ({"n_layers_d": 1}, "n_layers_d"),
        ({"lambda_feat": -1.0}, "lambda_feat"),
        ({"lambda_kl": float("nan")}, "lambda_kl"),
        ({"lr_g": 0.0}, "lr_g"),
        ({"betas": (0.0, 1.0)}, "betas"),
        ({"gan_mode": "wgan"}, "wgan"),
        ({"kl_reduction": "batchmean"}, "batchmean"),
        ({"param_free_norm": "syncbatch"}, "syncbatch"),
        ({"init_type": "glorot"}, "glorot"),
        ({"vgg_width": 0.5, "lambda_vgg": 10.0}, "vgg_pretrained=False"),
        ({"vgg_weights_path": "/x/vgg19.pth", "vgg_pretrained": False}, "vgg_weights_path"),
        ({"crop_size": 18}, "divisible"),
        ({"num_upsampling_layers": "more"}, "not both"),
    ],
)
def test_illegal_configs_raise(kwargs, match):
    args = {"num_classes": 3, "out_channels": 3, **SMALL, **kwargs}
    with pytest.raises(ValueError, match=match):
        SPADE(**args)


# ---------------------------------------------------------------- VGG perceptual-loss policy


def test_vgg_off_with_a_log_message_when_weights_are_missing(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MEDI2I_WEIGHTS", str(tmp_path))  # an empty weights folder
    with caplog.at_level(logging.WARNING, logger="medi2i.natural.spade"):
        model = SPADE(3, 3, **{**SMALL, "lambda_vgg": 10.0})
    assert model.vgg_loss is None
    assert "VGG19 perceptual loss OFF" in caplog.text and "vgg19-dcbb9e9d.pth" in caplog.text
    out = model.training_step(_batch(), model.configure_optimizers(), 0)
    assert "G_VGG" not in out.losses


def test_vgg_explicit_missing_path_is_an_error(tmp_path):
    with pytest.raises(Medi2iInputError, match="weights"):
        SPADE(3, 3, **{**SMALL, "lambda_vgg": 10.0, "vgg_weights_path": str(tmp_path / "missing.pth")})


def test_vgg_random_trunk_only_when_asked_and_kept_out_of_state_dict(caplog):
    with caplog.at_level(logging.WARNING):
        model = SPADE(3, 1, **{**SMALL, "lambda_vgg": 10.0, "vgg_pretrained": False, "vgg_width": 0.0625})
    assert model.vgg_loss is not None and "random weights" in caplog.text
    assert not any(key.startswith(("vgg", "_vgg")) for key in model.state_dict())
    assert all(not p.requires_grad for p in model.vgg_loss.parameters())
    model.double()  # .to()/.double() reach the unregistered VGG too
    assert next(model.vgg_loss.parameters()).dtype == torch.float64
    model.float()
    out = model.training_step(_batch(channels=1), model.configure_optimizers(), 0)
    assert out.losses["G_VGG"] > 0


def test_vgg_off_for_unsupported_channel_counts(caplog):
    with caplog.at_level(logging.WARNING, logger="medi2i.natural.spade"):
        model = SPADE(3, 2, **{**SMALL, "lambda_vgg": 10.0, "vgg_pretrained": False, "vgg_width": 0.0625})
    assert model.vgg_loss is None and "out_channels=2" in caplog.text


# ---------------------------------------------------------------- one step: losses and updates


@torch.no_grad()
def test_generator_loss_is_the_sum_of_the_paper_terms():
    """L_G = hinge G + 10 FM + 0.05 KL, each recomputed from its formula on the same forward pass."""
    torch.manual_seed(0)
    model = SPADE(3, 3, use_vae=True, z_dim=8, encoder_ndf=4, encoder_input_size=16, **SMALL)
    model.eval()  # frozen spectral-norm vectors and BN statistics: the two passes below see the same networks
    batch = _batch(n=3)
    onehot = one_hot_labels(batch["label"], 3)
    torch.manual_seed(1)
    loss, fake, parts = model.g_loss(onehot, batch["image"])
    torch.manual_seed(1)
    mu, logvar = model.E(batch["image"])
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    fake_ref = model.G(onehot, z)
    torch.testing.assert_close(fake, fake_ref)
    pred = model.D(torch.cat([torch.cat([onehot, fake_ref], 1), torch.cat([onehot, batch["image"]], 1)]))
    pred_fake = [[f[:3] for f in s] for s in pred]
    pred_real = [[f[3:] for f in s] for s in pred]
    gan = -sum(s[-1].mean() for s in pred_fake) / 2  # hinge G loss averaged over the 2 scales
    fm = 10 * feature_matching_loss(pred_real, pred_fake)
    kl = 0.05 * -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp())  # summed over batch and dims (the code)
    assert parts["G_GAN"] == pytest.approx(float(gan), rel=1e-5)
    assert parts["G_FM"] == pytest.approx(float(fm), rel=1e-5)
    assert parts["KL"] == pytest.approx(float(kl), rel=1e-5)
    assert float(loss) == pytest.approx(float(gan + fm + kl), rel=1e-5)
    assert parts["G_GAN"] == pytest.approx(float(generator_loss("hinge", pred_fake)), rel=1e-5)


def test_kl_reduction_sum_scales_with_the_batch_and_mean_does_not():
    torch.manual_seed(0)
    common = {"use_vae": True, "z_dim": 8, "encoder_ndf": 4, "encoder_input_size": 16, **SMALL}
    summed = SPADE(3, 3, kl_reduction="sum", **common)
    meaned = SPADE(3, 3, kl_reduction="mean", **common)
    meaned.load_state_dict(summed.state_dict())
    batch = _batch(n=4)
    onehot = one_hot_labels(batch["label"], 3)
    kl_sum = summed.g_loss(onehot, batch["image"])[2]["KL"]
    kl_mean = meaned.g_loss(onehot, batch["image"])[2]["KL"]
    assert kl_sum == pytest.approx(4 * kl_mean, rel=1e-5)
    with torch.no_grad():
        mu, logvar = summed.E(batch["image"])
    assert kl_mean == pytest.approx(0.05 * float(kl_divergence(mu, logvar, "mean")), rel=1e-5)


def test_discriminator_loss_is_hinge_on_real_and_fresh_fake():
    torch.manual_seed(0)
    model = SPADE(3, 3, **SMALL)
    batch = _batch()
    onehot = one_hot_labels(batch["label"], 3)
    loss, parts = model.d_loss(onehot, batch["image"])
    with torch.no_grad():
        fake = model.G(onehot)
    pred_fake, pred_real = model.discriminate(onehot, fake, batch["image"])
    expected = sum(
        torch.relu(1 - r[-1]).mean() + torch.relu(1 + f[-1]).mean() for r, f in zip(pred_real, pred_fake, strict=True)
    )
    assert float(loss.detach()) == pytest.approx(float(expected.detach()) / 2, rel=1e-5)
    assert parts["D"] == pytest.approx(float(discriminator_loss("hinge", pred_real, pred_fake).detach()), rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in model.G.parameters())  # the D step never reaches G


def test_training_step_updates_g_then_d_and_reports_images():
    torch.manual_seed(0)
    model = SPADE(3, 3, use_vae=True, z_dim=8, encoder_ndf=4, encoder_input_size=16, **SMALL)
    opts = model.configure_optimizers()
    g0, d0, e0 = _params(model.G), _params(model.D), _params(model.E)
    out = model.training_step(_batch(), opts, 0)
    assert _changed(g0, model.G) and _changed(d0, model.D) and _changed(e0, model.E)
    assert set(out.losses) == {"G_GAN", "G_FM", "KL", "G", "D"}
    assert all(math.isfinite(v) for v in out.losses.values())
    assert set(out.images) == {"label", "real", "fake"}
    assert all(img.shape == (2, c, 16, 16) for img, c in zip(out.images.values(), (1, 3, 3), strict=True))
    assert float(out.images["label"].min()) >= -1 and float(out.images["label"].max()) <= 1
    assert all(p.requires_grad for p in model.D.parameters())  # D unfrozen again after the G step


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ({"label": torch.full((2, 1, 16, 16), 3), "image": torch.zeros(2, 3, 16, 16)}, "values in \\[3, 3\\]"),
        ({"label": torch.zeros(2, 1, 16, 16), "image": torch.zeros(2, 3, 16, 16)}, "integer class indices"),
        ({"label": torch.zeros(2, 1, 16, 16, dtype=torch.long), "image": torch.zeros(2, 1, 16, 16)}, "C = 3"),
        ({"label": torch.zeros(2, 1, 8, 8, dtype=torch.long), "image": torch.zeros(2, 3, 16, 16)}, "same batch"),
        ({"image": torch.zeros(2, 3, 16, 16)}, "no such key"),
    ],
)
def test_bad_batches_raise_before_any_update(batch, match):
    torch.manual_seed(0)
    model = SPADE(3, 3, **SMALL)
    opts = model.configure_optimizers()
    g0 = _params(model.G)
    with pytest.raises(Medi2iInputError, match=match):
        model.training_step(batch, opts, 0)
    assert not _changed(g0, model.G)


# ---------------------------------------------------------------- inference


def test_translate_contract():
    torch.manual_seed(0)
    model = SPADE(3, 3, **SMALL)
    label = torch.randint(0, 3, (2, 1, 16, 16))
    out = model.translate(label)
    assert out.shape == (2, 3, 16, 16) and float(out.abs().max()) <= 1.0
    assert model.training  # mode restored
    torch.testing.assert_close(model.translate({"label": label, "image": torch.zeros(2, 3, 16, 16)}), out)
    assert model.translate(torch.randint(0, 3, (1, 1, 32, 48))).shape == (1, 3, 32, 48)  # fully convolutional
    with pytest.raises(Medi2iInputError, match="values in"):
        model.translate(torch.full((1, 1, 16, 16), 7))
    with pytest.raises(ValueError, match="use_vae=True"):
        model.translate(label, torch.zeros(2, 3, 16, 16))


def test_translate_with_style_is_deterministic_and_style_dependent():
    torch.manual_seed(0)
    model = SPADE(3, 1, use_vae=True, z_dim=8, encoder_ndf=4, encoder_input_size=16, **SMALL)
    nn.init.normal_(model.G.fc.weight, std=1.0)  # make z matter at init (gain 0.02 makes it tiny)
    label = torch.randint(0, 3, (2, 1, 16, 16))
    dark, bright = torch.full((2, 1, 16, 16), -0.8), torch.rand(2, 1, 16, 16)
    out = model.translate(label, dark)
    torch.testing.assert_close(model.translate(label, dark), out)  # z = mu(E(style))
    assert not torch.allclose(model.translate(label, bright), out)
    assert not torch.allclose(model.translate(label), model.translate(label))  # z ~ N(0, I)
    torch.testing.assert_close(model.translate(label, z=torch.zeros(2, 8)), model.translate(label, z=torch.zeros(2, 8)))
    with pytest.raises(Medi2iInputError, match="C = 1"):
        model.translate(label, torch.zeros(2, 3, 16, 16))
    with pytest.raises(Medi2iInputError, match="configured size"):
        model.translate(torch.zeros(2, 1, 32, 32, dtype=torch.long))


# ---------------------------------------------------------------- trainer and model files


def _train_spade(total: int, checkpoint_dir, resume=None):
    from medi2i.natural.data.synthetic import tiny_spade_dataset
    from medi2i.natural.trainer import AdversarialTrainer

    torch.manual_seed(0)
    model = SPADE(3, 3, use_vae=True, z_dim=8, encoder_ndf=4, encoder_input_size=16, **SMALL)
    loader = torch.utils.data.DataLoader(tiny_spade_dataset(8, size=16), batch_size=4, shuffle=True)
    trainer = AdversarialTrainer(
        model,
        loader,
        max_epochs=10,
        max_iterations=total,
        device="cpu",
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        save_every=0,
    )
    trainer.run()
    return trainer


def test_trainer_resume_is_bit_identical_and_model_file_round_trips(tmp_path):
    """BN running statistics, spectral-norm vectors, E, Adam moments and the VAE noise all resume exactly."""
    from medi2i.natural.model_files import load_model

    straight = _train_spade(4, tmp_path / "straight")
    _train_spade(3, tmp_path / "split")  # stops inside the second pass over the data
    resumed = _train_spade(4, tmp_path / "split", resume="latest")
    sa, sb = straight.method.state_dict(), resumed.method.state_dict()
    assert sa.keys() == sb.keys()
    assert [k for k in sa if not torch.equal(sa[k], sb[k])] == []
    assert straight.last_output.losses == resumed.last_output.losses
    loaded = load_model(tmp_path / "straight" / "model.pt")
    assert isinstance(loaded, SPADE) and set(loaded.inference_modules()) == {"G", "E"}
    label = torch.randint(0, 3, (2, 1, 16, 16))
    style = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(loaded.translate(label, style), straight.method.translate(label, style))


# ---------------------------------------------------------------- learning checks (digest 2.6)


def _tiny_run(
    *, size: int, iterations: int, model_kwargs: dict, batch_size: int = 8, seed: int = 0, train_n: int = 64
) -> dict[str, float]:
    """Train on the tiny SPADE task; pixel accuracy of the nearest-colour segmenter on held-out label maps."""
    torch.manual_seed(seed)
    train = tiny_spade_task(train_n, size=size, seed=seed)
    test = tiny_spade_task(32, size=size, seed=seed + 1000)
    model = SPADE(3, 3, crop_size=size, **model_kwargs)
    opts = model.configure_optimizers()

    def evaluate() -> tuple[float, float]:
        fake = model.translate(test["label"])
        acc = pixel_accuracy(nearest_colour_segmentation(fake), test["label"])
        return acc, float((fake - test["image"]).abs().mean())

    acc0, l1_0 = evaluate()
    g = torch.Generator().manual_seed(seed)
    for step in range(iterations):
        idx = torch.randint(0, train_n, (batch_size,), generator=g)
        model.training_step({"label": train["label"][idx], "image": train["image"][idx]}, opts, step)
    acc, l1 = evaluate()
    majority = float((test["label"] == 0).float().mean())
    return {"acc0": acc0, "acc": acc, "majority": majority, "l1_0": l1_0, "l1": l1}


FAST = {
    "nf": 8,
    "channel_mults": (4, 2, 1),
    "hidden_channels": 16,
    "ndf": 8,
    "n_layers_d": 3,
    "lambda_vgg": 0.0,
    "lr_g": 4e-4,
    "lr_d": 8e-4,
}


def test_learning_check_fast():
    """Seeded, reduced check (16 px, 50 steps, 4x the TTUR lrs): segmenter accuracy clearly above the majority rate."""
    r = _tiny_run(size=16, iterations=50, model_kwargs=FAST)
    assert r["acc"] >= r["majority"] + 0.06, r
    assert r["acc"] >= r["acc0"] + 0.1, r
    assert r["l1"] < r["l1_0"] - 0.1, r


# The digest's tiny CPU model (section 2.6 / 7): nf 16, 4x4 start, 4 ResBlks (64 | 32 | 16 | 16), nhidden 32,
# 2-scale D with ndf 16 and n_layers_D 3 (strides 2, 2, 1 then the score conv), official lrs and betas.
TINY = {
    "nf": 16,
    "channel_mults": (4, 2, 1, 1),
    "hidden_channels": 32,
    "ndf": 16,
    "n_layers_d": 3,
    "lambda_vgg": 0.0,
}


@pytest.mark.slow
def test_learning_check_full():
    """Digest 2.6 check 3 at 32 px with the official TTUR lrs: accuracy well above majority, L1 to GT falls."""
    r = _tiny_run(size=32, iterations=400, model_kwargs=TINY)
    print("SPADE tiny 32 px, 400 steps:", {k: round(v, 3) for k, v in r.items()})
    assert r["acc"] >= r["majority"] + 0.1, r
    assert r["l1"] < r["l1_0"] - 0.2, r


@pytest.mark.slow
def test_learning_check_vae_style():
    """Digest 2.6 check 3 (VAE): output brightness follows the reference's brightness shift (z = mu(E(ref))).

    Settings chosen from measurements on this task: 4x the TTUR lrs and ``kl_reduction="mean"``. With the
    official 1e-4 / 4e-4 the correlation was 0.44 after 500 steps; with the code's batch-summed KL (0.05 x 8 per
    image) it varied between 0.27 and 0.90 at 400 steps with the trajectory; with these settings it reached
    0.90 (seed 0) and 0.89 (seed 1) at 600 steps and stayed above 0.78 from step 300/400 on. D's InstanceNorm
    hides global brightness from all but its first layer, so the style reaches G mainly through feature matching.
    """
    kwargs = {**TINY, "use_vae": True, "z_dim": 16, "encoder_ndf": 8, "encoder_input_size": 32}
    torch.manual_seed(0)
    train = tiny_spade_task(128, size=32, seed=0)
    model = SPADE(3, 3, crop_size=32, lr_g=4e-4, lr_d=8e-4, kl_reduction="mean", **kwargs)
    opts = model.configure_optimizers()
    g = torch.Generator().manual_seed(0)
    for step in range(600):
        idx = torch.randint(0, 128, (8,), generator=g)
        model.training_step({"label": train["label"][idx], "image": train["image"][idx]}, opts, step)
    ref = tiny_spade_task(32, size=32, seed=7)
    layout = tiny_spade_task(32, size=32, seed=8)["label"]  # another label map: only the style is transferred
    out = model.translate(layout, ref["image"])
    corr = torch.corrcoef(torch.stack([ref["shift"], out.mean(dim=(1, 2, 3))]))[0, 1]
    print(f"SPADE VAE: corr(reference shift, output brightness) = {float(corr):.3f}")
    assert float(corr) > 0.5, float(corr)


# ---------------------------------------------------------------- medical use: label map -> 1-channel MR slice


def _tissue_slices(n: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    """Grey 'MR' slices: background -1, class 1 at 0.6, class 2 at -0.2, plus a little noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = torch.from_numpy(np.stack([random_layout(rng, size) for _ in range(n)]))[:, None]
    values = torch.tensor([-1.0, 0.6, -0.2])
    image = values[labels] + 0.03 * torch.from_numpy(rng.normal(size=(n, 1, size, size))).float()
    return {"label": labels, "image": image.clamp(-1, 1)}


def test_medical_smoke_label_map_to_one_channel_slice():
    torch.manual_seed(0)
    data = _tissue_slices(8, 16, seed=0)
    model = SPADE(3, 1, **{**SMALL, "param_free_norm": "instance"})
    opts = model.configure_optimizers()
    for step in range(3):
        out = model.training_step(data, opts, step)
        assert all(math.isfinite(v) for v in out.losses.values())
    fake = model.translate(data["label"])
    assert fake.shape == (8, 1, 16, 16) and fake.dtype == torch.float32
    assert float(fake.abs().max()) <= 1.0


@pytest.mark.slow
def test_medical_demo_cohort_label_map_to_t1w_slice():
    """Demo-cohort labels -> T1w slices (32 px): generated tissue intensities follow the real per-class means."""
    from medi2i.natural.data.defaults import demo_semantic_slices

    dataset = demo_semantic_slices("train", size=(32, 32), train=False)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    k = dataset.num_classes
    torch.manual_seed(0)
    model = SPADE(k, 1, crop_size=32, **{**TINY, "param_free_norm": "instance"})
    opts = model.configure_optimizers()
    step = 0
    while step < 300:
        for batch in loader:
            model.training_step(batch, opts, step)
            step += 1
            if step == 300:
                break
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=64)))
    fake = model.translate(batch["label"])
    present = [c for c in range(k) if (batch["label"] == c).sum() > 20]
    real_means = torch.stack([batch["image"][batch["label"] == c].mean() for c in present])
    fake_means = torch.stack([fake[batch["label"] == c].mean() for c in present])
    corr = torch.corrcoef(torch.stack([real_means, fake_means]))[0, 1]
    print("SPADE demo cohort: real/fake class means", real_means.tolist(), fake_means.tolist(), float(corr))
    assert float(corr) > 0.8, (real_means.tolist(), fake_means.tolist())
    assert float((fake - batch["image"]).abs().mean()) < 0.3
