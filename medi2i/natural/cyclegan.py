"""CycleGAN (Zhu et al., ICCV 2017; Park thesis section 3.2; park_thesis.md section 3).

Two generators ``G_A: A -> B`` and ``G_B: B -> A`` (:class:`~medi2i.natural.toolkit.generators.ResnetGenerator`)
and two 70x70 PatchGANs, ``D_A`` judging domain B (real B vs ``G_A(A)``) and ``D_B`` judging domain A, as in the
official code's naming. Objective (eq. 3.3, with the code's LSGAN, section 3.2)::

    L_G = L_GAN(D_A(G_A(a))) + L_GAN(D_B(G_B(b)))                          LSGAN: mean (D(.) - 1)^2
        + lambda_A ||G_B(G_A(a)) - a||_1 + lambda_B ||G_A(G_B(b)) - b||_1    cycle (eq. 3.2), lambda 10
        + lambda_idt * (lambda_B ||G_A(b) - b||_1 + lambda_A ||G_B(a) - a||_1)   identity, lambda_idt 0.5
    L_D_A = 0.5 [(D_A(b) - 1)^2 + D_A(pool_B(G_A(a)))^2]   (and D_B likewise), pool of 50 past fakes

Update order of the code (section 3.3): G_A and G_B jointly with D frozen, then D_A and D_B.
Defaults are the code's: Adam lr 2e-4, betas (0.5, 0.999), N(0, 0.02) init, ResNet-9 G, n_layers 3 D, IN.

Decisions (digest sections 10-11): the identity loss is on by default (code, 0.5 x lambda) and is switched off
with a warning when the domains have different channel counts (``G_A(b)`` needs ``b`` with A's channels). The
image pool checkpoints its contents and RNG (exact resume). :meth:`CycleGAN.translate` pads inputs by reflection
to a multiple of 4 and crops back, instead of the code's resize to a multiple of 4.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import StrEnum, look_up_option
from torch import Tensor, nn

from medi2i.errors import Medi2iInputError
from medi2i.natural.toolkit.discriminators import PatchDiscriminator
from medi2i.natural.toolkit.gan_losses import GANKind, discriminator_loss, generator_loss
from medi2i.natural.toolkit.generators import ResnetGenerator
from medi2i.natural.toolkit.init import InitKind, init_weights
from medi2i.natural.toolkit.pool import ImagePool
from medi2i.natural.trainer import AdversarialMethod, StepOutput, seeded

__all__ = ["CycleGAN", "Direction", "cycle_loss"]


class Direction(StrEnum):
    """Translation direction of :meth:`CycleGAN.translate`."""

    A_TO_B = "AtoB"
    B_TO_A = "BtoA"


def cycle_loss(real: Tensor, reconstructed: Tensor) -> Tensor:
    """L1 cycle-consistency term ``||F(G(x)) - x||_1`` (mean over pixels), eq. 3.2.

    Example:
        >>> x = torch.rand(2, 1, 8, 8)
        >>> float(cycle_loss(x, x))
        0.0
    """
    return F.l1_loss(reconstructed, real)


class CycleGAN(AdversarialMethod):
    """Unpaired translation A <-> B with cycle consistency; batches ``{"A": (B, C_A, H, W), "B": (B, C_B, H, W)}``.

    Args:
        in_channels: channels of domain A.
        out_channels: channels of domain B.
        ngf, n_blocks, n_downsampling, norm, antialias, padding, dropout: generator settings
            (:class:`~medi2i.natural.toolkit.generators.ResnetGenerator`; 9 blocks at 256 px, 6 at 128 px).
        ndf, n_layers_d: PatchGAN settings (3 layers = 70x70 receptive field).
        gan_mode: ``"lsgan"`` (code default), ``"vanilla"``, ``"hinge"`` or ``"nonsaturating"``.
        lambda_a, lambda_b: cycle weights (10).
        lambda_identity: identity weight as a fraction of ``lambda`` (0.5; 0 disables).
        pool_size: image history buffer size (50; 0 = off).
        lr, beta1, beta2: Adam settings (2e-4, 0.5, 0.999) for both G and D.
        init_type, init_gain: weight init (``"normal"``, 0.02).
        seed: seed of the weight init and of the pools' generators (``None``: use the global RNG).

    Example:
        >>> model = CycleGAN(in_channels=1, out_channels=1, ngf=4, ndf=4, n_blocks=1, n_layers_d=1)
        >>> model.translate(torch.zeros(1, 1, 18, 18)).shape
        torch.Size([1, 1, 18, 18])
    """

    name = "cyclegan"

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        n_downsampling: int = 2,
        norm: str = "instance",
        antialias: bool = False,
        padding: str = "reflect",
        dropout: float = 0.0,
        ndf: int = 64,
        n_layers_d: int = 3,
        gan_mode: str = "lsgan",
        lambda_a: float = 10.0,
        lambda_b: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        init_type: str = "normal",
        init_gain: float = 0.02,
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            ngf=ngf,
            n_blocks=n_blocks,
            n_downsampling=n_downsampling,
            norm=norm,
            antialias=antialias,
            padding=padding,
            dropout=dropout,
            ndf=ndf,
            n_layers_d=n_layers_d,
            gan_mode=gan_mode,
            lambda_a=lambda_a,
            lambda_b=lambda_b,
            lambda_identity=lambda_identity,
            pool_size=pool_size,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            init_type=init_type,
            init_gain=init_gain,
            seed=seed,
        )
        for key, value in (("lambda_a", lambda_a), ("lambda_b", lambda_b), ("lambda_identity", lambda_identity)):
            if not value >= 0:
                raise ValueError(f"{key} must be >= 0, got {value!r}")
        if not lr > 0 or not 0 <= beta1 < 1 or not 0 <= beta2 < 1:
            raise ValueError(f"need lr > 0 and betas in [0, 1), got lr={lr}, beta1={beta1}, beta2={beta2}")
        self.gan_mode = str(look_up_option(gan_mode, GANKind))
        look_up_option(init_type, InitKind)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.lambda_a, self.lambda_b = float(lambda_a), float(lambda_b)
        self.lambda_identity = float(lambda_identity)
        if self.lambda_identity > 0 and self.in_channels != self.out_channels:
            warnings.warn(
                f"CycleGAN: identity loss disabled because in_channels ({in_channels}) != out_channels "
                f"({out_channels}); G_A(b) needs B images with A's channel count",
                UserWarning,
                stacklevel=2,
            )
            self.lambda_identity = 0.0
        self.lr, self.betas = float(lr), (float(beta1), float(beta2))
        gen = dict(
            ngf=ngf,
            n_blocks=n_blocks,
            n_downsampling=n_downsampling,
            norm=norm,
            antialias=antialias,
            padding=padding,
            dropout=dropout,
        )
        with seeded(seed):
            self.G_A = init_weights(ResnetGenerator(in_channels, out_channels, **gen), init_type, init_gain)
            self.G_B = init_weights(ResnetGenerator(out_channels, in_channels, **gen), init_type, init_gain)
            disc = dict(ndf=ndf, n_layers=n_layers_d, norm=norm)
            self.D_A = init_weights(PatchDiscriminator(out_channels, **disc), init_type, init_gain)
            self.D_B = init_weights(PatchDiscriminator(in_channels, **disc), init_type, init_gain)
        pool_seed = 0 if seed is None else int(seed)
        self.pool_A = ImagePool(pool_size, seed=pool_seed + 1)  # past G_B(b), fakes of domain A, fed to D_B
        self.pool_B = ImagePool(pool_size, seed=pool_seed + 2)  # past G_A(a), fakes of domain B, fed to D_A

    # ------------------------------------------------------------------ trainer surface
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Adam for both generators (``"G"``) and both discriminators (``"D"``), as the code."""
        g_params = list(self.G_A.parameters()) + list(self.G_B.parameters())
        d_params = list(self.D_A.parameters()) + list(self.D_B.parameters())
        return {
            "G": torch.optim.Adam(g_params, lr=self.lr, betas=self.betas),
            "D": torch.optim.Adam(d_params, lr=self.lr, betas=self.betas),
        }

    def inference_modules(self) -> dict[str, nn.Module]:
        return {"G_A": self.G_A, "G_B": self.G_B}

    def extra_training_state(self) -> dict[str, Any]:
        return {"pool_A": self.pool_A.state_dict(), "pool_B": self.pool_B.state_dict()}

    def load_extra_training_state(self, state: Mapping[str, Any]) -> None:
        self.pool_A.load_state_dict(state["pool_A"])
        self.pool_B.load_state_dict(state["pool_B"])

    def generator_losses(self, real_a: Tensor, real_b: Tensor) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """Total generator loss, its terms and the generated images for one batch (D is not updated here)."""
        fake_b = self.G_A(real_a)
        rec_a = self.G_B(fake_b)
        fake_a = self.G_B(real_b)
        rec_b = self.G_A(fake_a)
        terms = {
            "G_A": generator_loss(self.gan_mode, self.D_A(fake_b)),
            "G_B": generator_loss(self.gan_mode, self.D_B(fake_a)),
            "cycle_A": cycle_loss(real_a, rec_a) * self.lambda_a,
            "cycle_B": cycle_loss(real_b, rec_b) * self.lambda_b,
        }
        if self.lambda_identity > 0:
            terms["idt_A"] = F.l1_loss(self.G_A(real_b), real_b) * self.lambda_b * self.lambda_identity
            terms["idt_B"] = F.l1_loss(self.G_B(real_a), real_a) * self.lambda_a * self.lambda_identity
        images = {
            "real_A": real_a,
            "fake_B": fake_b,
            "rec_A": rec_a,
            "real_B": real_b,
            "fake_A": fake_a,
            "rec_B": rec_b,
        }
        return sum(terms.values()), terms, images

    def training_step(
        self, batch: Mapping[str, Any], optimizers: Mapping[str, torch.optim.Optimizer], step: int
    ) -> StepOutput:
        """G_A and G_B update (D frozen), then D_A and D_B on pooled fakes (the code's order)."""
        real_a = self._image(batch, "A", self.in_channels)
        real_b = self._image(batch, "B", self.out_channels)
        discriminators = [self.D_A, self.D_B]
        self.set_requires_grad(discriminators, False)
        optimizers["G"].zero_grad(set_to_none=True)
        loss_g, terms, images = self.generator_losses(real_a, real_b)
        loss_g.backward()
        optimizers["G"].step()

        self.set_requires_grad(discriminators, True)
        optimizers["D"].zero_grad(set_to_none=True)
        fake_b = self.pool_B.query(images["fake_B"].detach())
        fake_a = self.pool_A.query(images["fake_A"].detach())
        loss_d_a = discriminator_loss(self.gan_mode, self.D_A(real_b), self.D_A(fake_b))
        loss_d_b = discriminator_loss(self.gan_mode, self.D_B(real_a), self.D_B(fake_a))
        (loss_d_a + loss_d_b).backward()
        optimizers["D"].step()

        losses = {key: float(value.detach()) for key, value in terms.items()}
        losses.update(D_A=float(loss_d_a.detach()), D_B=float(loss_d_b.detach()), G=float(loss_g.detach()))
        return StepOutput(losses=losses, images={key: value.detach() for key, value in images.items()})

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def translate(self, inputs: Tensor | Mapping[str, Any], direction: str = Direction.A_TO_B, **kwargs: Any) -> Tensor:
        """``G_A(x)`` (``"AtoB"``) or ``G_B(x)`` (``"BtoA"``) for ``(B, C, H, W)`` images in [-1, 1], any H, W.

        ``inputs`` may be a batch dict (key ``"A"`` for AtoB, ``"B"`` for BtoA). Inputs are reflect-padded to a
        multiple of ``2 ** n_downsampling`` and the output is cropped back. Runs in eval mode without grad.
        """
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        way = look_up_option(direction, Direction)
        if way == Direction.A_TO_B:
            key, channels, net = "A", self.in_channels, self.G_A
        else:
            key, channels, net = "B", self.out_channels, self.G_B
        x = self._image(inputs, key, channels) if isinstance(inputs, Mapping) else inputs
        _check_image(x, channels, key)
        h, w = x.shape[-2:]
        m = net.multiple
        pad_h, pad_w = (-h) % m, (-w) % m
        mode = "reflect" if (pad_h < h and pad_w < w) else "replicate"
        xp = F.pad(x, (0, pad_w, 0, pad_h), mode=mode) if (pad_h or pad_w) else x
        was_training = net.training
        net.eval()
        try:
            y = net(xp)
        finally:
            net.train(was_training)
        return y[..., :h, :w]

    @staticmethod
    def _image(batch: Mapping[str, Any], key: str, channels: int) -> Tensor:
        if key not in batch:
            raise Medi2iInputError("batch lacks an image key", field=key, found=sorted(batch), expected=f"'{key}'")
        x = batch[key]
        _check_image(x, channels, key)
        return x


def _check_image(x: Any, channels: int, field: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != channels:
        found = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise Medi2iInputError(
            "images have the wrong shape", field=field, found=found, expected=f"(B, {channels}, H, W) tensor"
        )
