"""Networks and correspondence operators of DTP (Kim, Kim & Kim, AAAI 2022, "Deep Translation Prior").

Research digest ``dtp_rabit_nst.md`` section 1.2. The correspondence module's feature extractor is a
:class:`medi2i.nets.vgg.VGGFeatures` trunk (trained at test time, see :mod:`medi2i.natural.dtp`); this file
holds what is built around it:

* :class:`DTPDecoder`, the generation module ``F(r; w_g)``: the official decoder layout (digest 1.2, "Code
  decoder"), built from :class:`UpconvBlock` s (optional 2x nearest upsample, 3x3 conv, affine
  InstanceNorm, ReLU, plus an additive skip that is a 1x1 conv, after the upsample, when the channel count
  changes). Channel path ``256 -> 256 -> 256 -> 128 (up) | 128 -> 128 -> 128 -> 128 -> 64 (up) |
  64 -> 64 -> 64 -> 32 | 32 -> 32 -> 32 -> 3``; the last block has no norm/activation. At full width this
  is 2,149,382 parameters, the digest's count. ``width`` scales every channel count (the DTP-lite
  configuration uses 1/8). Padding is zero padding, as the official code's misspelt padding mode makes it;
  MONAI has no block with this exact upsample/skip layout, hence the small local block.
* :func:`correlation_vectors`, :func:`soft_correspondence` and :func:`warp`: Eqs. 6-8 of the paper.
  Two centring modes (digest 1.2 and open decision 3): ``"vector"`` (official code: 3x3 unfold, each
  patch vector minus its own mean, then L2-normalised) and ``"spatial"`` (paper Eq. 7: each channel
  centred over all positions, then L2-normalised per position, usually with ``patch=1``).
* :func:`centred_unit` and :func:`patch_vectors_at`: the per-vector centring and the 3x3 patch vectors at
  sampled positions that the losses use (digest 1.3).

Shapes: feature maps ``(B, C, H, W)``; vector sets ``(B, N, D)`` with ``N = H W`` positions in row-major
order; correspondence ``(B, N_c, N_s)`` with rows summing to 1 (softmax over style positions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DTPDecoder",
    "UpconvBlock",
    "centred_unit",
    "correlation_vectors",
    "patch_vectors_at",
    "soft_correspondence",
    "warp",
]

# (out channels, 2x upsample before the conv) of the first 12 decoder blocks at full width; a 13th maps to the image
_DECODER_PLAN = (
    (256, False),
    (256, False),
    (128, True),
    (128, False),
    (128, False),
    (128, False),
    (64, True),
    (64, False),
    (64, False),
    (32, False),
    (32, False),
    (32, False),
)


class UpconvBlock(nn.Module):
    """``y = act(IN(conv3x3(up(x)))) + skip(up(x))``; ``skip`` = 1x1 conv if channels change, else identity.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        upsample: 2x nearest upsampling first.
        last: no norm and no activation (the output block).
    """

    def __init__(self, in_channels: int, out_channels: int, *, upsample: bool = False, last: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = nn.Identity() if last else nn.InstanceNorm2d(out_channels, affine=True)
        self.act = nn.Identity() if last else nn.ReLU()
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.act(self.norm(self.conv(x))) + self.skip(x)


class DTPDecoder(nn.Module):
    """Generation module: warped features ``(B, C_in, h, w)`` -> image-space residual ``(B, C_out, 4h, 4w)``.

    The output is unbounded (no tanh, as in the official code); DTP blends it with the warped style image.

    Args:
        in_channels: channels of the warped feature (relu3_4: 256 x VGG width).
        out_channels: image channels (3, or 1 for grey medical slices).
        width: channel multiplier of the plan (1.0 = official decoder).

    Example:
        >>> dec = DTPDecoder(32, 3, width=0.125)
        >>> tuple(dec(torch.zeros(1, 32, 16, 16)).shape)
        (1, 3, 64, 64)
    """

    def __init__(self, in_channels: int = 256, out_channels: int = 3, *, width: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < width <= 1.0:
            raise ValueError(f"width={width} must be in (0, 1]")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels={in_channels} and out_channels={out_channels} must be >= 1")
        blocks = []
        ch = in_channels
        for out_full, up in _DECODER_PLAN:
            out = max(1, round(out_full * width))
            blocks.append(UpconvBlock(ch, out, upsample=up))
            ch = out
        blocks.append(UpconvBlock(ch, out_channels, last=True))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def centred_unit(v: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each vector (last axis) minus its own mean, then L2-normalised (official code's centring)."""
    v = v - v.mean(dim=-1, keepdim=True)
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def patch_vectors_at(features: torch.Tensor, index: torch.Tensor | None, patch: int = 3) -> torch.Tensor:
    """The ``patch x patch`` neighbourhood vectors (zero-padded, ``C * patch^2`` dims) at positions.

    Equal to ``F.unfold(features, patch, padding=patch // 2)`` restricted to the columns ``index`` (row-major
    positions), without building the full unfold.

    Args:
        features: ``(B, C, H, W)``.
        index: ``(P,)`` long positions in ``[0, H W)``, or None for all positions.
        patch: odd neighbourhood size (1 = the raw feature vector).

    Returns:
        ``(B, P, C * patch^2)`` with the same channel-major ordering as ``F.unfold``.
    """
    if patch < 1 or patch % 2 == 0:
        raise ValueError(f"patch={patch} must be an odd integer >= 1")
    b, c, h, w = features.shape
    if patch == 1:
        flat = features.reshape(b, c, h * w)
        return (flat if index is None else flat[:, :, index]).transpose(1, 2)
    if index is None:
        return F.unfold(features, patch, padding=patch // 2).transpose(1, 2)
    r = patch // 2
    padded = F.pad(features, (r, r, r, r))
    rows, cols = index // w, index % w
    pieces = []
    for dy in range(patch):
        for dx in range(patch):
            pieces.append(padded[:, :, rows + dy, cols + dx])  # (B, C, P)
    stacked = torch.stack(pieces, dim=2)  # (B, C, patch^2, P): channel-major like F.unfold
    return stacked.reshape(b, c * patch * patch, -1).transpose(1, 2)


def correlation_vectors(features: torch.Tensor, *, patch: int = 3, centering: str = "vector") -> torch.Tensor:
    """Unit vectors ``(B, H W, D)`` whose dot products are the correlation ``M(u, v)`` of Eq. 6.

    Args:
        features: ``(B, C, H, W)`` (relu3_4).
        patch: neighbourhood unfolded into each vector (3 = official code, 1 = paper).
        centering: ``"vector"`` (each vector minus its own mean; code) or ``"spatial"`` (each channel minus
            its mean over positions, Eq. 7; paper).
    """
    if centering == "spatial":
        features = features - features.mean(dim=(2, 3), keepdim=True)
        vectors = patch_vectors_at(features, None, patch)
        return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    if centering == "vector":
        return centred_unit(patch_vectors_at(features, None, patch))
    raise ValueError(f"centering={centering!r}; allowed: 'vector', 'spatial'")


def soft_correspondence(
    content_vectors: torch.Tensor, style_vectors: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlation ``M = q_c q_s^T`` ``(B, N_c, N_s)`` and ``A = softmax_v(M / tau)`` (rows sum to 1, Eq. 8)."""
    corr = content_vectors @ style_vectors.transpose(1, 2)
    return corr, torch.softmax(corr / temperature, dim=-1)


def warp(attention: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``out(u) = sum_v A(u, v) values(v)``: ``A`` ``(B, N_out, N_in)``, ``values`` ``(B, C, H_in, W_in)``
    -> ``(B, C, *size)`` with ``size[0] * size[1] = N_out``."""
    b, c = values.shape[:2]
    flat = values.reshape(b, c, -1)
    if flat.shape[-1] != attention.shape[-1] or size[0] * size[1] != attention.shape[1]:
        raise ValueError(
            f"warp: attention {tuple(attention.shape)} does not match values {tuple(values.shape)} / size {size}"
        )
    return (flat @ attention.transpose(1, 2)).reshape(b, c, *size)
