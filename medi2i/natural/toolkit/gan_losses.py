"""GAN objectives of the thesis methods, on raw discriminator scores (park_thesis.md section 1).

``D(.)`` is the raw score map; every loss is a mean over batch and patches, and with a multi-scale D
(a list per scale, score last) it is averaged over scales (pix2pixHD/SPADE).

======================  ==========================================================  =======================
kind                    discriminator_loss (minimised by D)                          generator_loss
======================  ==========================================================  =======================
``lsgan``               0.5 * [mean (D(real) - 1)^2 + mean D(fake)^2]  (CycleGAN,    mean (D(fake) - 1)^2
                        CUT: the 0.5 is the code's)
``hinge``               mean relu(1 - D(real)) + mean relu(1 + D(fake))  (SPADE)     -mean D(fake)
``nonsaturating``       mean softplus(-D(real)) + mean softplus(D(fake))  (SAE,      mean softplus(-D(fake))
                        SinCUT; no 0.5)
``vanilla``             0.5 * [BCE(D(real), 1) + BCE(D(fake), 0)]  (CycleGAN's       BCE(D(fake), 1)
                        ``gan_mode=vanilla``; = 0.5 x nonsaturating)
======================  ==========================================================  =======================

R1 (Mescheder et al. 2018): :func:`r1_penalty` returns ``E ||grad_x D(x)||^2`` over real images; the caller
multiplies by ``gamma / 2`` (and by the lazy interval, StyleGAN2-style).

Why not ``monai.losses.PatchAdversarialLoss``: it applies an activation inside the loss (LeakyReLU for least
squares unless disabled, tanh before the hinge, sigmoid for BCE) and has no non-saturating softplus or SPADE's
``-mean D`` generator hinge (digest section 8), so the formulas above are written out here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch
import torch.nn.functional as F
from monai.utils import StrEnum, look_up_option

__all__ = ["GANKind", "discriminator_loss", "generator_loss", "r1_penalty", "scores"]

Scores = Union[torch.Tensor, Sequence["Scores"]]


class GANKind(StrEnum):
    """Adversarial objective."""

    LSGAN = "lsgan"
    HINGE = "hinge"
    NONSATURATING = "nonsaturating"
    VANILLA = "vanilla"


def scores(output: Scores) -> list[torch.Tensor]:
    """The score maps of a discriminator output: a tensor -> ``[tensor]``; a multi-scale list -> the last
    element of each scale's list (or the scale's tensor). A single discriminator's feature list
    (``PatchDiscriminator(return_features=True)``) must be wrapped as ``[features]``.

    Example:
        >>> a, b, c = torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)
        >>> [float(t) for t in scores([[a, b], [a, c]])], [float(t) for t in scores(c)]
        ([1.0, 2.0], [2.0])
    """
    if isinstance(output, torch.Tensor):
        return [output]
    out = []
    for scale in output:
        out.append(scale if isinstance(scale, torch.Tensor) else scale[-1])
    if not out:
        raise ValueError("empty discriminator output list")
    return out


def _d_term(kind: GANKind, score: torch.Tensor, real: bool) -> torch.Tensor:
    if kind == GANKind.LSGAN:
        return 0.5 * ((score - 1.0) ** 2).mean() if real else 0.5 * (score**2).mean()
    if kind == GANKind.HINGE:
        return F.relu(1.0 - score).mean() if real else F.relu(1.0 + score).mean()
    if kind == GANKind.NONSATURATING:
        return F.softplus(-score).mean() if real else F.softplus(score).mean()
    target = torch.ones_like(score) if real else torch.zeros_like(score)
    return 0.5 * F.binary_cross_entropy_with_logits(score, target)


def discriminator_loss(kind: str, real: Scores, fake: Scores) -> torch.Tensor:
    """Discriminator loss of ``kind`` (see the module table) for real and fake scores, averaged over scales.

    Example:
        >>> float(discriminator_loss("lsgan", torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)))
        0.0
        >>> float(discriminator_loss("hinge", torch.zeros(1), torch.zeros(1)))
        2.0
    """
    gan = GANKind(look_up_option(kind, GANKind))
    real_scores, fake_scores = scores(real), scores(fake)
    if len(real_scores) != len(fake_scores):
        raise ValueError(f"real and fake outputs have {len(real_scores)} and {len(fake_scores)} scales")
    total = sum(_d_term(gan, r, True) + _d_term(gan, f, False) for r, f in zip(real_scores, fake_scores, strict=True))
    return total / len(real_scores)


def generator_loss(kind: str, fake: Scores) -> torch.Tensor:
    """Generator loss of ``kind`` (see the module table) for the scores of generated images, averaged over scales.

    Example:
        >>> float(generator_loss("lsgan", torch.ones(1, 1, 2, 2))), float(generator_loss("hinge", torch.ones(1)))
        (0.0, -1.0)
    """
    gan = GANKind(look_up_option(kind, GANKind))
    fake_scores = scores(fake)
    total = 0.0
    for score in fake_scores:
        if gan == GANKind.LSGAN:
            total = total + ((score - 1.0) ** 2).mean()
        elif gan == GANKind.HINGE:
            total = total - score.mean()
        elif gan == GANKind.NONSATURATING:
            total = total + F.softplus(-score).mean()
        else:
            total = total + F.binary_cross_entropy_with_logits(score, torch.ones_like(score))
    return total / len(fake_scores)


def r1_penalty(real_scores: Scores, real_images: torch.Tensor) -> torch.Tensor:
    """``E_x ||grad_x sum D(x)||^2`` over the batch (squared gradient norm per image, then the mean).

    ``real_images`` must have ``requires_grad=True`` and ``real_scores`` must be computed from it; the graph is
    kept (``create_graph``) so the penalty can be back-propagated into D. Multi-scale scores are summed.

    Example:
        >>> x = torch.ones(2, 1, 2, 2, requires_grad=True)
        >>> float(r1_penalty((3.0 * x).sum(dim=(1, 2, 3)), x))  # grad = 3 everywhere, 4 pixels
        36.0
    """
    if not real_images.requires_grad:
        raise ValueError("real_images must require grad (call real_images.requires_grad_() before D)")
    total = sum(score.sum() for score in scores(real_scores))
    (grad,) = torch.autograd.grad(total, real_images, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(dim=1).mean()
