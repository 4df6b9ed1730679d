"""Swapping Autoencoder (Park et al., NeurIPS 2020; thesis ch. 4; digest park_thesis.md section 5).

An encoder splits an image into a *structure code* ``z_s`` (a spatial tensor) and a *texture code* ``z_t``
(a vector); a modulated generator decodes any pair of codes. Training (thesis eqs. 4.1-4.4) with codes of a
minibatch ``x`` of ``N`` images (``N`` even), ``(z_s, z_t) = E(x)``:

- reconstruction ``x_rec = G(z_s, z_t)`` of the first ``N / 2`` images (the code's memory saving; thesis
  4.4.8: "N/2 reconstructed images"), ``L_rec = E ||x - x_rec||_1`` (eq. 4.1);
- hybrids ``x_mix = G(swap(z_s), z_t)`` for all ``N`` images, where :func:`swap_pairs` exchanges the images of
  the pairs (0, 1), (2, 3), ...: hybrid ``i`` has the structure of its partner and the texture of image ``i``;
- image GAN on reconstructions (eq. 4.2) and hybrids (eq. 4.3) with D, non-saturating;
- co-occurrence GAN (eq. 4.4): a random crop of hybrid ``i`` must look like it comes from image ``i`` (its
  texture source) to D_patch, which also sees crops of image ``i`` as references.

Objectives (the official code's weights; digest 5.2, discrepancy 12 in section 10):

- E, G: ``1 * L_rec + 0.5 * L_GAN,rec + 1.0 * L_GAN,swap + 1 * L_Cooccur``. The thesis gives
  ``0.5 / 0.5`` for the two GAN terms in 4.3.4 and "all weights 1.0" in 4.4.8; set ``lambda_gan_swap=0.5`` for
  the 4.3.4 variant, ``lambda_gan_rec=1`` for 4.4.8;
- D: ``softplus(-D(x)) + 0.5 softplus(D(x_rec)) + 0.5 softplus(D(x_mix))``;
- D_patch: ``softplus(-D_p(crop(x_i), crops(x_i))) + softplus(D_p(crop(x_mix_i), crops(x_i)))``;
- lazy R1 (StyleGAN2): every ``r1_every`` steps (whenever ``step % r1_every == 0``) an extra D update on
  ``r1_every * [gamma / 2 * E||grad_x D(x)||^2 + gamma_p / 2 * 0.5 * E(||grad_q D_p||^2 + ||grad_r D_p||^2)]``
  (gamma 10 for D; gamma_p 1 for D_patch, on both the query and the reference crops). Because of these extra
  steps D's Adam uses ``lr * c`` and ``betas ** c`` with ``c = r1_every / (r1_every + 1)``.

One :meth:`SwappingAutoencoder.training_step` is one D step then one E/G step (alternating, as the code),
Adam ``(0, 0.99)``, lr 0.002, no lr decay, no path-length regulariser, no mapping network, no style mixing.

Inference: :meth:`~SwappingAutoencoder.encode`, :meth:`~SwappingAutoencoder.decode`,
:meth:`~SwappingAutoencoder.swap` (structure of one image, texture of another, optionally interpolated
``(1 - alpha) z_t^a + alpha z_t^b``, thesis Fig. 4.6) and :meth:`~SwappingAutoencoder.translate`.
Medical use (digest 5.6): anatomy (structure) / appearance (texture) swap across contrasts or sites on
1-channel slices, e.g. harmonisation by a reference scan's texture code. Risk: global pathology signals
(diffuse disease, atrophy) can end up in the texture code and be swapped away; validate with segmentation
consistency against the structure source and intensity statistics against the texture source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medi2i.errors import Medi2iInputError
from medi2i.natural.sae_networks import (
    CooccurrenceDiscriminator,
    ImageDiscriminator,
    NoiseMode,
    SAEEncoder,
    SAEGenerator,
    random_crops,
)
from medi2i.natural.toolkit.gan_losses import discriminator_loss, generator_loss, r1_penalty
from medi2i.natural.trainer import AdversarialMethod, StepOutput

__all__ = ["SwappingAutoencoder", "mix_texture", "swap_pairs"]

_GAN = "nonsaturating"


def swap_pairs(x: Tensor) -> Tensor:
    """Exchange the items of the pairs (0, 1), (2, 3), ... along dim 0 (an involution).

    Raises:
        Medi2iInputError: for an odd leading dimension (SAE needs an even batch).

    Example:
        >>> swap_pairs(torch.arange(4)).tolist()
        [1, 0, 3, 2]
    """
    n = x.shape[0]
    if n % 2:
        raise Medi2iInputError(
            "the Swapping Autoencoder swaps codes within pairs of the batch, so the batch size must be even",
            field="batch_size",
            found=n,
            expected="an even number >= 2",
        )
    return x.view(n // 2, 2, *x.shape[1:]).flip(1).reshape(x.shape)


def mix_texture(texture_a: Tensor, texture_b: Tensor, alpha: float | Tensor) -> Tensor:
    """Texture-code interpolation ``(1 - alpha) * z_t^a + alpha * z_t^b`` (no re-normalisation; thesis Fig. 4.6)."""
    return torch.lerp(texture_a, texture_b, alpha if isinstance(alpha, Tensor) else float(alpha))


class SwappingAutoencoder(AdversarialMethod):
    """Swapping Autoencoder: see the module docstring for the objectives.

    Args:
        in_channels: image channels (1 for medical slices, 3 for photos); batches hold ``batch[image_key]``
            ``(B, in_channels, image_size, image_size)`` in [-1, 1] with an even ``B``.
        image_size: training image side (the image D is built for it; E and G are fully convolutional).
        image_key: the batch key of the images (``"A"``, the unpaired-data contract; SAE ignores ``"B"``).
        encoder_channels: FromRGB width, then one width per downsampling block (code: 32..512, 4 blocks).
        structure_channels: channels of ``z_s`` (8).
        texture_channels: widths of the two texture convs (1024, 2048).
        texture_dim: length of ``z_t`` (2048).
        texture_padding: ``"valid"`` or ``"reflect"`` in the texture branch.
        generator_base_channels: residual blocks at the code resolution (code: 2 blocks; thesis: 4, discrepancy 13).
        generator_up_channels: one upsampling block per encoder block.
        use_noise: noise injection in G.
        discriminator_channels: image D widths, input resolution first (None: StyleGAN2 table, x2, down to 4x4).
        patch_size: co-occurrence crop side after resizing (code 128 px; thesis 1/4 of the image, discrepancy 14).
        patch_channels: D_patch widths (conv, then one per downsampling block).
        patch_hidden: D_patch dense widths (code: 2048, 2048, 1024).
        patch_min_scale, patch_max_scale: crop side as a fraction of the image side (1/8 .. 1/4).
        patch_num_crops: crops per image (8).
        lambda_rec, lambda_gan_rec, lambda_gan_swap, lambda_patch: E/G loss weights (1, 0.5, 1, 1: the code).
        d_weight_rec, d_weight_swap: weights of the fake terms in D's loss (0.5, 0.5).
        r1_gamma: R1 weight of D (10).
        patch_r1_gamma: R1 weight of D_patch (1).
        r1_every: lazy-R1 interval in steps (16); also sets D's Adam adjustment ``c = r1_every / (r1_every + 1)``.
        lr: Adam learning rate of E and G (D: ``lr * c``).
        betas: Adam betas of E and G (D: ``betas ** c``).

    Raises:
        ValueError: for an illegal configuration (named argument, value, allowed values).
    """

    name: ClassVar[str] = "sae"

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 256,
        *,
        image_key: str = "A",
        encoder_channels: Sequence[int] = (32, 64, 128, 256, 512),
        structure_channels: int = 8,
        texture_channels: Sequence[int] = (1024, 2048),
        texture_dim: int = 2048,
        texture_padding: str = "valid",
        generator_base_channels: Sequence[int] = (256, 512),
        generator_up_channels: Sequence[int] = (512, 512, 256, 128),
        use_noise: bool = True,
        discriminator_channels: Sequence[int] | None = None,
        patch_size: int = 128,
        patch_channels: Sequence[int] = (64, 128, 256, 384, 384, 384),
        patch_hidden: Sequence[int] = (2048, 2048, 1024),
        patch_min_scale: float = 1 / 8,
        patch_max_scale: float = 1 / 4,
        patch_num_crops: int = 8,
        lambda_rec: float = 1.0,
        lambda_gan_rec: float = 0.5,
        lambda_gan_swap: float = 1.0,
        lambda_patch: float = 1.0,
        d_weight_rec: float = 0.5,
        d_weight_swap: float = 0.5,
        r1_gamma: float = 10.0,
        patch_r1_gamma: float = 1.0,
        r1_every: int = 16,
        lr: float = 0.002,
        betas: Sequence[float] = (0.0, 0.99),
    ) -> None:
        config = dict(
            in_channels=int(in_channels),
            image_size=int(image_size),
            image_key=str(image_key),
            encoder_channels=[int(c) for c in encoder_channels],
            structure_channels=int(structure_channels),
            texture_channels=[int(c) for c in texture_channels],
            texture_dim=int(texture_dim),
            texture_padding=str(texture_padding),
            generator_base_channels=[int(c) for c in generator_base_channels],
            generator_up_channels=[int(c) for c in generator_up_channels],
            use_noise=bool(use_noise),
            discriminator_channels=None if discriminator_channels is None else [int(c) for c in discriminator_channels],
            patch_size=int(patch_size),
            patch_channels=[int(c) for c in patch_channels],
            patch_hidden=[int(c) for c in patch_hidden],
            patch_min_scale=float(patch_min_scale),
            patch_max_scale=float(patch_max_scale),
            patch_num_crops=int(patch_num_crops),
            lambda_rec=float(lambda_rec),
            lambda_gan_rec=float(lambda_gan_rec),
            lambda_gan_swap=float(lambda_gan_swap),
            lambda_patch=float(lambda_patch),
            d_weight_rec=float(d_weight_rec),
            d_weight_swap=float(d_weight_swap),
            r1_gamma=float(r1_gamma),
            patch_r1_gamma=float(patch_r1_gamma),
            r1_every=int(r1_every),
            lr=float(lr),
            betas=[float(b) for b in betas],
        )
        _check_config(config)
        super().__init__(**config)
        c = config
        self.in_channels, self.image_size, self.image_key = c["in_channels"], c["image_size"], c["image_key"]
        self.patch_size, self.patch_num_crops = c["patch_size"], c["patch_num_crops"]
        self.patch_scales = (c["patch_min_scale"], c["patch_max_scale"])
        self.lambda_rec, self.lambda_gan_rec = c["lambda_rec"], c["lambda_gan_rec"]
        self.lambda_gan_swap, self.lambda_patch = c["lambda_gan_swap"], c["lambda_patch"]
        self.d_weight_rec, self.d_weight_swap = c["d_weight_rec"], c["d_weight_swap"]
        self.r1_gamma, self.patch_r1_gamma, self.r1_every = c["r1_gamma"], c["patch_r1_gamma"], c["r1_every"]
        self.lr, self.betas = c["lr"], (c["betas"][0], c["betas"][1])

        self.E = SAEEncoder(
            c["in_channels"],
            channels=c["encoder_channels"],
            structure_channels=c["structure_channels"],
            texture_channels=c["texture_channels"],
            texture_dim=c["texture_dim"],
            texture_padding=c["texture_padding"],
        )
        self.G = SAEGenerator(
            c["in_channels"],
            structure_channels=c["structure_channels"],
            texture_dim=c["texture_dim"],
            base_channels=c["generator_base_channels"],
            up_channels=c["generator_up_channels"],
            use_noise=c["use_noise"],
        )
        self.D = ImageDiscriminator(c["in_channels"], c["image_size"], channels=c["discriminator_channels"])
        self.D_patch = CooccurrenceDiscriminator(
            c["in_channels"], patch_size=c["patch_size"], channels=c["patch_channels"], hidden=c["patch_hidden"]
        )

    # ------------------------------------------------------------------ setup
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Adam ``"G"`` over E and G (lr, betas) and ``"D"`` over D and D_patch (lr * c, betas ** c; StyleGAN2)."""
        c = self.r1_every / (self.r1_every + 1) if self.r1_gamma > 0 or self.patch_r1_gamma > 0 else 1.0
        d_betas = (self.betas[0] ** c, self.betas[1] ** c)
        return {
            "G": torch.optim.Adam([*self.E.parameters(), *self.G.parameters()], lr=self.lr, betas=self.betas),
            "D": torch.optim.Adam([*self.D.parameters(), *self.D_patch.parameters()], lr=self.lr * c, betas=d_betas),
        }

    def inference_modules(self) -> dict[str, nn.Module]:
        return {"E": self.E, "G": self.G}

    # ------------------------------------------------------------------ model
    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, C, H, W)`` -> ``(structure (B, S, H / 2^n, W / 2^n), texture (B, T))``, both L2-normalised."""
        return self.E(images)

    def decode(self, structure: Tensor, texture: Tensor, *, noise_mode: str = NoiseMode.RANDOM) -> Tensor:
        """``G(z_s, z_t)`` -> ``(B, C, H, W)`` (linear output, not clamped)."""
        return self.G(structure, texture, noise_mode=noise_mode)

    def crops(self, images: Tensor) -> Tensor:
        """Random flipped crops for D_patch: ``(B, C, H, W)`` -> ``(B, patch_num_crops, C, p, p)``."""
        lo, hi = self.patch_scales
        return random_crops(images, self.patch_num_crops, size=self.patch_size, min_scale=lo, max_scale=hi)

    def reconstruct_and_swap(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_rec (N/2, C, H, W), x_mix (N, C, H, W))`` with ``x_mix_i = G(z_s of partner(i), z_t of i)``."""
        structure, texture = self.E(x)
        half = x.shape[0] // 2
        rec = self.G(structure[:half], texture[:half])
        mix = self.G(swap_pairs(structure), texture)
        return rec, mix

    # ------------------------------------------------------------------ losses
    def d_loss(self, x: Tensor, rec: Tensor, mix: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Image D and D_patch losses (non-saturating), with the code's weights; ``rec``/``mix`` detached."""
        rec, mix = rec.detach(), mix.detach()
        # the non-saturating terms written out because real and the two fakes have different weights
        # (the toolkit's discriminator_loss weighs real and fake 1:1; it is used for D_patch below)
        d_real = F.softplus(-self.D(x)).mean()
        d_rec = F.softplus(self.D(rec)).mean()
        d_mix = F.softplus(self.D(mix)).mean()
        loss_d = d_real + self.d_weight_rec * d_rec + self.d_weight_swap * d_mix
        parts = {"D_real": float(d_real.detach()), "D_rec": float(d_rec.detach()), "D_mix": float(d_mix.detach())}
        if self.lambda_patch > 0:
            refs = self.crops(x)
            p_real = self.D_patch(self.crops(x), refs)
            p_mix = self.D_patch(self.crops(mix), refs)
            loss_p = discriminator_loss(_GAN, p_real, p_mix)
            loss_d = loss_d + loss_p
            parts["D_patch"] = float(loss_p.detach())
        parts["D_total"] = float(loss_d.detach())
        return loss_d, parts

    def r1_loss(self, x: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Lazy R1, not yet multiplied by the interval (StyleGAN2; digest 5.2).

        ``gamma / 2 * E||grad_x D(x)||^2 + gamma_p / 2 * 0.5 * E(||grad_q D_p||^2 + ||grad_r D_p||^2)`` on real
        images and real query / reference crops. Returns the loss and the raw penalties for logging.
        """
        x = x.detach().requires_grad_(True)
        penalty = r1_penalty(self.D(x), x)
        loss = 0.5 * self.r1_gamma * penalty
        parts = {"D_R1": float(penalty.detach())}
        if self.lambda_patch > 0 and self.patch_r1_gamma > 0:
            # every query and reference crop is one row of a leaf tensor, so r1_penalty's mean over rows is
            # 0.5 * (E_query ||grad||^2 + E_reference ||grad||^2) (the code's extra factor 0.5)
            x = x.detach()
            n = self.patch_num_crops
            crops = torch.cat([self.crops(x), self.crops(x)], dim=1)  # (B, 2n, C, p, p)
            rows = crops.flatten(0, 1).requires_grad_(True)
            view = rows.view(crops.shape)
            p_penalty = r1_penalty(self.D_patch(view[:, :n], view[:, n:]), rows)
            loss = loss + 0.5 * self.patch_r1_gamma * p_penalty
            parts["D_patch_R1"] = float(p_penalty.detach())
        return loss, parts

    def g_loss(self, x: Tensor) -> tuple[Tensor, dict[str, float], Tensor, Tensor]:
        """E/G loss ``lambda_rec L1 + lambda_gan_rec GAN_rec + lambda_gan_swap GAN_swap + lambda_patch Cooccur``."""
        rec, mix = self.reconstruct_and_swap(x)
        l_rec = F.l1_loss(rec, x[: rec.shape[0]])  # eq. 4.1
        g_rec = generator_loss(_GAN, self.D(rec))  # eq. 4.2
        g_mix = generator_loss(_GAN, self.D(mix))  # eq. 4.3
        loss = self.lambda_rec * l_rec + self.lambda_gan_rec * g_rec + self.lambda_gan_swap * g_mix
        parts = {"G_L1": float(l_rec.detach()), "G_GAN_rec": float(g_rec.detach()), "G_GAN_mix": float(g_mix.detach())}
        if self.lambda_patch > 0:
            # eq. 4.4: hybrid i's crops against reference crops of its texture source, image i
            g_patch = generator_loss(_GAN, self.D_patch(self.crops(mix), self.crops(x)))
            loss = loss + self.lambda_patch * g_patch
            parts["G_patch"] = float(g_patch.detach())
        parts["G_total"] = float(loss.detach())
        return loss, parts, rec, mix

    # ------------------------------------------------------------------ training
    def training_step(
        self, batch: Mapping[str, Any], optimizers: Mapping[str, torch.optim.Optimizer], step: int
    ) -> StepOutput:
        """One D update (plus the lazy-R1 update when ``step % r1_every == 0``), then one E/G update."""
        x = self._batch_images(batch)
        discriminators = [self.D, self.D_patch]
        opt_g, opt_d = optimizers["G"], optimizers["D"]

        self.set_requires_grad(discriminators, True)
        with torch.no_grad():
            rec, mix = self.reconstruct_and_swap(x)
        opt_d.zero_grad(set_to_none=True)
        loss_d, parts_d = self.d_loss(x, rec, mix)
        loss_d.backward()
        opt_d.step()
        if (self.r1_gamma > 0 or self.patch_r1_gamma > 0) and step % self.r1_every == 0:
            opt_d.zero_grad(set_to_none=True)
            loss_r1, parts_r1 = self.r1_loss(x)
            (self.r1_every * loss_r1).backward()
            opt_d.step()
            parts_d.update(parts_r1)

        self.set_requires_grad(discriminators, False)
        opt_g.zero_grad(set_to_none=True)
        loss_g, parts_g, rec, mix = self.g_loss(x)
        loss_g.backward()
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        self.set_requires_grad(discriminators, True)

        # G's output is linear (digest 1): clamp the images shown in TensorBoard to the [-1, 1] contract
        images = {"real": x.detach(), "reconstruction": rec.detach().clamp(-1, 1), "swap": mix.detach().clamp(-1, 1)}
        return StepOutput(losses={**parts_d, **parts_g}, images=images)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def swap(
        self,
        structure_images: Tensor,
        texture_images: Tensor,
        *,
        alpha: float = 1.0,
        noise_mode: str = NoiseMode.FIXED,
    ) -> Tensor:
        """``G(z_s(structure_images), (1 - alpha) z_t(structure_images) + alpha z_t(texture_images))``.

        Args:
            structure_images: ``(B, C, H, W)`` (anatomy / layout source).
            texture_images: ``(B or 1, C, H', W')`` (appearance source; any size the encoder accepts).
            alpha: texture interpolation (1: full swap, 0: reconstruction).
            noise_mode: ``"fixed"`` (deterministic, default), ``"random"`` or ``"none"``.

        Returns:
            ``(B, C, H, W)`` (linear G output, not clamped).
        """
        structure, texture = self.E(structure_images)
        if alpha != 0.0:
            _, texture_b = self.E(texture_images)
            if texture_b.shape[0] not in (1, structure.shape[0]):
                raise Medi2iInputError(
                    "texture images must be one image or one per structure image",
                    field="style",
                    found=texture_b.shape[0],
                    expected=f"1 or {structure.shape[0]}",
                )
            texture = mix_texture(texture, texture_b.expand_as(texture), alpha)
        return self.G(structure, texture, noise_mode=noise_mode)

    def translate(self, inputs: Tensor | Mapping[str, Any], **kwargs: Any) -> Tensor:
        """Reconstruct ``inputs`` or, with ``style=``, give them the texture of ``style`` (eval mode, no grad).

        Args:
            inputs: ``(B, C, H, W)`` in [-1, 1], or a batch dict holding ``image_key``.
            kwargs: ``style`` (``(B or 1, C, H', W')`` texture source; None: reconstruction), ``alpha`` (1.0),
                ``noise_mode`` (``"fixed"``).

        Returns:
            ``(B, C, H, W)`` clamped to [-1, 1].
        """
        unknown = sorted(set(kwargs) - {"style", "alpha", "noise_mode"})
        if unknown:
            raise TypeError(f"SwappingAutoencoder.translate got unexpected keyword arguments {unknown}")
        x = inputs[self.image_key] if isinstance(inputs, Mapping) else inputs
        _check_images(x, self.in_channels, self.image_key)
        style = kwargs.get("style")
        if style is not None:
            _check_images(style, self.in_channels, "style")
        for field, images in ((self.image_key, x), ("style", style)):
            if images is not None:
                try:
                    self.E.check_input(images)
                except ValueError as err:  # image size the encoder cannot take: user input
                    raise Medi2iInputError(str(err), field=field, found=tuple(images.shape)) from None
        was_training = self.training
        self.eval()
        try:
            alpha = float(kwargs.get("alpha", 1.0)) if style is not None else 0.0
            out = self.swap(x, x if style is None else style, alpha=alpha, noise_mode=kwargs.get("noise_mode", "fixed"))
        finally:
            self.train(was_training)
        return out.clamp(-1.0, 1.0)

    # ------------------------------------------------------------------ helpers
    def _batch_images(self, batch: Mapping[str, Any]) -> Tensor:
        if self.image_key not in batch:
            raise Medi2iInputError(
                "batch has no images for the Swapping Autoencoder",
                field=self.image_key,
                found=sorted(batch),
                expected=f"a key {self.image_key!r}",
            )
        x = batch[self.image_key]
        _check_images(x, self.in_channels, self.image_key)
        if x.shape[0] % 2:
            swap_pairs(x)  # raises the even-batch error
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise Medi2iInputError(
                "training images must match the image discriminator's size",
                field=self.image_key,
                found=tuple(x.shape[-2:]),
                expected=(self.image_size, self.image_size),
            )
        return x


def _check_images(x: Any, channels: int, field: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != channels or not x.is_floating_point():
        raise Medi2iInputError(
            "expected a float image batch",
            field=field,
            found=tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__,
            expected=f"(B, {channels}, H, W) float tensor in [-1, 1]",
        )


def _check_config(c: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the argument, value and the allowed values for an illegal configuration."""
    positive = ("in_channels", "image_size", "structure_channels", "texture_dim", "patch_size", "patch_num_crops")
    for key in (*positive, "r1_every"):
        if c[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {c[key]!r}")
    for key in ("lambda_rec", "lambda_gan_rec", "lambda_gan_swap", "lambda_patch", "d_weight_rec", "d_weight_swap"):
        if not c[key] >= 0:
            raise ValueError(f"{key} must be >= 0, got {c[key]!r}")
    for key in ("r1_gamma", "patch_r1_gamma"):
        if not c[key] >= 0:
            raise ValueError(f"{key} must be >= 0, got {c[key]!r}")
    if not c["lr"] > 0:
        raise ValueError(f"lr must be > 0, got {c['lr']!r}")
    if len(c["betas"]) != 2 or not all(0 <= b < 1 for b in c["betas"]):
        raise ValueError(f"betas must be two values in [0, 1), got {c['betas']!r}")
    if not 0 < c["patch_min_scale"] <= c["patch_max_scale"] <= 1:
        raise ValueError(
            f"need 0 < patch_min_scale <= patch_max_scale <= 1, got {c['patch_min_scale']!r}, {c['patch_max_scale']!r}"
        )
    n_down = len(c["encoder_channels"]) - 1
    if len(c["generator_up_channels"]) != n_down:
        raise ValueError(
            f"generator_up_channels must have one width per encoder block ({n_down}, from encoder_channels), "
            f"got {c['generator_up_channels']!r}"
        )
    if n_down >= 1 and c["image_size"] % (2**n_down):
        raise ValueError(f"image_size must be divisible by 2 ** {n_down} (encoder blocks), got {c['image_size']!r}")
    if c["texture_padding"] not in ("valid", "reflect"):
        raise ValueError(f"texture_padding must be one of ['valid', 'reflect'], got {c['texture_padding']!r}")
