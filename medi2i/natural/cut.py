"""CUT, FastCUT and SinCUT: contrastive unpaired translation (Park, Efros, Zhang, Zhu, ECCV 2020; thesis 3.3).

One generator ``G = G_dec o G_enc: X -> Y`` (the ResNet-k generator, antialiased sampling by default as the code),
one PatchGAN ``D`` on Y, and per-layer projection heads ``H_l`` (``netF``, :class:`PatchSampleMLP`).
Full objective, thesis eq. (3.9) (digest ``park_thesis.md`` section 4.2)::

    L = L_GAN(G, D, X, Y) + lambda_X * L_PatchNCE(G, H, X) + lambda_Y * L_PatchNCE(G, H, Y)

with ``L_PatchNCE(G, H, X) = E_x sum_l sum_s l(z_hat_l^s, z_l^s, z_l^{S \\ s})`` (eq. 3.7),
``z_l = H_l(G_enc^l(x))`` (keys, detached) and ``z_hat_l = H_l(G_enc^l(G(x)))`` (queries).
The last term is the identity NCE on target images: ``G(y)`` vs ``y``.

Code vs paper (digest section 10; we follow the code by default, ``nce_weighting="paper"`` gives eq. 3.9):

- each NCE term is averaged over the layers (``/ len(nce_layers)``) and over the sampled patches;
- with the identity NCE the generator loss is ``lambda_GAN * L_GAN + 0.5 * lambda_NCE * (NCE_X + NCE_Y)``;
- LSGAN with ``D loss = 0.5 * (real + fake)``; no image pool; update order D then (G, F);
- Adam (0.5, 0.999), lr 2e-4 (the thesis' "0.002" is a typo) for G, D and F; Xavier-normal init, gain 0.02;
- the code's antialiased PatchGAN (stride-1 conv + blur-pool) is not used: the toolkit PatchGAN has plain
  stride-2 convs (only G is antialiased here);
- NCE layers ``(0, 4, 8, 12, 16)`` of the antialiased ResNet-9 = input, both downsampling convs, res blocks 1
  and 5 (receptive fields 1, 9, 15, 35, 99 px). ``ResnetGenerator.nce_layers()`` gives these *semantic* layers
  for any layout (``antialias``, ``n_downsampling``, ``n_blocks``), so the non-antialiased tiny G of digest 4.6
  gets ``(0, 4, 7, 10, 11)``; that is the default when ``nce_layers`` is None.

Variants (``CUT_mode`` presets of the code, digest 4.2 and 4.5):

- :class:`CUT`: ``lambda_nce=1``, identity NCE on.
- :class:`FastCUT`: ``lambda_nce=10``, no identity NCE, flip-equivariance augmentation (the inputs are flipped
  horizontally with probability 0.5 before ``G`` and the query features are flipped back before the NCE).
  Its 150 + 50 epoch schedule belongs to the trainer configuration.
- :class:`SinCUT`: one image per domain, batches of crops; non-saturating GAN + R1 (``lambda_r1 * 0.5 * E|grad|^2``
  on real crops, every D step), pixel L1 identity loss ``|G(y) - y|`` (weight 1), ``lambda_nce=4``, one patch
  per crop with negatives from the whole batch, Adam (0, 0.99) lr 2e-3. **Simplification:** the code's StyleGAN2
  G and D are replaced by the shared toolkit networks: a ResNet G with 1 downsampling and 6 res blocks (the
  thesis' "1 down block + 6 res blocks + 1 up block, no style modulation") and a PatchGAN with ``n_layers=2``
  (34 px receptive field, smaller than the 64 px crops, which the thesis says keeps the structure).

Channels: ``in_channels`` and ``out_channels`` may differ (medical 1-channel data, digest 4.5 need 1). The identity
terms feed ``y`` to ``G`` and therefore need ``in_channels == out_channels``: otherwise they are disabled with a
warning. The NCE query branch encodes ``G(x)`` with ``G_enc``, which takes ``in_channels``: when the counts differ,
a learned 1x1 conv (``query_adapter``, initialised to the channel mean / replication, optimised with G) maps
``G(x)`` to ``in_channels`` first. This adapter is a medi2i extension; the official code needs equal counts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from monai.utils import look_up_option
from torch import Tensor, nn

from medi2i.errors import Medi2iInputError
from medi2i.natural.toolkit.discriminators import PatchDiscriminator
from medi2i.natural.toolkit.gan_losses import GANKind, discriminator_loss, generator_loss, r1_penalty
from medi2i.natural.toolkit.generators import ResnetGenerator
from medi2i.natural.toolkit.init import init_weights
from medi2i.natural.toolkit.patchnce import NegativeSource, PatchNCELoss, PatchSampleMLP
from medi2i.natural.trainer import AdversarialMethod, StepOutput

__all__ = ["CUT", "FastCUT", "NCEWeighting", "SinCUT"]


class NCEWeighting(StrEnum):
    """How the two NCE terms are weighted (digest section 10, item 9)."""

    CODE = "code"  # 0.5 * lambda_nce * (NCE_X + NCE_Y) with the identity NCE, lambda_nce * NCE_X without
    PAPER = "paper"  # eq. (3.9): lambda_nce * NCE_X + lambda_nce * NCE_Y


class CUT(AdversarialMethod):
    """Contrastive Unpaired Translation (one-sided X -> Y), thesis eqs. (3.6)-(3.9); see the module docstring.

    Args:
        in_channels: channels of domain X (batch key ``"A"``).
        out_channels: channels of domain Y (batch key ``"B"``).
        ngf, n_blocks, n_downsampling, antialias, norm, padding: the ResNet generator (``antialias=True`` as the
            code; False gives the CycleGAN layers).
        ndf, n_layers_d: the PatchGAN (``n_layers_d=3`` is the 70x70 PatchGAN).
        gan_mode: ``"lsgan"`` (CUT), ``"nonsaturating"`` (SinCUT), ``"hinge"`` or ``"vanilla"``.
        lambda_gan: weight of the GAN term.
        lambda_nce: ``lambda_X`` (and ``lambda_Y`` when ``nce_idt``).
        nce_idt: use the identity NCE on ``G(y)`` vs ``y`` (needs ``in_channels == out_channels``).
        nce_weighting: ``"code"`` (0.5 average, default) or ``"paper"`` (plain sum of eq. 3.9).
        nce_layers: indices into the generator's flat ``model``; None gives ``G.nce_layers()`` (semantic layers).
        num_patches: sampled locations per layer per image (256).
        nce_temperature: tau (0.07).
        nce_negatives: ``"image"`` (same-image negatives) or ``"batch"`` (SinCUT).
        mlp_channels: width of the projection MLP (256).
        flip_equivariance: FastCUT's flip augmentation.
        lr, betas: Adam for G, D and the projection head.
        init_type, init_gain: weight init of G, D and the head (Xavier-normal, 0.02 as the code).

    The projection head is built lazily (:meth:`setup_lazy` with the first batch, the code's
    ``data_dependent_initialize``; :meth:`configure_optimizers` builds it from the generator's channel counts
    if nobody did), its optimiser is ``"F"`` in :meth:`configure_optimizers`, and its weights are part of the
    method's ``state_dict`` (a fresh head loads them without a forward).
    """

    name: ClassVar[str] = "cut"
    # configuration keys a subclass adds (recorded in ``config`` so that ``type(self)(**config)`` rebuilds it)
    extra_config_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        *,
        ngf: int = 64,
        n_blocks: int = 9,
        n_downsampling: int = 2,
        antialias: bool = True,
        norm: str = "instance",
        padding: str = "reflect",
        ndf: int = 64,
        n_layers_d: int = 3,
        gan_mode: str = "lsgan",
        lambda_gan: float = 1.0,
        lambda_nce: float = 1.0,
        nce_idt: bool = True,
        nce_weighting: str = "code",
        nce_layers: Sequence[int] | None = None,
        num_patches: int = 256,
        nce_temperature: float = 0.07,
        nce_negatives: str = "image",
        mlp_channels: int = 256,
        flip_equivariance: bool = False,
        lr: float = 2e-4,
        betas: Sequence[float] = (0.5, 0.999),
        init_type: str = "xavier",
        init_gain: float = 0.02,
        **extra: Any,
    ) -> None:
        unknown = sorted(set(extra) - set(self.extra_config_keys))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {unknown}")
        config = dict(
            in_channels=in_channels,
            out_channels=out_channels,
            ngf=ngf,
            n_blocks=n_blocks,
            n_downsampling=n_downsampling,
            antialias=antialias,
            norm=norm,
            padding=padding,
            ndf=ndf,
            n_layers_d=n_layers_d,
            gan_mode=gan_mode,
            lambda_gan=lambda_gan,
            lambda_nce=lambda_nce,
            nce_idt=nce_idt,
            nce_weighting=nce_weighting,
            nce_layers=None if nce_layers is None else [int(i) for i in nce_layers],
            num_patches=num_patches,
            nce_temperature=nce_temperature,
            nce_negatives=nce_negatives,
            mlp_channels=mlp_channels,
            flip_equivariance=flip_equivariance,
            lr=lr,
            betas=[float(b) for b in betas],
            init_type=init_type,
            init_gain=init_gain,
            **extra,
        )
        _check_config(config)
        super().__init__(**config)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.gan_mode = str(GANKind(look_up_option(gan_mode, GANKind)).value)
        self.lambda_gan, self.lambda_nce = float(lambda_gan), float(lambda_nce)
        self.nce_weighting = NCEWeighting(look_up_option(nce_weighting, NCEWeighting))
        self.num_patches = int(num_patches)
        self.flip_equivariance = bool(flip_equivariance)
        self.lr, self.betas = float(lr), (float(betas[0]), float(betas[1]))
        self.nce_idt = bool(nce_idt) and self.lambda_nce > 0
        if self.nce_idt and self.in_channels != self.out_channels:
            warnings.warn(
                f"{type(self).__name__}: identity NCE disabled because in_channels ({in_channels}) != "
                f"out_channels ({out_channels}); G(y) needs an input with in_channels channels",
                UserWarning,
                stacklevel=2,
            )
            self.nce_idt = False

        self.G = ResnetGenerator(
            in_channels,
            out_channels,
            ngf=ngf,
            n_blocks=n_blocks,
            n_downsampling=n_downsampling,
            norm=norm,
            antialias=antialias,
            padding=padding,
        )
        self.D = PatchDiscriminator(out_channels, ndf=ndf, n_layers=n_layers_d, norm=norm)
        init_weights(self.G, kind=init_type, gain=init_gain)
        init_weights(self.D, kind=init_type, gain=init_gain)
        # medi2i extension (not in the paper or code): the query branch encodes G(x) with G_enc, which takes
        # in_channels; with out_channels != in_channels a learned 1x1 conv maps G(x) to in_channels first,
        # initialised to the channel mean (3 -> 1: grey) or replication (1 -> 3). Trained with G.
        self.query_adapter: nn.Conv2d | None = None
        if self.in_channels != self.out_channels:
            adapter = nn.Conv2d(out_channels, in_channels, 1, bias=False)
            with torch.no_grad():
                adapter.weight.fill_(1.0 / out_channels)
            self.query_adapter = adapter
        n_modules = len(self.G.model)
        if nce_layers is None:
            nce_layers = self.G.nce_layers()
        self.nce_layers = tuple(int(i) for i in nce_layers)
        if any(i < 0 or i >= n_modules for i in self.nce_layers):
            raise ValueError(
                f"nce_layers must be indices in [0, {n_modules - 1}] of the generator's {n_modules} layers, "
                f"got {list(self.nce_layers)}"
            )
        self.netF = PatchSampleMLP(mlp_channels, init_gain=init_gain)
        self.nce_loss = PatchNCELoss(nce_temperature, negatives=nce_negatives)

    # ------------------------------------------------------------------ setup
    def setup_lazy(self, batch: Mapping[str, Any]) -> None:
        """Build the projection MLPs from the encoder features of (one image of) ``batch["A"]``."""
        real_a = self._image(batch, "A", self.in_channels)
        if self.netF.built:
            return
        with torch.no_grad():
            feats = self.G.encode(real_a[:1], self.nce_layers)
        self.netF.build([f.shape[1] for f in feats], device=real_a.device, dtype=real_a.dtype)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Adam for ``"G"``, ``"D"`` and the projection head ``"F"`` (same lr and betas, as the code)."""
        if not self.netF.built:
            param = next(self.G.parameters())
            self.netF.build(self.G.layer_channels(self.nce_layers), device=param.device, dtype=param.dtype)
        optimizers: dict[str, torch.optim.Optimizer] = {
            "G": torch.optim.Adam(self._g_parameters(), lr=self.lr, betas=self.betas),
            "D": torch.optim.Adam(self.D.parameters(), lr=self.lr, betas=self.betas),
        }
        head = list(self.netF.parameters())
        if head:
            optimizers["F"] = torch.optim.Adam(head, lr=self.lr, betas=self.betas)
        return optimizers

    def _g_parameters(self) -> list[nn.Parameter]:
        extra = [] if self.query_adapter is None else list(self.query_adapter.parameters())
        return list(self.G.parameters()) + extra

    def inference_modules(self) -> dict[str, nn.Module]:
        return {"G": self.G}

    # ------------------------------------------------------------------ losses
    def nce(self, src: Tensor, tgt: Tensor, *, flipped: bool = False) -> Tensor:
        """``L_PatchNCE`` (eq. 3.7) between ``src`` (keys) and ``tgt = G(src)`` (queries), averaged over layers.

        The key features carry no gradient (the loss detaches them; they are computed under ``no_grad``, which
        gives the same gradients with less memory). ``flipped``: ``tgt`` was produced from a horizontally flipped
        input, so its features are flipped back (FastCUT's flip equivariance).
        """
        if self.query_adapter is not None and tgt.shape[1] != self.in_channels:
            tgt = self.query_adapter(tgt)
        feat_q = self.G.encode(tgt, self.nce_layers)
        if flipped:
            feat_q = [torch.flip(f, dims=(3,)) for f in feat_q]
        with torch.no_grad():
            feat_k = self.G.encode(src, self.nce_layers)
            key, patch_ids = self.netF(feat_k, self.num_patches)
        query, _ = self.netF(feat_q, self.num_patches, patch_ids)
        return sum(self.nce_loss(q, k) for q, k in zip(query, key, strict=True)) / len(self.nce_layers)

    def d_loss(self, real_b: Tensor, fake_b: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Discriminator loss on real Y and (detached) fake images; the D loss is ``0.5 * (real + fake)``."""
        loss = self._d_gan(self.D(real_b), self.D(fake_b.detach()))
        return loss, {"D": _item(loss)}

    def _d_gan(self, pred_real: Tensor, pred_fake: Tensor) -> Tensor:
        # The code halves the D loss for every gan_mode; the toolkit's lsgan/vanilla already carry that 0.5.
        scale = _D_HALF.get(self.gan_mode, 1.0)
        return discriminator_loss(self.gan_mode, pred_real, pred_fake) * scale

    def g_loss(
        self, real_a: Tensor, real_b: Tensor, fake_b: Tensor, idt_b: Tensor | None, flipped: bool
    ) -> tuple[Tensor, dict[str, float]]:
        """``lambda_GAN * L_GAN + NCE`` with the code's (or the paper's) weighting of ``NCE_X`` and ``NCE_Y``."""
        parts: dict[str, float] = {}
        loss = fake_b.new_zeros(())
        if self.lambda_gan > 0:
            gan = generator_loss(self.gan_mode, self.D(fake_b)) * self.lambda_gan
            loss = loss + gan
            parts["G_GAN"] = _item(gan)
        if self.lambda_nce > 0:
            nce_x = self.nce(real_a, fake_b, flipped=flipped)
            parts["NCE"] = _item(nce_x)
            if idt_b is not None:
                nce_y = self.nce(real_b, idt_b, flipped=flipped)
                parts["NCE_Y"] = _item(nce_y)
                scale = 0.5 if self.nce_weighting is NCEWeighting.CODE else 1.0
                loss = loss + scale * self.lambda_nce * (nce_x + nce_y)
            else:
                loss = loss + self.lambda_nce * nce_x
        parts["G"] = _item(loss)
        return loss, parts

    # ------------------------------------------------------------------ training
    def forward(self, real_a: Tensor, real_b: Tensor | None = None) -> tuple[Tensor, Tensor | None, bool]:
        """Training forward: ``(fake_b, idt_b, flipped)``; A and B go through G in one pass (as the code)."""
        real = real_a if real_b is None else torch.cat([real_a, real_b], dim=0)
        flipped = self.flip_equivariance and self.training and bool(torch.rand(()) < 0.5)
        if flipped:
            real = torch.flip(real, dims=(3,))
        fake = self.G(real)
        n = real_a.shape[0]
        return fake[:n], (fake[n:] if real_b is not None else None), flipped

    def training_step(self, batch: Mapping[str, Any], optimizers: Mapping[str, torch.optim.Optimizer], step: int):
        """One iteration as the code's ``optimize_parameters``: forward, update D, then update G and F together."""
        real_a = self._image(batch, "A", self.in_channels)
        real_b = self._image(batch, "B", self.out_channels)
        if not self.netF.built:
            raise RuntimeError("call setup_lazy(batch) and configure_optimizers() before training_step")
        fake_b, idt_b, flipped = self(real_a, real_b if self._uses_idt() else None)

        self.set_requires_grad(self.D, True)
        optimizers["D"].zero_grad(set_to_none=True)
        loss_d, parts_d = self.d_loss(real_b, fake_b)
        loss_d.backward()
        optimizers["D"].step()

        self.set_requires_grad(self.D, False)
        optimizers["G"].zero_grad(set_to_none=True)
        if "F" in optimizers:
            optimizers["F"].zero_grad(set_to_none=True)
        loss_g, parts_g = self.g_loss(real_a, real_b, fake_b, idt_b, flipped)
        loss_g.backward()
        optimizers["G"].step()
        if "F" in optimizers:
            optimizers["F"].step()
        self.set_requires_grad(self.D, True)

        images = {"real_A": real_a.detach(), "fake_B": fake_b.detach(), "real_B": real_b.detach()}
        if idt_b is not None:
            images["idt_B"] = idt_b.detach()
        return StepOutput(losses={**parts_d, **parts_g}, images=images)

    def _uses_idt(self) -> bool:
        return self.nce_idt

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def translate(self, inputs: Tensor | Mapping[str, Any], **kwargs: Any) -> Tensor:
        """Map X -> Y: ``G(x)`` for ``x`` of shape ``(B, in_channels, H, W)`` in [-1, 1] (or a batch dict's "A")."""
        x = self._image(inputs, "A", self.in_channels) if isinstance(inputs, Mapping) else inputs
        _check_image(x, self.in_channels, "inputs")
        was_training = self.G.training
        self.G.eval()
        try:
            return self.G(x)
        finally:
            self.G.train(was_training)

    @staticmethod
    def _image(batch: Mapping[str, Any], key: str, channels: int) -> Tensor:
        if key not in batch:
            raise Medi2iInputError("batch has no such key", field=key, found=sorted(batch), expected=f"key {key!r}")
        x = batch[key]
        _check_image(x, channels, key)
        return x


class FastCUT(CUT):
    """FastCUT: ``lambda_nce=10``, no identity NCE, flip equivariance (the code's ``CUT_mode="FastCUT"``)."""

    name: ClassVar[str] = "fastcut"

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        *,
        lambda_nce: float = 10.0,
        nce_idt: bool = False,
        flip_equivariance: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            lambda_nce=lambda_nce,
            nce_idt=nce_idt,
            flip_equivariance=flip_equivariance,
            **kwargs,
        )


class SinCUT(CUT):
    """SinCUT: single-image CUT on batches of crops (thesis 3.3.2, the code's ``sincut_model``).

    Adds to CUT: R1 on real crops, ``lambda_r1 * 0.5 * E_x ||grad_x D(x)||^2`` every D step, and the pixel identity
    loss ``lambda_identity * |G(y) - y|_1``. Defaults follow the code (non-saturating GAN, ``lambda_nce=4``, identity
    NCE on, one patch per crop with negatives from the whole batch, Adam (0, 0.99) lr 2e-3); the networks are the
    toolkit's (see the module docstring for the StyleGAN2 simplification).

    Args:
        lambda_r1: R1 weight (1.0).
        lambda_identity: pixel L1 identity weight (1.0; needs ``in_channels == out_channels``).
        **kwargs: the :class:`CUT` arguments.
    """

    name: ClassVar[str] = "sincut"
    extra_config_keys: ClassVar[tuple[str, ...]] = ("lambda_r1", "lambda_identity")

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        *,
        lambda_r1: float = 1.0,
        lambda_identity: float = 1.0,
        ngf: int = 64,
        n_blocks: int = 6,
        n_downsampling: int = 1,
        ndf: int = 64,
        n_layers_d: int = 2,
        gan_mode: str = "nonsaturating",
        lambda_nce: float = 4.0,
        num_patches: int = 1,
        nce_negatives: str = "batch",
        lr: float = 2e-3,
        betas: Sequence[float] = (0.0, 0.99),
        **kwargs: Any,
    ) -> None:
        if not (math.isfinite(lambda_r1) and lambda_r1 >= 0):
            raise ValueError(f"lambda_r1 must be a finite number >= 0, got {lambda_r1!r}")
        if not (math.isfinite(lambda_identity) and lambda_identity >= 0):
            raise ValueError(f"lambda_identity must be a finite number >= 0, got {lambda_identity!r}")
        super().__init__(
            in_channels,
            out_channels,
            ngf=ngf,
            n_blocks=n_blocks,
            n_downsampling=n_downsampling,
            ndf=ndf,
            n_layers_d=n_layers_d,
            gan_mode=gan_mode,
            lambda_nce=lambda_nce,
            num_patches=num_patches,
            nce_negatives=nce_negatives,
            lr=lr,
            betas=betas,
            lambda_r1=lambda_r1,
            lambda_identity=lambda_identity,
            **kwargs,
        )
        self.lambda_r1 = float(lambda_r1)
        self.lambda_identity = float(lambda_identity)
        if self.lambda_identity > 0 and self.in_channels != self.out_channels:
            warnings.warn(
                f"SinCUT: identity L1 disabled because in_channels ({in_channels}) != out_channels ({out_channels})",
                UserWarning,
                stacklevel=2,
            )
            self.lambda_identity = 0.0

    def _uses_idt(self) -> bool:
        return self.nce_idt or self.lambda_identity > 0

    def d_loss(self, real_b: Tensor, fake_b: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Non-saturating D loss plus ``lambda_r1 * 0.5 * E||grad_y D(y)||^2`` (the code's ``R1_loss``)."""
        if self.lambda_r1 <= 0:
            return super().d_loss(real_b, fake_b)
        real_b = real_b.detach().requires_grad_(True)
        pred_real = self.D(real_b)
        loss = self._d_gan(pred_real, self.D(fake_b.detach()))
        r1 = r1_penalty(pred_real, real_b) * (0.5 * self.lambda_r1)
        return loss + r1, {"D_GAN": _item(loss), "D_R1": _item(r1), "D": _item(loss + r1)}

    def g_loss(
        self, real_a: Tensor, real_b: Tensor, fake_b: Tensor, idt_b: Tensor | None, flipped: bool
    ) -> tuple[Tensor, dict[str, float]]:
        """CUT's generator loss plus ``lambda_identity * |G(y) - y|_1``."""
        loss, parts = super().g_loss(real_a, real_b, fake_b, idt_b if self.nce_idt else None, flipped)
        if self.lambda_identity > 0 and idt_b is not None:
            # with flip equivariance on, G saw flip(y): compare its output flipped back with y
            idt = F.l1_loss(torch.flip(idt_b, dims=(3,)) if flipped else idt_b, real_b) * self.lambda_identity
            loss = loss + idt
            parts["idt"] = _item(idt)
            parts["G"] = _item(loss)
        return loss, parts


# extra factor that makes the toolkit's D loss the code's 0.5 * (real + fake) (toolkit lsgan/vanilla include it)
_D_HALF = {"nonsaturating": 0.5, "hinge": 0.5}


def _item(x: Tensor) -> float:
    return float(x.detach())


def _check_image(x: Any, channels: int, field: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != channels or not x.is_floating_point():
        found = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise Medi2iInputError(
            "expected a float image batch (B, C, H, W)", field=field, found=found, expected=f"C = {channels}"
        )


def _check_config(c: Mapping[str, Any]) -> None:
    """Raise ValueError (argument, value, allowed) for illegal configurations, before anything is built."""
    for key in ("in_channels", "out_channels", "ngf", "ndf", "n_layers_d", "mlp_channels"):
        v = c[key]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{key} must be a positive int, got {v!r}")
    for key in ("n_blocks", "n_downsampling"):
        v = c[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{key} must be an int >= 0, got {v!r}")
    n = c["num_patches"]
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"num_patches must be a positive int, got {n!r}")
    for key in ("lambda_gan", "lambda_nce"):
        v = c[key]
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{key} must be a finite number >= 0, got {v!r}")
    if c["lambda_gan"] == 0 and c["lambda_nce"] == 0:
        raise ValueError("lambda_gan and lambda_nce are both 0: nothing would train the generator")
    if not (isinstance(c["lr"], (int, float)) and c["lr"] > 0):
        raise ValueError(f"lr must be > 0, got {c['lr']!r}")
    betas = c["betas"]
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    layers = c["nce_layers"]
    if layers is not None:
        if len(layers) == 0 or list(layers) != sorted(set(layers)):
            raise ValueError(f"nce_layers must be a non-empty strictly increasing list of indices, got {layers!r}")
    look_up_option(c["gan_mode"], GANKind)
    look_up_option(c["nce_weighting"], NCEWeighting)
    look_up_option(c["nce_negatives"], NegativeSource)
