"""PatchGAN and multi-scale PatchGAN discriminators (park_thesis.md sections 1, 2.1, 3.1).

:class:`PatchDiscriminator` (CycleGAN/CUT 70x70 PatchGAN, Isola et al.) with ``n_layers=3``::

    conv4 s2 -> ndf, LReLU(0.2)
    conv4 s2 -> 2 ndf, norm, LReLU            } n_layers - 1 stride-2 blocks, channels x2 capped at 8 ndf
    conv4 s2 -> 4 ndf, norm, LReLU            }
    conv4 s1 -> 8 ndf, norm, LReLU            one stride-1 block
    conv4 s1 -> 1                             patch scores (raw logits, no sigmoid)

Receptive field 70x70 px; with ``padding=1`` a 256x256 input gives a 30x30 score map
(:func:`patch_receptive_field`, :func:`patch_output_size`).

:class:`MultiScaleDiscriminator` (pix2pixHD / SPADE): ``num_d`` copies of the PatchGAN; copy ``k`` sees the input
average-pooled ``k`` times (3x3, stride 2, padding 1, ``count_include_pad=False``). Each copy returns the list of
its intermediate features plus the score map last, for the feature-matching loss. SPADE's ``n_layers_D`` counts
the conv blocks *before* the final 1-channel conv including the first one, the last of them with stride 1, and
uses padding ``ceil((4 - 1) / 2) = 2``; so SPADE's ``n_layers=4`` is the same stack as the CycleGAN
``n_layers=3`` (strides 2, 2, 2, 1, 1), only padded by 2. ``spectral=True`` wraps the convs that are followed by
a norm layer in spectral normalisation (SPADE's ``spectralinstance``: first and last conv stay plain).

Why not MONAI's ``PatchDiscriminator`` / ``MultiScalePatchDiscriminator`` (digest section 8): MONAI's
``PatchDiscriminator(num_layers_d=3, norm="INSTANCE")`` has the same layer stack and parameter count as the
CycleGAN D (checked in the tests) but has no spectral-norm option, no channel cap at 8 ndf (pix2pixHD/SPADE
cap at 512), initialises itself with its own scheme, and always returns the feature list; its multi-scale
variant adds layers per scale on the *same* input instead of avg-pooling the input. A local module of ~60 lines
covers every variant with one code path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.utils import look_up_option
from torch import nn

from medi2i.natural.toolkit.generators import NormKind, make_norm

__all__ = ["MultiScaleDiscriminator", "PatchDiscriminator", "patch_output_size", "patch_receptive_field"]


def _strides(n_layers: int) -> list[int]:
    """Strides of the convs of a CycleGAN-convention PatchGAN with ``n_layers`` (last entry: the score conv)."""
    return [2] * n_layers + [1, 1]


def patch_receptive_field(n_layers: int = 3, kernel: int = 4) -> int:
    """Receptive field (pixels) of one score of a :class:`PatchDiscriminator` with ``n_layers``.

    Computed backwards through the stack: ``r <- (r - 1) * stride + kernel`` starting from 1.

    Example:
        >>> patch_receptive_field(3), patch_receptive_field(1), patch_receptive_field(2)
        (70, 16, 34)
    """
    field = 1
    for stride in reversed(_strides(n_layers)):
        field = (field - 1) * stride + kernel
    return field


def patch_output_size(size: int, n_layers: int = 3, kernel: int = 4, padding: int = 1) -> int:
    """Side of the score map of a :class:`PatchDiscriminator` for a ``size`` x ``size`` input.

    Example:
        >>> patch_output_size(256), patch_output_size(32, n_layers=2)
        (30, 6)
    """
    for stride in _strides(n_layers):
        size = (size + 2 * padding - kernel) // stride + 1
    return size


class PatchDiscriminator(nn.Module):
    """PatchGAN ``(B, in_channels, H, W) -> (B, 1, h, w)`` patch scores (raw, no sigmoid).

    Args:
        in_channels: image channels (plus label channels for conditional D).
        ndf: channels of the first conv (64).
        n_layers: stride-2 conv blocks (CycleGAN convention; 3 = 70x70 PatchGAN). One stride-1 block and the
            1-channel score conv follow.
        norm: ``"instance"`` (default), ``"batch"`` or ``"none"``; not applied after the first conv.
        spectral: spectral normalisation on the convs followed by a norm layer.
        return_features: return the list of every block's output (after its LReLU), score map last.
        padding: conv padding (1 in CycleGAN/CUT, 2 in pix2pixHD/SPADE).
        max_channels_mult: channel cap as a multiple of ``ndf`` (8 = 512 at ndf 64, as in the codes).

    Example:
        >>> d = PatchDiscriminator(3, ndf=8)
        >>> d(torch.zeros(1, 3, 256, 256)).shape
        torch.Size([1, 1, 30, 30])
    """

    def __init__(
        self,
        in_channels: int,
        *,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = NormKind.INSTANCE,
        spectral: bool = False,
        return_features: bool = False,
        padding: int = 1,
        max_channels_mult: int = 8,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("ndf", ndf, 1),
            ("n_layers", n_layers, 0),
            ("padding", padding, 0),
            ("max_channels_mult", max_channels_mult, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        norm = look_up_option(norm, NormKind)
        self.return_features = return_features
        self.n_layers = n_layers
        bias = norm != NormKind.BATCH
        kernel = 4

        def conv(c_in: int, c_out: int, stride: int, normed: bool) -> nn.Module:
            layer = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=bias or not normed)
            return nn.utils.spectral_norm(layer) if (spectral and normed) else layer

        blocks: list[nn.Module] = [nn.Sequential(conv(in_channels, ndf, 2, False), nn.LeakyReLU(0.2, True))]
        ch = ndf
        strides = _strides(n_layers)[1:-1]  # the blocks after the first, before the score conv
        for stride in strides:
            out = min(2 * ch, ndf * max_channels_mult)
            blocks.append(nn.Sequential(conv(ch, out, stride, True), make_norm(norm, out), nn.LeakyReLU(0.2, True)))
            ch = out
        blocks.append(nn.Sequential(nn.Conv2d(ch, 1, kernel, stride=1, padding=padding)))
        self.blocks = nn.ModuleList(blocks)
        self.padding, self.norm = padding, norm

    def _check_size(self, x: torch.Tensor) -> None:
        """Instance norm needs more than one pixel per map: name the smallest input instead of failing deep inside."""
        if self.norm != NormKind.INSTANCE or x.ndim != 4:
            return

        def normed_maps_fit(size: int) -> bool:  # every instance-normed map (blocks 1 .. n-1) has >= 2 px a side
            for index, stride in enumerate(_strides(self.n_layers)[:-1]):
                size = (size + 2 * self.padding - 4) // stride + 1
                if index > 0 and size < 2:
                    return False
            return True

        if not normed_maps_fit(min(x.shape[-2:])):
            smallest = next(n for n in range(4, 4096) if normed_maps_fit(n))
            raise ValueError(
                f"input {tuple(x.shape[-2:])} is too small for a PatchGAN with n_layers={self.n_layers} "
                f"(instance norm on a 1x1 map); use images of at least {smallest} px or fewer layers"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self._check_size(x)
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features if self.return_features else x


class MultiScaleDiscriminator(nn.Module):
    """pix2pixHD/SPADE multi-scale PatchGAN: a list (per scale) of lists of features, score map last.

    ``(B, in_channels, H, W) -> [[(B, C_1, ...), ..., (B, 1, h_k, w_k)] for k in range(num_d)]``; scale ``k``
    sees the input avg-pooled ``k`` times (3x3, stride 2).

    Args:
        in_channels: input channels (SPADE: label classes + image channels).
        num_d: number of scales (2 in SPADE).
        ndf: channels of the first conv.
        n_layers: SPADE's ``n_layers_D``: conv blocks before the score conv, the last with stride 1 (>= 2).
        norm: norm after every conv but the first and the last (``"instance"``).
        spectral: spectral norm on those convs (SPADE default ``True``).

    Example:
        >>> d = MultiScaleDiscriminator(4, ndf=8, n_layers=3)
        >>> [[tuple(f.shape[1:]) for f in scale] for scale in d(torch.zeros(1, 4, 32, 32))]
        [[(8, 17, 17), (16, 9, 9), (32, 10, 10), (1, 11, 11)], [(8, 9, 9), (16, 5, 5), (32, 6, 6), (1, 7, 7)]]
    """

    def __init__(
        self,
        in_channels: int,
        *,
        num_d: int = 2,
        ndf: int = 64,
        n_layers: int = 4,
        norm: str = NormKind.INSTANCE,
        spectral: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(num_d, int) or num_d < 1:
            raise ValueError(f"num_d must be an integer >= 1, got {num_d!r}")
        if not isinstance(n_layers, int) or n_layers < 2:
            raise ValueError(f"n_layers must be an integer >= 2 (SPADE's n_layers_D), got {n_layers!r}")
        self.num_d = num_d
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(
                in_channels,
                ndf=ndf,
                n_layers=n_layers - 1,
                norm=norm,
                spectral=spectral,
                return_features=True,
                padding=math.ceil((4 - 1) / 2),
            )
            for _ in range(num_d)
        )

    @staticmethod
    def downsample(x: torch.Tensor) -> torch.Tensor:
        """3x3 average pooling with stride 2 (padding 1, padded pixels not counted)."""
        return F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        outputs = []
        for k, disc in enumerate(self.discriminators):
            if k > 0:
                x = self.downsample(x)
            outputs.append(disc(x))
        return outputs
