"""Swapping Autoencoder networks: StyleGAN2-style layers in pure PyTorch.

Written from the formulas in the thesis (Park 2021, ch. 4, section 4.4.7) and the digest
``/work/shared/research/park_thesis.md`` section 5.1; no code from the official repository (Adobe
non-commercial licence) and no custom CUDA kernels (the official ``upfirdn2d`` / ``fused_bias_act``
become :func:`upfirdn2d` and :class:`FusedLeakyReLU` here, a few lines of ``conv2d``).

Building blocks (StyleGAN2, Karras et al. 2020, as the thesis says in 4.4.7):

- equalised learning rate: weights are stored as N(0, 1) and multiplied at run time by
  ``1 / sqrt(fan_in)`` (:class:`EqualConv2d`, :class:`EqualLinear`);
- leaky ReLU 0.2 scaled by ``sqrt(2)`` after a per-channel bias (:class:`FusedLeakyReLU`);
- antialiased resampling with the FIR filter ``[1, 3, 3, 1]`` (:func:`upfirdn2d`, :class:`Blur`);
- modulated convolution with demodulation, run as one grouped convolution
  (:class:`ModulatedConv2d`): ``w'_{oik} = s_i w_{oik}``, ``w''_{oik} = w'_{oik} / sqrt(sum_{ik} w'^2 + eps)``;
- residual sums divided by ``sqrt(2)``; noise injection with a learned per-layer weight; no IN/BN anywhere.

Networks:

- :class:`SAEEncoder` ``(B, C, H, W) -> (structure (B, S, H/2^n, W/2^n), texture (B, T))``, both L2-normalised;
- :class:`SAEGenerator` ``(structure, texture) -> (B, C, H, W)`` (linear ToRGB output, no tanh: digest section 1);
- :class:`ImageDiscriminator` StyleGAN2 residual D without minibatch-stddev ``(B, C, H, W) -> (B, 1)``;
- :class:`CooccurrenceDiscriminator` ``(query (B, Nq, C, p, p), reference (B, Nr, C, p, p)) -> (B, Nq)``;
- :func:`random_crops` the random, randomly flipped and resized crops the co-occurrence D sees.

MONAI has no modulated convolution or equalised-lr layers, hence these local ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Blur",
    "CooccurrenceDiscriminator",
    "ConvLayer",
    "EqualConv2d",
    "EqualLinear",
    "FusedLeakyReLU",
    "ImageDiscriminator",
    "ModulatedConv2d",
    "NoiseMode",
    "ResBlock",
    "SAEEncoder",
    "SAEGenerator",
    "StyledResBlock",
    "ToRGB",
    "random_crops",
    "stylegan2_channels",
    "upfirdn2d",
]

_SQRT2 = math.sqrt(2.0)
_BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)


class NoiseMode(StrEnum):
    """How noise injection draws its noise: fresh N(0, 1) per call, a fixed seeded map per layer, or none."""

    RANDOM = "random"
    FIXED = "fixed"
    NONE = "none"


class PaddingMode(StrEnum):
    """Spatial padding of convolutions: zeros (StyleGAN2) or reflect (SAE encoder: no positional cues)."""

    ZEROS = "zeros"
    REFLECT = "reflect"


def _check_choice(name: str, value: str, allowed: type[StrEnum]) -> str:
    values = [str(m.value) for m in allowed]
    if str(value) not in values:
        raise ValueError(f"{name} must be one of {values}, got {value!r}")
    return str(value)


def _check_positive(name: str, value: int) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _fir_kernel(taps: Sequence[float] = _BLUR_TAPS) -> Tensor:
    """Separable 2D FIR kernel ``outer(taps, taps)`` normalised to sum 1, shape ``(k, k)``."""
    k = torch.tensor(taps, dtype=torch.float32)
    k2 = torch.outer(k, k)
    return k2 / k2.sum()


def upfirdn2d(
    x: Tensor,
    kernel: Tensor,
    *,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
    padding_mode: str = "zeros",
) -> Tensor:
    """Upsample by zero insertion, pad, filter with ``kernel`` per channel, then keep every ``down``-th sample.

    The pure-PyTorch equivalent of StyleGAN2's ``upfirdn2d`` for square kernels and equal padding on
    both axes.

    Args:
        x: ``(B, C, H, W)``.
        kernel: ``(k, k)`` FIR filter (true convolution: it is flipped before ``conv2d``).
        up: zero-insertion factor.
        down: decimation factor.
        pad: padding ``(before, after)`` applied to H and W after upsampling.
        padding_mode: ``"zeros"`` or ``"reflect"``.

    Returns:
        ``(B, C, (H * up + pad0 + pad1 - k) // down + 1, ...)``.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    if p0 > 0 or p1 > 0:
        mode = "reflect" if padding_mode == PaddingMode.REFLECT else "constant"
        x = F.pad(x, [p0, p1, p0, p1], mode=mode)
    weight = kernel.flip(0, 1).to(dtype=x.dtype, device=x.device)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


class Blur(nn.Module):
    """Antialiasing FIR blur ``[1, 3, 3, 1]`` (outer product, sum 1; times ``up**2`` after zero insertion).

    Args:
        pad: ``(before, after)`` padding.
        up: the zero-insertion factor the blur follows (1 for a plain blur before a strided conv).
        padding_mode: ``"zeros"`` or ``"reflect"`` (reflect only without zero insertion).
    """

    def __init__(self, pad: tuple[int, int], *, up: int = 1, padding_mode: str = "zeros") -> None:
        super().__init__()
        self.padding_mode = _check_choice("padding_mode", padding_mode, PaddingMode)
        if up > 1 and self.padding_mode == PaddingMode.REFLECT:
            raise ValueError("padding_mode='reflect' cannot follow zero-insertion upsampling (up > 1)")
        self.pad = (int(pad[0]), int(pad[1]))
        self.up = int(up)
        self.register_buffer("kernel", _fir_kernel() * (self.up**2), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=self.up, pad=self.pad, padding_mode=self.padding_mode)


class Upsample2x(nn.Module):
    """Antialiased x2 upsampling: zero insertion then the blur, output ``(B, C, 2H, 2W)``."""

    def __init__(self) -> None:
        super().__init__()
        p = len(_BLUR_TAPS) - 2
        self.blur = Blur(((p + 1) // 2 + 1, p // 2), up=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.blur(x)


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate: ``conv(x, w * 1/sqrt(C_in k^2)) + b`` with ``w ~ N(0, 1)``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size.
        stride: convolution stride.
        padding: symmetric padding.
        padding_mode: ``"zeros"`` or ``"reflect"``.
        bias: add a learned bias (initialised to 0).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        padding_mode: str = "zeros",
        bias: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("kernel_size", kernel_size)):
            _check_positive(name, value)
        self.padding_mode = _check_choice("padding_mode", padding_mode, PaddingMode)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.stride = int(stride)
        self.padding = int(padding)

    def forward(self, x: Tensor) -> Tensor:
        padding = self.padding
        if padding > 0 and self.padding_mode == PaddingMode.REFLECT:
            x = F.pad(x, [padding] * 4, mode="reflect")
            padding = 0
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=padding)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: ``x (w * lr_mul / sqrt(in))^T + b * lr_mul``.

    Args:
        in_features: input size.
        out_features: output size.
        bias: add a learned bias.
        bias_init: initial bias value (1 for the modulation layers, so styles start at 1).
        lr_mul: learning-rate multiplier (weights stored as ``N(0, 1) / lr_mul``).
        activation: apply :class:`FusedLeakyReLU` (with the bias inside it).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ) -> None:
        super().__init__()
        _check_positive("in_features", in_features)
        _check_positive("out_features", out_features)
        if not lr_mul > 0:
            raise ValueError(f"lr_mul must be > 0, got {lr_mul!r}")
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul)) if bias else None
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = float(lr_mul)
        self.activation = bool(activation)

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return fused_leaky_relu(out, bias)
        return F.linear(x, self.weight * self.scale, bias)


def fused_leaky_relu(x: Tensor, bias: Tensor | None = None, negative_slope: float = 0.2) -> Tensor:
    """``sqrt(2) * leaky_relu(x + bias, 0.2)``; the gain keeps the second moment of a unit Gaussian at 1."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * _SQRT2


class FusedLeakyReLU(nn.Module):
    """Per-channel bias, leaky ReLU 0.2, gain ``sqrt(2)`` (StyleGAN2's ``fused_bias_act``, in plain PyTorch)."""

    def __init__(self, channels: int, *, bias: bool = True) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias)


class ConvLayer(nn.Sequential):
    """[antialiasing blur] -> equalised conv (stride 2 when downsampling) -> [bias + scaled leaky ReLU].

    Downsampling follows StyleGAN2: blur with padding ``((p + 1) // 2, p // 2)``, ``p = 4 - 2 + k - 1``,
    then a valid stride-2 conv, so ``H -> H / 2`` for even ``H``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        downsample: bool = False,
        bias: bool = True,
        activate: bool = True,
        padding_mode: str = "zeros",
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = len(_BLUR_TAPS) - 2 + kernel_size - 1
            layers.append(Blur(((p + 1) // 2, p // 2), padding_mode=padding_mode))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(
            EqualConv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                padding_mode=padding_mode,
                bias=bias and not activate,
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_channels, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """StyleGAN2 discriminator residual block: ``(conv3(conv3_down(x)) + skip1x1_down(x)) / sqrt(2)``.

    Used by the SAE encoder (reflect padding), the image D and the co-occurrence D (zero padding).
    ``downsample=False`` keeps the resolution (the co-occurrence D's last block).
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, downsample: bool = True, padding_mode: str = "zeros"
    ) -> None:
        super().__init__()
        pad = padding_mode
        self.conv1 = ConvLayer(in_channels, in_channels, 3, padding_mode=pad)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=downsample, padding_mode=pad)
        if downsample or in_channels != out_channels:
            self.skip: nn.Module = ConvLayer(
                in_channels, out_channels, 1, downsample=downsample, bias=False, activate=False, padding_mode=pad
            )
        else:
            self.skip = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / _SQRT2


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (Karras et al. 2020, eqs. 1-3), one grouped conv per batch.

    ``s = A(style)`` (equalised linear, bias initialised to 1), ``w'_{b,o,i} = scale * w_{o,i} * s_{b,i}``;
    with ``demodulate``: ``w''_{b,o,i} = w'_{b,o,i} / sqrt(sum_{i,k} w'^2 + 1e-8)``, so a unit-variance i.i.d.
    input gives unit-variance outputs whatever the style.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel (odd).
        style_dim: size of the style (texture) vector.
        demodulate: apply demodulation (False for ToRGB).
        upsample: antialiased x2 upsampling before the convolution.
        padding_mode: ``"zeros"`` or ``"reflect"``.

    Shapes: ``x (B, C_in, H, W)``, ``style (B, style_dim)`` -> ``(B, C_out, H', W')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        *,
        demodulate: bool = True,
        upsample: bool = False,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("kernel_size", kernel_size),
            ("style_dim", style_dim),
        ):
            _check_positive(name, value)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.padding_mode = _check_choice("padding_mode", padding_mode, PaddingMode)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.demodulate = bool(demodulate)
        self.up = Upsample2x() if upsample else None

    def modulated_weight(self, style: Tensor) -> Tensor:
        """Per-sample weights ``(B, C_out, C_in, k, k)`` (modulated and, if enabled, demodulated)."""
        s = self.modulation(style)  # (B, C_in)
        w = self.scale * self.weight * s[:, None, :, None, None]
        if self.demodulate:
            d = torch.rsqrt(w.pow(2).sum(dim=(2, 3, 4)) + 1e-8)  # (B, C_out)
            w = w * d[:, :, None, None, None]
        return w

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected x of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if style.ndim != 2 or style.shape[0] != x.shape[0]:
            raise ValueError(f"expected style of shape ({x.shape[0]}, D), got {tuple(style.shape)}")
        b = x.shape[0]
        w = self.modulated_weight(style)
        if self.up is not None:
            x = self.up(x)
        pad = self.kernel_size // 2
        if pad > 0 and self.padding_mode == PaddingMode.REFLECT:
            x = F.pad(x, [pad] * 4, mode="reflect")
            pad = 0
        h, wd = x.shape[-2:]
        out = F.conv2d(
            x.reshape(1, b * self.in_channels, h, wd),
            w.reshape(b * self.out_channels, self.in_channels, self.kernel_size, self.kernel_size),
            padding=pad,
            groups=b,
        )
        return out.reshape(b, self.out_channels, *out.shape[-2:])


class NoiseInjection(nn.Module):
    """``x + weight * noise`` with a learned scalar weight (initialised to 0) and ``noise (B, 1, H, W)``.

    ``noise_mode="fixed"`` draws the same map for a given layer ``seed`` and size (deterministic inference,
    the official ``fix_noise``); ``"none"`` adds nothing.
    """

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seed = int(seed)

    def forward(self, x: Tensor, noise_mode: str = NoiseMode.RANDOM) -> Tensor:
        if noise_mode == NoiseMode.NONE:
            return x
        b, _, h, w = x.shape
        if noise_mode == NoiseMode.FIXED:
            gen = torch.Generator(device=x.device).manual_seed(self.seed)
            noise = torch.randn((1, 1, h, w), generator=gen, device=x.device, dtype=x.dtype).expand(b, 1, h, w)
        else:
            noise = torch.randn((b, 1, h, w), device=x.device, dtype=x.dtype)
        return x + self.weight * noise


class StyledConv(nn.Module):
    """Modulated conv -> noise injection -> bias + scaled leaky ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        *,
        upsample: bool = False,
        use_noise: bool = True,
        noise_seed: int = 0,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, upsample=upsample)
        self.noise = NoiseInjection(noise_seed) if use_noise else None
        self.act = FusedLeakyReLU(out_channels)

    def forward(self, x: Tensor, style: Tensor, noise_mode: str = NoiseMode.RANDOM) -> Tensor:
        x = self.conv(x, style)
        if self.noise is not None:
            x = self.noise(x, noise_mode)
        return self.act(x)


class StyledResBlock(nn.Module):
    """Generator residual block: ``(styledconv(styledconv_[up](x)) + skip(x)) / sqrt(2)``.

    The skip is identity, or a bilinear x2 upsampling (digest 5.1 "bilinear skips") and/or an equalised
    1x1 conv when the channel count changes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        style_dim: int,
        *,
        upsample: bool = False,
        use_noise: bool = True,
        noise_seed: int = 0,
    ) -> None:
        super().__init__()
        self.conv1 = StyledConv(
            in_channels, out_channels, 3, style_dim, upsample=upsample, use_noise=use_noise, noise_seed=noise_seed
        )
        self.conv2 = StyledConv(
            out_channels, out_channels, 3, style_dim, use_noise=use_noise, noise_seed=noise_seed + 1
        )
        self.upsample = bool(upsample)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, x: Tensor, style: Tensor, noise_mode: str = NoiseMode.RANDOM) -> Tensor:
        skip = x
        if self.upsample:
            skip = F.interpolate(skip, scale_factor=2.0, mode="bilinear", align_corners=False)
        if self.skip is not None:
            skip = self.skip(skip)
        return (self.conv2(self.conv1(x, style, noise_mode), style, noise_mode) + skip) / _SQRT2


class ToRGB(nn.Module):
    """Modulated 1x1 conv without demodulation plus a bias; linear output (no tanh, digest section 1)."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        return self.conv(x, style) + self.bias


def _l2_normalize(x: Tensor, dim: int = 1) -> Tensor:
    return x / (x.pow(2).sum(dim=dim, keepdim=True) + 1e-8).sqrt()


class SAEEncoder(nn.Module):
    """SAE encoder E: image -> (structure code, texture code) (thesis 4.4.7, Fig. 4.9 left; digest 5.1).

    FromRGB 1x1 conv -> ``len(channels) - 1`` downsampling residual blocks (reflect padding, antialiased);
    structure head: 1x1 conv + LReLU, 1x1 conv to ``structure_channels``; texture head (branching after the
    last block): 2 stride-2 3x3 convs (valid or reflect padding, no zero padding, so no positional cue) ->
    global average pool -> equalised linear to ``texture_dim``. Both codes are L2-normalised (code [C]):
    the structure code per spatial location over channels, the texture code over its vector.

    Args:
        in_channels: image channels (1 for medical slices, 3 for photos).
        channels: FromRGB width, then the width after each downsampling block. Code default
            ``(32, 64, 128, 256, 512)`` (4 blocks, 1/16 resolution).
        structure_channels: channels of the structure code (8).
        texture_channels: widths of the two texture convs (``(1024, 2048)``).
        texture_dim: length of the texture code (2048).
        texture_padding: ``"valid"`` or ``"reflect"`` for the texture convs.

    Shapes: ``(B, C, H, W)`` with ``H, W`` divisible by ``2 ** (len(channels) - 1)`` ->
    ``structure (B, S, H / 2^n, W / 2^n)``, ``texture (B, T)``.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        channels: Sequence[int] = (32, 64, 128, 256, 512),
        structure_channels: int = 8,
        texture_channels: Sequence[int] = (1024, 2048),
        texture_dim: int = 2048,
        texture_padding: str = "valid",
    ) -> None:
        super().__init__()
        _check_positive("in_channels", in_channels)
        _check_positive("structure_channels", structure_channels)
        _check_positive("texture_dim", texture_dim)
        channels = [int(c) for c in channels]
        if len(channels) < 2 or any(c < 1 for c in channels):
            raise ValueError(f"channels must list >= 2 positive widths (FromRGB + >= 1 block), got {channels}")
        texture_channels = [int(c) for c in texture_channels]
        if len(texture_channels) != 2 or any(c < 1 for c in texture_channels):
            raise ValueError(f"texture_channels must be 2 positive widths, got {texture_channels}")
        if texture_padding not in ("valid", "reflect"):
            raise ValueError(f"texture_padding must be one of ['valid', 'reflect'], got {texture_padding!r}")
        self.in_channels = in_channels
        self.num_down = len(channels) - 1
        self.texture_padding = texture_padding
        self.from_rgb = ConvLayer(in_channels, channels[0], 1)
        self.blocks = nn.Sequential(
            *(ResBlock(a, b, padding_mode="reflect") for a, b in zip(channels[:-1], channels[1:], strict=True))
        )
        last = channels[-1]
        self.structure_head = nn.Sequential(
            ConvLayer(last, last, 1), ConvLayer(last, structure_channels, 1, activate=False)
        )
        pad = 0 if texture_padding == "valid" else 1
        tex: list[nn.Module] = []
        for a, b in zip([last, texture_channels[0]], texture_channels, strict=True):
            tex += [EqualConv2d(a, b, 3, stride=2, padding=pad, padding_mode="reflect", bias=False), FusedLeakyReLU(b)]
        self.texture_convs = nn.Sequential(*tex)
        self.texture_linear = EqualLinear(texture_channels[1], texture_dim)

    @property
    def stride(self) -> int:
        """Downsampling factor between the image and the structure code."""
        return 2**self.num_down

    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` when ``x`` is not ``(B, in_channels, H, W)`` with usable ``H, W``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(f"image size {h}x{w} must be divisible by {self.stride} (2 ** number of blocks)")
        # valid padding: two 3x3 stride-2 convs need >= 7 pixels at the code resolution
        need = 7 if self.texture_padding == "valid" else 2
        if min(h, w) // self.stride < need:
            raise ValueError(
                f"image size {h}x{w} is too small: the texture branch needs >= {need * self.stride} pixels per side"
            )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.check_input(x)
        feat = self.blocks(self.from_rgb(x))
        structure = _l2_normalize(self.structure_head(feat), dim=1)
        texture = self.texture_convs(feat).mean(dim=(2, 3))
        texture = _l2_normalize(self.texture_linear(texture), dim=1)
        return structure, texture


class SAEGenerator(nn.Module):
    """SAE generator G: (structure, texture) -> image (thesis 4.4.7, Fig. 4.9 right; digest 5.1).

    ``x = z_s * A_s(z_t) + A_b(z_t)`` (the structure code modulated by the texture code), then residual
    blocks at the code resolution (``base_channels``; the code uses 2, the thesis 4: discrepancy 13),
    then one upsampling residual block per entry of ``up_channels``, each 3x3 conv a modulated /
    demodulated conv driven by ``z_t`` with noise injection, and a modulated 1x1 ToRGB with linear output
    (no output-skip pyramid, no IN/BN, no mapping network).

    Args:
        out_channels: image channels.
        structure_channels: channels of the structure code.
        texture_dim: length of the texture code.
        base_channels: widths of the residual blocks at the code resolution.
        up_channels: widths of the upsampling blocks (``len(up_channels)`` must equal the encoder's block count
            for a same-size reconstruction).
        use_noise: noise injection in every modulated conv.

    Shapes: ``structure (B, S, h, w)``, ``texture (B, T)`` -> ``(B, out_channels, h * 2^U, w * 2^U)``.
    """

    def __init__(
        self,
        out_channels: int,
        *,
        structure_channels: int = 8,
        texture_dim: int = 2048,
        base_channels: Sequence[int] = (256, 512),
        up_channels: Sequence[int] = (512, 512, 256, 128),
        use_noise: bool = True,
    ) -> None:
        super().__init__()
        _check_positive("out_channels", out_channels)
        _check_positive("structure_channels", structure_channels)
        _check_positive("texture_dim", texture_dim)
        base = [int(c) for c in base_channels]
        ups = [int(c) for c in up_channels]
        if not base or any(c < 1 for c in base):
            raise ValueError(f"base_channels must list >= 1 positive width, got {base}")
        if any(c < 1 for c in ups):
            raise ValueError(f"up_channels must be positive widths, got {ups}")
        self.structure_channels, self.texture_dim = structure_channels, texture_dim
        self.num_up = len(ups)
        self.structure_scale = EqualLinear(texture_dim, structure_channels, bias_init=1.0)
        self.structure_shift = EqualLinear(texture_dim, structure_channels, bias_init=0.0)
        blocks: list[StyledResBlock] = []
        prev, seed = structure_channels, 0
        for ch in base:
            blocks.append(StyledResBlock(prev, ch, texture_dim, use_noise=use_noise, noise_seed=seed))
            prev, seed = ch, seed + 2
        for ch in ups:
            blocks.append(StyledResBlock(prev, ch, texture_dim, upsample=True, use_noise=use_noise, noise_seed=seed))
            prev, seed = ch, seed + 2
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = ToRGB(prev, out_channels, texture_dim)

    def forward(self, structure: Tensor, texture: Tensor, *, noise_mode: str = NoiseMode.RANDOM) -> Tensor:
        noise_mode = _check_choice("noise_mode", noise_mode, NoiseMode)
        if structure.ndim != 4 or structure.shape[1] != self.structure_channels:
            raise ValueError(
                f"expected structure of shape (B, {self.structure_channels}, h, w), got {tuple(structure.shape)}"
            )
        if texture.shape != (structure.shape[0], self.texture_dim):
            raise ValueError(
                f"expected texture of shape ({structure.shape[0]}, {self.texture_dim}), got {tuple(texture.shape)}"
            )
        # x = z_s * A_s(z_t) + A_b(z_t): the texture code modulates the structure code (digest 5.1)
        scale, shift = self.structure_scale(texture), self.structure_shift(texture)
        x = structure * scale[:, :, None, None] + shift[:, :, None, None]
        for block in self.blocks:
            x = block(x, texture, noise_mode)
        return self.to_rgb(x, texture)


# StyleGAN2 discriminator widths per resolution (channel multiplier 2, as in SAE's image D)
_STYLEGAN2_WIDTH = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def stylegan2_channels(image_size: int, *, channel_multiplier: int = 2, final_size: int = 4) -> list[int]:
    """StyleGAN2 D widths from ``image_size`` down to ``final_size`` (both powers of two), highest resolution first."""
    if image_size not in _STYLEGAN2_WIDTH or image_size <= final_size:
        raise ValueError(f"image_size must be a power of two in [8, 1024], got {image_size!r}")
    out, size = [], image_size
    while size >= final_size:
        width = _STYLEGAN2_WIDTH[size]
        out.append(min(512, width * channel_multiplier) if size >= 64 else width)
        size //= 2
    return out


class ImageDiscriminator(nn.Module):
    """StyleGAN2 residual discriminator without minibatch-stddev (thesis 4.4.7; digest 5.1).

    FromRGB 1x1 -> downsampling residual blocks (antialiased, zero padding) -> 3x3 conv -> flatten ->
    equalised linear + LReLU -> equalised linear to one logit.

    Args:
        in_channels: image channels.
        image_size: input side length (square inputs of exactly this size).
        channels: widths from the input resolution to the final one (``len - 1`` blocks); default: the
            StyleGAN2 table with channel multiplier 2, down to 4x4 (needs a power-of-two ``image_size``).

    Shapes: ``(B, C, image_size, image_size) -> (B, 1)`` logits.
    """

    def __init__(self, in_channels: int, image_size: int, *, channels: Sequence[int] | None = None) -> None:
        super().__init__()
        _check_positive("in_channels", in_channels)
        _check_positive("image_size", image_size)
        chans = stylegan2_channels(image_size) if channels is None else [int(c) for c in channels]
        if len(chans) < 2 or any(c < 1 for c in chans):
            raise ValueError(f"channels must list >= 2 positive widths, got {chans}")
        n_down = len(chans) - 1
        if image_size % (2**n_down) or image_size // (2**n_down) < 2:
            raise ValueError(
                f"image_size {image_size} must be divisible by 2 ** {n_down} (len(channels) - 1) with a final size >= 2"
            )
        self.in_channels, self.image_size = in_channels, image_size
        final = image_size // 2**n_down
        self.from_rgb = ConvLayer(in_channels, chans[0], 1)
        self.blocks = nn.Sequential(*(ResBlock(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True)))
        self.final_conv = ConvLayer(chans[-1], chans[-1], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(chans[-1] * final * final, chans[-1], activation=True), EqualLinear(chans[-1], 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"expected images of shape (B, {self.in_channels}, {self.image_size}, {self.image_size}), "
                f"got {tuple(x.shape)}"
            )
        x = self.final_conv(self.blocks(self.from_rgb(x)))
        return self.final_linear(x.flatten(1))


class CooccurrenceDiscriminator(nn.Module):
    """Co-occurrence patch discriminator D_patch (thesis Fig. 4.10, eq. 4.4; digest 5.1).

    Each patch goes through a feature extractor (3x3 conv, ``len(channels) - 1`` downsampling residual
    blocks, one residual block without downsampling, a 3x3 conv with valid padding); the features of the
    reference patches of an image are averaged and concatenated with each query patch's feature; dense
    layers (``hidden``) output one logit: "does the query patch come from the image of the references?".

    Args:
        in_channels: image channels.
        patch_size: side of the (resized) patches.
        channels: conv width, then the width after each downsampling block. Default (5 blocks, for 128 px
            patches as in the code, max 384 channels): ``(64, 128, 256, 384, 384, 384)``.
        hidden: dense-layer widths before the final logit (code: ``(2048, 2048, 1024)``).

    Shapes: ``query (B, Nq, C, p, p)``, ``reference (B, Nr, C, p, p)`` -> logits ``(B, Nq)``.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        patch_size: int = 128,
        channels: Sequence[int] = (64, 128, 256, 384, 384, 384),
        hidden: Sequence[int] = (2048, 2048, 1024),
    ) -> None:
        super().__init__()
        _check_positive("in_channels", in_channels)
        _check_positive("patch_size", patch_size)
        chans = [int(c) for c in channels]
        if len(chans) < 2 or any(c < 1 for c in chans):
            raise ValueError(f"channels must list >= 2 positive widths, got {chans}")
        n_down = len(chans) - 1
        if patch_size % (2**n_down) or patch_size // (2**n_down) < 3:
            raise ValueError(
                f"patch_size {patch_size} must be divisible by 2 ** {n_down} with >= 3 pixels left for the valid conv"
            )
        hidden = [int(h) for h in hidden]
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden must be positive widths, got {hidden}")
        self.in_channels, self.patch_size = in_channels, patch_size
        feat_side = patch_size // 2**n_down - 2
        self.feature_dim = chans[-1] * feat_side * feat_side
        self.extractor = nn.Sequential(
            ConvLayer(in_channels, chans[0], 3),
            *(ResBlock(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True)),
            ResBlock(chans[-1], chans[-1], downsample=False),
            EqualConv2d(chans[-1], chans[-1], 3, padding=0, bias=False),
            FusedLeakyReLU(chans[-1]),
        )
        layers: list[nn.Module] = []
        prev = 2 * self.feature_dim
        for h in hidden:
            layers.append(EqualLinear(prev, h, activation=True))
            prev = h
        layers.append(EqualLinear(prev, 1))
        self.classifier = nn.Sequential(*layers)

    def features(self, patches: Tensor) -> Tensor:
        """``(N, C, p, p) -> (N, feature_dim)`` per-patch features."""
        return self.extractor(patches).flatten(1)

    def _check(self, name: str, t: Tensor) -> None:
        if t.ndim != 5 or t.shape[2] != self.in_channels or t.shape[-2:] != (self.patch_size, self.patch_size):
            raise ValueError(
                f"expected {name} of shape (B, N, {self.in_channels}, {self.patch_size}, {self.patch_size}), "
                f"got {tuple(t.shape)}"
            )

    def forward(self, query: Tensor, reference: Tensor) -> Tensor:
        self._check("query", query)
        self._check("reference", reference)
        if query.shape[0] != reference.shape[0]:
            raise ValueError(f"query and reference batch sizes differ: {query.shape[0]} vs {reference.shape[0]}")
        b, nq = query.shape[:2]
        nr = reference.shape[1]
        q = self.features(query.flatten(0, 1)).view(b, nq, -1)
        r = self.features(reference.flatten(0, 1)).view(b, nr, -1).mean(dim=1, keepdim=True)  # averaged references
        joint = torch.cat([q, r.expand(b, nq, -1)], dim=2)
        return self.classifier(joint.flatten(0, 1)).view(b, nq)


def random_crops(
    images: Tensor,
    num_crops: int,
    *,
    size: int,
    min_scale: float = 1 / 8,
    max_scale: float = 1 / 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random crops for the co-occurrence D: side fraction ~ U(min_scale, max_scale), random position and
    horizontal flip, bilinearly resampled (``grid_sample``) to ``size x size`` (thesis 4.4.8; digest 5.1).

    The fraction applies to each side (a non-square image gives non-square crops, resized to square).

    Args:
        images: ``(B, C, H, W)``.
        num_crops: crops per image.
        size: output side.
        min_scale: smallest crop side as a fraction of the image side (thesis: 1/8).
        max_scale: largest crop side fraction (thesis: 1/4).
        flip: random horizontal flips.
        generator: optional ``torch.Generator`` (on ``images.device``) for reproducible crops.

    Returns:
        ``(B, num_crops, C, size, size)``; differentiable with respect to ``images``.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
    _check_positive("num_crops", num_crops)
    _check_positive("size", size)
    if not 0 < min_scale <= max_scale <= 1:
        raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got min_scale={min_scale}, max_scale={max_scale}")
    b, c = images.shape[:2]
    n = b * num_crops
    opts = {"device": images.device, "generator": generator}
    frac = min_scale + (max_scale - min_scale) * torch.rand(n, **opts)
    cx = (2 * torch.rand(n, **opts) - 1) * (1 - frac)
    cy = (2 * torch.rand(n, **opts) - 1) * (1 - frac)
    sign = torch.where(torch.rand(n, **opts) < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=images.device)
    theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = frac * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = frac
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    src = images.repeat_interleave(num_crops, dim=0)
    crops = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return crops.view(b, num_crops, c, size, size)
