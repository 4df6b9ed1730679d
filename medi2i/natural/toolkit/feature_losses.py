"""Feature-matching and VGG19 perceptual losses of pix2pixHD/SPADE (park_thesis.md section 2.2).

- :func:`feature_matching_loss`: for each discriminator scale, the L1 distance between the intermediate
  features (all but the last, which is the score map) of D on the real and on the generated image, summed over
  layers and averaged over scales; the real features are detached. SPADE multiplies by ``lambda_feat = 10``.
- :class:`VGGPerceptualLoss`: ``sum_i w_i * L1(VGG_i(fake), VGG_i(real).detach())`` over VGG19 ``relu1_1 ..
  relu5_1`` with weights ``(1/32, 1/16, 1/8, 1/4, 1)``; SPADE multiplies by ``lambda_vgg = 10``.
  The VGG trunk is :class:`medi2i.nets.vgg.VGGFeatures` (local weights only, never downloaded; 1-channel images
  are repeated to grey RGB; ``pretrained=False`` + ``width`` give a thin random trunk for tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medi2i.nets.vgg import VGGFeatures
from medi2i.typing import PathLike

__all__ = ["VGG_LAYERS", "VGG_WEIGHTS", "VGGPerceptualLoss", "feature_matching_loss"]

VGG_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def feature_matching_loss(
    real_feats: Sequence[Sequence[torch.Tensor]], fake_feats: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """pix2pixHD feature matching: ``mean_scales sum_{layers but last} L1(fake, real.detach())``.

    Args:
        real_feats: per scale, the feature list of D on real images (score last), e.g. the output of
            :class:`~medi2i.natural.toolkit.discriminators.MultiScaleDiscriminator`.
        fake_feats: the same for generated images.

    Example:
        >>> real = [[torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 2, 2)]]
        >>> fake = [[torch.ones(1, 2, 4, 4), torch.full((1, 1, 2, 2), 5.0)]]  # the score is ignored
        >>> float(feature_matching_loss(real, fake))
        1.0
    """
    if len(real_feats) != len(fake_feats) or not real_feats:
        raise ValueError(f"real and fake features have {len(real_feats)} and {len(fake_feats)} scales (need >= 1)")
    total = 0.0
    for real_scale, fake_scale in zip(real_feats, fake_feats, strict=True):
        if len(real_scale) != len(fake_scale):
            raise ValueError("real and fake feature lists differ in length")
        for real, fake in zip(list(real_scale)[:-1], list(fake_scale)[:-1], strict=True):
            total = total + F.l1_loss(fake, real.detach())
    return total / len(real_feats) if isinstance(total, torch.Tensor) else torch.zeros(())


class VGGPerceptualLoss(nn.Module):
    """SPADE/pix2pixHD VGG loss ``sum_i w_i * L1(VGG_i(fake), VGG_i(real).detach())``, images in [-1, 1].

    Args:
        weights: per-layer weights for ``layers`` (default ``(1/32, 1/16, 1/8, 1/4, 1)``).
        layers: VGG19 layer names (default ``relu1_1 .. relu5_1``).
        pretrained: load ImageNet weights from a local file (``weights_path`` or the weights folder); ``False``
            gives a random trunk (tests only; the loss is then not a perceptual loss).
        weights_path: the VGG19 weights file.
        width: channel multiplier (< 1 only with ``pretrained=False``).
        in_channels: 1 (repeated to grey RGB) or 3.

    Example:
        >>> loss = VGGPerceptualLoss(pretrained=False, width=0.0625, in_channels=1)
        >>> x = torch.zeros(1, 1, 32, 32)
        >>> float(loss(x, x))
        0.0
    """

    def __init__(
        self,
        weights: Sequence[float] = VGG_WEIGHTS,
        *,
        layers: Sequence[str] = VGG_LAYERS,
        pretrained: bool = True,
        weights_path: PathLike | None = None,
        width: float = 1.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(weights) != len(layers):
            raise ValueError(f"weights has {len(weights)} entries for {len(layers)} layers {tuple(layers)}")
        self.layer_weights = tuple(float(w) for w in weights)
        self.layers = tuple(layers)
        self.vgg = VGGFeatures(
            "vgg19",
            layers=self.layers,
            pretrained=pretrained,
            weights_path=weights_path,
            width=width,
            in_channels=in_channels,
            input_range="[-1,1]",
        )

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``fake``, ``real``: ``(B, in_channels, H, W)`` in [-1, 1]; returns a scalar."""
        fake_feats = self.vgg(fake)
        with torch.no_grad():
            real_feats = self.vgg(real)
        total = fake.new_zeros(())
        for name, weight in zip(self.layers, self.layer_weights, strict=True):
            total = total + weight * F.l1_loss(fake_feats[name], real_feats[name].detach())
        return total
