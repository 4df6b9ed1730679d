"""SPADE: semantic image synthesis with spatially-adaptive normalisation (Park et al., CVPR 2019; thesis ch. 2).

Label map ``m`` (integer classes, one-hot inside) -> image. Networks (:mod:`medi2i.natural.spade_networks`):
the decoder-only SPADE generator ``G(m, z)`` (the label map enters every normalisation layer), an optional VAE
style encoder ``E(x) -> (mu, logvar)``, and the pix2pixHD multi-scale PatchGAN ``D`` (2 scales, spectral norm +
InstanceNorm) on ``concat(one-hot m, image)`` from the toolkit. Objective (thesis section 2.3; digest
``park_thesis.md`` section 2.2, weights of the code)::

    L_G = mean_k[-D_k(m, G(m, z))] + lambda_FM * L_FM + lambda_VGG * L_VGG + lambda_KL * L_KL
    L_D = mean_k[relu(1 - D_k(m, x)) + relu(1 + D_k(m, G(m, z)))]

with lambda_FM = lambda_VGG = 10 and lambda_KL = 0.05; ``L_FM`` is the pix2pixHD feature matching over D's
intermediate features, ``L_VGG`` the VGG19 ``relu1_1..relu5_1`` L1 loss with weights ``(1/32, ..., 1)``,
``L_KL = -0.5 * sum(1 + logvar - mu^2 - exp(logvar))``.

Decisions (digest sections 10 and 11; the code's behaviour is the default, as recommended there):

- **Adam betas (0, 0.9)** as the code (discrepancy 1: the thesis prints beta2 = 0.999; the authors confirmed the
  code's 0.9, NVlabs/SPADE #50). TTUR: ``lr_g=1e-4``, ``lr_d=4e-4`` (the code's ``lr 2e-4`` split as lr/2, 2lr).
  The non-TTUR variant of the code is ``lr_g=lr_d=2e-4, betas=(0.5, 0.999)``.
- **(1 + gamma) modulation and LeakyReLU(0.2)** in the ResBlks as the code (discrepancy 4).
- **KL reduction ``"sum"``** over latent dims *and* the batch, as the code (discrepancy 5): the published models
  were trained with it, but its effective per-image weight is ``0.05 * B``. ``kl_reduction="mean"`` (sum over
  latent dims, mean over the batch) keeps the weight independent of the batch size.
- **Update order** as the code's trainer: the G (+ E) step first, then the D step on a fresh ``G(m, z)``
  computed without gradients; D sees fake and real in one concatenated batch (as the code).
- **Perceptual loss only with real VGG19 weights.** With ``lambda_vgg > 0`` and ``vgg_pretrained=True`` (default)
  the ImageNet VGG19 file is looked up locally (``vgg_weights_path`` or ``$MEDI2I_WEIGHTS``); if it is not there
  and no path was given, the term is switched off with a logged warning (the thesis' strongest ablation,
  Table 2.5, so the log says so); an explicit ``vgg_weights_path`` that does not exist is an error. A random VGG
  is only used when ``vgg_pretrained=False`` is asked for explicitly (tests; ``VGGFeatures`` logs it). Grey
  1-channel images are repeated to RGB; other channel counts switch the term off with a warning. The VGG is
  frozen and kept out of ``state_dict`` (it is rebuilt from the file), so checkpoints do not depend on it.
- **Parameter-free norm** ``"batch"`` (the paper's BN; no SyncBN on one device) or ``"instance"`` for small
  medical batches (digest section 11.3). With BN, ``translate`` (eval mode) uses running statistics, as the code.
- **Init**: Xavier-normal, gain 0.02 (the code's ``init_variance``) for G, D and E.
- The code's instance-edge and "don't care" channels are not built in: a "don't care" class is just one more
  class of ``num_classes``. Labels are validated (:func:`~medi2i.natural.spade_networks.one_hot_labels`).

Batch contract: ``"label"`` int64 ``(B, 1, H, W)`` class indices, ``"image"`` float ``(B, C, H, W)`` in [-1, 1].
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from monai.utils import look_up_option
from torch import Tensor, nn

from medi2i.errors import Medi2iInputError
from medi2i.natural.spade_networks import (
    KLReduction,
    ParamFreeNorm,
    SPADEGenerator,
    SPADEStyleEncoder,
    kl_divergence,
    one_hot_labels,
    reparameterize,
)
from medi2i.natural.toolkit.discriminators import MultiScaleDiscriminator
from medi2i.natural.toolkit.feature_losses import VGGPerceptualLoss, feature_matching_loss
from medi2i.natural.toolkit.gan_losses import GANKind, discriminator_loss, generator_loss
from medi2i.natural.toolkit.init import init_weights
from medi2i.natural.trainer import AdversarialMethod, StepOutput

__all__ = ["SPADE"]

logger = logging.getLogger(__name__)


class SPADE(AdversarialMethod):
    """SPADE semantic image synthesis ``label map -> image`` (see the module docstring for the objective).

    Args:
        num_classes: label classes ``L`` (the one-hot width; labels must lie in ``[0, L)``).
        out_channels: image channels (3 for photos, 1 for an MR slice).
        crop_size: training image width; with ``aspect_ratio`` it fixes the generator's start size.
        aspect_ratio: width / height of the training images.
        nf: generator base width (64).
        num_upsampling_layers: ``"normal"`` / ``"more"`` / ``"most"`` (official layouts; default ``"normal"``).
        channel_mults: compact chain layout instead (e.g. ``(4, 2, 1, 1)`` with ``nf=16`` for the digest's tiny
            32 px model); see :class:`~medi2i.natural.spade_networks.SPADEGenerator`.
        hidden_channels: SPADE shared-conv width (128).
        kernel_size: SPADE conv kernel (3).
        param_free_norm: ``"batch"`` (paper) or ``"instance"``.
        use_vae: add the VAE style encoder (multimodal / style-guided synthesis).
        z_dim: latent size (256).
        encoder_ndf: style-encoder base width (64).
        encoder_input_size: size the style encoder resizes images to (256 in the code; a power of two).
        ndf: discriminator base width (64).
        num_d: discriminator scales (2).
        n_layers_d: the code's ``n_layers_D`` (4).
        gan_mode: adversarial objective (``"hinge"``; the code also offers ``"lsgan"``, ``"vanilla"``).
        lambda_feat: feature-matching weight (10; 0 switches it off).
        lambda_vgg: VGG19 perceptual weight (10; 0 switches it off).
        lambda_kl: KL weight (0.05; used with ``use_vae``).
        kl_reduction: ``"sum"`` (code) or ``"mean"``, see :class:`~medi2i.natural.spade_networks.KLReduction`.
        vgg_pretrained: use the ImageNet VGG19 weights (``False``: random trunk, tests only).
        vgg_weights_path: explicit VGG19 weights file (or folder).
        vgg_width: VGG channel multiplier (< 1 only with ``vgg_pretrained=False``).
        lr_g, lr_d: TTUR learning rates (1e-4, 4e-4).
        betas: Adam betas ((0, 0.9), the code's).
        init_type, init_gain: weight init (``"xavier"``, 0.02).

    Example:
        >>> model = SPADE(3, 1, crop_size=16, nf=4, channel_mults=(2, 1, 1), hidden_channels=8, ndf=4,
        ...               n_layers_d=3, lambda_vgg=0.0)
        >>> model.translate(torch.zeros(2, 1, 16, 16, dtype=torch.long)).shape
        torch.Size([2, 1, 16, 16])
    """

    name: ClassVar[str] = "spade"

    def __init__(
        self,
        num_classes: int = 3,
        out_channels: int = 3,
        *,
        crop_size: int = 256,
        aspect_ratio: float = 1.0,
        nf: int = 64,
        num_upsampling_layers: str | None = None,
        channel_mults: Sequence[int] | None = None,
        hidden_channels: int = 128,
        kernel_size: int = 3,
        param_free_norm: str = ParamFreeNorm.BATCH,
        use_vae: bool = False,
        z_dim: int = 256,
        encoder_ndf: int = 64,
        encoder_input_size: int = 256,
        ndf: int = 64,
        num_d: int = 2,
        n_layers_d: int = 4,
        gan_mode: str = GANKind.HINGE,
        lambda_feat: float = 10.0,
        lambda_vgg: float = 10.0,
        lambda_kl: float = 0.05,
        kl_reduction: str = KLReduction.SUM,
        vgg_pretrained: bool = True,
        vgg_weights_path: str | None = None,
        vgg_width: float = 1.0,
        lr_g: float = 1e-4,
        lr_d: float = 4e-4,
        betas: Sequence[float] = (0.0, 0.9),
        init_type: str = "xavier",
        init_gain: float = 0.02,
    ) -> None:
        config = dict(
            num_classes=num_classes,
            out_channels=out_channels,
            crop_size=crop_size,
            aspect_ratio=aspect_ratio,
            nf=nf,
            num_upsampling_layers=None if num_upsampling_layers is None else str(num_upsampling_layers),
            channel_mults=None if channel_mults is None else [int(m) for m in channel_mults],
            hidden_channels=hidden_channels,
            kernel_size=kernel_size,
            param_free_norm=str(param_free_norm),
            use_vae=bool(use_vae),
            z_dim=z_dim,
            encoder_ndf=encoder_ndf,
            encoder_input_size=encoder_input_size,
            ndf=ndf,
            num_d=num_d,
            n_layers_d=n_layers_d,
            gan_mode=str(gan_mode),
            lambda_feat=lambda_feat,
            lambda_vgg=lambda_vgg,
            lambda_kl=lambda_kl,
            kl_reduction=str(kl_reduction),
            vgg_pretrained=bool(vgg_pretrained),
            vgg_weights_path=None if vgg_weights_path is None else str(vgg_weights_path),
            vgg_width=vgg_width,
            lr_g=lr_g,
            lr_d=lr_d,
            betas=[float(b) for b in betas],
            init_type=str(init_type),
            init_gain=init_gain,
        )
        _check_config(config)
        super().__init__(**config)
        self.num_classes, self.out_channels = int(num_classes), int(out_channels)
        self.use_vae = bool(use_vae)
        self.gan_mode = str(GANKind(look_up_option(gan_mode, GANKind)).value)
        self.lambda_feat, self.lambda_vgg, self.lambda_kl = float(lambda_feat), float(lambda_vgg), float(lambda_kl)
        self.kl_reduction = str(look_up_option(kl_reduction, KLReduction))
        self.lr_g, self.lr_d = float(lr_g), float(lr_d)
        self.betas = (float(betas[0]), float(betas[1]))

        self.G = SPADEGenerator(
            num_classes,
            out_channels,
            nf=nf,
            crop_size=crop_size,
            aspect_ratio=aspect_ratio,
            num_upsampling_layers=num_upsampling_layers,
            channel_mults=channel_mults,
            use_vae=use_vae,
            z_dim=z_dim,
            hidden_channels=hidden_channels,
            kernel_size=kernel_size,
            param_free_norm=param_free_norm,
        )
        self.D = MultiScaleDiscriminator(num_classes + out_channels, num_d=num_d, ndf=ndf, n_layers=n_layers_d)
        self.E = (
            SPADEStyleEncoder(out_channels, ndf=encoder_ndf, z_dim=z_dim, input_size=encoder_input_size)
            if use_vae
            else None
        )
        for net in (self.G, self.D, self.E):
            if net is not None:
                init_weights(net, kind=init_type, gain=init_gain)
        # Kept out of the module tree (see _apply): frozen, rebuilt from its file, not part of checkpoints.
        self._vgg: list[VGGPerceptualLoss] = []
        vgg = self._build_vgg(bool(vgg_pretrained), vgg_weights_path, float(vgg_width))
        if vgg is not None:
            self._vgg.append(vgg)

    # ------------------------------------------------------------------ setup
    def _build_vgg(self, pretrained: bool, weights_path: str | None, width: float) -> VGGPerceptualLoss | None:
        if self.lambda_vgg == 0:
            return None
        if self.out_channels not in (1, 3):
            logger.warning(
                "SPADE: VGG perceptual loss OFF: it needs 1 or 3 image channels, out_channels=%d", self.out_channels
            )
            return None
        try:
            return VGGPerceptualLoss(
                pretrained=pretrained, weights_path=weights_path, width=width, in_channels=self.out_channels
            )
        except Medi2iInputError as err:
            if weights_path is not None:
                raise  # an explicit path that does not work is a configuration error
            logger.warning(
                "SPADE: VGG19 perceptual loss OFF (lambda_vgg=%g requested) because the ImageNet VGG19 weights "
                "are not available locally: %s. The thesis reports this term as the most important one "
                "(Table 2.5); set lambda_vgg=0 to silence this message.",
                self.lambda_vgg,
                err,
            )
            return None

    @property
    def vgg_loss(self) -> VGGPerceptualLoss | None:
        """The frozen VGG19 perceptual loss, or ``None`` when the term is off."""
        return self._vgg[0] if self._vgg else None

    def _apply(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> SPADE:
        # .to()/.cuda()/.float() also move the VGG, which is deliberately not a registered submodule.
        super()._apply(fn, *args, **kwargs)
        for vgg in self._vgg:
            vgg._apply(fn, *args, **kwargs)
        return self

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Adam (TTUR): ``"G"`` over G (+ E, as the code) with ``lr_g``, ``"D"`` with ``lr_d``; betas (0, 0.9)."""
        g_params = list(self.G.parameters()) + (list(self.E.parameters()) if self.E is not None else [])
        return {
            "G": torch.optim.Adam(g_params, lr=self.lr_g, betas=self.betas),
            "D": torch.optim.Adam(self.D.parameters(), lr=self.lr_d, betas=self.betas),
        }

    def inference_modules(self) -> dict[str, nn.Module]:
        """``{"G": G}``, plus ``{"E": E}`` with the VAE (style-guided synthesis)."""
        return {"G": self.G} if self.E is None else {"G": self.G, "E": self.E}

    # ------------------------------------------------------------------ networks
    def encode_z(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(z, mu, logvar)`` of an image batch through the style encoder, ``z = mu + eps * exp(logvar / 2)``."""
        if self.E is None:
            raise ValueError("encode_z needs use_vae=True")
        mu, logvar = self.E(image)
        return reparameterize(mu, logvar), mu, logvar

    def discriminate(self, onehot: Tensor, fake: Tensor, real: Tensor) -> tuple[list[list[Tensor]], list[list[Tensor]]]:
        """D on ``concat(one-hot, image)`` for fake and real in one batch (as the code); ``(pred_fake, pred_real)``."""
        pair = torch.cat([torch.cat([onehot, fake], dim=1), torch.cat([onehot, real], dim=1)], dim=0)
        n = fake.shape[0]
        outputs = self.D(pair)
        pred_fake = [[f[:n] for f in scale] for scale in outputs]
        pred_real = [[f[n:] for f in scale] for scale in outputs]
        return pred_fake, pred_real

    # ------------------------------------------------------------------ losses
    def g_loss(self, onehot: Tensor, real: Tensor) -> tuple[Tensor, Tensor, dict[str, float]]:
        """Generator (+ encoder) loss; returns ``(loss, fake, parts)``."""
        parts: dict[str, float] = {}
        z = None
        loss = real.new_zeros(())
        if self.E is not None:
            z, mu, logvar = self.encode_z(real)
            kl = kl_divergence(mu, logvar, self.kl_reduction) * self.lambda_kl
            loss = loss + kl
            parts["KL"] = float(kl.detach())
        fake = self.G(onehot, z)
        pred_fake, pred_real = self.discriminate(onehot, fake, real)
        gan = generator_loss(self.gan_mode, pred_fake)
        loss = loss + gan
        parts["G_GAN"] = float(gan.detach())
        if self.lambda_feat > 0:
            feat = feature_matching_loss(pred_real, pred_fake) * self.lambda_feat
            loss = loss + feat
            parts["G_FM"] = float(feat.detach())
        vgg = self.vgg_loss
        if vgg is not None:
            perceptual = vgg(fake, real) * self.lambda_vgg
            loss = loss + perceptual
            parts["G_VGG"] = float(perceptual.detach())
        parts["G"] = float(loss.detach())
        return loss, fake, parts

    def d_loss(self, onehot: Tensor, real: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Discriminator loss on real pairs and on a fresh ``G(m, z)`` made without gradients (as the code)."""
        with torch.no_grad():
            z = self.encode_z(real)[0] if self.E is not None else None
            fake = self.G(onehot, z)
        pred_fake, pred_real = self.discriminate(onehot, fake.detach(), real)
        loss = discriminator_loss(self.gan_mode, pred_real, pred_fake)
        return loss, {"D": float(loss.detach())}

    # ------------------------------------------------------------------ training
    def training_step(
        self, batch: Mapping[str, Any], optimizers: Mapping[str, torch.optim.Optimizer], step: int
    ) -> StepOutput:
        """One iteration as the code's trainer: update G (and E), then D."""
        label, real = self._batch(batch)
        onehot = one_hot_labels(label, self.num_classes)

        self.set_requires_grad(self.D, False)
        optimizers["G"].zero_grad(set_to_none=True)
        loss_g, fake, parts_g = self.g_loss(onehot, real)
        loss_g.backward()
        optimizers["G"].step()
        self.set_requires_grad(self.D, True)

        optimizers["D"].zero_grad(set_to_none=True)
        loss_d, parts_d = self.d_loss(onehot, real)
        loss_d.backward()
        optimizers["D"].step()

        images = {"label": self.label_image(label), "real": real.detach(), "fake": fake.detach()}
        return StepOutput(losses={**parts_g, **parts_d}, images=images)

    def label_image(self, label: Tensor) -> Tensor:
        """Class indices ``(B, 1, H, W)`` as grey levels in [-1, 1] (for TensorBoard)."""
        return label.float() * (2.0 / max(self.num_classes - 1, 1)) - 1.0

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def translate(
        self, inputs: Tensor | Mapping[str, Any], style: Tensor | None = None, *, z: Tensor | None = None, **kwargs: Any
    ) -> Tensor:
        """Synthesise images from label maps (eval mode, no grad).

        Args:
            inputs: integer label map ``(B, 1, H, W)`` (or a batch dict with ``"label"``; its ``"image"`` is
                *not* used as style, so evaluation never leaks the ground truth).
            style: with ``use_vae``: reference images ``(B, C, H, W)`` in [-1, 1]; ``z = mu(E(style))``
                (style-guided synthesis, deterministic).
            z: with ``use_vae``: latent codes ``(B, z_dim)``; default ``N(0, I)`` (global torch RNG).

        Returns:
            Images ``(B, out_channels, H, W)`` in [-1, 1].
        """
        if kwargs:
            raise TypeError(f"SPADE.translate got unexpected keyword arguments {sorted(kwargs)}")
        label = _field(inputs, "label") if isinstance(inputs, Mapping) else inputs
        if not isinstance(label, Tensor):
            raise Medi2iInputError("expected a label map tensor", field="label", found=type(label).__name__)
        onehot = one_hot_labels(label, self.num_classes)
        if (style is not None or z is not None) and self.E is None:
            raise ValueError("style and z need a model built with use_vae=True")
        if style is not None and z is not None:
            raise ValueError("give either style or z, not both")
        was_training = self.training
        self.eval()
        try:
            if style is not None and self.E is not None:
                _check_image(style, self.out_channels, "style")
                if style.shape[0] != label.shape[0]:
                    raise Medi2iInputError(
                        "style and label batches differ in size",
                        field="style",
                        found=style.shape[0],
                        expected=label.shape[0],
                    )
                z = self.E(style)[0]  # the mean of q(z | style)
            return self.G(onehot, z)
        finally:
            self.train(was_training)

    def _batch(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        label, image = _field(batch, "label"), _field(batch, "image")
        _check_image(image, self.out_channels, "image")
        if not isinstance(label, Tensor) or label.shape[0] != image.shape[0] or label.shape[2:] != image.shape[2:]:
            found = tuple(label.shape) if isinstance(label, Tensor) else type(label).__name__
            raise Medi2iInputError(
                "label and image must have the same batch size and spatial size",
                field="label",
                found=found,
                expected=f"(B, 1, {image.shape[2]}, {image.shape[3]}) with B = {image.shape[0]}",
            )
        return label, image


def _field(batch: Mapping[str, Any], key: str) -> Any:
    if key not in batch:
        raise Medi2iInputError("batch has no such key", field=key, found=sorted(map(str, batch)), expected=repr(key))
    return batch[key]


def _check_image(x: Any, channels: int, field: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != channels or not x.is_floating_point():
        found = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise Medi2iInputError(
            "expected a float image batch (B, C, H, W) in [-1, 1]", field=field, found=found, expected=f"C = {channels}"
        )


def _check_config(c: Mapping[str, Any]) -> None:
    """Raise ValueError (argument, value, allowed values) for illegal configurations before anything is built."""
    for key in ("num_classes", "out_channels", "ndf", "num_d", "z_dim", "encoder_ndf"):
        v = c[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{key} must be a positive int, got {v!r}")
    if isinstance(c["n_layers_d"], bool) or not isinstance(c["n_layers_d"], int) or c["n_layers_d"] < 2:
        raise ValueError(f"n_layers_d must be an int >= 2 (the code's n_layers_D), got {c['n_layers_d']!r}")
    for key in ("lambda_feat", "lambda_vgg", "lambda_kl"):
        v = c[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{key} must be a finite number >= 0, got {v!r}")
    for key in ("lr_g", "lr_d", "init_gain"):
        v = c[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{key} must be a finite number > 0, got {v!r}")
    betas = c["betas"]
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    if not (isinstance(c["vgg_width"], (int, float)) and 0 < c["vgg_width"] <= 1):
        raise ValueError(f"vgg_width must be in (0, 1], got {c['vgg_width']!r}")
    if c["vgg_width"] < 1 and c["vgg_pretrained"] and c["lambda_vgg"] > 0:
        raise ValueError(f"vgg_width={c['vgg_width']} < 1 needs vgg_pretrained=False (pretrained VGG is full width)")
    if c["vgg_weights_path"] is not None and not c["vgg_pretrained"]:
        raise ValueError("vgg_weights_path is given but vgg_pretrained=False; set vgg_pretrained=True to load it")
    look_up_option(c["gan_mode"], GANKind)
    look_up_option(c["kl_reduction"], KLReduction)
    look_up_option(c["param_free_norm"], ParamFreeNorm)
    look_up_option(c["init_type"], ("normal", "xavier", "kaiming", "orthogonal"))
