"""RABIT: exemplar-guided semantic image translation with bi-level feature alignment.

Zhan et al., "Bi-level Feature Alignment for Versatile Image Translation and Manipulation" (arXiv 2107.03021);
research digest ``dtp_rabit_nst.md`` section 2. Networks: :mod:`medi2i.natural.rabit_networks`; alignment
(Sinkhorn top-k, RAS, the released dense soft top-1 as ``attention_mode="reference"``):
:mod:`medi2i.natural.rabit_attention`.

Objective (paper section 3.4), ``min_{F_X, F_Z, G} max_D``::

    lambda_cyc L_cyc + lambda_cst L_cst + lambda_perc L_perc + lambda_cxt L_cxt + lambda_pse L_pse + L_adv

Paper name -> code here (weights: the official code's ADE20K script, digest 2.3; the paper gives none):

- ``L_cyc = |T^T T Z - Z|_1``: the warped exemplar is warped back by the *reverse* correspondence (query = exemplar
  features, key = input features), the CoCosNet/UNITE reading of ``T^T``; L1 to the exemplar on the grid.
  ``lambda_cyc = 1`` (decision: Table 8 shows it helps; the ADE20K script sets 0, the face script 1).
- ``L_cst = |F_X(X) - F_Z(X')|_1`` on L2-normalised domain and correlation features (code ``novgg_featpair``),
  ``lambda_cst = 10``; ``X'`` (the ground truth) is encoded with the position encoding of its own label ``X``.
- ``L_perc``: VGG19 ``relu5_2``, MSE, ``lambda_perc = 0.01`` (code; faces: ``relu4_2`` x 0.001).
- ``L_cxt``: contextual loss (Mechrez et al. 2018, :func:`contextual_loss`, ``h = 0.1``) of the output to the
  exemplar on ``relu5_2`` x 8 + ``relu4_2`` x 4 + ``relu3_2`` (2x2 avg-pooled) x 2, ``lambda_cxt = 1`` (= 10 x 0.1).
- ``L_pse``: on pseudo-pairs (the exemplar is an augmented copy of the ground truth) L1 feature matching of
  ``relu1_2 .. relu5_2`` with weights ``1/32 .. 1``, ``lambda_pse = 1`` (= 10 x 0.1), masked to those samples.
- ``L_adv``: hinge GAN x ``lambda_gan = 10`` plus discriminator feature matching x ``lambda_feat = 10``
  (toolkit :func:`~medi2i.natural.toolkit.feature_losses.feature_matching_loss`, averaged over scales) on a
  multi-scale PatchGAN seeing ``[one-hot label ‖ image]``.
- Code-only extra, off by default: the warp-mask loss ``L1(warped exemplar one-hot, input one-hot)`` on the grid
  (``lambda_warp_mask``; the release hard-codes 500).

Pseudo-pairs: a batch may carry ``"pseudo_pair"`` ``(B,)`` bool (``medi2i.natural.data.synthetic.rabit_lite_task``
does); without it the method itself replaces each exemplar, with probability ``pseudo_pair_prob`` (0.3, the code's
``1 - real_reference_probability``), by the ground truth flipped left-right (label map too), drawn from the global
torch RNG (restored on resume).

Optimisation (paper): Adam ``lr_g = 1e-4`` (``F_X``, ``F_Z``, CONFI, G), ``lr_d = 4e-4``, ``betas = (0, 0.999)``
(the code uses ``(0, 0.9)`` and ``eps = 1e-3``); per iteration G then D, as the CoCosNet/SPADE trainers.

Constructor defaults are the full-size model (256^2 images, a 128^2 correspondence, widths of the code);
:meth:`RABIT.lite_config` gives RABIT-lite (digest 2.8) for CPU runs and tests. VGG19 comes from a local file
(``vgg_pretrained=True``); ``vgg_pretrained=False`` gives a random (optionally thinner) VGG for tests only, and the
perceptual, contextual and pseudo-pair losses are then random-feature losses (digest 0.4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from monai.utils import StrEnum, look_up_option
from torch import Tensor, nn

from medi2i.errors import Medi2iInputError
from medi2i.natural.rabit_networks import RabitOutput, RabitTranslator
from medi2i.natural.spade_networks import one_hot_labels
from medi2i.natural.toolkit.discriminators import MultiScaleDiscriminator
from medi2i.natural.toolkit.feature_losses import feature_matching_loss
from medi2i.natural.toolkit.gan_losses import GANKind, discriminator_loss, generator_loss
from medi2i.natural.trainer import AdversarialMethod, StepOutput
from medi2i.nets.vgg import VGGFeatures

__all__ = ["RABIT", "PerceptualCriterion", "contextual_loss"]

PSE_LAYERS = ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")
PSE_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
CXT_WEIGHTS = {"relu5_2": 8.0, "relu4_2": 4.0, "relu3_2": 2.0}


class PerceptualCriterion(StrEnum):
    """Distance of the perceptual loss (code: MSE; RABIT-lite: L1)."""

    MSE = "mse"
    L1 = "l1"


def contextual_loss(x: Tensor, y: Tensor, *, h: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Contextual loss of Mechrez et al. (ECCV 2018) between generated features ``x`` and target features ``y``.

    ``d_ij = 1 - cos(x_i - mu_y, y_j - mu_y)``; ``d~_ij = d_ij / (min_k d_ik + eps)``; ``w_ij = exp((1 - d~_ij) / h)``;
    ``CX_ij = w_ij / sum_k w_ik``; ``CX = mean_j max_i CX_ij``; loss ``-log(CX)`` averaged over the batch.

    Args:
        x, y: ``(B, C, H, W)`` feature maps (spatial sizes may differ). h: bandwidth (0.1). eps: stabiliser.

    Returns:
        Scalar loss (``>= 0``; small when every target feature has a distinct close match in ``x``).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randn(1, 8, 4, 4, generator=g)
        >>> bool(contextual_loss(y, y) < contextual_loss(torch.randn(1, 8, 4, 4, generator=g), y))
        True
    """
    if x.ndim != 4 or y.ndim != 4 or x.shape[:2] != y.shape[:2]:
        raise ValueError(
            f"expected features (B, C, H, W) with equal B and C, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    mu = y.mean(dim=(2, 3), keepdim=True)
    xf = F.normalize((x - mu).flatten(2), dim=1)  # (B, C, Nx)
    yf = F.normalize((y - mu).flatten(2), dim=1)  # (B, C, Ny)
    dist = 1.0 - torch.bmm(xf.transpose(1, 2), yf)  # (B, Nx, Ny)
    rel = dist / (dist.amin(dim=2, keepdim=True) + eps)
    cx = torch.softmax((1.0 - rel) / h, dim=2)  # normalised over k (the targets) for each x_i
    score = cx.amax(dim=1).mean(dim=1)  # mean_j max_i
    return -torch.log(score.clamp_min(eps)).mean()


def _check_positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> None:
    bad_type = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
    if bad_type or (value < 0 if allow_zero else value <= 0):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name}={value!r} must be {kind} {'>= 0' if allow_zero else '> 0'}")


class RABIT(AdversarialMethod):
    """RABIT (see the module docstring for the objective, weights and decisions).

    Args:
        num_classes: classes ``K`` of the integer label maps (batch ``"label"``/``"exemplar_label"``).
        image_channels: 3 (RGB) or 1 (grey slices; repeated to RGB for the VGG losses).
        ndf, n_downsampling, corr_channels, position_encoding, attention_mode, block, k, epsilon, n_iters,
            sinkhorn_gradient, temperature, rank_temperature, multi_cmap, ngf, n_up, max_mult, spade_hidden,
            param_free_norm, spectral: :class:`~medi2i.natural.rabit_networks.RabitTranslator`.
        ndf_d, n_layers_d, num_d: the multi-scale PatchGAN (code: 64, 4, 2; lite: 16, 3, 1).
        gan_mode: ``"hinge"`` (code) or another toolkit GAN loss.
        lambda_gan, lambda_feat, lambda_cyc, lambda_cst, lambda_perc, lambda_cxt, lambda_pse, lambda_warp_mask:
            loss weights (0 switches a term off).
        perc_layer, perc_criterion: the perceptual loss layer (``relu5_2``) and distance (``"mse"``).
        cxt_h: contextual loss bandwidth. cxt_pool_relu3: 2x2 average-pool ``relu3_2`` first (code).
        pseudo_pair_prob: method-side pseudo-pair probability when the batch has no ``"pseudo_pair"``.
        vgg_pretrained, vgg_weights_path, vgg_width: the loss VGG19 (local weights file; random only for tests).
        lr_g, lr_d, betas, adam_eps: Adam (TTUR).

    Raises:
        ValueError: an illegal argument (named with its value).
    """

    name: ClassVar[str] = "rabit"

    def __init__(
        self,
        num_classes: int = 151,
        image_channels: int = 3,
        *,
        ndf: int = 64,
        n_downsampling: int = 1,
        corr_channels: int = 256,
        position_encoding: str = "semantic",
        attention_mode: str = "ras",
        block: Sequence[int] = (2, 2),
        k: int = 3,
        epsilon: float = 0.05,
        n_iters: int = 20,
        sinkhorn_gradient: str = "implicit",
        temperature: float = 0.01,
        rank_temperature: float = 0.01,
        multi_cmap: bool = True,
        ngf: int = 64,
        n_up: int = 5,
        max_mult: int = 16,
        spade_hidden: int = 128,
        param_free_norm: str = "instance",
        spectral: bool = True,
        ndf_d: int = 64,
        n_layers_d: int = 4,
        num_d: int = 2,
        gan_mode: str = "hinge",
        lambda_gan: float = 10.0,
        lambda_feat: float = 10.0,
        lambda_cyc: float = 1.0,
        lambda_cst: float = 10.0,
        lambda_perc: float = 0.01,
        lambda_cxt: float = 1.0,
        lambda_pse: float = 1.0,
        lambda_warp_mask: float = 0.0,
        perc_layer: str = "relu5_2",
        perc_criterion: str = "mse",
        cxt_h: float = 0.1,
        cxt_pool_relu3: bool = True,
        pseudo_pair_prob: float = 0.3,
        vgg_pretrained: bool = True,
        vgg_weights_path: str | None = None,
        vgg_width: float = 1.0,
        lr_g: float = 1e-4,
        lr_d: float = 4e-4,
        betas: Sequence[float] = (0.0, 0.999),
        adam_eps: float = 1e-8,
    ) -> None:
        block_pair = [int(block), int(block)] if isinstance(block, int) else [int(v) for v in block]
        config = dict(
            num_classes=num_classes,
            image_channels=image_channels,
            ndf=ndf,
            n_downsampling=n_downsampling,
            corr_channels=corr_channels,
            position_encoding=str(position_encoding),
            attention_mode=str(attention_mode),
            block=block_pair,
            k=k,
            epsilon=epsilon,
            n_iters=n_iters,
            sinkhorn_gradient=str(sinkhorn_gradient),
            temperature=temperature,
            rank_temperature=rank_temperature,
            multi_cmap=multi_cmap,
            ngf=ngf,
            n_up=n_up,
            max_mult=max_mult,
            spade_hidden=spade_hidden,
            param_free_norm=str(param_free_norm),
            spectral=spectral,
            ndf_d=ndf_d,
            n_layers_d=n_layers_d,
            num_d=num_d,
            gan_mode=str(gan_mode),
            lambda_gan=lambda_gan,
            lambda_feat=lambda_feat,
            lambda_cyc=lambda_cyc,
            lambda_cst=lambda_cst,
            lambda_perc=lambda_perc,
            lambda_cxt=lambda_cxt,
            lambda_pse=lambda_pse,
            lambda_warp_mask=lambda_warp_mask,
            perc_layer=str(perc_layer),
            perc_criterion=str(perc_criterion),
            cxt_h=cxt_h,
            cxt_pool_relu3=cxt_pool_relu3,
            pseudo_pair_prob=pseudo_pair_prob,
            vgg_pretrained=vgg_pretrained,
            vgg_weights_path=None if vgg_weights_path is None else str(vgg_weights_path),
            vgg_width=vgg_width,
            lr_g=lr_g,
            lr_d=lr_d,
            betas=[float(b) for b in betas],
            adam_eps=adam_eps,
        )
        # Check everything before building anything.
        for name in ("lambda_gan", "lambda_feat", "lambda_cyc", "lambda_cst", "lambda_perc", "lambda_cxt",
                     "lambda_pse", "lambda_warp_mask"):  # fmt: skip
            _check_positive(name, config[name], allow_zero=True)
        for name in ("lr_g", "lr_d", "adam_eps", "cxt_h"):
            _check_positive(name, config[name])
        if not 0.0 <= pseudo_pair_prob <= 1.0:
            raise ValueError(f"pseudo_pair_prob={pseudo_pair_prob!r} must be in [0, 1]")
        if len(config["betas"]) != 2 or not all(0.0 <= b < 1.0 for b in config["betas"]):
            raise ValueError(f"betas={tuple(betas)!r} must be two numbers in [0, 1)")
        if len(block_pair) != 2:
            raise ValueError(f"block={block!r} must be an int or a pair (bh, bw)")
        self.gan_mode = str(GANKind(look_up_option(gan_mode, GANKind)).value)
        self.perc_criterion = PerceptualCriterion(look_up_option(perc_criterion, PerceptualCriterion))
        if perc_layer not in PSE_LAYERS:
            raise ValueError(f"perc_layer={perc_layer!r} must be one of {list(PSE_LAYERS)}")
        super().__init__(**config)
        self.translator = RabitTranslator(
            num_classes,
            image_channels,
            ndf=ndf,
            n_downsampling=n_downsampling,
            corr_channels=corr_channels,
            position_encoding=position_encoding,
            attention_mode=attention_mode,
            block=tuple(block_pair),
            k=k,
            epsilon=epsilon,
            n_iters=n_iters,
            sinkhorn_gradient=sinkhorn_gradient,
            temperature=temperature,
            rank_temperature=rank_temperature,
            multi_cmap=multi_cmap,
            ngf=ngf,
            n_up=n_up,
            max_mult=max_mult,
            spade_hidden=spade_hidden,
            param_free_norm=param_free_norm,
            spectral=spectral,
        )
        self.D = MultiScaleDiscriminator(num_classes + image_channels, num_d=num_d, ndf=ndf_d, n_layers=n_layers_d)
        if vgg_width < 1.0 and vgg_pretrained:
            raise ValueError(
                f"vgg_width={vgg_width} < 1 needs vgg_pretrained=False (pretrained weights are full width)"
            )
        # The frozen loss VGG is built on first use (training only) and kept out of the module tree: it is not
        # part of checkpoints or model files, and inference never needs the weights file.
        self._loss_vgg: list[VGGFeatures] = []
        self.num_classes, self.image_channels = int(num_classes), int(image_channels)
        self.lambdas = {name[len("lambda_") :]: float(config[name]) for name in config if name.startswith("lambda_")}

    @property
    def G(self) -> RabitTranslator:  # noqa: N802 - the usual name of the generator side
        """The generator side (``F_X``, ``F_Z``, CONFI, generator): what inference needs."""
        return self.translator

    @staticmethod
    def lite_config(**overrides: Any) -> dict[str, Any]:
        """RABIT-lite (digest 2.8): 64^2 images, 32^2 correspondence, ``b = 4``, ``N = 256``, ``k = 3``, random 1/8 VGG.

        Loss weights of the digest's lite setting: cyc 1, cst 10, perc 1 (L1), cxt 1, pse 1, adv 1 (+ D feature
        matching 1); lr G 2e-4, D 4e-4.
        """
        config: dict[str, Any] = dict(
            num_classes=4,
            image_channels=3,
            ndf=16,
            n_downsampling=1,
            corr_channels=32,
            ngf=16,
            n_up=3,
            max_mult=2,
            spade_hidden=32,
            ndf_d=16,
            n_layers_d=3,
            num_d=1,
            lambda_gan=1.0,
            lambda_feat=1.0,
            lambda_cyc=1.0,
            lambda_cst=10.0,
            lambda_perc=1.0,
            perc_criterion="l1",
            lambda_cxt=1.0,
            lambda_pse=1.0,
            vgg_pretrained=False,
            vgg_width=0.125,
            lr_g=2e-4,
            lr_d=4e-4,
        )
        config.update(overrides)
        return config

    # ------------------------------------------------------------------ setup
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Adam ``"G"`` (``F_X``, ``F_Z``, CONFI, generator) at ``lr_g`` and ``"D"`` at ``lr_d`` (TTUR)."""
        betas = tuple(self.config["betas"])
        eps = self.config["adam_eps"]
        return {
            "G": torch.optim.Adam(self.translator.parameters(), lr=self.config["lr_g"], betas=betas, eps=eps),
            "D": torch.optim.Adam(self.D.parameters(), lr=self.config["lr_d"], betas=betas, eps=eps),
        }

    def inference_modules(self) -> dict[str, nn.Module]:
        return {"G": self.translator}

    # ------------------------------------------------------------------ inputs
    def _label(self, batch: Mapping[str, Any], key: str) -> Tensor:
        if key not in batch:
            raise Medi2iInputError("batch has no such key", field=key, found=sorted(batch), expected=f"key {key!r}")
        return one_hot_labels(batch[key], self.num_classes).to(dtype=torch.float32)

    def _image(self, batch: Mapping[str, Any], key: str) -> Tensor:
        if key not in batch:
            raise Medi2iInputError("batch has no such key", field=key, found=sorted(batch), expected=f"key {key!r}")
        x = batch[key]
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != self.image_channels or not x.is_floating_point():
            found = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise Medi2iInputError(
                "expected float images (B, C, H, W) in [-1, 1]", field=key, found=found,
                expected=f"(B, {self.image_channels}, H, W)",
            )  # fmt: skip
        return x

    def _inputs(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(onehot, image, exemplar, exemplar_onehot, pseudo (B,) bool)`` with method-side pseudo-pairs."""
        onehot, image = self._label(batch, "label"), self._image(batch, "image")
        exemplar, ex_onehot = self._image(batch, "exemplar"), self._label(batch, "exemplar_label")
        shapes = {tuple(t.shape[2:]) for t in (onehot, image, exemplar, ex_onehot)}
        if len(shapes) != 1 or image.shape[0] != exemplar.shape[0] or onehot.shape[0] != image.shape[0]:
            raise Medi2iInputError(
                "label, image, exemplar and exemplar_label must share batch and spatial size",
                field="exemplar", found=sorted(shapes), expected="one (H, W)",
            )  # fmt: skip
        b = image.shape[0]
        if "pseudo_pair" in batch:
            pseudo = torch.as_tensor(batch["pseudo_pair"], device=image.device).reshape(b).bool()
        else:
            pseudo = (torch.rand(b) < self.config["pseudo_pair_prob"]).to(image.device)
            if pseudo.any():
                m = pseudo.view(b, 1, 1, 1)
                exemplar = torch.where(m, image.flip(3), exemplar)
                ex_onehot = torch.where(m, onehot.flip(3), ex_onehot)
        return onehot, image, exemplar, ex_onehot, pseudo

    # ------------------------------------------------------------------ losses
    @property
    def vgg(self) -> VGGFeatures:
        """The frozen VGG19 of the perceptual, contextual and pseudo-pair losses (built on first access)."""
        if not self._loss_vgg:
            self._loss_vgg.append(
                VGGFeatures(
                    "vgg19",
                    layers=PSE_LAYERS,
                    pretrained=self.config["vgg_pretrained"],
                    weights_path=self.config["vgg_weights_path"],
                    width=self.config["vgg_width"],
                    in_channels=self.image_channels,
                    input_range="[-1,1]",
                )
            )
        return self._loss_vgg[0]

    def setup_lazy(self, batch: Mapping[str, Any]) -> None:
        """Build the loss VGG before training (a missing weights file fails here, before any step)."""
        if self.lambdas["perc"] > 0 or self.lambdas["pse"] > 0 or self.lambdas["cxt"] > 0:
            _ = self.vgg

    def _vgg(self, x: Tensor) -> dict[str, Tensor]:
        vgg = self.vgg
        if next(vgg.parameters()).device != x.device:
            vgg.to(x.device)
        return vgg(x)

    def generator_losses(
        self, out: RabitOutput, onehot: Tensor, image: Tensor, exemplar: Tensor, ex_onehot: Tensor, pseudo: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """Weighted generator-side objective and its parts (see the module docstring)."""
        lam = self.lambdas
        fake = out.image
        parts: dict[str, Tensor] = {}
        zero = fake.new_zeros(())
        need_vgg = lam["perc"] > 0 or lam["pse"] > 0 or lam["cxt"] > 0
        if need_vgg:
            f_fake = self._vgg(fake)
            with torch.no_grad():
                f_real = self._vgg(image)
                f_ex = self._vgg(exemplar) if lam["cxt"] > 0 else {}
        if lam["perc"] > 0:
            layer = self.config["perc_layer"]
            crit = F.mse_loss if self.perc_criterion == PerceptualCriterion.MSE else F.l1_loss
            parts["perc"] = crit(f_fake[layer], f_real[layer])
        if lam["pse"] > 0:
            if pseudo.any():
                parts["pse"] = sum(
                    w * F.l1_loss(f_fake[name][pseudo], f_real[name][pseudo])
                    for name, w in zip(PSE_LAYERS, PSE_WEIGHTS, strict=True)
                )
            else:
                parts["pse"] = zero
        if lam["cxt"] > 0:
            total = zero
            for name, w in CXT_WEIGHTS.items():
                x, y = f_fake[name], f_ex[name]
                if name == "relu3_2" and self.config["cxt_pool_relu3"]:
                    x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
                total = total + w * contextual_loss(x, y, h=self.config["cxt_h"])
            parts["cxt"] = total
        grid = out.features_x.shape[2:]
        if lam["cst"] > 0:
            pos_gt = self.translator.positions(onehot, onehot.shape[0], tuple(grid), onehot.device, image.dtype)
            feat_gt, corr_gt = self.translator.encode_exemplar(image, pos_gt)
            parts["cst"] = F.l1_loss(F.normalize(out.features_x, dim=1), F.normalize(feat_gt, dim=1)) + F.l1_loss(
                F.normalize(out.corr_x, dim=1), F.normalize(corr_gt, dim=1)
            )
        if lam["cyc"] > 0:
            back = self.translator.align(out.corr_z, out.corr_x, out.warped_image).warped
            parts["cyc"] = F.l1_loss(back, F.adaptive_avg_pool2d(exemplar, tuple(grid)))
        if lam["warp_mask"] > 0:
            parts["warp_mask"] = F.l1_loss(out.warped_label, F.adaptive_avg_pool2d(onehot, tuple(grid)))
        if lam["gan"] > 0 or lam["feat"] > 0:
            pred_fake = self.D(torch.cat((onehot, fake), dim=1))
            parts["gan"] = generator_loss(self.gan_mode, pred_fake)
            if lam["feat"] > 0:
                with torch.no_grad():
                    pred_real = self.D(torch.cat((onehot, image), dim=1))
                parts["feat"] = feature_matching_loss(pred_real, pred_fake)
        total = sum((lam[name] * value for name, value in parts.items()), zero)
        return total, {f"G_{name}": float(value.detach()) for name, value in parts.items()}

    def discriminator_loss(self, onehot: Tensor, image: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Hinge (or ``gan_mode``) loss of D on ``[label ‖ real]`` vs ``[label ‖ fake.detach()]``."""
        real_out = self.D(torch.cat((onehot, image), dim=1))
        fake_out = self.D(torch.cat((onehot, fake.detach()), dim=1))
        loss = discriminator_loss(self.gan_mode, real_out, fake_out)
        return loss, {"D": float(loss.detach())}

    # ------------------------------------------------------------------ training
    def training_step(
        self, batch: Mapping[str, Any], optimizers: Mapping[str, torch.optim.Optimizer], step: int
    ) -> StepOutput:
        """One iteration: the generator side (``F_X``, ``F_Z``, CONFI, G) then D, as the CoCosNet/SPADE trainers."""
        onehot, image, exemplar, ex_onehot, pseudo = self._inputs(batch)
        use_d = self.lambdas["gan"] > 0 or self.lambdas["feat"] > 0
        self.set_requires_grad(self.D, False)
        optimizers["G"].zero_grad(set_to_none=True)
        out = self.translator(onehot, exemplar, ex_onehot)
        loss_g, parts = self.generator_losses(out, onehot, image, exemplar, ex_onehot, pseudo)
        loss_g.backward()
        optimizers["G"].step()
        self.set_requires_grad(self.D, True)
        if use_d:
            optimizers["D"].zero_grad(set_to_none=True)
            loss_d, parts_d = self.discriminator_loss(onehot, image, out.image)
            loss_d.backward()
            optimizers["D"].step()
            parts.update(parts_d)
        with torch.no_grad():
            grid = out.warped_image.shape[2:]
            warp_err = (out.warped_image - F.adaptive_avg_pool2d(image, tuple(grid))).abs().mean((1, 2, 3))
            if pseudo.any():
                parts["warp_l1_pseudo"] = float(warp_err[pseudo].mean())
            parts["confidence"] = float(out.confidence.mean())
        size = image.shape[2:]
        images = {
            "real": image.detach(),
            "exemplar": exemplar.detach(),
            "fake": out.image.detach(),
            "warped": F.interpolate(out.warped_image.detach(), size=tuple(size), mode="nearest"),
        }
        return StepOutput(losses=parts, images=images)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def translate(
        self,
        inputs: Tensor | Mapping[str, Any],
        exemplar: Tensor | None = None,
        exemplar_label: Tensor | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Render the label map ``inputs`` (``(B, 1, H, W)`` int64, or a batch dict) with the style of ``exemplar``.

        Args:
            inputs: integer label map ``(B, 1, H, W)`` or a batch dict with ``"label"``, ``"exemplar"`` and
                optionally ``"exemplar_label"``.
            exemplar: ``(B, C, H, W)`` in ``[-1, 1]`` (required unless ``inputs`` is a dict).
            exemplar_label: ``(B, 1, H, W)`` int64; without it the position encoding is global (CoordConv).

        Returns:
            ``(B, C, H, W)`` image in ``[-1, 1]``.
        """
        if kwargs:
            raise TypeError(f"translate() got unexpected keyword arguments {sorted(kwargs)}")
        if isinstance(inputs, Mapping):
            batch = dict(inputs)
            label = batch.get("label")
            exemplar = batch.get("exemplar") if exemplar is None else exemplar
            exemplar_label = batch.get("exemplar_label") if exemplar_label is None else exemplar_label
        else:
            label = inputs
        if label is None or exemplar is None:
            raise Medi2iInputError(
                "RABIT needs a label map and an exemplar image", field="exemplar" if label is not None else "label",
                expected="label (B, 1, H, W) int64 and exemplar (B, C, H, W)",
            )  # fmt: skip
        batch = {"label": label, "exemplar": exemplar}
        onehot = self._label(batch, "label")
        ex = self._image(batch, "exemplar").to(onehot.device)
        ex_onehot = None
        if exemplar_label is not None:
            ex_onehot = self._label({"exemplar_label": exemplar_label}, "exemplar_label").to(onehot.device)
        was_training = self.translator.training
        self.translator.eval()
        try:
            return self.translator(onehot, ex, ex_onehot).image
        finally:
            self.translator.train(was_training)
