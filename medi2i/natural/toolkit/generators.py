"""ResNet-k generator of CycleGAN and CUT (park_thesis.md sections 1, 3.1 and 4.1), with CUT's antialiased option.

Layout (Johnson et al.; the CycleGAN/CUT ``resnet_9blocks``), ``(B, C_in, H, W) -> (B, C_out, H, W)`` with
``H, W`` multiples of ``2 ** n_downsampling``::

    pad3, conv7 -> ngf, norm, ReLU
    n_downsampling x [conv3 stride 2 -> 2x channels, norm, ReLU]                    (antialias=False, CycleGAN)
                   | [conv3 stride 1 -> 2x channels, norm, ReLU, BlurDownsample]    (antialias=True, CUT code)
    n_blocks x ResnetBlock at ngf * 2**n_downsampling channels
    n_downsampling x [ConvTranspose3 stride 2 -> half channels, norm, ReLU]          (antialias=False)
                   | [BlurUpsample, conv3 -> half channels, norm, ReLU]              (antialias=True)
    pad3, conv7 -> out_channels, tanh

All layers sit in ONE flat ``nn.Sequential`` (``self.model``) so that CUT's ``nce_layers`` indices mean what they
mean in the official code (digest section 4.1, item "NCE layers"). Index table of the first layers:

==========  ==========================================  ===========================================
index       antialias=True (CUT default)                antialias=False (CycleGAN)
==========  ==========================================  ===========================================
0           reflection pad (= the input pixels)         reflection pad (= the input pixels)
1, 2, 3     conv7, norm, ReLU                           conv7, norm, ReLU
4           conv3 stride 1 of down-block 1 (2 ngf)      conv3 **stride 2** of down-block 1 (2 ngf)
5, 6, 7     norm, ReLU, BlurDownsample                  norm, ReLU, conv3 stride 2 of down-block 2
8           conv3 of down-block 2 (4 ngf, H/2)          norm of down-block 2
9, 10, 11   norm, ReLU, BlurDownsample                  ReLU, res block 1, res block 2
12 .. 20    res blocks 1 .. 9                           res blocks 3 .. 9 at 12 .. 18
==========  ==========================================  ===========================================

So CUT's default ``(0, 4, 8, 12, 16)`` on the antialiased layout picks: the (padded) input pixels, the first
and second downsampling convs (taken *before* their blur-pool, at H and H/2 resolution) and the outputs of
res blocks 1 and 5 (channels 3/128/256/256/256 at ngf=64), as the thesis describes. On the CycleGAN layout the
same indices point at different layers; :meth:`ResnetGenerator.nce_layers` returns the indices of the same
*semantic* layers for either layout (antialias=False: ``(0, 4, 7, 10, 14)``).

The blur-pool sampling (Zhang 2019, "Making convolutional networks shift-invariant again", used by CUT's code)
is written here from its definition: a depthwise binomial low-pass filter applied with the stride
(downsampling: [1, 2, 1] x [1, 2, 1] / 16, reflection padding; upsampling: zero insertion followed by the
[1, 3, 3, 1] x [1, 3, 3, 1] / 64 filter times 4, replication padding). Both keep constant images constant.

MONAI has no ResNet-k image-translation generator with this layout, hence the local implementation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.utils import StrEnum, look_up_option
from torch import nn

__all__ = [
    "BlurDownsample",
    "BlurUpsample",
    "NormKind",
    "PaddingKind",
    "ResnetBlock",
    "ResnetGenerator",
    "make_norm",
    "make_pad",
]


class NormKind(StrEnum):
    """Normalisation layer of the CycleGAN/CUT networks (instance: affine=False, no running stats)."""

    INSTANCE = "instance"
    BATCH = "batch"
    NONE = "none"


class PaddingKind(StrEnum):
    """Padding of the 3x3 / 7x7 convolutions."""

    REFLECT = "reflect"
    REPLICATE = "replicate"
    ZEROS = "zeros"


def make_norm(kind: str, channels: int) -> nn.Module:
    """``instance`` -> ``InstanceNorm2d(affine=False, track_running_stats=False)`` (the code's default),
    ``batch`` -> ``BatchNorm2d(affine=True)``, ``none`` -> ``Identity``."""
    kind = look_up_option(kind, NormKind)
    if kind == NormKind.INSTANCE:
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == NormKind.BATCH:
        return nn.BatchNorm2d(channels, affine=True)
    return nn.Identity()


def make_pad(kind: str, size: int) -> nn.Module:
    """A padding layer of ``size`` pixels on every side (``zeros`` -> ``ZeroPad2d``)."""
    kind = look_up_option(kind, PaddingKind)
    if kind == PaddingKind.REFLECT:
        return nn.ReflectionPad2d(size)
    if kind == PaddingKind.REPLICATE:
        return nn.ReplicationPad2d(size)
    return nn.ZeroPad2d(size)


def _binomial(taps: int) -> torch.Tensor:
    """Normalised 2D binomial filter ``outer(b, b) / sum``, ``b`` a row of Pascal's triangle; ``(taps, taps)``."""
    coeffs = torch.tensor([math.comb(taps - 1, k) for k in range(taps)], dtype=torch.float64)
    kernel = torch.outer(coeffs, coeffs)
    return (kernel / kernel.sum()).float()


class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 downsampling: reflection pad 1, depthwise 3x3 binomial blur ([1, 2, 1] outer
    product / 16), stride 2. ``(B, C, H, W) -> (B, C, ceil(H / 2), ceil(W / 2))``.

    Example:
        >>> BlurDownsample(2)(torch.ones(1, 2, 8, 8)).shape
        torch.Size([1, 2, 4, 4])
    """

    def __init__(self, channels: int, taps: int = 3) -> None:
        super().__init__()
        if taps < 1:
            raise ValueError(f"taps must be >= 1, got {taps}")
        self.channels = channels
        self.taps = taps
        self.register_buffer("kernel", _binomial(taps)[None, None].repeat(channels, 1, 1, 1), persistent=False)
        self._pad = ((taps - 1) // 2, taps // 2) * 2  # (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self._pad, mode="reflect")
        return F.conv2d(x, self.kernel.to(x.dtype), stride=2, groups=self.channels)


class BlurUpsample(nn.Module):
    """Anti-aliased x2 upsampling: zero insertion followed by a depthwise 4x4 binomial filter ([1, 3, 3, 1]
    outer product / 64, times 4 so constants are kept), replication padding.
    ``(B, C, H, W) -> (B, C, 2H, 2W)``.

    Implemented as ``conv_transpose2d`` with stride 2 on the input padded by 1 (replicate), then cropping the
    result to the ``2H x 2W`` window aligned with the input grid.

    Example:
        >>> BlurUpsample(2)(torch.ones(1, 2, 4, 4)).shape
        torch.Size([1, 2, 8, 8])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("kernel", (_binomial(4) * 4.0)[None, None].repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        # (H + 2 - 1) * 2 - 2 * 2 + 4 = 2H + 2 rows; rows 1 .. 2H are aligned with the input grid
        out = F.conv_transpose2d(x, self.kernel.to(x.dtype), stride=2, padding=2, groups=self.channels)
        return out[..., 1 : 1 + 2 * h, 1 : 1 + 2 * w]


class ResnetBlock(nn.Module):
    """``x + [pad1, conv3, norm, ReLU, (dropout), pad1, conv3, norm](x)``, channels kept (digest section 3.1)."""

    def __init__(self, channels: int, *, norm: str, padding: str, dropout: float, bias: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            make_pad(padding, 1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels),
            nn.ReLU(True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [make_pad(padding, 1), nn.Conv2d(channels, channels, 3, bias=bias), make_norm(norm, channels)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN/CUT ResNet-k generator, ``(B, in_channels, H, W) -> (B, out_channels, H, W)`` in [-1, 1] (tanh).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        ngf: channels of the first conv (64 in the papers).
        n_blocks: residual blocks at the bottleneck (9 at 256 px, 6 at 128 px).
        n_downsampling: stride-2 stages (2 in the papers); H and W must be multiples of ``2 ** n_downsampling``.
        norm: ``"instance"`` (default), ``"batch"`` or ``"none"``.
        antialias: CUT's blur-pool down/upsampling (True in CUT's code) instead of strided / transposed convs.
        padding: ``"reflect"`` (default), ``"replicate"`` or ``"zeros"``; used by every padded conv (the official
            code fixes the 7x7 pads to reflection; with the default both agree).
        dropout: dropout inside the res blocks (0 in CycleGAN/CUT).

    Example:
        >>> g = ResnetGenerator(1, 1, ngf=4, n_blocks=1)
        >>> g(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        ngf: int = 64,
        n_blocks: int = 9,
        n_downsampling: int = 2,
        norm: str = NormKind.INSTANCE,
        antialias: bool = False,
        padding: str = PaddingKind.REFLECT,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("out_channels", out_channels, 1),
            ("ngf", ngf, 1),
            ("n_blocks", n_blocks, 0),
            ("n_downsampling", n_downsampling, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        norm = look_up_option(norm, NormKind)
        padding = look_up_option(padding, PaddingKind)
        bias = norm != NormKind.BATCH  # the code: use_bias = (norm is InstanceNorm); bias also with no norm
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_blocks = n_blocks
        self.n_downsampling = n_downsampling
        self.antialias = antialias
        layers: list[nn.Module] = []
        channels: list[int] = []  # output channels of each entry of self.model
        self._down_convs: list[int] = []
        self._res_blocks: list[int] = []

        def add(module: nn.Module, ch: int) -> None:
            layers.append(module)
            channels.append(ch)

        add(make_pad(padding, 3), in_channels)
        add(nn.Conv2d(in_channels, ngf, 7, bias=bias), ngf)
        add(make_norm(norm, ngf), ngf)
        add(nn.ReLU(True), ngf)
        ch = ngf
        for _ in range(n_downsampling):
            self._down_convs.append(len(layers))
            if antialias:
                add(nn.Conv2d(ch, 2 * ch, 3, stride=1, padding=1, bias=bias), 2 * ch)
            else:
                add(nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1, bias=bias), 2 * ch)
            ch *= 2
            add(make_norm(norm, ch), ch)
            add(nn.ReLU(True), ch)
            if antialias:
                add(BlurDownsample(ch), ch)
        for _ in range(n_blocks):
            self._res_blocks.append(len(layers))
            add(ResnetBlock(ch, norm=norm, padding=padding, dropout=dropout, bias=bias), ch)
        for _ in range(n_downsampling):
            if antialias:
                add(BlurUpsample(ch), ch)
                add(nn.Conv2d(ch, ch // 2, 3, stride=1, padding=1, bias=bias), ch // 2)
            else:
                add(nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1, bias=bias), ch // 2)
            ch //= 2
            add(make_norm(norm, ch), ch)
            add(nn.ReLU(True), ch)
        add(make_pad(padding, 3), ch)
        add(nn.Conv2d(ch, out_channels, 7), out_channels)
        add(nn.Tanh(), out_channels)
        self.model = nn.Sequential(*layers)
        self._channels = channels

    @property
    def multiple(self) -> int:
        """H and W must be multiples of this (``2 ** n_downsampling``)."""
        return 2**self.n_downsampling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _check_ids(self, layer_ids: Sequence[int]) -> list[int]:
        ids = [int(i) for i in layer_ids]
        bad = [i for i in ids if not 0 <= i < len(self.model)]
        if bad:
            raise ValueError(f"layer_ids {bad} out of range; allowed: 0 .. {len(self.model) - 1}")
        return ids

    def encode(self, x: torch.Tensor, layer_ids: Sequence[int]) -> list[torch.Tensor]:
        """Outputs of the entries ``layer_ids`` of ``self.model`` (in the order given), running only as deep as
        the deepest requested entry (CUT's ``encode_only`` forward). ``(B, C_in, H, W) -> [(B, C_l, H_l, W_l)]``.

        Example:
            >>> g = ResnetGenerator(3, 3, ngf=4, n_blocks=5, antialias=True)
            >>> [tuple(f.shape[1:]) for f in g.encode(torch.zeros(1, 3, 32, 32), (0, 4, 8, 12, 16))]
            [(3, 38, 38), (8, 32, 32), (16, 16, 16), (16, 8, 8), (16, 8, 8)]
        """
        ids = self._check_ids(layer_ids)
        if not ids:
            return []
        wanted = set(ids)
        outputs: dict[int, torch.Tensor] = {}
        feat = x
        for index, layer in enumerate(self.model):
            feat = layer(feat)
            if index in wanted:
                outputs[index] = feat
            if index >= max(ids):
                break
        return [outputs[i] for i in ids]

    def layer_channels(self, layer_ids: Sequence[int]) -> list[int]:
        """Channels of the outputs of the entries ``layer_ids`` of ``self.model``.

        Example:
            >>> ResnetGenerator(3, 3, antialias=True).layer_channels((0, 4, 8, 12, 16))
            [3, 128, 256, 256, 256]
        """
        return [self._channels[i] for i in self._check_ids(layer_ids)]

    def nce_layers(self) -> tuple[int, ...]:
        """Indices of CUT's five semantic NCE layers in this layout: input pixels (pad), first and second
        downsampling convs, res blocks 1 and 5 (the last block if fewer than 5; duplicates dropped).

        Example:
            >>> ResnetGenerator(3, 3, antialias=True).nce_layers(), ResnetGenerator(3, 3).nce_layers()
            ((0, 4, 8, 12, 16), (0, 4, 7, 10, 14))
        """
        ids = [0, *self._down_convs[:2]]
        if self._res_blocks:
            ids += [self._res_blocks[0], self._res_blocks[min(4, len(self._res_blocks) - 1)]]
        return tuple(dict.fromkeys(ids))
